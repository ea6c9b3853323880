"""Typed samples every source yields, the Source protocol and the error hierarchy.

Samples are plain frozen data: no Rich objects, no formatting. A value the upstream
did not send is ``None`` — never silently a zero.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
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
class LifecycleHook:
    """One ``lifecycleHookDetails`` entry of a service deployment (native blue/green,
    canary, linear). A hook whose status is ``AWAITING_ACTION`` waits for
    ``continue_service_deployment`` with its ``hook_id``."""

    hook_id: str
    status: str
    """``AWAITING_ACTION``, ``IN_PROGRESS``, ``SUCCEEDED``, ``FAILED`` or ``TIMED_OUT``."""
    target_type: str | None = None
    expires_at: datetime | None = None
    timeout_action: str | None = None


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
    strategy: str | None = None
    """``ROLLING``, ``BLUE_GREEN``, ``CANARY`` or ``LINEAR`` (its deployment configuration)."""
    hooks: tuple[LifecycleHook, ...] = ()
    traffic_weight: float | None = None
    """Percent of production traffic requested on the target (new) revision (native
    blue/green, canary, linear: ``requestedProductionTrafficWeight``); ``None`` when ECS
    does not say."""

    @property
    def awaiting_hook(self) -> LifecycleHook | None:
        """The lifecycle hook waiting for an operator's CONTINUE or ROLLBACK, if any."""
        return next((h for h in self.hooks if h.status == "AWAITING_ACTION"), None)


@dataclass(frozen=True, slots=True)
class EcsEvent:
    """A service event, deduplicated by ``id``."""

    id: str
    at: datetime | None
    message: str


@dataclass(frozen=True, slots=True)
class CodeDeployDeployment:
    """The newest CodeDeploy deployment of a ``CODE_DEPLOY`` service (``get_deployment``)."""

    id: str
    status: str
    """``Created``, ``Queued``, ``InProgress``, ``Baking``, ``Ready``, ``Succeeded``,
    ``Failed`` or ``Stopped``."""
    termination_wait: bool
    """Traffic moved and the blue tasks wait out their termination time."""
    created_at: datetime | None
    error: str | None = None
    """``errorInformation.message`` of a failed or stopped deployment."""
    rollback_of: str | None = None
    """For a rollback deployment, the id it rolls back."""

    @property
    def in_flight(self) -> bool:
        """Whether the deployment can still be continued or stopped."""
        return self.status in ("Created", "Queued", "InProgress", "Baking", "Ready")


@dataclass(frozen=True, slots=True)
class AlbWeights:
    """The live weights of an ALB forward action between a stable and a canary target group."""

    stable: int | None
    canary: int | None
    """Percent-like weights as the listener holds them; ``None`` if the group is absent."""

    @property
    def canary_percent(self) -> float | None:
        """The canary's share of traffic, 0..100."""
        if self.stable is None or self.canary is None:
            return None
        total = self.stable + self.canary
        return 0.0 if total == 0 else 100.0 * self.canary / total


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
    controller: str | None = None
    """The deployment controller: ``ECS``, ``CODE_DEPLOY`` or ``EXTERNAL``."""
    strategy: str | None = None
    """The service's deployment strategy: ``ROLLING``, ``BLUE_GREEN``, ``CANARY``, ``LINEAR``."""
    codedeploy: CodeDeployDeployment | None = None
    """For a ``CODE_DEPLOY`` service with its application configured: its newest deployment."""
    alb: AlbWeights | None = None
    """For a service with an ALB canary configured: the listener's current weights."""

    @property
    def primary(self) -> EcsDeployment | None:
        """The PRIMARY deployment (the one ECS moves towards), if ECS listed one."""
        return next((d for d in self.deployments if d.status == "PRIMARY"), None)

    @property
    def newest(self) -> ServiceDeployment | None:
        """The newest service deployment (ECS's service-deployments API), if any."""
        return self.service_deployments[0] if self.service_deployments else None


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


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One point of a metric series; ``value`` is ``None`` for a gap Datadog reported."""

    at: datetime
    value: float | None


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One configured Datadog query's answer for one group, after one poll."""

    metric: str
    """The configured metric name, e.g. ``error_rate``."""
    service: str | None
    """The service key the metric is bound to in config, if any."""
    group: str | None
    """The group's tag set, e.g. ``version:v2``; ``None`` for an ungrouped query."""
    points: tuple[MetricPoint, ...]
    """Points of the queried window, oldest first (gaps kept as ``None``)."""
    unit: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class SentryIssue:
    """A Sentry issue, as the organization issues API describes it."""

    id: str
    short_id: str | None
    title: str
    culprit: str | None
    level: str | None
    count: int | None
    user_count: int | None
    first_seen: datetime | None
    last_seen: datetime | None
    first_release: str | None = None
    permalink: str | None = None


