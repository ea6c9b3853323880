"""Datadog source: the real datadog-api-client against a tiny scripted HTTP server."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sources.datadog import DatadogQuery, DatadogSource, split_query
from sources.model import Item, MetricSample, SourceFailure
from sources.poll import MAX_SERVER_WAIT_S

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
API_KEY = "dd-api-key-0123456789abcdef"
APP_KEY = "dd-app-key-fedcba9876543210"
ROOT = Path(__file__).parents[2]


@dataclass
class Answer:
    """One scripted HTTP answer."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw: bytes | None = None


@dataclass
class Seen:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: Any


class Scripted:
    """A local HTTP server answering scripted answers in order (500 when none is left)."""

    def __init__(self) -> None:
        self.answers: deque[Answer] = deque()
        self.requests: list[Seen] = []
        self.respond: Callable[[Any], Answer] | None = None
        """When set, builds each answer from the request body (concurrent requests)."""
        self._lock = threading.Lock()
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                body = json.loads(raw or b"null")
                with scripted._lock:
                    scripted.requests.append(Seen(self.path, dict(self.headers.items()), body))
                    if scripted.respond is not None:
                        answer = scripted.respond(body)
                    else:
                        answer = scripted.answers.popleft() if scripted.answers else Answer(500)
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                data = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
                # A client that gave up on a delayed answer has gone: nothing to tell it.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in answer.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval: shutdown() waits for it.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, *answers: Answer) -> None:
        self.answers.extend(answers)


@pytest.fixture
def server() -> Iterator[Scripted]:
    scripted = Scripted()
    scripted.thread.start()
    yield scripted
    scripted.server.shutdown()
    scripted.server.server_close()
    scripted.thread.join(5)


def series_answer(
    series: list[tuple[int, list[str], list[float | None]]],
    times: list[int],
    unit: Any = None,
) -> dict[str, Any]:
    return {
        "data": {
            "type": "timeseries_response",
            "attributes": {
                "series": [
                    {"group_tags": tags, "query_index": index, "unit": unit}
                    for index, tags, _ in series
                ],
                "times": times,
                "values": [values for _, _, values in series],
            },
        }
    }


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def source(url: str, queries: list[DatadogQuery], **options: Any) -> DatadogSource:
    options.setdefault("timeout", 2.0)
    return DatadogSource(
        queries, api_key=API_KEY, app_key=APP_KEY, host=url, clock=lambda: AT, **options
    )


ERROR_RATE = DatadogQuery(
    "error_rate",
    "sum:sandbox.errors{service:web} by {version}.as_count() / "
    "sum:sandbox.requests{service:web} by {version}.as_count() * 100",
    service="web",
    unit="%",
)
P95 = DatadogQuery("p95", "avg:sandbox.latency.p95{service:web} by {version}", service="web")
RPS = DatadogQuery("rps", "sum:sandbox.requests{service:web}.as_rate()")


async def test_one_request_carries_every_query_with_one_formula_each(server: Scripted) -> None:
    t0 = AT - timedelta(minutes=2)
    times = [ms(t0), ms(t0 + timedelta(minutes=1))]
    server.add(Answer(body=series_answer([(0, [], [1.0, 2.0])], times)))
    items = await source(server.url, [ERROR_RATE, P95, RPS]).poll_once()

    assert len(server.requests) == 1
    seen = server.requests[0]
    assert seen.path == "/api/v2/query/timeseries"
    assert seen.headers["DD-API-KEY"] == API_KEY
    assert seen.headers["DD-APPLICATION-KEY"] == APP_KEY
    attrs = seen.body["data"]["attributes"]
    assert seen.body["data"]["type"] == "timeseries_request"
    assert attrs["from"] == ms(AT - timedelta(minutes=15))
    assert attrs["to"] == ms(AT)
    assert [q["name"] for q in attrs["queries"]] == ["q0_0", "q0_1", "q1_0", "q2_0"]
    assert all(q["data_source"] == "metrics" for q in attrs["queries"])
    assert attrs["queries"][0]["query"] == "sum:sandbox.errors{service:web} by {version}.as_count()"
    assert attrs["queries"][1]["query"] == (
        "sum:sandbox.requests{service:web} by {version}.as_count()"
    )
    assert [f["formula"] for f in attrs["formulas"]] == ["q0_0 / q0_1 * 100", "q1_0", "q2_0"]
    # Only the first formula answered: the other two are samples without points.
    assert [(s.metric, s.group, len(s.points)) for s in items if isinstance(s, MetricSample)] == [
        ("error_rate", None, 2),
        ("p95", None, 0),
        ("rps", None, 0),
    ]


