"""HTTP probes over httpx.MockTransport: checks, one deadline per round, rolling ratio."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from sources.model import ProbeSample
from sources.probes import MAX_BODY_BYTES, Probe, ProbeSource, json_lookup, public_url

if TYPE_CHECKING:
    from collections.abc import Callable

AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
URL = "http://web.internal/health"
ROOT = Path(__file__).parents[2]


def fixed(status: int = 200, **kwargs: Any) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, **kwargs)

    return handler


async def one_round(
    handler: Callable[[httpx.Request], Any], probe: Probe | None = None, **options: Any
) -> ProbeSample:
    probe = probe or Probe("web", URL)
    src = ProbeSource([probe], transport=httpx.MockTransport(handler), clock=lambda: AT, **options)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return await src.check(client, probe)


async def test_healthy_round() -> None:
    sample = await one_round(fixed(200, json={"status": "ok"}), Probe("web", URL, service="web"))
    assert sample.ok and sample.error is None
    assert sample.status == 200
    assert sample.latency_ms is not None and sample.latency_ms >= 0
    assert (sample.probe, sample.service, sample.url, sample.at) == ("web", "web", URL, AT)
    assert sample.success_ratio == 1.0 and sample.window == 20
    assert sample.last_failure is None and sample.last_failure_reason is None


@pytest.mark.parametrize(
    ("probe", "handler", "error"),
    [
        (Probe("p", URL), fixed(503, text="down"), "expected 200, got 503"),
        (Probe("p", URL, expect_status=204), fixed(200), "expected 204, got 200"),
        (Probe("p", URL, body_contains="ok"), fixed(200, text="fine"), "body lacks 'ok'"),
        (
            Probe("p", URL, json_path="status", json_value="ok"),
            fixed(200, json={"status": "down"}),
            "json status is 'down', expected 'ok'",
        ),
        (
            Probe("p", URL, json_path="checks.db.status", json_value="ok"),
            fixed(200, json={"checks": {"cache": {"status": "ok"}}}),
            "json lacks 'checks.db.status'",
        ),
        (Probe("p", URL, json_path="status"), fixed(200, text="<html>"), "body is not JSON"),
    ],
)
async def test_failing_checks_say_why(
    probe: Probe, handler: Callable[[httpx.Request], httpx.Response], error: str
) -> None:
    sample = await one_round(handler, probe)
    assert not sample.ok
    assert sample.error == error
    # The answer did complete: status and latency are known.
    assert sample.status is not None and sample.latency_ms is not None
    assert sample.last_failure == AT and sample.last_failure_reason == error
    assert sample.success_ratio == 0.0


@pytest.mark.parametrize("offset", [100, 150])
async def test_a_reason_quoting_a_secret_is_scrubbed_then_cut(
    offset: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reason quotes the body; a token the service echoes there (the probe's own
    header, or a key of the environment) never reaches the screen, not even a prefix."""
    token = "Zq7-token-0123456789abcdef"
    env_key = "Kx4-env-key-0123456789abcdef"
    monkeypatch.setenv("DD_API_KEY", env_key)
    probe = Probe(
        "p", URL, headers={"Authorization": f"Bearer {token}"}, json_path="status", json_value="ok"
    )
    for secret in (token, env_key):
        body = {"status": "x" * offset + secret + "y" * 200}
        sample = await one_round(fixed(200, json=body), probe)
        assert sample.error is not None and "***" in sample.error
        assert len(sample.error) <= 240
        leaked = [secret[:n] for n in range(4, len(secret) + 1) if secret[:n] in repr(sample)]
        assert leaked == []


async def test_passing_body_and_json_checks() -> None:
    probe = Probe("p", URL, body_contains='"ok"', json_path="items.1.state", json_value="ok")
    body = {"items": [{"state": "down"}, {"state": "ok"}]}
    sample = await one_round(fixed(200, json=body), probe)
    assert sample.ok, sample.error


async def test_request_carries_method_and_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    probe = Probe("p", URL, method="HEAD", headers={"Authorization": "Bearer s3cret-value"})
    sample = await one_round(handler, probe)
    assert sample.ok
    assert seen[0].method == "HEAD" and seen[0].headers["Authorization"] == "Bearer s3cret-value"
    assert "s3cret" not in repr(sample)


async def drip(chunks: int, every_s: float) -> AsyncIterator[bytes]:
    for _ in range(chunks):
        await asyncio.sleep(every_s)
        yield b"x"


async def test_one_deadline_covers_a_slow_drip_body() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        # Headers at once, then one byte every 50 ms for 10 s: no single read is slow.
        return httpx.Response(200, content=drip(200, 0.05))

    started = time.monotonic()
    sample = await one_round(handler, Probe("p", URL, timeout=0.4))
    elapsed = time.monotonic() - started
    assert not sample.ok
    assert sample.error == "timed out after 0.4s"
    assert sample.status is None and sample.latency_ms is None
    assert elapsed < 1.5


async def test_deadline_covers_waiting_for_headers() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    started = time.monotonic()
    sample = await one_round(handler, Probe("p", URL, timeout=0.2))
    assert sample.error == "timed out after 0.2s"
    assert time.monotonic() - started < 1.5


