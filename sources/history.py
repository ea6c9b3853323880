"""Deployment history: each service's recent deployments, from ECS's service-deployments
API (``list_service_deployments`` + ``describe_service_deployments``) and, for a
CodeDeploy service, CodeDeploy's ``list_deployments`` + ``batch_get_deployments``.

Bounded: at most ``per_service`` deployments per service, ``nextToken`` followed at most
``max_pages`` times. boto3 runs in worker threads (never on the event loop); a fetch
that fails is a :class:`~sources.model.SourceFailure` of source ``history`` (STALE, the
last good history kept), like any source.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sources.ecs import (
    DESCRIBE_ARNS,
    EcsTarget,
    classify,
    map_service_deployment,
    revision_of,
)
from sources.ecs.mapping import _revision_arns, _time
from sources.model import SourceError, SourceFailure
from sources.poll import poll

SOURCE = "history"
LIST_PAGE_MAX = 100
"""``list_service_deployments`` answers at most 100 per page."""
CODEDEPLOY_BATCH = 25
"""``batch_get_deployments`` takes at most 25 ids."""
CONCURRENT_SERVICES = 4
"""Services fetched at once (each one's calls run one after the other in a thread)."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One past (or running) deployment of a service."""

    service: str
    """The service key, ``cluster/service``."""
    id: str
    """Service deployment ARN, or CodeDeploy deployment id."""
    kind: str
    """``ROLLING``, ``BLUE_GREEN``, ``CANARY``, ``LINEAR`` or ``CODE_DEPLOY``."""
    status: str
    """As the API says it (``SUCCESSFUL``, ``ROLLBACK_SUCCESSFUL``, ``Succeeded``...)."""
    from_revision: str | None
    to_revision: str | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    """When it ended (finished or stopped); ``None`` while in flight."""
    breaker_triggered: bool = False
    reason: str | None = None
    rollback_started: datetime | None = None
    """When ECS (or CodeDeploy) began rolling it back, if it did."""

    @property
    def begun(self) -> datetime | None:
        """When it began."""
        return self.started_at or self.created_at

    @property
    def duration(self) -> float | None:
        """Seconds from its start to its end (``None`` while in flight)."""
        if self.begun is None or self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.begun).total_seconds())


@dataclass(frozen=True, slots=True)
class HistorySample:
    """Every service's recent deployments after one fetch."""

    at: datetime
    services: dict[str, tuple[HistoryEntry, ...]] = field(default_factory=dict)
    """Newest first, per service key."""
    more: frozenset[str] = frozenset()
    """Services with older deployments than those listed (the bound was reached)."""


