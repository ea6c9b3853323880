"""Fault injection: each fault answers as configured and stops when switched off."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ApiException
from datadog_api_client.v1.api.metrics_api import MetricsApi
from urllib3.util import Retry

from sandbox.datadog_api import DatadogServer
from sandbox.faults import Fault, FaultMiddleware, FaultRegistry
from sandbox.httpserver import WsgiServer, json_body
from sandbox.service import ServiceProcess
from tests.integration.conftest import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from sandbox.faults import FaultControlServer
    from sandbox.requestlog import RequestLog

pytestmark = pytest.mark.integration

BODY = json_body({"ok": True, "answer": 42})


def ok_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A tiny JSON app standing for any sandbox endpoint."""
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
    )
    return [BODY]


@pytest.fixture
def target(fault_registry: FaultRegistry) -> Iterator[str]:
    """``ok_app`` behind a fault middleware for endpoint ``target``; yields its URL."""
    middleware = FaultMiddleware(ok_app, fault_registry, "target")
    with WsgiServer(middleware, name="target", on_stop=[middleware.close]) as server:
        yield server.url


def _switch(control: FaultControlServer, **body: Any) -> None:
    resp = httpx.post(f"{control.url}/faults", json={"endpoint": "target", **body})
    assert resp.status_code == 200, resp.text


def _off(control: FaultControlServer, endpoint: str = "target") -> None:
    resp = httpx.delete(f"{control.url}/faults/{endpoint}")
    assert resp.status_code == 200


def _healthy(url: str) -> None:
    resp = httpx.get(url, timeout=2)
    assert resp.status_code == 200 and resp.json() == {"ok": True, "answer": 42}


def test_http500_and_http429(target: str, fault_control: FaultControlServer) -> None:
    _healthy(target)
    _switch(fault_control, fault="http500")
    resp = httpx.get(target, timeout=2)
    assert resp.status_code == 500 and "errors" in resp.json()
    _switch(fault_control, fault="http429", retry_after=2)
    resp = httpx.get(target, timeout=2)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "2"
    listing = httpx.get(f"{fault_control.url}/faults").json()
    assert listing["active"]["target"]["fault"] == "http429"
    assert listing["active"]["target"]["retry_after"] == 2
    _off(fault_control)
    _healthy(target)


def test_hang_holds_then_lets_go_when_switched_off(
    target: str, fault_control: FaultControlServer
) -> None:
    _switch(fault_control, fault="hang", hang_s=30)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(target, timeout=0.5)
    assert time.monotonic() - started >= 0.45
    # A request held while the fault is switched off goes through.
    outcome: dict[str, Any] = {}

    def held() -> None:
        outcome["resp"] = httpx.get(target, timeout=10)

    thread = threading.Thread(target=held)
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive()
    _off(fault_control)
    thread.join(5)
    assert outcome["resp"].status_code == 200
    _healthy(target)


def test_hang_bounded_by_hang_s(target: str, fault_registry: FaultRegistry) -> None:
    fault_registry.set("target", Fault("hang", hang_s=0.3))
    resp = httpx.get(target, timeout=5)
    assert resp.status_code == 504


def test_hang_is_interrupted_by_stop(fault_registry: FaultRegistry) -> None:
    fault_registry.set("target", Fault("hang", hang_s=120))
    middleware = FaultMiddleware(ok_app, fault_registry, "target")
    server = WsgiServer(middleware, name="hanging", on_stop=[middleware.close]).start()
    errors: list[BaseException] = []

    def held() -> None:
        try:
            httpx.get(server.url, timeout=30)
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=held)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    thread.join(5)
    assert not thread.is_alive()
    assert errors and isinstance(errors[0], httpx.RemoteProtocolError | httpx.ReadError)


def test_slow_drip(target: str, fault_control: FaultControlServer) -> None:
    _switch(fault_control, fault="slow_drip", drip_interval_s=0.05)
    # Every byte comes, late: a read timeout shorter than the drip interval trips.
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(target, timeout=httpx.Timeout(5, read=0.02))
    started = time.monotonic()
    resp = httpx.get(target, timeout=httpx.Timeout(10, read=1))
    elapsed = time.monotonic() - started
    assert resp.status_code == 200 and resp.content == BODY
    assert elapsed >= 0.05 * (len(BODY) - 1) * 0.9
    _off(fault_control)
    started = time.monotonic()
    _healthy(target)
    assert time.monotonic() - started < 0.5


