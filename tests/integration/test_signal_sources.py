"""The Datadog, Sentry and probe sources against the sandbox's real endpoints.

One scripted run: two real service processes (v1 clean with a flapping ``/health``, v2
failing 20 % of requests, both reporting to the sandbox's Sentry through the real
sentry-sdk) behind the weighted proxy, a few hundred requests from the traffic
generator, and the sandbox's Datadog computing metrics from the proxy's request log.
What the sources yield must match that log and those events.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from sandbox.datadog_api import DatadogServer
from sandbox.faults import Fault, FaultMiddleware
from sandbox.httpserver import WsgiServer, json_body
from sandbox.proxy import WeightedProxy
from sandbox.requestlog import RequestLog
from sandbox.sentry_api import SentryServer
from sandbox.service import ServiceProcess
from sandbox.traffic import TrafficGenerator
from sources.datadog import DatadogQuery, DatadogSource
from sources.model import Item, MetricSample, ProbeSample, SentrySample, SourceFailure
from sources.probes import Probe, ProbeSource
from sources.sentry import SentrySource

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from sandbox.faults import FaultRegistry

pytestmark = pytest.mark.integration

API_KEY = "sandbox-dd-api-key-123"
APP_KEY = "sandbox-dd-app-key-456"
V2_ERROR_RATIO = 0.2
REQUESTS = 300
FAST = {"base_ms": 1, "jitter_ms": 2}
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """A finished scripted run and the endpoints serving what it left behind."""

    log: RequestLog
    datadog: DatadogServer
    sentry: SentryServer
    v1: ServiceProcess
    started: datetime
    v2_errors: int


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """Run ~300 requests through the proxy; keep v1 up (its /health flaps) for probes."""
    log = RequestLog()
    with contextlib.ExitStack() as stack:
        sentry = stack.enter_context(SentryServer(projects={1: "web"}))
        started = datetime.now(UTC)
        v1 = ServiceProcess(
            "web",
            "v1",
            {"latency": FAST, "health": {"flap_period_s": 1.0, "flap_down_s": 0.5}},
            dsn=sentry.dsn("web"),
        ).start(wait=False)
        stack.callback(v1.stop)
        v2 = ServiceProcess(
            "web",
            "v2",
            {"error_ratio": V2_ERROR_RATIO, "exceptions": ["CheckoutFailedError"], "latency": FAST},
            dsn=sentry.dsn("web"),
        ).start(wait=False)
        stack.callback(v2.stop)
        v1.wait_ready()
        v2.wait_ready()
        with WeightedProxy(
            "web", log, lambda: {"v1": 1.0, "v2": 1.0}, {"v1": v1.url, "v2": v2.url}
        ) as proxy:
            traffic = TrafficGenerator(proxy.url, 150, max_requests=REQUESTS).start()
            try:
                assert traffic.wait_for(REQUESTS, timeout=30)
            finally:
                traffic.stop()
        v2_errors = sum(r.is_error for r in log.query(version="v2"))
        assert v2_errors > 0
        assert sentry.app.wait_for_events(v2_errors, timeout=20)
        v2.stop()
        datadog = stack.enter_context(DatadogServer(log, api_key=API_KEY, app_key=APP_KEY))
        yield World(log, datadog, sentry, v1, started, v2_errors)


async def take(stream: AsyncGenerator[T, None], count: int, seconds: float = 30) -> list[T]:
    """The first ``count`` items of ``stream`` (bounded in time), then close it."""
    items: list[T] = []
    try:
        async with asyncio.timeout(seconds):
            async for item in stream:
                items.append(item)
                if len(items) >= count:
                    break
    finally:
        await stream.aclose()
    return items


def no_sleep(record: list[float]) -> Any:
    async def sleep(delay: float) -> None:
        record.append(delay)
        await asyncio.sleep(0)

    return sleep


# ---------------------------------------------------------------------------- Datadog

REQUESTS_Q = "sum:sandbox.requests{service:web} by {version}.as_count()"
ERRORS_Q = "sum:sandbox.errors{service:web} by {version}.as_count()"


def datadog(url: str, queries: list[DatadogQuery], **options: Any) -> DatadogSource:
    return DatadogSource(queries, api_key=API_KEY, app_key=APP_KEY, host=url, **options)


def by_group(items: Iterable[Item], metric: str) -> dict[str | None, MetricSample]:
    return {s.group: s for s in items if isinstance(s, MetricSample) and s.metric == metric}


async def test_datadog_samples_match_the_request_log(world: World) -> None:
    src = datadog(
        world.datadog.url,
        [
            DatadogQuery("requests", REQUESTS_Q, service="web"),
            DatadogQuery("errors", ERRORS_Q, service="web"),
            DatadogQuery("error_rate", f"{ERRORS_Q} / {REQUESTS_Q} * 100", service="web", unit="%"),
            DatadogQuery("p95", "p95:sandbox.latency{service:web} by {version}"),
            DatadogQuery("ghost", "sum:sandbox.requests{service:web,version:v9}.as_count()"),
        ],
        window=timedelta(minutes=5),
    )
    # A bucket still filling at the poll is not data: poll once the last record's
    # 1-second bucket has closed.
    last = max(r.time for r in world.log.query(include_health=False))
    await asyncio.sleep(max(0.0, int(last) + 1.05 - time.time()))
    items = await src.poll_once()
    assert not [i for i in items if isinstance(i, SourceFailure)], items

    requests, errors = by_group(items, "requests"), by_group(items, "errors")
    rates, p95 = by_group(items, "error_rate"), by_group(items, "p95")
    assert set(requests) == set(errors) == set(rates) == set(p95) == {"version:v1", "version:v2"}
    for version in ("v1", "v2"):
        records = world.log.query(version=version, include_health=False)
        group = f"version:{version}"
        counted = [p.value for p in requests[group].points if p.value is not None]
        failed = [p.value for p in errors[group].points if p.value is not None]
        assert sum(counted) == len(records)
        assert sum(failed) == sum(r.is_error for r in records)
        # The formula is computed bucket by bucket from the same two series.
        for r, e, q in zip(
            requests[group].points, errors[group].points, rates[group].points, strict=True
        ):
            assert r.at == e.at == q.at
            if r.value:
                assert e.value is not None
                assert q.value == pytest.approx(100 * e.value / r.value)
            else:
                assert q.value is None
    print(
        f"v2 errors {sum(p.value or 0 for p in errors['version:v2'].points):g} of "
        f"{sum(p.value or 0 for p in requests['version:v2'].points):g} requests"
    )
    assert sum(p.value or 0 for p in errors["version:v1"].points) == 0

    sample = rates["version:v2"]
    assert sample.service == "web" and sample.unit == "%"
    assert p95["version:v1"].unit == "millisecond"
    # A 5-minute window of 1-second buckets around a few seconds of traffic: gaps are
    # kept as None (not zeros), oldest first.
    times = [p.at for p in sample.points]
    assert times == sorted(times) and len(times) >= 250
    assert sum(p.value is None for p in sample.points) > len(times) / 2
    (ghost,) = by_group(items, "ghost").values()
    assert ghost.group is None and ghost.points == ()


async def test_datadog_wrong_keys_are_an_auth_failure(world: World) -> None:
    src = DatadogSource(
        [DatadogQuery("requests", REQUESTS_Q)],
        api_key=API_KEY,
        app_key="not-the-app-key-789",
        host=world.datadog.url,
    )
    (failure,) = await src.poll_once()
    assert isinstance(failure, SourceFailure)
    assert failure.reason == "auth" and "403" in failure.error
    assert "not-the-app-key-789" not in failure.error


async def test_datadog_spent_budget_then_429(request_log: RequestLog) -> None:
    request_log.record("web", "v1", 200, 10.0)
    with DatadogServer(request_log, rate_limit=1, rate_period_s=600) as server:
        slept: list[float] = []
        src = datadog(
            server.url, [DatadogQuery("requests", REQUESTS_Q)], interval=0.1, sleep=no_sleep(slept)
        )
        sample, held, failure = await take(src.stream(), 3)
    assert isinstance(sample, MetricSample)
    # X-RateLimit-Remaining: 0 held the next poll until the reset, not the 0.1 s interval;
    # once the interval had passed, the pane was told why no data came.
    assert slept[0] == 0.1 and slept[1] >= 1
    assert isinstance(held, SourceFailure) and held.reason == "rate limited"
    assert held.error.startswith("waiting ")
    assert isinstance(failure, SourceFailure) and failure.reason == "rate limited"
    assert failure.retry_in is not None and failure.retry_in >= 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault("http500"), "unavailable"),
        (Fault("http429", retry_after=3), "rate limited"),
        (Fault("garbage"), "bad response"),
        (Fault("reset"), "unavailable"),
        (Fault("hang", hang_s=30), "timeout"),
        (Fault("slow_drip", drip_interval_s=0.05), "timeout"),
    ],
)
async def test_datadog_faults(
    request_log: RequestLog, fault_registry: FaultRegistry, fault: Fault, reason: str
) -> None:
    request_log.record("web", "v1", 200, 10.0)
    with DatadogServer(request_log, faults=fault_registry) as server:
        src = datadog(server.url, [DatadogQuery("requests", REQUESTS_Q)], timeout=0.5, deadline=1.5)
        (ok,) = await src.poll_once()
        assert isinstance(ok, MetricSample)
        fault_registry.set("datadog", fault)
        started = time.monotonic()
        (failure,) = await src.poll_once()
        elapsed = time.monotonic() - started
        fault_registry.clear_all()
    print(f"{fault.kind}: {failure} in {elapsed:.2f}s")
    assert isinstance(failure, SourceFailure)
    assert failure.reason == reason
    assert elapsed < 3
    if fault.kind == "http429":
        assert failure.retry_in == 3


# ---------------------------------------------------------------------------- Sentry


def sentry(server: SentryServer, **options: Any) -> SentrySource:
    options.setdefault("since", datetime.now(UTC) - timedelta(minutes=5))
    options.setdefault("timeout", 2.0)
    return SentrySource(base_url=server.url, org=server.org, token=server.token, **options)


async def test_sentry_sees_the_new_release_issue(world: World) -> None:
    src = sentry(
        world.sentry,
        projects=["1"],
        environment="sandbox",
        since=world.started,
        release=lambda: "v2",
        service="web",
    )
    sample = await src.poll_once()
    assert isinstance(sample, SentrySample), sample
    (issue,) = sample.new_issues
    print(f"new issue {issue.short_id}: {issue.title} x{issue.count}")
    assert issue.title.startswith("CheckoutFailedError: simulated failure of web v2")
    assert issue.count == world.v2_errors
    assert issue.first_release == "v2" and issue.level == "error"
    assert issue.first_seen is not None and issue.first_seen >= world.started - timedelta(seconds=1)
    assert [i.id for i in sample.release_issues] == [issue.id]
    assert sample.release == "v2" and sample.service == "web"
    # Every error is counted once: in a complete bucket or in the one still filling.
    counts = [p.value for p in sample.error_counts]
    assert sum(v or 0 for v in counts) + (sample.errors_so_far or 0) == world.v2_errors
    assert [p.at for p in sample.error_counts] == sorted(p.at for p in sample.error_counts)

    # An issue first seen before the deployment began is not new; v1 has no issues.
    later = sentry(world.sentry, projects=["1"], since=datetime.now(UTC), release="v1")
    sample = await later.poll_once()
    assert isinstance(sample, SentrySample)
    assert sample.new_issues == () and sample.release_issues == ()
    assert sum(p.value or 0 for p in sample.error_counts) == 0
    assert not sample.errors_so_far


async def test_sentry_walks_real_link_pagination() -> None:
    with SentryServer(projects={1: "web", 2: "api"}) as server:
        for i in range(12):
            server.app.ingest_event(
                2,
                {
                    "release": "v3",
                    "exception": {"values": [{"type": f"Scripted{i:02d}Error", "value": "x"}]},
                },
            )
        server.app.ingest_event(1, {"release": "v3", "message": "another project"})
        everything = await sentry(server, projects=["2"], release="v3", page_size=5).poll_once()
        bounded = await sentry(server, projects=["2"], page_size=5, max_pages=2).poll_once()
    assert isinstance(everything, SentrySample) and isinstance(bounded, SentrySample)
    assert len({i.id for i in everything.new_issues}) == 12
    assert {i.title.split(":")[0] for i in everything.new_issues} == {
        f"Scripted{i:02d}Error" for i in range(12)
    }
    assert len(everything.release_issues) == 12
    assert len(bounded.new_issues) == 10


async def test_sentry_spent_budget_then_429() -> None:
    with SentryServer(rate_limit=2, rate_window_s=600) as server:
        slept: list[float] = []
        src = sentry(server, interval=0.1, sleep=no_sleep(slept))  # no release: 2 requests
        sample, held, failure = await take(src.stream(), 3)
    assert isinstance(sample, SentrySample)
    # Held until X-Sentry-Rate-Limit-Reset, not the 0.1 s interval, and said once due.
    assert slept[0] == 0.1 and slept[1] >= 1
    assert isinstance(held, SourceFailure) and held.reason == "rate limited"
    assert held.error.startswith("waiting ")
    assert isinstance(failure, SourceFailure) and failure.reason == "rate limited"
    assert failure.retry_in is not None and failure.retry_in >= 1


@pytest.mark.parametrize(
    ("fault", "reason", "words"),
    [
        (Fault("http500"), "unavailable", "HTTP 500"),
        (Fault("http429", retry_after=2), "rate limited", "HTTP 429"),
        (Fault("garbage"), "bad response", "not JSON"),
        (Fault("reset"), "unavailable", "connection"),
        (Fault("hang", hang_s=30), "timeout", "no answer"),
    ],
)
async def test_sentry_faults(
    fault_registry: FaultRegistry, fault: Fault, reason: str, words: str
) -> None:
    with SentryServer(faults=fault_registry) as server:
        src = sentry(server, timeout=0.5, deadline=2.0)
        assert isinstance(await src.poll_once(), SentrySample)
        fault_registry.set("sentry", fault)
        started = time.monotonic()
        failure = await src.poll_once()
        elapsed = time.monotonic() - started
        fault_registry.clear_all()
        # Bad token: the sandbox's 401.
        refused = await sentry(server).poll_once()
        bad = await SentrySource(
            base_url=server.url, org=server.org, token="wrong-token-0000", since=src.current_since()
        ).poll_once()
    print(f"{fault.kind}: {failure} in {elapsed:.2f}s")
    assert isinstance(failure, SourceFailure)
    assert failure.reason == reason and words in failure.error
    assert elapsed < 3
    if fault.kind == "http429":
        assert failure.retry_in == 2
    assert isinstance(refused, SentrySample)
    assert isinstance(bad, SourceFailure) and bad.reason == "auth"
    assert "wrong-token-0000" not in bad.error


# ---------------------------------------------------------------------------- probes


async def test_probe_follows_a_flapping_health_check(world: World) -> None:
    probe = Probe(
        "web-health",
        f"{world.v1.url}/health",
        json_path="status",
        json_value="ok",
        interval=0.1,
        timeout=1.0,
        window=10,
        service="web",
    )
    samples: list[ProbeSample] = []
    stream = ProbeSource([probe]).stream()
    try:
        async with asyncio.timeout(15):
            async for item in stream:
                assert isinstance(item, ProbeSample)
                samples.append(item)
                recovered = any(
                    s.ok and s.last_failure is not None for s in samples
                )  # ok again after a failure
                if recovered and len(samples) >= 25:
                    break
    finally:
        await stream.aclose()
    failures = [s for s in samples if not s.ok]
    print(f"{len(samples)} rounds, {len(failures)} failed")
    assert failures and len(failures) < len(samples)
    assert {s.error for s in failures} == {"expected 200, got 503"}
    assert all(s.status == 503 and s.latency_ms is not None for s in failures)
    assert all(s.status == 200 and s.error is None for s in samples if s.ok)
    assert 0 < samples[-1].success_ratio < 1
    assert samples[-1].last_failure_reason == "expected 200, got 503"


BODY = json_body({"status": "ok", "detail": "x" * 40})


def ok_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A small healthy JSON endpoint."""
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
    )
    return [BODY]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (None, None),
        (Fault("http500"), "expected 200, got 500"),
        (Fault("garbage"), "body is not JSON"),
        (Fault("reset"), "connection reset"),
        (Fault("hang", hang_s=30), "timed out after 0.5s"),
        # ~60 bytes at one per 50 ms: 3 s of body, each byte well within any read timeout.
        (Fault("slow_drip", drip_interval_s=0.05), "timed out after 0.5s"),
    ],
)
async def test_probe_faults(
    fault_registry: FaultRegistry, fault: Fault | None, error: str | None
) -> None:
    middleware = FaultMiddleware(ok_app, fault_registry, "target")
    with WsgiServer(middleware, name="target", on_stop=[middleware.close]) as server:
        if fault is not None:
            fault_registry.set("target", fault)
        probe = Probe(
            "target", f"{server.url}/health", json_path="status", json_value="ok", timeout=0.5
        )
        started = time.monotonic()
        (sample,) = await take(ProbeSource([probe]).stream(), 1, seconds=10)
        elapsed = time.monotonic() - started
        fault_registry.clear_all()
    assert isinstance(sample, ProbeSample)
    assert sample.error == error
    assert sample.ok is (error is None)
    assert elapsed < 2.0


async def test_probe_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    probe = Probe("gone", f"http://127.0.0.1:{port}/health", timeout=1.0)
    (sample,) = await take(ProbeSource([probe]).stream(), 1, seconds=10)
    assert isinstance(sample, ProbeSample)
    assert (sample.ok, sample.error, sample.status) == (False, "connection refused", None)
