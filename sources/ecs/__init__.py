"""ECS source: services, their deployments and events, via boto3 in worker threads.

One module per job:

- :mod:`sources.ecs.mapping` — the targets, and AWS JSON → typed samples (pure);
- :mod:`sources.ecs.errors` — boto3 failures → the sources' error hierarchy;
- :mod:`sources.ecs.gate` — the call gate of one poll (worker threads, priorities, deadlines);
- :mod:`sources.ecs.lookups` — CodeDeploy and ELB lookups;
- :mod:`sources.ecs.poller` — :class:`EcsSource`, the two-phase poll.

Every public name stays importable from ``sources.ecs``.
"""

from __future__ import annotations

from sources.ecs.errors import NOT_IMPLEMENTED_POLLS, classify
from sources.ecs.mapping import (
    TERMINAL_SERVICE_DEPLOYMENT,
    AlbTarget,
    EcsTarget,
    forward_weights,
    map_codedeploy,
    map_deployment,
    map_service,
    map_service_deployment,
    revision_of,
)
from sources.ecs.poller import (
    CACHE_MAX,
    CACHE_PER_SERVICE,
    DESCRIBE_ARNS,
    DESCRIBE_BATCH,
    DETAIL_GROUP,
    SEEN_EVENTS_PER_SERVICE,
    SERVICE_DEPLOYMENTS_PER_SERVICE,
    EcsSource,
)

__all__ = [
    "CACHE_MAX",
    "CACHE_PER_SERVICE",
    "DESCRIBE_ARNS",
    "DESCRIBE_BATCH",
    "DETAIL_GROUP",
    "NOT_IMPLEMENTED_POLLS",
    "SEEN_EVENTS_PER_SERVICE",
    "SERVICE_DEPLOYMENTS_PER_SERVICE",
    "TERMINAL_SERVICE_DEPLOYMENT",
    "AlbTarget",
    "EcsSource",
    "EcsTarget",
    "classify",
    "forward_weights",
    "map_codedeploy",
    "map_deployment",
    "map_service",
    "map_service_deployment",
    "revision_of",
]
