"""Discovery: the ECS services a pattern matches, listed with boto3's paginators.

A ``[[service]]`` entry may name many services: every service of a cluster
(``service = "*"``), a name pattern (``"web-*"``), or every cluster of a context
(``cluster = "*"``). The ECS source lists them in a worker thread every
``interval`` seconds (the list calls never run on the event loop), bounded by
``limit`` services in all, and announces what appeared and what left as a
:class:`~sources.model.FleetChange`; a failed listing keeps the services known before.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

DEFAULT_LIMIT = 5000
"""Most services one context's discovery watches (more are left out, and said)."""


def service_key(context: str | None, cluster: str, service: str) -> str:
    """A service's stable key: ``cluster/service``, prefixed ``context:`` when its
    context is named (the same service name in two accounts never collides)."""
    base = f"{cluster}/{service}"
    return f"{context}:{base}" if context else base


def is_pattern(text: str) -> bool:
    """Whether a name is a glob (``*``, ``?`` or ``[...]``)."""
    return any(c in text for c in "*?[")


def _name(arn: str) -> str:
    """``arn:aws:ecs:...:service/cluster/web`` → ``web``; a plain name as it is."""
    return arn.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Discovery:
    """One ``[[service]]`` entry that matches many services."""

    key: str
    """The entry's own key (its failures are shown on it)."""
    cluster: str
    """A cluster name, or a pattern of cluster names (``*``)."""
    service: str
    """A pattern of service names (``*``, ``web-*``)."""
    only_active: float | None = None
    """Show only services with a deployment in flight or changed in the last this
    many seconds."""


def list_matching(client: Any, entry: Discovery, limit: int) -> tuple[list[tuple[str, str]], bool]:
    """``(cluster, service)`` names the entry matches, at most ``limit``, and whether
    there were more (blocking: run it in a worker thread).

    Args:
        client: boto3's ECS client.
        entry: What to match.
        limit: Most services returned.
    """
    if is_pattern(entry.cluster):
        clusters = [
            _name(arn)
            for page in client.get_paginator("list_clusters").paginate()
            for arn in page.get("clusterArns") or ()
            if fnmatch.fnmatchcase(_name(arn), entry.cluster)
        ]
    else:
        clusters = [entry.cluster]
    found: list[tuple[str, str]] = []
    for cluster in sorted(clusters):
        pages = client.get_paginator("list_services").paginate(
            cluster=cluster, PaginationConfig={"PageSize": 100}
        )
        for page in pages:
            for arn in page.get("serviceArns") or ():
                name = _name(arn)
                if fnmatch.fnmatchcase(name, entry.service):
                    if len(found) >= limit:
                        return found, True
                    found.append((cluster, name))
    return found, False