def test_reset(target: str, fault_control: FaultControlServer) -> None:
    _switch(fault_control, fault="reset")
    with pytest.raises(httpx.TransportError) as info:
        httpx.get(target, timeout=2)
    chain = []
    exc: BaseException | None = info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(e, ConnectionResetError) for e in chain), chain
    _off(fault_control)
    _healthy(target)


def test_garbage(target: str, fault_control: FaultControlServer) -> None:
    _switch(fault_control, fault="garbage")
    resp = httpx.get(target, timeout=2)
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()
    _off(fault_control)
    _healthy(target)


def test_control_api_refuses_bad_faults(fault_control: FaultControlServer) -> None:
    resp = httpx.post(f"{fault_control.url}/faults", json={"endpoint": "x", "fault": "fire"})
    assert resp.status_code == 400 and "unknown fault" in resp.json()["error"]
    resp = httpx.post(f"{fault_control.url}/faults", json={"fault": "http500"})
    assert resp.status_code == 400
    resp = httpx.post(
        f"{fault_control.url}/faults", json={"endpoint": "x", "fault": "hang", "hang_s": 1e6}
    )
    assert resp.status_code == 400
    assert httpx.get(f"{fault_control.url}/faults").json()["active"] == {}


def test_scheduled_fault_on_the_scenario_clock(target: str) -> None:
    clock = [100.0]
    registry = FaultRegistry(clock=lambda: clock[0])
    middleware = FaultMiddleware(ok_app, registry, "target")
    with WsgiServer(middleware, on_stop=[middleware.close]) as server:
        entry = registry.schedule("target", Fault("http500"), at=110.0, duration=5.0)
        assert registry.scheduled() == [entry]
        _healthy(server.url)
        clock[0] = 110.0
        assert httpx.get(server.url, timeout=2).status_code == 500
        clock[0] = 114.9
        assert httpx.get(server.url, timeout=2).status_code == 500
        clock[0] = 115.0
        _healthy(server.url)
        assert registry.scheduled() == []


def test_schedule_through_the_control_api(target: str, fault_control: FaultControlServer) -> None:
    resp = httpx.post(
        f"{fault_control.url}/faults",
        json={"endpoint": "target", "fault": "http500", "after_s": 0.3, "duration_s": 0.4},
    )
    assert resp.status_code == 200
    _healthy(target)
    assert wait_until(lambda: httpx.get(target, timeout=2).status_code == 500, timeout=2)
    assert wait_until(lambda: httpx.get(target, timeout=2).status_code == 200, timeout=2)


def test_service_process_obeys_the_control_endpoint(fault_control: FaultControlServer) -> None:
    with ServiceProcess(
        "web",
        "v9",
        {"latency": {"base_ms": 0, "jitter_ms": 0}},
        fault_control_url=fault_control.url,
    ) as service:
        assert httpx.get(service.url, timeout=2).status_code == 200
        _switch(fault_control, endpoint="web:v9", fault="http500")
        assert wait_until(lambda: httpx.get(service.url, timeout=2).status_code == 500, timeout=3)
        _off(fault_control, "web:v9")
        assert wait_until(lambda: httpx.get(service.url, timeout=2).status_code == 200, timeout=3)


def test_datadog_answers_429_to_the_real_client(
    request_log: RequestLog, fault_registry: FaultRegistry
) -> None:
    with DatadogServer(request_log, faults=fault_registry) as datadog:
        config: Any = cast("Any", Configuration)(host=datadog.url)
        # Without a retry policy, urllib3's default Retry(3) honours Retry-After on 429
        # for GETs: the client would sleep 3 x 3 s before raising.
        config.retry_policy = Retry(total=0)
        config.api_key["apiKeyAuth"] = "k"
        config.api_key["appKeyAuth"] = "a"
        now = int(time.time())
        with ApiClient(config) as client:
            api: Any = cast("Any", MetricsApi)(client)
            api.query_metrics(_from=now - 60, to=now, query="sum:sandbox.requests{*}")
            fault_registry.set("datadog", Fault("http429", retry_after=3))
            with pytest.raises(ApiException) as info:
                api.query_metrics(_from=now - 60, to=now, query="sum:sandbox.requests{*}")
            assert info.value.status == 429
            assert info.value.headers["Retry-After"] == "3"
            fault_registry.clear("datadog")
            api.query_metrics(_from=now - 60, to=now, query="sum:sandbox.requests{*}")