async def test_groups_by_version_oldest_first_and_gaps_kept(server: Scripted) -> None:
    # Newest first, on purpose; the newest bucket ended at the poll (AT).
    t = [AT - timedelta(seconds=30 * (i + 1)) for i in range(3)]
    server.add(
        Answer(
            body=series_answer(
                [
                    (0, ["version:v1"], [0.5, None, 0.25]),
                    (0, ["version:v2"], [12.0, 9.5, None]),
                    (1, ["version:v1", "env:prod"], [120.0, 80.0, 100.0]),
                ],
                [ms(x) for x in t],
                unit=[{"name": "millisecond"}, None],
            )
        )
    )
    items = await source(server.url, [ERROR_RATE, P95]).poll_once()
    samples = {(s.metric, s.group): s for s in items if isinstance(s, MetricSample)}
    assert set(samples) == {
        ("error_rate", "version:v1"),
        ("error_rate", "version:v2"),
        ("p95", "version:v1,env:prod"),
    }
    v2 = samples[("error_rate", "version:v2")]
    assert [p.at for p in v2.points] == sorted(t)
    # Oldest first: the gap Datadog reported for the newest bucket is still None.
    assert [p.value for p in v2.points] == [None, 9.5, 12.0]
    assert [p.value for p in samples[("error_rate", "version:v1")].points] == [0.25, None, 0.5]
    assert v2.service == "web" and v2.unit == "%" and v2.at == AT
    # No configured unit: Datadog's own unit is used.
    assert samples[("p95", "version:v1,env:prod")].unit == "millisecond"


async def test_the_bucket_still_filling_at_the_poll_is_not_data(server: Scripted) -> None:
    # Buckets of 10 s; the last one began 4 s before the poll: a partial count (0 % of
    # 2 requests where the complete bucket says 15 %). The next poll reads it complete.
    t = [AT - timedelta(seconds=s) for s in (24, 14, 4)]
    server.add(
        Answer(body=series_answer([(0, ["version:v2"], [15.0, 15.0, 0.0])], [ms(x) for x in t]))
    )
    (sample,) = await source(server.url, [ERROR_RATE]).poll_once()
    assert isinstance(sample, MetricSample)
    assert [(p.at, p.value) for p in sample.points] == [(t[0], 15.0), (t[1], 15.0)]


async def test_unit_per_second_from_datadog(server: Scripted) -> None:
    unit = [{"name": "request"}, {"name": "second"}]
    server.add(Answer(body=series_answer([(0, [], [3.0])], [ms(AT)], unit=unit)))
    (sample,) = await source(server.url, [RPS]).poll_once()
    assert isinstance(sample, MetricSample)
    assert sample.unit == "request/second" and sample.group is None


async def test_chunks_when_over_the_request_limit(server: Scripted) -> None:
    def respond(body: Any) -> Answer:
        # Chunks travel concurrently: answer each formula with its length as the value.
        formulas = body["data"]["attributes"]["formulas"]
        return Answer(
            body=series_answer(
                [(i, [], [float(len(f["formula"]))]) for i, f in enumerate(formulas)], [ms(AT)]
            )
        )

    server.respond = respond
    items = await source(server.url, [ERROR_RATE, P95, RPS], max_queries_per_request=3).poll_once()
    assert len(server.requests) == 2
    sizes = sorted(len(r.body["data"]["attributes"]["queries"]) for r in server.requests)
    assert sizes == [1, 3]  # error_rate's two metric queries never split from their formula
    values = {s.metric: s.points[0].value for s in items if isinstance(s, MetricSample)}
    assert values == {"error_rate": len("q0_0 / q0_1 * 100"), "p95": 4, "rps": 4}


