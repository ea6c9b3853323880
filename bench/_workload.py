"""The benches' workload: a config of N services, and in-process synthetic sources.

Every service has an ECS card, one Datadog metric (grouped by version: two series), one
HTTP probe and a rule on each; one Sentry project watches the first service. The
synthetic sources yield the same typed samples as the real ones, at ``rate`` samples per
second per service, spread evenly over each second, straight into the real Store: the
UI's cost, without any network or SDK cost.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
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
    MetricPoint,
    MetricSample,
    ProbeSample,
    SentryIssue,
    SentrySample,
    ServiceDeployment,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

CLUSTER = "bench"
DEAD = "http://127.0.0.1:9"
"""An address nobody answers on: the real sources are never built in synthetic mode."""
METRIC_STEP = 10
"""Seconds between two points of a metric series (Datadog's usual rollup)."""
METRIC_POINTS = 90
"""Points per series: a 15-minute window."""
TICK = 0.05
"""Seconds between two bursts of a synthetic source (20 bursts per second)."""


def service_name(i: int) -> str:
    """The ECS service name of the ``i``-th service."""
    return f"svc-{i:04d}"


def bench_config(
    n: int,
    *,
    signals: bool = True,
    endpoint: str = DEAD,
    poll_interval: float = 1.0,
    max_concurrency: int = 8,
    discover: bool = False,
) -> dict[str, Any]:
    """A config of ``n`` services as a TOML-shaped mapping.

    Args:
        n: Number of services.
        signals: Add per service a metric, a probe and their rules, and one Sentry.
        endpoint: The AWS endpoint (the sandbox, or a dead address).
        poll_interval: ECS poll interval, seconds.
        max_concurrency: ECS batches in flight.
        discover: One discovery entry (every service of the cluster) instead of ``n``
            listed services (no signals: the templates of discovered services are not
            expanded).
    """
    data: dict[str, Any] = {
        "environment": {"name": f"bench-{n}"},
        "aws": {"region": "us-east-1", "endpoint_url": endpoint},
        "ecs": {"poll_interval": poll_interval, "max_concurrency": max_concurrency},
        "service": [{"cluster": CLUSTER, "service": service_name(i)} for i in range(n)],
    }
    if discover:
        data["service"] = [{"cluster": CLUSTER, "service": "*"}]
        return data
    if not signals:
        return data
    data["datadog"] = {"host": DEAD, "poll_interval": 1}
    data["metric"] = [
        {
            "name": f"err_{i:04d}",
            "query": f"avg:trace.http.request.errors{{service:{service_name(i)}}} by {{version}}",
            "unit": "%",
            "service": service_name(i),
        }
        for i in range(n)
    ]
    data["sentry"] = {"base_url": DEAD, "org": "bench", "projects": ["svc"], "service": "svc-0000"}
    data["probe"] = [
        {
            "name": f"p-{i:04d}",
            "url": f"{DEAD}/{service_name(i)}/health",
            "interval": "1s",
            "service": service_name(i),
        }
        for i in range(n)
    ]
    rules: list[dict[str, Any]] = []
    for i in range(n):
        rules.append(
            {
                "name": f"err {i}",
                "subject": f"metric:err_{i:04d}",
                "op": ">",
                "threshold": 5,
                "for": "1m",
            }
        )
        rules.append(
            {
                "name": f"avail {i}",
                "subject": f"probe:p-{i:04d}",
                "op": "<",
                "threshold": 99,
                "for": "30s",
            }
        )
    rules.append(
        {
            "name": "new issues",
            "subject": "sentry:new_issues",
            "op": ">",
            "threshold": 0,
            "for": "0s",
            "no_data": "ok",
        }
    )
    data["rule"] = rules
    return data


def bench_settings(n: int, **kwargs: Any) -> Settings:
    """:func:`bench_config`, validated the way the CLI validates a file."""
    return parse_config(bench_config(n, **kwargs), Path(f"bench-{n}.toml"))


def write_config(path: Path, n: int, **kwargs: Any) -> Path:
    """Write :func:`bench_config` as a TOML file (for the real CLI)."""
    lines: list[str] = []
    data = bench_config(n, **kwargs)

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    for key, table in data.items():
        if isinstance(table, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {value(v)}" for k, v in table.items()]
        else:
            for entry in table:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {value(v)}" for k, v in entry.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@dataclass
class Pace:
    """How fast the synthetic sources go, and whether they go on after the first round."""

    rate: float = 1.0
    """Samples per second per service (per series for metrics)."""
    updates: bool = True
    """False: one round (the first full view), then silence (the idle case)."""


def _now() -> datetime:
    return datetime.now(UTC)


async def _paced(
    keys: Sequence[str], pace: Pace, make: Callable[[int, str, int], list[Item]]
) -> AsyncIterator[Item]:
    """Yield ``make(i, key, round)`` for every key once per ``1/rate`` s, in bursts."""
    period = 1.0 / pace.rate
    loop = asyncio.get_running_loop()
    start = loop.time()
    rnd = 0
    while True:
        bursts = max(1, round(period / TICK))
        for b in range(bursts):
            lo, hi = len(keys) * b // bursts, len(keys) * (b + 1) // bursts
            for i in range(lo, hi):
                for item in make(i, keys[i], rnd):
                    yield item
            if not pace.updates and rnd == 0 and b == bursts - 1:
                await asyncio.Event().wait()  # idle: the first round only
            wake = start + rnd * period + (b + 1) * period / bursts
            await asyncio.sleep(max(0.0, wake - loop.time()))
        rnd += 1


class SyntheticEcs:
    """Rolling deployments that never end: the running count moves every round (idle:
    steady services, one round only)."""

    name = "ecs"

    def __init__(self, keys: Sequence[str], pace: Pace) -> None:
        self.keys = tuple(keys)
        self.pace = pace
        self.t0 = _now() - timedelta(minutes=3)
        arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/"
        self.sd = ServiceDeployment(
            arn="arn:aws:ecs:us-east-1:123456789012:service-deployment/bench/x/1",
            status="IN_PROGRESS",
            status_reason=None,
            target_revision_arn=None,
            target_task_definition=arn + "web:2",
            source_task_definitions=(arn + "web:1",),
            created_at=self.t0,
            started_at=self.t0,
            finished_at=None,
            stopped_at=None,
            circuit_breaker=CircuitBreaker(True, True, "MONITORING", 0, 3),
        )

    def _steady(self, i: int, key: str) -> EcsServiceSample:
        """A quiet service: one COMPLETED deployment, its service deployment SUCCESSFUL."""
        arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/"
        now = _now()
        primary = EcsDeployment(
            f"ecs-svc/{i}2",
            "PRIMARY",
            arn + "web:2",
            "web:2",
            10,
            10,
            0,
            0,
            "COMPLETED",
            None,
            self.t0,
            self.t0,
            ("registry.local/web:v2",),
        )
        done = ServiceDeployment(
            arn=self.sd.arn,
            status="SUCCESSFUL",
            status_reason=None,
            target_revision_arn=None,
            target_task_definition=arn + "web:2",
            source_task_definitions=(arn + "web:1",),
            created_at=self.t0,
            started_at=self.t0,
            finished_at=self.t0 + timedelta(minutes=2),
            stopped_at=None,
            circuit_breaker=CircuitBreaker(True, True, "MONITORING_COMPLETE", 0, 3),
        )
        return EcsServiceSample(
            key=key,
            at=now,
            status="ACTIVE",
            desired=10,
            running=10,
            pending=0,
            task_definition=arn + "web:2",
            deployments=(primary,),
            service_deployments=(done,),
            new_events=(),
            circuit_breaker=CircuitBreaker(True, True),
        )

    def _sample(self, i: int, key: str, rnd: int) -> list[Item]:
        if not self.pace.updates:
            return [self._steady(i, key)]
        desired = 10
        new = (rnd + i) % (desired + 1)
        arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/"
        now = _now()
        deployments = (
            EcsDeployment(
                f"ecs-svc/{i}2",
                "PRIMARY",
                arn + "web:2",
                "web:2",
                desired,
                new,
                1,
                0,
                "IN_PROGRESS",
                None,
                self.t0,
                now,
                ("registry.local/web:v2",),
            ),
            EcsDeployment(
                f"ecs-svc/{i}1",
                "ACTIVE",
                arn + "web:1",
                "web:1",
                desired,
                desired - new,
                0,
                0,
                "COMPLETED",
                None,
                self.t0 - timedelta(days=1),
                self.t0,
                ("registry.local/web:v1",),
            ),
        )
        events: tuple[EcsEvent, ...] = ()
        if (rnd + i) % 10 == 0:  # one new service event per service every ten rounds
            events = (
                EcsEvent(
                    f"{key}-{rnd}", now, f"(service {key}) has started 1 tasks: (task {rnd:08x})."
                ),
            )
        return [
            EcsServiceSample(
                key=key,
                at=now,
                status="ACTIVE",
                desired=desired,
                running=desired,
                pending=1,
                task_definition=arn + "web:2",
                deployments=deployments,
                service_deployments=(self.sd,),
                new_events=events,
                circuit_breaker=CircuitBreaker(True, True),
            )
        ]

    def stream(self) -> AsyncIterator[Item]:
        """Samples at the pace, for every service."""
        return _paced(self.keys, self.pace, self._sample)


class SyntheticDatadog:
    """Each metric's 15-minute window, two groups, re-read every round (as a poll does)."""

    name = "datadog"

    def __init__(self, metrics: Sequence[tuple[str, str | None]], pace: Pace) -> None:
        self.metrics = tuple(metrics)
        self.pace = pace
        self.rng = random.Random(7)
        self._windows: dict[tuple[int, int], tuple[int, tuple[MetricPoint, ...]]] = {}

    def _window(self, i: int, g: int, now: datetime) -> tuple[MetricPoint, ...]:
        bucket = int(now.timestamp()) // METRIC_STEP
        cached = self._windows.get((i, g))
        if cached is not None and cached[0] == bucket:
            return cached[1]
        base = 0.5 + g * 0.3
        points = tuple(
            MetricPoint(
                datetime.fromtimestamp((bucket - METRIC_POINTS + 1 + k) * METRIC_STEP, UTC),
                base + self.rng.random() * 0.5,
            )
            for k in range(METRIC_POINTS)
        )
        self._windows[(i, g)] = (bucket, points)
        return points

    def _sample(self, i: int, key: str, rnd: int) -> list[Item]:
        name, service = self.metrics[i]
        now = _now()
        items: list[Item] = []
        for g, group in enumerate(("version:v1", "version:v2")):
            window = self._window(i, g, now)
            # The newest bucket is still filling: its value moves every round.
            last = MetricPoint(window[-1].at, 0.5 + g * 0.3 + self.rng.random())
            items.append(MetricSample(name, service, group, (*window[:-1], last), "%", now))
        return items

    def stream(self) -> AsyncIterator[Item]:
        """Samples at the pace, for every metric."""
        return _paced([m for m, _ in self.metrics], self.pace, self._sample)


class SyntheticProbes:
    """Every probe answers 200 in 20-40 ms."""

    name = "probes"

    def __init__(self, probes: Sequence[tuple[str, str | None, str]], pace: Pace) -> None:
        self.probes = tuple(probes)
        self.pace = pace
        self.rng = random.Random(11)

    def _sample(self, i: int, key: str, rnd: int) -> list[Item]:
        name, service, url = self.probes[i]
        latency = 20.0 + self.rng.random() * 20
        return [ProbeSample(name, service, url, _now(), True, 200, latency, None, 1.0, 20)]

    def stream(self) -> AsyncIterator[Item]:
        """Samples at the pace, for every probe."""
        return _paced([p for p, _, _ in self.probes], self.pace, self._sample)


class SyntheticSentry:
    """One project: a few new issues, error counts per minute."""

    name = "sentry"

    def __init__(self, service: str | None, pace: Pace) -> None:
        self.service = service
        self.pace = pace
        self.since = _now() - timedelta(minutes=10)

    def _sample(self, i: int, key: str, rnd: int) -> list[Item]:
        now = _now()
        issues = tuple(
            SentryIssue(
                str(n),
                f"WEB-{n}",
                f"CheckoutError {n}: payment declined",
                "web.checkout",
                "error",
                10 + rnd + n,
                3,
                self.since,
                now,
                "v2",
            )
            for n in range(3)
        )
        counts = tuple(
            MetricPoint(now - timedelta(minutes=30 - k), float((k * 7 + rnd) % 13))
            for k in range(30)
        )
        return [SentrySample(self.service, now, self.since, issues, "v2", issues, counts)]

    def stream(self) -> AsyncIterator[Item]:
        """One sample per round."""
        return _paced(["sentry"], self.pace, self._sample)


def synthetic_sources(
    settings: Settings, pace: Pace
) -> list[SyntheticEcs | SyntheticDatadog | SyntheticProbes | SyntheticSentry]:
    """One synthetic source per kind the config has, at ``pace``."""
    sources: list[SyntheticEcs | SyntheticDatadog | SyntheticProbes | SyntheticSentry] = [
        SyntheticEcs([ref.key for ref in settings.services], pace)
    ]
    if settings.metrics:
        sources.append(
            SyntheticDatadog(
                [(m.name, settings.service_key(m.service)) for m in settings.metrics], pace
            )
        )
    if settings.probes:
        sources.append(
            SyntheticProbes(
                [(p.name, settings.service_key(p.service), p.url) for p in settings.probes], pace
            )
        )
    if settings.sentry is not None:
        sources.append(SyntheticSentry(settings.service_key(settings.sentry.service), pace))
    return sources
