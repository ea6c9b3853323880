"""Traffic: the service processes, the weighted proxy, the request log, the generator."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import pytest

from sandbox.datadog_api import percentile
from sandbox.httpserver import WsgiServer
from sandbox.proxy import NO_VERSION, VERSION_HEADER, WeightedProxy, WeightedRoundRobin
from sandbox.requestlog import RequestLog
from sandbox.service import Behaviour, ServiceApp, ServiceProcess
from sandbox.traffic import TrafficGenerator
from tests.integration.conftest import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

FAST = {"latency": {"base_ms": 1, "jitter_ms": 1}}


@pytest.fixture(scope="module")
def versions() -> Iterator[dict[str, ServiceProcess]]:
    """Two real service processes, v1 and v2 (v2 with a flapping health check)."""
    v1 = ServiceProcess("web", "v1", FAST).start(wait=False)
    v2 = ServiceProcess(
        "web", "v2", {**FAST, "health": {"flap_period_s": 0.6, "flap_down_s": 0.3}}
    ).start(wait=False)
    with v1, v2:
        yield {"v1": v1, "v2": v2}


def test_request_log_is_bounded_and_queryable() -> None:
    log = RequestLog(maxlen=10)
    for i in range(25):
        log.record("web" if i % 2 else "api", f"v{i % 3}", 500 if i % 5 == 0 else 200, i, at=i)
    assert len(log) == 10 and log.total == 25 and log.evicted == 15
    assert [r.time for r in log.snapshot()] == list(range(15, 25))
    assert [r.time for r in log.query(17, 20)] == [17, 18, 19]
    assert all(r.service == "web" for r in log.query(service="web"))
    assert [r.time for r in log.query(service="web", version="v2")] == [17, 23]
    assert log.services() == ["api", "web"]
    assert log.versions("api") == ["v0", "v1", "v2"]
    assert sum(r.is_error for r in log.snapshot()) == 2


def test_round_robin_follows_the_weights_exactly() -> None:
    rr = WeightedRoundRobin()
    picks = [rr.choose({"v1": 3, "v2": 1, "v3": 0}) for _ in range(400)]
    assert picks.count("v1") == 300 and picks.count("v2") == 100 and "v3" not in picks
    # Smooth: never more than three v1 in a row.
    assert "v1,v1,v1,v1" not in ",".join(str(p) for p in picks)
    assert rr.choose({"v1": 0}) is None


def test_proxy_splits_by_live_weights(versions: dict[str, ServiceProcess]) -> None:
    log = RequestLog()
    weights = {"v1": 3.0, "v2": 1.0}
    urls = {v: p.url for v, p in versions.items()}
    with (
        WeightedProxy("web", log, lambda: dict(weights), urls, weights_ttl_s=0.2) as proxy,
        httpx.Client(timeout=5) as client,
    ):
        served = [client.get(f"{proxy.url}/").headers[VERSION_HEADER] for _ in range(80)]
        assert served.count("v1") == 60 and served.count("v2") == 20
        # The next deployment step: all traffic to v2, picked up within the cache TTL.
        weights.update(v1=0.0, v2=1.0)
        assert wait_until(lambda: proxy.current_weights()["v1"] == 0.0, timeout=2)
        assert {client.get(f"{proxy.url}/").headers[VERSION_HEADER] for _ in range(10)} == {"v2"}
        # Nobody left with a weight: 503, logged with version "none".
        weights.update(v2=0.0)
        assert wait_until(lambda: client.get(f"{proxy.url}/").status_code == 503, timeout=2)
    logged = log.snapshot()
    assert len(logged) >= 80 + 10
    assert all(r.service == "web" and r.latency_ms > 0 for r in logged)
    assert [r.version for r in logged[:80]] == served
    assert logged[-1].version == NO_VERSION and logged[-1].status == 503


def test_health_through_the_proxy_flaps(versions: dict[str, ServiceProcess]) -> None:
    log = RequestLog()
    with (
        WeightedProxy("web", log, lambda: {"v2": 1.0}, {"v2": versions["v2"].url}) as proxy,
        httpx.Client(timeout=5) as client,
    ):
        statuses: set[int] = set()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and statuses != {200, 503}:
            resp = client.get(f"{proxy.url}/health")
            assert resp.json()["version"] == "v2"
            statuses.add(resp.status_code)
            time.sleep(0.05)
    assert statuses == {200, 503}
    assert {r.path for r in log.snapshot()} == {"/health"}


def test_generator_keeps_its_rate_and_stops(versions: dict[str, ServiceProcess]) -> None:
    """The pacer keeps its rate: it fires ``rate`` attempts a second, never ahead of the
    schedule, and catches up after a stall. An attempt finding its 4 workers busy is
    skipped, so how many are *completed* says how fast the machine answers (on 2 loaded
    cores a round trip through the proxy can take longer than 4 / 100 s), not the rate."""
    log = RequestLog()
    urls = {v: p.url for v, p in versions.items()}
    rate, attempts = 100, 150
    with WeightedProxy("web", log, lambda: {"v1": 1.0, "v2": 1.0}, urls) as proxy:
        traffic = TrafficGenerator(proxy.url, rate, concurrency=4)
        started = time.monotonic()
        traffic.start()
        assert wait_until(lambda: traffic.stats().attempts >= attempts, timeout=10)
        reached = time.monotonic() - started
        stats = traffic.stop()
        elapsed = time.monotonic() - started
        after_stop = len(log)
        assert not wait_until(lambda: len(log) != after_stop, timeout=0.3)
    print(f"generator at {rate} req/s: {attempts} attempts in {reached:.2f} s, {stats}")
    # Never ahead of the schedule (one tick fires at the start) ...
    assert stats.attempts <= rate * elapsed + 1
    # ... and not behind it: 1.5 s of ticks, plus at most the 1 s a stall may cost.
    assert reached < attempts / rate + 1.5
    assert stats.completed >= 1
    assert stats.failed == 0 and stats.errors == 0
    assert stats.sent == stats.completed + stats.failed
    assert not traffic.running


def test_latency_shift_moves_p95() -> None:
    behaviour = Behaviour.from_dict(
        {
            "latency": {"base_ms": 2, "jitter_ms": 2, "p95_shift_ms": 120, "tail_ratio": 0.2},
            "seed": 3,
        }
    )
    log = RequestLog()
    with (
        WsgiServer(ServiceApp("web", "v3", behaviour), name="svc") as upstream,
        WeightedProxy("web", log, lambda: {"v3": 1.0}, {"v3": upstream.url}) as proxy,
    ):
        traffic = TrafficGenerator(proxy.url, 200, concurrency=16, max_requests=100).start()
        assert traffic.wait_for(100, timeout=10)
        traffic.stop()
    latencies = sorted(r.latency_ms for r in log.snapshot())
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    print(f"latency p50={p50:.1f} ms p95={p95:.1f} ms")
    assert p50 < 60 and p95 >= 120


def test_crash_after_start_turns_into_502() -> None:
    log = RequestLog()
    crashing = ServiceProcess("web", "v4", {**FAST, "crash_after_s": 0.5, "crash_exit_code": 3})
    with crashing, WeightedProxy("web", log, lambda: {"v4": 1.0}, {"v4": crashing.url}) as proxy:
        assert httpx.get(f"{proxy.url}/", timeout=2).status_code == 200
        assert crashing.wait(5) == 3
        assert "crashing as scripted" in crashing.stderr_tail()
        resp = httpx.get(f"{proxy.url}/", timeout=2)
        assert resp.status_code == 502
    assert [r.status for r in log.snapshot()] == [200, 502]


def test_behaviour_dict_round_trip_and_validation() -> None:
    data = {
        "error_ratio": 0.2,
        "exceptions": ["KeyError", "PaymentDeclinedError"],
        "latency": {"base_ms": 10, "jitter_ms": 5, "p95_shift_ms": 300},
        "health": {"flap_period_s": 10, "flap_down_s": 2},
        "crash_after_s": 12,
    }
    behaviour = Behaviour.from_dict(data)
    assert Behaviour.from_dict(behaviour.to_dict()) == behaviour
    assert behaviour.health.status_at(1) == 200 and behaviour.health.status_at(9) == 503
    for bad in (
        {"error_rate": 0.1},
        {"error_ratio": 2},
        {"latency": {"p99_ms": 1}},
        {"exceptions": ["not a name"]},
        {"health": {"flap_period_s": 1, "flap_down_s": 2}},
    ):
        with pytest.raises(ValueError):
            Behaviour.from_dict(bad)