@pytest.mark.parametrize(
    ("answer", "reason", "words"),
    [
        (Answer(403, {"errors": ["Forbidden"]}), "auth", "HTTP 403: Forbidden"),
        (Answer(401, {"errors": ["Unauthorized"]}), "auth", "HTTP 401"),
        (Answer(500, {"errors": ["Internal"]}), "unavailable", "HTTP 500"),
        (Answer(503, raw=b"<html>503</html>"), "unavailable", "HTTP 503"),
        (Answer(400, {"errors": ["unknown metric 'x'"]}), "error", "unknown metric 'x'"),
        (Answer(200, raw=b"<html><body>502 Bad Gateway"), "bad response", "unreadable"),
        (
            Answer(200, {"data": {"attributes": {"series": [{"query_index": 7}], "values": [[]]}}}),
            "bad response",
            "unknown formula",
        ),
        (
            Answer(200, {"data": {"attributes": {"series": [{}], "times": [1], "values": []}}}),
            "bad response",
            "1 series but 0 value lists",
        ),
    ],
)
async def test_error_mapping(server: Scripted, answer: Answer, reason: str, words: str) -> None:
    server.add(answer)
    (failure,) = await source(server.url, [RPS]).poll_once()
    assert isinstance(failure, SourceFailure)
    assert failure.source == "datadog" and failure.key is None
    assert failure.reason == reason
    assert words in failure.error
    assert failure.retry_in is None
    # The client retried nothing by itself: one answer, one request.
    assert len(server.requests) == 1


async def test_429_is_rate_limited_with_the_reset(server: Scripted) -> None:
    server.add(
        Answer(
            429,
            {"errors": ["Rate limit of 100 requests per 10 seconds reached"]},
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "7"},
        )
    )
    (failure,) = await source(server.url, [RPS]).poll_once()
    assert isinstance(failure, SourceFailure)
    assert failure.reason == "rate limited"
    assert failure.retry_in == 7
    assert len(server.requests) == 1


def test_client_has_a_request_timeout_and_bounded_retries() -> None:
    src = DatadogSource([RPS], api_key=API_KEY, app_key=APP_KEY, host="http://127.0.0.1:9")
    src.timeout = 3.0
    client = src.client().api_client
    assert client.configuration.request_timeout == (3.0, 3.0)
    assert client.configuration.host == "http://127.0.0.1:9"
    retries = client.rest_client.pool_manager.connection_pool_kw["retries"]
    # One reconnect at most; statuses (429, 5xx) come straight back to our back-off.
    assert (retries.total, retries.connect, retries.read, retries.status) == (1, 1, 0, 0)
    assert not retries.respect_retry_after_header


async def test_read_timeout_is_a_timeout(server: Scripted) -> None:
    server.add(Answer(body=series_answer([], []), delay_s=1.5))
    started = time.monotonic()
    (failure,) = await source(server.url, [RPS], timeout=0.3).poll_once()
    assert isinstance(failure, SourceFailure)
    assert failure.reason == "timeout"
    assert time.monotonic() - started < 1.4


async def test_deadline_bounds_the_whole_poll(server: Scripted) -> None:
    server.add(Answer(body=series_answer([], []), delay_s=1.5))
    started = time.monotonic()
    (failure,) = await source(server.url, [RPS], timeout=5.0, deadline=0.3).poll_once()
    assert isinstance(failure, SourceFailure)
    assert failure.reason == "timeout" and "0.3s" in failure.error
    assert time.monotonic() - started < 1.4


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (failure,) = await source(f"http://127.0.0.1:{port}", [RPS]).poll_once()
    assert isinstance(failure, SourceFailure)
    assert failure.reason == "unavailable"
    assert "refused" in failure.error


async def test_missing_keys_fail_as_auth_without_a_request(server: Scripted) -> None:
    src = DatadogSource([RPS], api_key=None, app_key=APP_KEY, host=server.url)
    (failure,) = await src.poll_once()
    assert isinstance(failure, SourceFailure)
    assert failure.reason == "auth" and "DD_API_KEY" in failure.error
    assert server.requests == []


async def test_keys_never_appear_in_failures(server: Scripted) -> None:
    echo = {"errors": [f"key {API_KEY} with app key {APP_KEY} is not valid here"]}
    server.add(Answer(403, echo))
    (failure,) = await source(server.url, [RPS]).poll_once()
    assert isinstance(failure, SourceFailure)
    assert API_KEY not in repr(failure) and APP_KEY not in repr(failure)
    assert "***" in failure.error


