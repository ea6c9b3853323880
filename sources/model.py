"""Typed samples every source yields, the Source protocol and the error hierarchy.

Samples are plain frozen data: no Rich objects, no formatting. A value the upstream
did not send is ``None`` — never silently a zero.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class SourceError(Exception):
    """A source could not fetch. ``str(error)`` is short and fit for a pane."""

    reason: str = "error"
    """A one-word class of failure shown on screen (``timeout``, ``http 503`` ...)."""


class SourceTimeout(SourceError):
    """The upstream did not answer within the deadline."""

    reason = "timeout"


class SourceUnavailable(SourceError):
    """Connection refused or reset, DNS failure, 5xx."""

    reason = "unavailable"


class SourceRateLimited(SourceError):
    """The upstream asked us to slow down (429 / throttling)."""

    reason = "rate limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceAuthError(SourceError):
    """Credentials missing, expired or refused."""

    reason = "auth"


class SourceBadResponse(SourceError):
    """The upstream answered something we cannot read."""

    reason = "bad response"


class SourceNotFound(SourceError):
    """The watched object does not exist (e.g. ECS answers MISSING)."""

    reason = "not found"


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    """ECS deployment circuit breaker settings and, when known, its live state."""

    enabled: bool
    rollback: bool
    status: str | None = None
    """``TRIGGERED``, ``MONITORING``, ``MONITORING_COMPLETE`` or ``DISABLED``."""
    failure_count: int | None = None
    threshold: int | None = None


@dataclass(frozen=True, slots=True)
class EcsDeployment:
    """One entry of ``describe_services(...).deployments``."""

    id: str
    status: str
    """``PRIMARY``, ``ACTIVE`` or ``INACTIVE``."""
    task_definition: str
    """Task definition ARN."""
    revision: str
    """``family:revision`` taken from the ARN."""
    desired: int | None
    running: int | None
    pending: int | None
    failed: int | None
    rollout_state: str | None
    """``IN_PROGRESS``, ``COMPLETED`` or ``FAILED``; ``None`` for external controllers."""
    rollout_reason: str | None
    created_at: datetime | None
    updated_at: datetime | None
    images: tuple[str, ...] = ()
    """Container image tags of the task definition, when described."""


@dataclass(frozen=True, slots=True)
class ServiceDeployment:
    """One entry of the ECS service-deployments API (``describe_service_deployments``)."""

    arn: str
    status: str
    """``PENDING``, ``IN_PROGRESS``, ``SUCCESSFUL``, ``STOP_REQUESTED``, ``STOPPED``,
    ``ROLLBACK_REQUESTED``, ``ROLLBACK_IN_PROGRESS``, ``ROLLBACK_SUCCESSFUL``,
    ``ROLLBACK_FAILED``."""
    status_reason: str | None
    target_revision_arn: str | None
    target_task_definition: str | None
    source_task_definitions: tuple[str, ...]
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    stopped_at: datetime | None
    circuit_breaker: CircuitBreaker | None
    rollback_reason: str | None = None
    lifecycle_stage: str | None = None


@dataclass(frozen=True, slots=True)
class EcsEvent:
    """A service event, deduplicated by ``id``."""

    id: str
    at: datetime | None
    message: str


@dataclass(frozen=True, slots=True)
class EcsServiceSample:
    """What the ECS source knows about one service after one poll."""

    key: str
    """``cluster/service`` as configured."""
    at: datetime
    status: str | None
    desired: int | None
    running: int | None
    pending: int | None
    task_definition: str | None
    deployments: tuple[EcsDeployment, ...]
    service_deployments: tuple[ServiceDeployment, ...]
    """Newest first; empty when the API is not available or has nothing."""
    new_events: tuple[EcsEvent, ...]
    """Events not seen in an earlier poll, oldest first."""
    circuit_breaker: CircuitBreaker | None = None
    service_deployments_supported: bool = True


@dataclass(frozen=True, slots=True)
class SourceFailure:
    """A fetch failed for ``key`` (or for the whole source when ``key`` is ``None``).

    Never a sample: consumers keep their last good data and mark it STALE.
    """

    source: str
    key: str | None
    error: str
    reason: str
    at: datetime
    retry_in: float | None = None


Sample = EcsServiceSample
"""Union of all sample types; grows as sources are added."""

Item = Sample | SourceFailure
"""What ``Source.stream()`` yields."""


class Source(Protocol):
    """A plain async library: something you could use from a script."""

    name: str

    def stream(self) -> AsyncIterator[Item]:
        """Yield samples and failures until cancelled."""
        ...


@dataclass(slots=True)
class Counters:
    """Running tallies a source keeps about itself (for the status line and benches)."""

    polls: int = 0
    failures: int = 0
    dropped: int = 0
    last_error: str | None = None
    extra: dict[str, int] = field(default_factory=dict)