async def test_body_is_read_with_a_size_bound() -> None:
    sent = 0

    async def big() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(10_000):  # 10 MiB if read to the end
            sent += 1024
            yield b"y" * 1024

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=big())

    sample = await one_round(handler, Probe("p", URL, body_contains="ok"))
    assert sample.error == f"body over {MAX_BODY_BYTES // 1024} KiB, not checked"
    assert sent <= MAX_BODY_BYTES + 2 * 1024
    # Without body checks a big body is no failure: the status is what counts.
    sample = await one_round(handler, Probe("p", URL))
    assert sample.ok


async def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    probe = Probe("p", f"http://127.0.0.1:{port}/health", timeout=2.0)
    src = ProbeSource([probe], clock=lambda: AT)
    async with httpx.AsyncClient() as client:
        sample = await src.check(client, probe)
    assert sample.error == "connection refused"
    assert sample.status is None and sample.latency_ms is None


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (httpx.ConnectError("x", request=httpx.Request("GET", URL)), "cannot connect"),
        (httpx.RemoteProtocolError("closed"), "connection closed mid-answer"),
        (httpx.ReadError("reset"), "read error"),
        (httpx.ConnectTimeout("slow"), "timed out after 2s"),
    ],
)
async def test_transport_errors_in_words(exc: Exception, words: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    sample = await one_round(handler)
    assert sample.error == words and not sample.ok


async def test_success_ratio_is_over_a_bounded_window() -> None:
    statuses = iter([200, 500, 200, 200, 200, 500, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(statuses))

    probe = Probe("p", URL, window=3)
    src = ProbeSource([probe], clock=lambda: AT)
    ratios: list[float] = []
    attempts: list[int | None] = []
    reasons: list[str | None] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        for _ in range(7):
            sample = await src.check(client, probe)
            ratios.append(sample.success_ratio)
            attempts.append(sample.attempts)
            reasons.append(sample.last_failure_reason)
    assert ratios == pytest.approx([1, 1 / 2, 2 / 3, 2 / 3, 1, 2 / 3, 2 / 3])
    # The sample says how many rounds the ratio is over: the rounds made until the
    # window fills, then the window.
    assert attempts == [1, 2, 3, 3, 3, 3, 3]
    assert {sample.window} == {3}
    assert len(src._states["p"].results) == 3  # bounded: the window, never more
    # The last failure is remembered through the successes that follow it.
    assert reasons == [None, *["expected 200, got 500"] * 6]


async def test_stream_runs_each_probe_on_its_own_interval() -> None:
    hits: dict[str, int] = {"/fast": 0, "/slow": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        hits[request.url.path] += 1
        return httpx.Response(200)

    probes = [
        Probe("fast", "http://svc/fast", interval=0.05),
        Probe("slow", "http://svc/slow", interval=10.0),
    ]
    src = ProbeSource(probes, transport=httpx.MockTransport(handler))
    stream = src.stream()
    seen: list[str] = []
    try:
        async with asyncio.timeout(5):
            async for item in stream:
                assert isinstance(item, ProbeSample)
                seen.append(item.probe)
                if seen.count("fast") >= 5:
                    break
    finally:
        await stream.aclose()
    assert seen.count("slow") == 1  # its first round, then it waits its 10 s
    assert hits == {"/fast": seen.count("fast"), "/slow": 1}


async def test_closing_the_stream_stops_every_probe_task() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    before = set(asyncio.all_tasks())
    src = ProbeSource(
        [Probe("a", "http://svc/a", interval=0.01), Probe("b", "http://svc/b", interval=0.01)],
        transport=httpx.MockTransport(handler),
    )
    stream = src.stream()
    await anext(stream)
    assert any(t.get_name().startswith("probe:") for t in asyncio.all_tasks() - before)
    await stream.aclose()
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert left == []


async def test_empty_probe_list_ends_at_once() -> None:
    assert [item async for item in ProbeSource([]).stream()] == []


def test_probe_validation() -> None:
    with pytest.raises(ValueError):
        Probe("p", URL, timeout=0)
    with pytest.raises(ValueError):
        Probe("p", URL, window=0)
    with pytest.raises(ValueError, match="duplicate"):
        ProbeSource([Probe("p", URL), Probe("p", URL)])


@pytest.mark.parametrize(
    ("path", "expected"),
    [("a", 1), ("b.c", "x"), ("d.1", 3), ("d.-1", 3), ("d.5", None), ("b.z", None), ("a.b", None)],
)
def test_json_lookup(path: str, expected: Any) -> None:
    document = json.loads('{"a": 1, "b": {"c": "x"}, "d": [2, 3]}')
    value = json_lookup(document, path)
    if expected is None:
        assert value is not None and value.__class__ is object  # the "missing" sentinel
    else:
        assert value == expected


def test_public_url_drops_user_info() -> None:
    assert public_url("https://user:pw@host:8443/health?x=1") == "https://host:8443/health?x=1"
    assert public_url(URL) == URL


def test_importing_the_module_loads_no_sdk() -> None:
    code = (
        "import sys, sources.probes; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'httpx', 'sentry_sdk', 'datadog_api_client', 'textual'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