def key_prefixes_in(text: str, key: str) -> list[str]:
    """Every prefix of ``key`` of 4 characters or more found in ``text``."""
    return [key[:n] for n in range(4, len(key) + 1) if key[:n] in text]


@pytest.mark.parametrize("offset", [100, 150])
@pytest.mark.parametrize("shape", ["text body", "json body", "errors-only answer"])
async def test_a_key_echoed_near_the_cut_leaves_no_prefix(
    server: Scripted, offset: int, shape: str
) -> None:
    """Secrets are scrubbed *before* the text is cut: a key straddling the old cuts
    (120 and 160 characters) once left its first characters on screen."""
    words = "x" * offset + API_KEY + " is not a valid key " + "y" * 200
    if shape == "text body":
        server.add(Answer(403, raw=words.encode()))
    elif shape == "json body":
        server.add(Answer(403, {"errors": [words]}))
    else:  # a 200 whose answer is only an error message (no data)
        server.add(Answer(200, {"errors": words}))
    (failure,) = await source(server.url, [RPS]).poll_once()
    assert isinstance(failure, SourceFailure)
    assert key_prefixes_in(repr(failure), API_KEY) == []
    assert "***" in failure.error and len(failure.error) <= 240


async def take(src: DatadogSource, count: int) -> list[Item]:
    items: list[Item] = []
    stream = src.stream()
    try:
        async for item in stream:
            items.append(item)
            if len(items) == count:
                break
    finally:
        await stream.aclose()
    return items


async def test_spent_budget_holds_the_next_poll_until_the_reset(server: Scripted) -> None:
    spent = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}
    plenty = {"X-RateLimit-Remaining": "80", "X-RateLimit-Reset": "4"}
    server.add(
        Answer(body=series_answer([(0, [], [1.0])], [ms(AT)]), headers=spent),
        Answer(body=series_answer([(0, [], [2.0])], [ms(AT)]), headers=plenty),
        Answer(body=series_answer([(0, [], [3.0])], [ms(AT)]), headers=plenty),
    )
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    items = await take(source(server.url, [RPS], interval=5.0, sleep=fake_sleep), 4)
    assert [i.points[0].value for i in items if isinstance(i, MetricSample)] == [1.0, 2.0, 3.0]
    # After the spent budget: the reset (30 s), not the interval; then the interval. Once
    # the interval has passed the pane learns why no poll comes (STALE with a reason).
    assert slept[0] == 5.0 and 23 <= slept[1] <= 25 and slept[2] == 5.0
    held = items[1]
    assert isinstance(held, SourceFailure) and held.reason == "rate limited"
    assert held.error.startswith("waiting 30s") and "server asked" not in held.error
    assert held.retry_in is not None and 23 <= held.retry_in <= 25


async def test_a_huge_reset_is_capped_and_said(server: Scripted) -> None:
    """``X-RateLimit-Reset: 100000`` once held polling for 28 hours with no word."""
    huge = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "100000"}
    server.add(
        Answer(body=series_answer([(0, [], [1.0])], [ms(AT)]), headers=huge),
        Answer(429, {"errors": ["Rate limit reached"]}, huge),
        Answer(body=series_answer([(0, [], [2.0])], [ms(AT)])),
    )
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    items = await take(source(server.url, [RPS], interval=5.0, sleep=fake_sleep), 4)
    first, held, limited, second = items
    assert isinstance(first, MetricSample) and isinstance(second, MetricSample)
    for failure in (held, limited):
        assert isinstance(failure, SourceFailure) and failure.reason == "rate limited"
        assert "waiting 300s (server asked 100000s)" in failure.error, failure.error
    assert isinstance(limited, SourceFailure) and limited.retry_in == MAX_SERVER_WAIT_S
    assert "Rate limit reached" in limited.error
    # The success's hold: the interval, then the rest of the cap; the 429's: the cap.
    assert slept[0] == 5.0 and slept[1] == pytest.approx(MAX_SERVER_WAIT_S - 5.0, abs=0.5)
    assert slept[2] == MAX_SERVER_WAIT_S


