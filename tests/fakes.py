"""A scripted in-memory source and sample builders, for widget tests and snapshots."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import Settings, parse_config
from sources.model import (
    CircuitBreaker,
    EcsDeployment,
    EcsEvent,
    EcsServiceSample,
    Item,
    ServiceDeployment,
    SourceFailure,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from textual.pilot import Pilot

T0 = datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC)
"""The frozen "now" of UI tests: 2 a.m., naturally."""


class FrozenClock:
    """A clock that moves only when told to."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now
        self._watchers: list[Callable[[], None]] = []

    def __call__(self) -> datetime:
        return self.now

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the clock moves (wakes a sleeping watch)."""
        self._watchers.append(callback)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        for callback in self._watchers:
            callback()


@dataclass
class FakeSource:
    """Yields a script of items, then stays open (like a real poller between polls).

    Items may be added while running with :meth:`push`.
    """

    script: Sequence[Item] = ()
    name: str = "ecs"
    queue: asyncio.Queue[Item] = field(default_factory=asyncio.Queue)
    drained: bool = False
    """True once the consumer has taken (and, for the watch, ingested) the whole script."""

    def push(self, item: Item) -> None:
        self.queue.put_nowait(item)

    async def stream(self) -> AsyncIterator[Item]:
        for item in self.script:
            yield item
        # The consumer asks for the next item only after handling the last one.
        self.drained = True
        while True:
            yield await self.queue.get()


SIGNALS: dict[str, object] = {
    "datadog": {"host": "http://127.0.0.1:9", "poll_interval": 5},
    "metric": [
        {
            "name": "error_rate",
            "query": "avg:sandbox.error_rate{service:web} by {version}",
            "unit": "%",
            "service": "web",
        },
        {
            "name": "p95_ms",
            "query": "p95:sandbox.latency{service:web} by {version}",
            "unit": "ms",
            "service": "web",
        },
    ],
    "sentry": {
        "base_url": "http://127.0.0.1:9",
        "org": "sandbox",
        "projects": ["web"],
        "service": "web",
    },
    "probe": [{"name": "web", "url": "http://127.0.0.1:9/health", "service": "web"}],
    "rule": [
        {
            "name": "error rate",
            "subject": "metric:error_rate",
            "op": ">",
            "threshold": 5,
            "for": "1m",
            "severity": "critical",
        },
        {
            "name": "error rate: roll back",
            "subject": "metric:error_rate",
            "op": ">",
            "threshold": 10,
            "for": "2m",
            "action": "rollback",
        },
        {
            "name": "p95 latency",
            "subject": "metric:p95_ms",
            "op": ">",
            "threshold": 300,
            "for": "1m",
            "severity": "warn",
        },
        {
            "name": "availability",
            "subject": "probe:web",
            "op": "<",
            "threshold": 99.5,
            "for": "30s",
        },
        {
            "name": "new issues",
            "subject": "sentry:new_issues",
            "op": ">",
            "threshold": 0,
            "for": "0s",
            "severity": "warn",
            "no_data": "ok",
        },
    ],
}
"""A full signal config (datadog, sentry, probe, seed-like rules) for UI tests."""


def settings(
    services: Sequence[tuple[str, str]] = (("demo", "web"), ("demo", "api")),
    *,
    name: str = "sandbox-demo",
    production: bool = False,
    config_path: Path | None = None,
    signals: bool = False,
) -> Settings:
    """Settings for the given ``(cluster, service)`` pairs, with signals if asked."""
    data: dict[str, object] = {
        "environment": {"name": name, "production": production},
        "aws": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
        "service": [{"cluster": c, "service": s} for c, s in services],
    }
    if signals:
        data.update(SIGNALS)
    return parse_config(data, config_path or Path("test.toml"))


def deployment(
    revision: str,
    *,
    status: str = "PRIMARY",
    desired: int = 4,
    running: int = 4,
    pending: int = 0,
    failed: int = 0,
    rollout: str = "COMPLETED",
    reason: str | None = None,
    created: datetime = T0 - timedelta(minutes=3),
    updated: datetime = T0 - timedelta(minutes=1),
) -> EcsDeployment:
    family, _, rev = revision.partition(":")
    return EcsDeployment(
        id=f"ecs-svc/{abs(hash(revision)) % 10**18}",
        status=status,
        task_definition=f"arn:aws:ecs:us-east-1:123456789012:task-definition/{revision}",
        revision=revision,
        desired=desired,
        running=running,
        pending=pending,
        failed=failed,
        rollout_state=rollout,
        rollout_reason=reason,
        created_at=created,
        updated_at=updated,
        images=(f"registry.local/{family}:v{rev}",),
    )


def service_deployment(
    status: str,
    *,
    source: str,
    target: str,
    started: datetime = T0 - timedelta(minutes=3),
    finished: datetime | None = None,
    reason: str | None = None,
    breaker: CircuitBreaker | None = None,
) -> ServiceDeployment:
    arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/"
    return ServiceDeployment(
        arn=f"arn:aws:ecs:us-east-1:123456789012:service-deployment/demo/x/{status.lower()}",
        status=status,
        status_reason=reason,
        target_revision_arn=None,
        target_task_definition=arn + target,
        source_task_definitions=(arn + source,),
        created_at=started,
        started_at=started,
        finished_at=finished,
        stopped_at=None,
        circuit_breaker=breaker,
    )


def canary_at_its_hook() -> ServiceDeployment:
    """A native canary shifting 20 % to web:2, its PAUSE hook waiting for an answer
    until T0 + 5 min (else ROLLBACK)."""
    from dataclasses import replace

    from sources.model import LifecycleHook

    hook = LifecycleHook(
        "ecs-pause-1", "AWAITING_ACTION", "PAUSE", T0 + timedelta(minutes=5), "ROLLBACK"
    )
    return replace(
        service_deployment("IN_PROGRESS", source="web:1", target="web:2"),
        strategy="CANARY",
        lifecycle_stage="PRODUCTION_TRAFFIC_SHIFT",
        traffic_weight=20.0,
        hooks=(hook,),
    )


def sample(
    key: str,
    deployments: Sequence[EcsDeployment],
    *,
    service_deployments: Sequence[ServiceDeployment] = (),
    events: Sequence[tuple[str, str]] = (),
    at: datetime = T0,
) -> EcsServiceSample:
    """A sample for ``key``; ``events`` are ``(id, message)`` pairs, oldest first."""
    primary = next((d for d in deployments if d.status == "PRIMARY"), None)
    return EcsServiceSample(
        key=key,
        at=at,
        status="ACTIVE",
        desired=primary.desired if primary else None,
        running=sum(d.running or 0 for d in deployments),
        pending=sum(d.pending or 0 for d in deployments),
        task_definition=primary.task_definition if primary else None,
        deployments=tuple(deployments),
        service_deployments=tuple(service_deployments),
        new_events=tuple(
            EcsEvent(id=i, at=at - timedelta(seconds=len(events) - n), message=m)
            for n, (i, m) in enumerate(events)
        ),
        circuit_breaker=CircuitBreaker(enabled=True, rollback=True),
    )


def failure(
    key: str | None, error: str, *, reason: str = "timeout", at: datetime = T0
) -> SourceFailure:
    return SourceFailure(source="ecs", key=key, error=error, reason=reason, at=at)


def mid_deploy_script() -> list[Item]:
    """web halfway through v1 → v2; api tripped its breaker and is rolling back."""
    web = sample(
        "demo/web",
        [
            deployment(
                "web:2",
                running=2,
                pending=1,
                rollout="IN_PROGRESS",
                created=T0 - timedelta(seconds=23),
                updated=T0,
            ),
            deployment("web:1", status="ACTIVE", running=2),
        ],
        service_deployments=[
            service_deployment(
                "IN_PROGRESS", source="web:1", target="web:2", started=T0 - timedelta(seconds=23)
            )
        ],
        events=[
            ("e1", "(service web) has started 2 tasks: (task 0a1b2c3d) (task 4e5f6a7b)."),
            ("e2", "(service web) has stopped 1 running tasks: (task 9c8d7e6f)."),
        ],
    )
    api = sample(
        "demo/api",
        [
            deployment(
                "api:7",
                running=2,
                pending=2,
                rollout="IN_PROGRESS",
                created=T0 - timedelta(seconds=8),
                updated=T0,
            ),
            deployment(
                "api:8",
                status="ACTIVE",
                running=0,
                failed=3,
                rollout="FAILED",
                reason="ECS deployment circuit breaker: tasks failed to start.",
            ),
        ],
        service_deployments=[
            service_deployment(
                "ROLLBACK_IN_PROGRESS",
                source="api:7",
                target="api:8",
                reason="ECS deployment circuit breaker: rolling back to the last completed deployment.",
                breaker=CircuitBreaker(True, True, "TRIGGERED", 3, 3),
            )
        ],
        events=[
            (
                "e3",
                "(service api) (deployment ecs-svc/8841) deployment failed: tasks failed to start.",
            ),
            ("e4", "(service api) rolling back to deployment ecs-svc/1207."),
        ],
    )
    return [web, api]


def bad_release_signals(minutes: int = 3) -> list[Item]:
    """Datadog, Sentry and probe samples of a bad release: v2 at ~15 % errors."""
    from sources.model import MetricPoint, MetricSample, ProbeSample, SentryIssue, SentrySample

    steps = minutes * 6
    times = [T0 - timedelta(seconds=10 * (steps - 1 - i)) for i in range(steps)]

    def series(values: list[float]) -> tuple[MetricPoint, ...]:
        return tuple(MetricPoint(t, v) for t, v in zip(times, values, strict=True))

    half = steps // 2
    items: list[Item] = [
        MetricSample("error_rate", "demo/web", "version:v1", series([0.2] * steps), "%", T0),
        MetricSample(
            "error_rate",
            "demo/web",
            "version:v2",
            series([0.3] * half + [14.8] * (steps - half)),
            "%",
            T0,
        ),
        MetricSample("p95_ms", "demo/web", "version:v1", series([120.0] * steps), "ms", T0),
        MetricSample("p95_ms", "demo/web", "version:v2", series([135.0] * steps), "ms", T0),
    ]
    issue = SentryIssue(
        id="42",
        short_id="WEB-7",
        title="CheckoutFailedError: payment declined",
        culprit="sandbox.service in _fail",
        level="error",
        count=131,
        user_count=17,
        first_seen=T0 - timedelta(seconds=85),
        last_seen=T0,
        first_release="v2",
    )
    counts = tuple(MetricPoint(t, 0.0 if i < half else 22.0) for i, t in enumerate(times))
    items.append(
        SentrySample(
            "demo/web",
            T0,
            T0 - timedelta(minutes=minutes),
            (issue,),
            "v2",
            (issue,),
            counts,
            bucket_seconds=10,
        )
    )
    for i, t in enumerate(times[-6:]):
        items.append(
            ProbeSample(
                "web",
                "demo/web",
                "http://127.0.0.1:9/health",
                t,
                True,
                200,
                21.0 + i,
                None,
                0.95,
                20,
                T0 - timedelta(seconds=70),
                "expected 200, got 503",
                attempts=20,
            )
        )
    return items


def healthy_script() -> list[Item]:
    """web finished v1 → v2 cleanly and api is steady."""
    web = sample(
        "demo/web",
        [deployment("web:2")],
        service_deployments=[
            service_deployment(
                "SUCCESSFUL", source="web:1", target="web:2", finished=T0 - timedelta(minutes=1)
            )
        ],
        events=[("h1", "(service web) has reached a steady state.")],
    )
    api = sample(
        "demo/api",
        [deployment("api:7", created=T0 - timedelta(hours=2), updated=T0 - timedelta(hours=2))],
        events=[("h2", "(service api) has reached a steady state.")],
    )
    return [web, api]


def rolled_back_script() -> list[Item]:
    """web's v2 tripped the circuit breaker and ECS rolled it back to web:1; api steady."""
    web = sample(
        "demo/web",
        [deployment("web:1", updated=T0 - timedelta(seconds=20))],
        service_deployments=[
            service_deployment(
                "ROLLBACK_SUCCESSFUL",
                source="web:1",
                target="web:2",
                finished=T0 - timedelta(seconds=20),
                reason="ECS deployment circuit breaker: rolled back to the last completed deployment.",
                breaker=CircuitBreaker(True, True, "TRIGGERED", 3, 3),
            )
        ],
        events=[("r1", "(service web) rolling back to deployment ecs-svc/1207.")],
    )
    return [web, healthy_script()[1]]