@dataclass(frozen=True, slots=True)
class SentrySample:
    """What Sentry says since the deployment started, after one poll."""

    service: str | None
    """The service key the Sentry project is bound to in config, if any."""
    at: datetime
    since: datetime
    """The ``firstSeen`` lower bound used (the deployment's start)."""
    new_issues: tuple[SentryIssue, ...]
    """Issues first seen after ``since``, most frequent first."""
    release: str | None
    release_issues: tuple[SentryIssue, ...]
    """Unresolved issues of ``release`` (empty when no release is known)."""
    error_counts: tuple[MetricPoint, ...]
    """Error events per complete bucket (events-stats), oldest first."""
    errors_so_far: float | None = None
    """Events in the bucket still filling at the poll (shown, never judged)."""
    bucket_seconds: int | None = None
    """The events-stats bucket size."""


@dataclass(frozen=True, slots=True)
class ProbeSample:
    """One HTTP probe round trip. A failing probe is data, not a source failure."""

    probe: str
    service: str | None
    url: str
    at: datetime
    ok: bool
    status: int | None
    latency_ms: float | None
    """Time to the full, checked answer; ``None`` when it never completed."""
    error: str | None
    """Why it failed: ``expected 200, got 503``, ``timed out after 2s``, ``body lacks 'ok'``."""
    success_ratio: float
    """Share of successes over the last ``attempts`` rounds (this one included)."""
    window: int
    """Most rounds the ratio counts (the probe's configured window)."""
    last_failure: datetime | None = None
    last_failure_reason: str | None = None
    attempts: int | None = None
    """Rounds the ratio is over: the rounds made so far until the window fills, then
    ``window``; ``None`` when the producer does not say."""


Sample = EcsServiceSample | MetricSample | SentrySample | ProbeSample
"""Union of all sample types."""


@dataclass(frozen=True, slots=True)
class Discovered:
    """One service a discovery found."""

    key: str
    cluster: str
    service: str
    entry: str
    """The key of the discovery entry that found it."""
    only_active: float | None = None


@dataclass(frozen=True, slots=True)
class FleetChange:
    """What a discovery round changed in the watched fleet of one context."""

    source: str
    context: str | None
    added: tuple[Discovered, ...]
    removed: tuple[str, ...]
    """Keys of services that are gone (deleted, or no longer matched)."""
    listed: tuple[str, ...]
    """Keys of the entries that listed fine this round (their failure is over)."""
    at: datetime
    truncated: bool = False
    """More services matched than the limit: the rest are not watched."""

    @property
    def key(self) -> None:
        """Not about one service (items have a key)."""
        return None


@dataclass(frozen=True, slots=True)
class PipelineEvent:
    """A pipeline's word on the bus (``deploywatch announce``): a deploy of ``service``
    started, finished, failed or was rolled back. Every field is outside text."""

    id: str
    """Unique per announcement (a re-delivery is shown once)."""
    service: str
    """As the pipeline named it: a service key or an ECS service name."""
    event: str
    """``started``, ``finished``, ``failed`` or ``rolled-back``."""
    at: datetime
    version: str | None = None
    commit: str | None = None
    url: str | None = None
    by: str | None = None
    """``user@host`` of the pipeline step."""

    @property
    def key(self) -> str:
        return self.service

    def words(self) -> str:
        """``pipeline: deploy started v2 @ 0123456789ab by ci@runner-3 <url>`` (raw: the
        caller cleans it, like every outside text)."""
        what = PIPELINE_WORDS.get(self.event, self.event)
        text = f"pipeline: {what}"
        if self.version:
            text += f" {self.version}"
        if self.commit:
            text += f" @ {self.commit[:12]}"
        if self.by:
            text += f" by {self.by}"
        if self.url:
            text += f" {self.url}"
        return text


PIPELINE_WORDS = {
    "started": "deploy started",
    "finished": "deploy finished",
    "failed": "deploy FAILED",
    "rolled-back": "deploy rolled back",
}
"""A pipeline event's words, by its name."""


Item = Sample | SourceFailure | FleetChange | PipelineEvent
"""What ``Source.stream()`` yields."""


class Source(Protocol):
    """A plain async library: something you could use from a script."""

    name: str

    def stream(self) -> AsyncIterator[Item]:
        """Yield samples and failures until cancelled."""
        ...
