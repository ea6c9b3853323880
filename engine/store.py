"""The state store: the latest known truth per service, and what changed since the
screen last looked. Plain Python, no Textual: the headless gate uses it too.

A failed fetch never replaces data: the last good sample is kept and marked STALE
with its age and the error.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING

from engine.rules import RuleBook
from engine.seen import SeenIds
from engine.smoke import SmokeRun
from sources.model import (
    Discovered,
    EcsEvent,
    EcsServiceSample,
    FleetChange,
    MetricSample,
    PipelineEvent,
    ProbeSample,
    Sample,
    SentrySample,
    SourceFailure,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sources.model import Item

SEEN_EVENTS_MAX = 20_000
"""Bound on the event ids remembered for de-duplication, for all services together
(ECS itself returns a service's newest 100 events); the oldest are forgotten first.
Kept as hashes (:class:`~engine.seen.SeenIds`): 2.2 MB when full."""
PENDING_EVENTS_MAX = 2000
"""Bound on events waiting for the screen; beyond it the oldest are dropped (counted)."""
PIPELINE_MAX = 500
"""Bound on the pipeline events kept for the report (the oldest are forgotten first)."""


class EcsStatus(Enum):
    """Where a service's deployment stands, in the words a deployer uses."""

    NO_DATA = "NO DATA"
    STEADY = "STEADY"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    ROLLBACK_REQUESTED = "ROLLBACK_REQUESTED"
    ROLLBACK_IN_PROGRESS = "ROLLBACK_IN_PROGRESS"
    ROLLBACK_SUCCESSFUL = "ROLLBACK_SUCCESSFUL"
    ROLLBACK_FAILED = "ROLLBACK_FAILED"

    @property
    def tone(self) -> str:
        """One of ``ok``, ``busy``, ``warn``, ``bad``, ``none``, for colouring."""
        return _TONES[self]

    @property
    def is_healthy(self) -> bool:
        """Only a deployment that finished the way it was meant to is healthy."""
        return self in (EcsStatus.STEADY, EcsStatus.COMPLETED)

    @property
    def in_flight(self) -> bool:
        """A deployment or a rollback is still moving."""
        return self in (
            EcsStatus.IN_PROGRESS,
            EcsStatus.ROLLBACK_REQUESTED,
            EcsStatus.ROLLBACK_IN_PROGRESS,
        )

    @property
    def rolling_back(self) -> bool:
        """ECS is rolling the deployment back (act now: it is not over)."""
        return self in (EcsStatus.ROLLBACK_REQUESTED, EcsStatus.ROLLBACK_IN_PROGRESS)

    @property
    def rolled_back(self) -> bool:
        """ECS rolled the deployment back and the rollback is over."""
        return self is EcsStatus.ROLLBACK_SUCCESSFUL

    @property
    def failed(self) -> bool:
        """The deployment, or its rollback, failed and nothing is moving."""
        return self in (EcsStatus.FAILED, EcsStatus.ROLLBACK_FAILED)


_TONES = {
    EcsStatus.NO_DATA: "none",
    EcsStatus.STEADY: "ok",
    EcsStatus.COMPLETED: "ok",
    EcsStatus.IN_PROGRESS: "busy",
    EcsStatus.FAILED: "bad",
    EcsStatus.STOPPED: "warn",
    EcsStatus.ROLLBACK_REQUESTED: "warn",
    EcsStatus.ROLLBACK_IN_PROGRESS: "warn",
    EcsStatus.ROLLBACK_SUCCESSFUL: "warn",
    EcsStatus.ROLLBACK_FAILED: "bad",
}


def ecs_status(sample: EcsServiceSample | None) -> EcsStatus:
    """Judge where a service's deployment stands from ECS's own words.

    The newest service deployment wins when it speaks of a rollback or a stop: a
    deployment that ECS rolled back is never reported as a success.

    Args:
        sample: The latest sample, or ``None``.

    Returns:
        The status.
    """
    if sample is None:
        return EcsStatus.NO_DATA
    newest = sample.newest
    if newest is not None:
        by_name = {s.value: s for s in EcsStatus}
        if newest.status.startswith("ROLLBACK_") and newest.status in by_name:
            return by_name[newest.status]
        if newest.status in ("STOP_REQUESTED", "STOPPED"):
            failed = any(d.rollout_state == "FAILED" for d in sample.deployments)
            return EcsStatus.FAILED if failed else EcsStatus.STOPPED
    if any(d.rollout_state == "FAILED" for d in sample.deployments):
        return EcsStatus.FAILED
    primary = sample.primary
    if primary is None:
        return EcsStatus.NO_DATA
    if primary.rollout_state == "IN_PROGRESS" or len(sample.deployments) > 1:
        return EcsStatus.IN_PROGRESS
    if newest is not None and newest.status == "SUCCESSFUL":
        return EcsStatus.COMPLETED
    if primary.rollout_state == "COMPLETED":
        return EcsStatus.COMPLETED if newest is not None else EcsStatus.STEADY
    return EcsStatus.STEADY


@dataclass(slots=True)
class ServiceState:
    """What the store knows about one service."""

    key: str
    label: str
    sample: EcsServiceSample | None = None
    last_ok: datetime | None = None
    failure: SourceFailure | None = None
    """The current failure; ``None`` once a fetch succeeds again."""
    failing_since: datetime | None = None
    """When the current run of failures began."""
    _status: tuple[EcsServiceSample | None, EcsStatus] | None = None

    @property
    def stale(self) -> bool:
        """True while the latest fetch failed."""
        return self.failure is not None

    @property
    def status(self) -> EcsStatus:
        """The deployment status from the last good sample (worked out again only when
        the sample changed: every judgement and every repaint asks for all of them)."""
        cached = self._status
        if cached is None or cached[0] is not self.sample:
            cached = self._status = (self.sample, ecs_status(self.sample))
        return cached[1]

    def stale_age(self, now: datetime) -> float | None:
        """Seconds since the last good data, when stale."""
        if self.failure is None:
            return None
        since = self.last_ok or self.failing_since or self.failure.at
        return max(0.0, (now - since).total_seconds())


PANES = ("metrics", "errors", "probes")
"""The signal panes the store tracks changes for."""


class Store:
    """Latest state per service and per signal, with dirty sets for the screen.

    Args:
        services: ``(key, label)`` pairs in display order.
        rules: The rule book fed by every sample (an empty one by default).
    """

    def __init__(self, services: Iterable[tuple[str, str]], rules: RuleBook | None = None) -> None:
        self.services: dict[str, ServiceState] = {
            key: ServiceState(key=key, label=label) for key, label in services
        }
        self.rules = rules or RuleBook(())
        self.metrics: dict[str, dict[str | None, MetricSample]] = {}
        """Latest answer per metric name, per group."""
        self.sentry: SentrySample | None = None
        self.probes: dict[str, ProbeSample] = {}
        self.signal_failures: dict[tuple[str, str | None], SourceFailure] = {}
        """Current failures of the signal sources, by ``(source, key)``; a failure's
        ``at`` is when its data went stale (the last good answer, else the first failure)."""
        self.signal_last_ok: dict[tuple[str, str | None], datetime] = {}
        """When each signal source (and key) last answered well."""
        self.dirty_panes: set[str] = set()
        self._dirty: set[str] = set()
        self._pending_events: deque[tuple[str, EcsEvent]] = deque(maxlen=PENDING_EVENTS_MAX)
        self.dropped_events = 0
        self._seen_events = SeenIds(SEEN_EVENTS_MAX)
        """Event ids already taken, oldest first (bounded by SEEN_EVENTS_MAX)."""
        self.pipeline: deque[PipelineEvent] = deque(maxlen=PIPELINE_MAX)
        """Pipeline announcements from the bus (``deploywatch announce``), oldest first."""
        self.ingested = 0
        self.signal_version = 0
        """Counts changes to the signal panes' data (metrics, errors, probes)."""
        self.source_errors: dict[str, SourceFailure] = {}
        """Failures that concern a whole source rather than one service."""
        self.smoke: dict[str, SmokeRun] = {}
        """The latest run of each ``[[smoke]]`` suite (live while it runs)."""
        self.discovered: dict[str, Discovered] = {}
        """Services discovery added (not in the config), by key."""
        self.removed: set[str] = set()
        """Keys of discovered services that left, not yet taken by the screen."""
        self.entries: frozenset[str] = frozenset()
        """Keys of the discovery entries: not services (no status, no verdict), shown
        only while their listing fails."""

    def ingest(self, item: Item | SmokeRun) -> bool:
        """Take one sample or failure.

        Args:
            item: What a source yielded (or a smoke run, live or finished).

        Returns:
            True when something visible changed.
        """
        self.ingested += 1
        if isinstance(item, SmokeRun):
            return self._ingest_smoke(item)
        if isinstance(item, SourceFailure):
            return self._fail(item)
        if isinstance(item, FleetChange):
            return self._fleet(item)
        if isinstance(item, PipelineEvent):
            return self._pipeline(item)
        if not isinstance(item, EcsServiceSample):
            return self._ingest_signal(item)
        state = self.services.get(item.key)
        if state is None:
            return False
        primary = item.primary
        if primary is not None and primary.failed is not None:
            self.rules.record("ecs:failed_tasks", item.at, float(primary.failed), group=item.key)
        changed = state.sample != item or state.failure is not None
        state.sample = item
        state.last_ok = item.at
        state.failure = None
        state.failing_since = None
        self.source_errors.pop("ecs", None)
        for event in item.new_events:
            if not self._first_sight(item.key, event.id):
                continue
            if len(self._pending_events) == self._pending_events.maxlen:
                self.dropped_events += 1
            self._pending_events.append((item.key, event))
            changed = True
        if changed:
            self._dirty.add(item.key)
        return changed

    def _ingest_smoke(self, run: SmokeRun) -> bool:
        """Keep a suite's latest run; a finished one feeds ``smoke:<name>`` (1.0 while
        it fails, 0.0 once it passes)."""
        self.smoke[run.name] = run
        if run.finished is not None:
            value = 1.0 if run.failing else 0.0
            self.rules.record(f"smoke:{run.name}", run.finished, value)
        return True

    def _fleet(self, change: FleetChange) -> bool:
        """Discovery changed the fleet: services appear (after the configured ones)
        and leave; an entry that listed fine is no longer STALE."""
        changed = False
        for found in change.added:
            if found.key not in self.services:
                self.services[found.key] = ServiceState(key=found.key, label=found.service)
                self.discovered[found.key] = found
                self.removed.discard(found.key)
                self._dirty.add(found.key)
                changed = True
        for key in change.removed:
            if key in self.discovered and self.services.pop(key, None) is not None:
                del self.discovered[key]
                self._dirty.discard(key)
                self.removed.add(key)
                changed = True
        for key in change.listed:
            state = self.services.get(key)
            if state is not None and state.failure is not None:
                state.failure = state.failing_since = None
                self._dirty.add(key)
                changed = True
        return changed

    def _pipeline(self, event: PipelineEvent) -> bool:
        """A pipeline's announcement: a line in the events pane (under the service it
        names: its key, or the ECS name of one watched service) and kept for the report.
        The text is outside text: the events pane and the report clean it."""
        key = event.service
        if key not in self.services:
            named = [k for k, s in self.services.items() if s.label == key]
            key = named[0] if len(named) == 1 else key
        if not self._first_sight(key, f"pipeline:{event.id}"):
            return False
        self.pipeline.append(event)
        if len(self._pending_events) == self._pending_events.maxlen:
            self.dropped_events += 1
        self._pending_events.append(
            (key, EcsEvent(f"pipeline:{event.id}", event.at, event.words()))
        )
        return True

    def take_removed(self) -> set[str]:
        """Keys of discovered services that left since the last call."""
        removed, self.removed = self.removed, set()
        return removed

    def _first_sight(self, key: str, event_id: str) -> bool:
        """Whether an event is new (a re-delivered one is not shown twice)."""
        return self._seen_events.add((key, event_id))

    def _ingest_signal(self, item: Sample) -> bool:
        """Metrics, errors and probes: keep the latest for the panes, feed the rules."""
        self.signal_version += 1
        if isinstance(item, MetricSample):
            groups = self.metrics.setdefault(item.metric, {})
            has_values = any(p.value is not None for p in item.points)
            if item.group is not None:
                # Datadog answers a grouped query that has no series yet with one empty,
                # group-less result: once real groups arrive it means nothing.
                placeholder = groups.get(None)
                if placeholder is not None and not any(
                    p.value is not None for p in placeholder.points
                ):
                    del groups[None]
                groups[item.group] = item
            elif has_values or not any(g is not None for g in groups):
                groups[None] = item
            self._recovered("datadog", item.metric, item.at)
            self.rules.record_points(
                f"metric:{item.metric}", ((p.at, p.value) for p in item.points), item.group
            )
            self.dirty_panes.add("metrics")
        elif isinstance(item, SentrySample):
            self.sentry = item
            self._recovered("sentry", None, item.at)
            self.rules.record("sentry:new_issues", item.at, float(len(item.new_issues)))
            self.rules.record_points("sentry:errors", ((p.at, p.value) for p in item.error_counts))
            self.dirty_panes.add("errors")
        elif isinstance(item, ProbeSample):
            self.probes[item.probe] = item
            name = f"probe:{item.probe}"
            self.rules.record(f"{name}.availability", item.at, item.success_ratio * 100)
            if item.latency_ms is not None:
                self.rules.record(f"{name}.latency", item.at, item.latency_ms)
            self.dirty_panes.add("probes")
        return True

    def _recovered(self, source: str, key: str | None, at: datetime | None = None) -> None:
        if at is not None:
            self.signal_last_ok[(source, key)] = at
            if key is not None:
                self.signal_last_ok[(source, None)] = at
        for failed in [k for k in self.signal_failures if k[0] == source and k[1] in (key, None)]:
            del self.signal_failures[failed]

    def deployment_start(self, key: str | None) -> datetime | None:
        """When the newest deployment of a service (or of any, for ``None``) began."""
        starts: list[datetime] = []
        for state in self.services.values():
            if (key is not None and state.key != key) or state.sample is None:
                continue
            sample = state.sample
            newest = sample.newest
            if newest is not None and (newest.started_at or newest.created_at):
                starts.append(newest.started_at or newest.created_at)  # type: ignore[arg-type]
            else:
                primary = sample.primary
                if primary is not None and primary.created_at is not None:
                    starts.append(primary.created_at)
        return max(starts) if starts else None

    def new_release(self, key: str | None) -> str | None:
        """The image tag of a service's PRIMARY deployment: the release being rolled out."""
        for state in self.services.values():
            if (key is not None and state.key != key) or state.sample is None:
                continue
            primary = state.sample.primary
            if primary is not None and primary.images:
                image = primary.images[0]
                if ":" in image.rsplit("/", 1)[-1]:
                    return image.rsplit(":", 1)[-1]
        return None

    def signal_error(self, source: str, key: str | None = None) -> SourceFailure | None:
        """The current failure of a signal source for ``key`` (or for all of it)."""
        return self.signal_failures.get((source, key)) or self.signal_failures.get((source, None))

    def source_error(self, subject: str, group: str | None) -> str | None:
        """The error of the source behind a rule's subject, for STALE evidence."""
        kind, _, name = subject.partition(":")
        failure: SourceFailure | None = None
        if kind == "metric":
            failure = self.signal_error("datadog", name)
        elif kind == "sentry":
            failure = self.signal_error("sentry")
        elif kind == "ecs" and group is not None and group in self.services:
            failure = self.services[group].failure
        if failure is None:
            return None
        return f"{failure.reason}: {failure.error}"

    def _fail(self, failure: SourceFailure) -> bool:
        if failure.source != "ecs":
            self.signal_version += 1
            # The age a pane shows is that of its last good data: keep when this run of
            # failures began (or the last good answer), not when the latest retry failed.
            ident = (failure.source, failure.key)
            previous = self.signal_failures.get(ident)
            since = self.signal_last_ok.get(ident) or (previous.at if previous else failure.at)
            self.signal_failures[ident] = replace(failure, at=min(since, failure.at))
            self.dirty_panes.add(
                {"datadog": "metrics", "sentry": "errors"}.get(failure.source, "probes")
            )
            return True
        if failure.key is None:
            self.source_errors[failure.source] = failure
            self._dirty.update(self.services)
            return True
        state = self.services.get(failure.key)
        if state is None:
            return False
        changed = state.failure is None or state.failure.error != failure.error
        if state.failure is None:
            state.failing_since = failure.at
        state.failure = failure
        if changed:
            self._dirty.add(failure.key)
        return changed

    def take_dirty(self) -> list[str]:
        """Keys changed since the last call, in display order."""
        if not self._dirty:
            return []
        dirty = [key for key in self.services if key in self._dirty]
        self._dirty.clear()
        return dirty

    def take_dirty_panes(self) -> set[str]:
        """Signal panes changed since the last call."""
        dirty, self.dirty_panes = self.dirty_panes, set()
        return dirty

    def take_events(self) -> list[tuple[str, EcsEvent]]:
        """Events not yet shown, oldest first."""
        events = list(self._pending_events)
        self._pending_events.clear()
        return events