async def test_429_backs_off_then_recovers(server: Scripted) -> None:
    server.add(
        Answer(429, {"errors": ["slow down"]}, {"X-RateLimit-Reset": "12"}),
        Answer(body=series_answer([(0, [], [1.0])], [ms(AT)])),
    )
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    failure, sample = await take(source(server.url, [RPS], interval=1.0, sleep=fake_sleep), 2)
    assert isinstance(failure, SourceFailure) and failure.reason == "rate limited"
    assert failure.retry_in is not None and failure.retry_in >= 12
    assert slept[0] >= 12
    assert isinstance(sample, MetricSample) and sample.points[0].value == 1.0


async def test_sync_client_runs_in_a_worker_thread_never_on_the_loop() -> None:
    threads: list[str] = []

    class FakeApi:
        def query_timeseries_data(self, body: Any) -> tuple[dict[str, Any], int, dict[str, str]]:
            threads.append(threading.current_thread().name)
            assert body.to_dict()["data"]["attributes"]["formulas"] == [{"formula": "q0_0"}]
            return series_answer([(0, [], [1.0])], [ms(AT)]), 200, {}

    src = DatadogSource(
        [RPS], api_key=API_KEY, app_key=APP_KEY, client_factory=FakeApi, clock=lambda: AT
    )
    (sample,) = await src.poll_once()
    assert isinstance(sample, MetricSample) and sample.points[0].value == 1.0
    assert threads and threads[0].startswith("deploywatch-datadog")
    assert threads[0] != threading.current_thread().name


def test_from_env_reads_keys_and_site() -> None:
    env = {"DD_API_KEY": API_KEY, "DD_APP_KEY": APP_KEY, "DD_SITE": "datadoghq.eu"}
    src = DatadogSource.from_env([RPS], site="us5.datadoghq.com", environ=env)
    assert src.host == "https://api.datadoghq.eu"
    assert src._api_key == API_KEY and src._app_key == APP_KEY
    # Without DD_SITE the configured site is used; a host override wins over both.
    assert DatadogSource.from_env([RPS], site="us5.datadoghq.com", environ={}).host == (
        "https://api.us5.datadoghq.com"
    )
    assert DatadogSource.from_env([RPS], environ={}).host == "https://api.datadoghq.com"
    src = DatadogSource.from_env([RPS], host="http://127.0.0.1:9/", environ=env)
    assert src.host == "http://127.0.0.1:9"


async def test_from_env_without_keys_fails_as_auth() -> None:
    (failure,) = await DatadogSource.from_env([RPS], environ={}).poll_once()
    assert isinstance(failure, SourceFailure) and failure.reason == "auth"


@pytest.mark.parametrize(
    ("text", "parts", "formula"),
    [
        ("avg:m.x{*}", [("p_0", "avg:m.x{*}")], "p_0"),
        (
            "sum:a.b{service:web,!version:v1} by {version}.as_count().rollup(sum, 60)",
            [("p_0", "sum:a.b{service:web,!version:v1} by {version}.as_count().rollup(sum, 60)")],
            "p_0",
        ),
        (
            "(sum:e{*}.as_count() - sum:w{*}.as_count()) / sum:r{*}.as_count() * 100",
            [
                ("p_0", "sum:e{*}.as_count()"),
                ("p_1", "sum:w{*}.as_count()"),
                ("p_2", "sum:r{*}.as_count()"),
            ],
            "(p_0 - p_1) / p_2 * 100",
        ),
    ],
)
def test_split_query(text: str, parts: list[tuple[str, str]], formula: str) -> None:
    assert split_query(text, "p") == (tuple(parts), formula)


def test_split_query_keeps_formula_functions() -> None:
    parts, formula = split_query("top(avg:m.x{*} by {host}, 10, 'mean', 'desc')", "p")
    assert parts == (("p_0", "avg:m.x{*} by {host}"),)
    assert formula == "top(p_0, 10, 'mean', 'desc')"


@pytest.mark.parametrize("text", ["", "hello world", "avg:m{*} | grep", "100 * 2"])
def test_split_query_refuses_what_v2_cannot_carry(text: str) -> None:
    with pytest.raises(ValueError):
        split_query(text, "p")


def test_constructor_refuses_duplicate_names() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        DatadogSource([RPS, RPS], api_key="k", app_key="a")


def test_importing_the_module_loads_no_sdk() -> None:
    code = (
        "import sys, sources.datadog; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'datadog_api_client', 'urllib3', 'httpx', 'sentry_sdk', 'textual'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