def healthy_signals(minutes: int = 3) -> list[Item]:
    """Datadog, Sentry and probe samples of a good release: every rule OK."""
    from sources.model import MetricPoint, MetricSample, ProbeSample, SentrySample

    steps = minutes * 6
    times = [T0 - timedelta(seconds=10 * (steps - 1 - i)) for i in range(steps)]

    def series(value: float) -> tuple[MetricPoint, ...]:
        return tuple(MetricPoint(t, value) for t in times)

    items: list[Item] = [
        MetricSample("error_rate", "demo/web", "version:v1", series(0.2), "%", T0),
        MetricSample("error_rate", "demo/web", "version:v2", series(0.3), "%", T0),
        MetricSample("p95_ms", "demo/web", "version:v1", series(120.0), "ms", T0),
        MetricSample("p95_ms", "demo/web", "version:v2", series(118.0), "ms", T0),
        SentrySample("demo/web", T0, T0 - timedelta(minutes=minutes), (), "v2", (), series(0.0)),
    ]
    for i, t in enumerate(times[-6:]):
        items.append(
            ProbeSample(
                "web",
                "demo/web",
                "http://127.0.0.1:9/health",
                t,
                True,
                200,
                21.0 + i,
                None,
                1.0,
                20,
            )
        )
    return items


async def settle(pilot: Pilot[Any]) -> None:
    """Let the app's scripted sources hand over their script, then the screen's
    coalesced flush run (the watch starts after the first frame)."""
    sources = [s for s in getattr(pilot.app, "sources", ()) if isinstance(s, FakeSource)]
    await wait_until(pilot, lambda: all(s.drained for s in sources))
    await pilot.pause(0.15)
    await pilot.pause()


async def wait_until(pilot: Pilot[Any], check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the app run until ``check()`` holds; fail the test if it never does.

    Polling keeps the tests fast on an idle machine and patient on a loaded one: no
    test waits a fixed time for something to happen.
    """
    import time

    deadline = time.monotonic() + timeout
    await pilot.pause()
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout:g} s")
        await pilot.pause(0.02)