class HistorySource:
    """Fetches the deployment history of a set of services.

    Args:
        targets: The services (as the ECS source knows them).
        client: The ECS client (built on first use, in a worker thread).
        aux_client: The ``codedeploy`` client by name (same).
        per_service: Most deployments per service.
        max_pages: Most ``nextToken`` pages followed per service.
        page_size: Deployments asked per page (at most :data:`LIST_PAGE_MAX`).
        interval: Seconds between two fetches (:meth:`stream`).
        deadline: Bound on one whole fetch, seconds.
        clock: UTC now.
    """

    name = SOURCE

    def __init__(
        self,
        targets: Sequence[EcsTarget],
        client: Callable[[], Any],
        aux_client: Callable[[str], Any],
        *,
        per_service: int = 50,
        max_pages: int = 5,
        page_size: int = LIST_PAGE_MAX,
        interval: float = 60.0,
        deadline: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.targets = tuple(targets)
        self.client = client
        self.aux_client = aux_client
        self.per_service = per_service
        self.max_pages = max_pages
        self.page_size = page_size
        self.interval = interval
        self.deadline = deadline
        self.clock = clock

    async def fetch(self) -> HistorySample:
        """One fetch of every service's history.

        Raises:
            SourceError: A call failed (classified, secrets never in the text).
        """
        gate = asyncio.Semaphore(CONCURRENT_SERVICES)

        async def one(target: EcsTarget) -> tuple[str, tuple[HistoryEntry, ...], bool]:
            async with gate:
                entries, more = await asyncio.to_thread(self._service_history, target)
            return target.key, entries, more

        results = await asyncio.gather(*(one(t) for t in self.targets), return_exceptions=True)
        services: dict[str, tuple[HistoryEntry, ...]] = {}
        more: set[str] = set()
        for result in results:
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                raise classify(result) from result
            key, entries, truncated = result
            services[key] = entries
            if truncated:
                more.add(key)
        return HistorySample(self.clock(), services, frozenset(more))

    async def stream(self) -> AsyncGenerator[HistorySample | SourceFailure, None]:
        """Fetch every ``interval`` seconds until cancelled (failures back off)."""
        async for result in poll(self.fetch, self.interval, deadline=self.deadline):
            if result.error is not None:
                yield failure(result.error, self.clock(), result.retry_in)
            elif result.value is not None:
                yield result.value

    # ---- worker threads ---------------------------------------------------------------

    def _service_history(self, target: EcsTarget) -> tuple[tuple[HistoryEntry, ...], bool]:
        if target.codedeploy is not None:
            return self._codedeploy_history(target)
        client = self.client()
        arns: list[str] = []
        token: str | None = None
        for _ in range(self.max_pages):
            params: dict[str, Any] = {
                "cluster": target.cluster,
                "service": target.service,
                "maxResults": min(self.page_size, self.per_service - len(arns)),
            }
            if token:
                params["nextToken"] = token
            answer = client.list_service_deployments(**params)
            arns += [
                str(sd["serviceDeploymentArn"])
                for sd in answer.get("serviceDeployments") or ()
                if isinstance(sd, dict) and sd.get("serviceDeploymentArn")
            ]
            token = answer.get("nextToken")
            if not token or len(arns) >= self.per_service:
                break
        more = bool(token) or len(arns) > self.per_service
        arns = arns[: self.per_service]
        raws: list[dict[str, Any]] = []
        for i in range(0, len(arns), DESCRIBE_ARNS):
            answer = client.describe_service_deployments(
                serviceDeploymentArns=arns[i : i + DESCRIBE_ARNS]
            )
            raws += [r for r in answer.get("serviceDeployments") or () if isinstance(r, dict)]
        revision_arns = sorted({arn for raw in raws for arn in _revision_arns(raw)})
        revisions: dict[str, str] = {}
        for i in range(0, len(revision_arns), DESCRIBE_ARNS):
            chunk = revision_arns[i : i + DESCRIBE_ARNS]
            answer = client.describe_service_revisions(serviceRevisionArns=chunk)
            for rev in answer.get("serviceRevisions") or ():
                if isinstance(rev, dict) and rev.get("serviceRevisionArn"):
                    revisions[str(rev["serviceRevisionArn"])] = str(rev.get("taskDefinition"))
        entries = [ecs_entry(target.key, raw, revisions) for raw in raws]
        entries.sort(key=_newest_first)
        return tuple(entries), more

    def _codedeploy_history(self, target: EcsTarget) -> tuple[tuple[HistoryEntry, ...], bool]:
        assert target.codedeploy is not None
        application, group = target.codedeploy
        client = self.aux_client("codedeploy")
        ids: list[str] = []
        token: str | None = None
        for _ in range(self.max_pages):
            params: dict[str, Any] = {"applicationName": application, "deploymentGroupName": group}
            if token:
                params["nextToken"] = token
            answer = client.list_deployments(**params)
            ids += [str(i) for i in answer.get("deployments") or ()]
            token = answer.get("nextToken")
            if not token or len(ids) >= self.per_service:
                break
        more = bool(token) or len(ids) > self.per_service
        ids = ids[: self.per_service]
        entries: list[HistoryEntry] = []
        for i in range(0, len(ids), CODEDEPLOY_BATCH):
            answer = client.batch_get_deployments(deploymentIds=ids[i : i + CODEDEPLOY_BATCH])
            entries += [
                codedeploy_entry(target.key, info)
                for info in answer.get("deploymentsInfo") or ()
                if isinstance(info, dict)
            ]
        entries.sort(key=_newest_first)
        return tuple(entries), more


def _newest_first(entry: HistoryEntry) -> float:
    begun = entry.begun
    return -(begun.timestamp() if begun is not None else 0.0)


def ecs_entry(key: str, raw: dict[str, Any], revisions: dict[str, str]) -> HistoryEntry:
    """One ``describe_service_deployments`` entry as a history entry."""
    sd = map_service_deployment(raw, revisions)
    breaker = sd.circuit_breaker
    rollback = raw.get("rollback")
    source = sd.source_task_definitions[0] if sd.source_task_definitions else None
    return HistoryEntry(
        service=key,
        id=sd.arn,
        kind=sd.strategy or "ROLLING",
        status=sd.status,
        from_revision=revision_of(source) if source else None,
        to_revision=revision_of(sd.target_task_definition) if sd.target_task_definition else None,
        created_at=sd.created_at,
        started_at=sd.started_at,
        finished_at=sd.finished_at or sd.stopped_at,
        breaker_triggered=breaker is not None and breaker.status == "TRIGGERED",
        reason=sd.rollback_reason or sd.status_reason,
        rollback_started=_time(rollback.get("startedAt")) if isinstance(rollback, dict) else None,
    )


def codedeploy_entry(key: str, info: dict[str, Any]) -> HistoryEntry:
    """One CodeDeploy ``deploymentInfo`` as a history entry (a deployment CodeDeploy
    rolled back says so in its status: ``Failed (rolled back)``)."""
    error = info.get("errorInformation")
    rollback = info.get("rollbackInfo")
    status = str(info.get("status") or "?")
    if isinstance(rollback, dict) and rollback.get("rollbackDeploymentId"):
        status += " (rolled back)"
    return HistoryEntry(
        service=key,
        id=str(info.get("deploymentId") or "?"),
        kind="CODE_DEPLOY",
        status=status,
        from_revision=None,
        to_revision=None,
        created_at=_time(info.get("createTime")),
        started_at=_time(info.get("startTime")),
        finished_at=_time(info.get("completeTime")),
        reason=error.get("message") if isinstance(error, dict) else None,
    )


def failure(error: SourceError, at: datetime, retry_in: float | None = None) -> SourceFailure:
    """The history source's failure (STALE with the error's own reason)."""
    return SourceFailure(SOURCE, None, str(error), error.reason, at, retry_in)


__all__ = [
    "HistoryEntry",
    "HistorySample",
    "HistorySource",
    "codedeploy_entry",
    "ecs_entry",
]
