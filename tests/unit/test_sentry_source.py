"""Sentry source over httpx.MockTransport: requests, pagination, mapping, faults."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from sources.model import Item, SentrySample, SourceFailure
from sources.poll import MAX_SERVER_WAIT_S
from sources.sentry import SentrySource, next_cursor, search_value

if TYPE_CHECKING:
    from collections.abc import Callable

AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SINCE = AT - timedelta(minutes=30)
TOKEN = "sntrys_test-token-0123456789"
BASE = "https://sentry.example.com"
ROOT = Path(__file__).parents[2]


def issue(n: int, count: int | None, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": str(n),
        "shortId": f"WEB-{n}",
        "title": f"Error{n}: boom",
        "culprit": "app in handler",
        "level": "error",
        "count": None if count is None else str(count),
        "userCount": 2,
        "firstSeen": "2026-11-22T11:45:01.250Z",
        "lastSeen": "2026-11-22T11:59:00Z",
        "firstRelease": {"version": "v2"},
        "permalink": f"{BASE}/organizations/acme/issues/{n}/",
    }
    raw.update(extra)
    return raw


def link(request: httpx.Request, offset: int, limit: int, total: int, host: str = BASE) -> str:
    base = f"{host}{request.url.path}?limit={limit}"
    nxt = f"0:{offset + limit}:0"
    prev = f"0:{max(0, offset - limit)}:1"
    return (
        f'<{base}&cursor={prev}>; rel="previous"; results="{str(offset > 0).lower()}"; '
        f'cursor="{prev}", '
        f'<{base}&cursor={nxt}>; rel="next"; results="{str(offset + limit < total).lower()}"; '
        f'cursor="{nxt}"'
    )


def stats(points: list[tuple[datetime, int | None]]) -> dict[str, Any]:
    return {
        "data": [[int(at.timestamp()), [] if n is None else [{"count": n}]] for at, n in points],
        "start": 0,
        "end": 0,
    }


class FakeSentry:
    """Serves issue lists (paginated) and events-stats; records every request."""

    def __init__(
        self,
        new: list[dict[str, Any]],
        released: list[dict[str, Any]] | None = None,
        counts: dict[str, Any] | None = None,
        page: int = 2,
        link_host: str = BASE,
    ) -> None:
        self.new = new
        self.released = released or []
        self.counts = counts if counts is not None else stats([])
        self.page = page
        self.link_host = link_host
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        headers = {"X-Sentry-Rate-Limit-Remaining": "10"}
        if request.url.path.endswith("/events-stats/"):
            return httpx.Response(200, json=self.counts, headers=headers)
        query = request.url.params["query"]
        rows = self.released if "release:" in query else self.new
        cursor = request.url.params.get("cursor")
        offset = int(cursor.split(":")[1]) if cursor else 0
        headers["Link"] = link(request, offset, self.page, len(rows), self.link_host)
        return httpx.Response(200, json=rows[offset : offset + self.page], headers=headers)

    def issue_requests(self, needle: str) -> list[httpx.Request]:
        return [
            r
            for r in self.requests
            if r.url.path.endswith("/issues/") and needle in r.url.params["query"]
        ]


def source(handler: Callable[[httpx.Request], Any], **options: Any) -> SentrySource:
    options.setdefault("org", "acme")
    options.setdefault("projects", ["1", "2"])
    options.setdefault("since", SINCE)
    options.setdefault("token", TOKEN)
    return SentrySource(
        base_url=BASE, transport=httpx.MockTransport(handler), clock=lambda: AT, **options
    )


async def test_one_poll_maps_new_issues_release_issues_and_error_counts() -> None:
    fake = FakeSentry(
        new=[issue(1, 3), issue(2, 40), issue(3, None), issue(4, 7), issue(5, 1)],
        released=[issue(2, 40)],
        counts=stats(
            [(SINCE + timedelta(minutes=1), 4), (SINCE, 2), (SINCE + timedelta(minutes=2), None)]
        ),
    )
    sample = await source(
        fake, environment="production", release="web@1.2.3", service="web"
    ).poll_once()
    assert isinstance(sample, SentrySample)

    new_requests = fake.issue_requests("firstSeen")
    assert len(new_requests) == 3  # 5 issues, 2 per page
    first = new_requests[0]
    assert first.url.host == "sentry.example.com"
    assert first.url.path == "/api/0/organizations/acme/issues/"
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    params = first.url.params
    assert params["query"] == "is:unresolved firstSeen:>2026-11-22T11:30:00.000"
    assert params.get_list("project") == ["1", "2"]
    assert params["environment"] == "production"
    assert params["sort"] == "freq" and params["limit"] == "100"
    assert params["start"] == "2026-11-22T11:30:00" and params["end"] == "2026-11-22T12:00:01"
    assert "cursor" not in params
    assert [r.url.params["cursor"] for r in new_requests[1:]] == ["0:2:0", "0:4:0"]

    (release_request,) = fake.issue_requests("release:")
    assert release_request.url.params["query"] == "is:unresolved release:web@1.2.3"
    (stats_request,) = [r for r in fake.requests if r.url.path.endswith("/events-stats/")]
    assert stats_request.url.params["yAxis"] == "count()"
    assert stats_request.url.params["interval"] == "1m"
    assert stats_request.url.params["query"] == "event.type:error release:web@1.2.3"
    assert stats_request.url.params.get_list("project") == ["1", "2"]

    # Most frequent first; the issue Sentry sent without a count is last, not zero.
    assert [i.id for i in sample.new_issues] == ["2", "4", "1", "5", "3"]
    assert sample.new_issues[-1].count is None
    top = sample.new_issues[0]
    assert top.short_id == "WEB-2" and top.count == 40 and top.user_count == 2
    assert top.first_seen == datetime(2026, 11, 22, 11, 45, 1, 250000, tzinfo=UTC)
    assert top.first_release == "v2" and top.level == "error"
    assert [i.id for i in sample.release_issues] == ["2"]
    assert sample.release == "web@1.2.3" and sample.service == "web"
    assert sample.since == SINCE and sample.at == AT
    # Oldest first; a bucket without a count is a gap, not a zero.
    assert [(p.at, p.value) for p in sample.error_counts] == [
        (SINCE, 2.0),
        (SINCE + timedelta(minutes=1), 4.0),
        (SINCE + timedelta(minutes=2), None),
    ]


async def test_pagination_stops_at_the_page_bound() -> None:
    fake = FakeSentry(new=[issue(n, n) for n in range(20)], page=2)
    sample = await source(fake, max_pages=3).poll_once()
    assert isinstance(sample, SentrySample)
    assert len(fake.issue_requests("firstSeen")) == 3
    assert len(sample.new_issues) == 6


async def test_pagination_follows_the_cursor_never_the_linked_host() -> None:
    fake = FakeSentry(new=[issue(n, n) for n in range(4)], link_host="https://elsewhere.example")
    sample = await source(fake).poll_once()
    assert isinstance(sample, SentrySample) and len(sample.new_issues) == 4
    # The token only ever goes to the configured base URL.
    assert {r.url.host for r in fake.requests} == {"sentry.example.com"}


async def test_duplicate_issue_across_pages_is_kept_once() -> None:
    fake = FakeSentry(new=[issue(1, 9), issue(2, 5), issue(2, 6), issue(3, 1)])
    sample = await source(fake).poll_once()
    assert isinstance(sample, SentrySample)
    assert [i.id for i in sample.new_issues] == ["1", "2", "3"]


async def test_without_a_release_there_is_no_release_list() -> None:
    fake = FakeSentry(new=[issue(1, 1)])
    sample = await source(fake, release=None).poll_once()
    assert isinstance(sample, SentrySample)
    assert sample.release is None and sample.release_issues == ()
    assert fake.issue_requests("release:") == []
    (stats_request,) = [r for r in fake.requests if r.url.path.endswith("/events-stats/")]
    assert stats_request.url.params["query"] == "event.type:error"


async def test_release_callable_is_asked_at_every_poll() -> None:
    answers = iter([None, "v2"])
    fake = FakeSentry(new=[], released=[issue(9, 1)])
    src = source(fake, release=lambda: next(answers))
    first = await src.poll_once()
    second = await src.poll_once()
    assert isinstance(first, SentrySample) and isinstance(second, SentrySample)
    assert first.release is None and first.release_issues == ()
    assert second.release == "v2" and [i.id for i in second.release_issues] == ["9"]


async def test_release_lookup_failing_is_an_unknown_release() -> None:
    def broken() -> str | None:
        raise RuntimeError("no deployment yet")

    sample = await source(FakeSentry(new=[issue(1, 1)]), release=broken).poll_once()
    assert isinstance(sample, SentrySample) and sample.release is None


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("v2", "v2"),
        ("web@1.2.3+b7", "web@1.2.3+b7"),
        ("my release", '"my release"'),
        ('a"b', '"a\\"b"'),
    ],
)
def test_search_value_quotes_when_needed(value: str, quoted: str) -> None:
    assert search_value(value) == quoted


@pytest.mark.parametrize(
    ("header", "cursor"),
    [
        (None, None),
        (
            '<https://s/x?cursor=0:0:1>; rel="previous"; results="false"; cursor="0:0:1", '
            '<https://s/x?a=1,2&cursor=0:100:0>; rel="next"; results="true"; cursor="0:100:0"',
            "0:100:0",
        ),
        (
            '<https://s/x>; rel="previous"; results="true"; cursor="0:0:1", '
            '<https://s/x>; rel="next"; results="false"; cursor="0:200:0"',
            None,
        ),
    ],
)
def test_next_cursor(header: str | None, cursor: str | None) -> None:
    assert next_cursor(header) == cursor


@pytest.mark.parametrize(
    ("span", "configured", "bucket"),
    [
        (timedelta(minutes=30), None, "1m"),
        (timedelta(hours=7), None, "5m"),
        (timedelta(days=3), None, "15m"),
        (timedelta(days=400), None, "1d"),
        (timedelta(minutes=30), timedelta(seconds=10), "10s"),
        (timedelta(days=3), timedelta(seconds=10), "15m"),  # too many buckets: automatic
    ],
)
def test_error_count_bucket(span: timedelta, configured: timedelta | None, bucket: str) -> None:
    src = source(FakeSentry(new=[]), stats_interval=configured)
    assert src._bucket(span) == bucket


def test_project_ids_and_slugs() -> None:
    fake = FakeSentry(new=[])
    assert source(fake, projects=["web", "api"])._base_params() == [
        ("projectSlug", "web"),
        ("projectSlug", "api"),
    ]
    assert source(fake, projects=[])._base_params() == []
    with pytest.raises(ValueError, match="mix"):
        source(fake, projects=["1", "web"])


def answer(status: int, **kwargs: Any) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, **kwargs)

    return handler


def raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("handler", "reason", "words"),
    [
        (answer(401, json={"detail": "Invalid token"}), "auth", "HTTP 401: Invalid token"),
        (answer(403, json={"detail": "You do not have permission"}), "auth", "permission"),
        (answer(404, json={"detail": "does not exist"}), "not found", "HTTP 404"),
        (answer(500, text="oops"), "unavailable", "HTTP 500"),
        (answer(502, text="<html>bad gateway</html>"), "unavailable", "HTTP 502"),
        (answer(400, json={"detail": "Invalid search query"}), "error", "Invalid search query"),
        (answer(200, text="<html>not json"), "bad response", "not JSON"),
        (answer(200, json={"detail": "not a list"}), "bad response", "not a list"),
        (answer(200, json=[{"title": "no id"}]), "bad response", "without an id"),
        (answer(302, headers={"Location": "https://elsewhere.example/"}), "bad response", "302"),
        (
            raising(httpx.ConnectError("boom", request=httpx.Request("GET", BASE))),
            "unavailable",
            "cannot connect",
        ),
        (raising(httpx.ReadTimeout("slow")), "timeout", "no answer within 10s"),
    ],
)
async def test_error_mapping(
    handler: Callable[[httpx.Request], httpx.Response], reason: str, words: str
) -> None:
    failure = await source(handler).poll_once()
    assert isinstance(failure, SourceFailure)
    assert failure.source == "sentry" and failure.key is None
    assert failure.reason == reason
    assert words in failure.error
    assert failure.retry_in is None


@pytest.mark.parametrize(
    ("headers", "retry"),
    [
        ({"Retry-After": "17"}, 17.0),
        ({"Retry-After": "Sun, 22 Nov 2026 12:00:09 GMT"}, 9.0),
        # No Retry-After: the window's reset (epoch seconds) tells when.
        ({"X-Sentry-Rate-Limit-Reset": str(int(AT.timestamp()) + 25)}, 25.0),
        ({}, None),
    ],
)
async def test_429_is_rate_limited(headers: dict[str, str], retry: float | None) -> None:
    failure = await source(
        answer(429, json={"detail": "too frequently"}, headers=headers)
    ).poll_once()
    assert isinstance(failure, SourceFailure)
    assert failure.reason == "rate limited"
    assert failure.retry_in == retry


async def test_deadline_bounds_a_hanging_poll() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    started = time.monotonic()
    failure = await source(hang, deadline=0.2).poll_once()
    assert isinstance(failure, SourceFailure) and failure.reason == "timeout"
    assert time.monotonic() - started < 2


async def test_connection_refused_in_words() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    src = SentrySource(base_url=f"http://127.0.0.1:{port}", org="acme", token=TOKEN, since=SINCE)
    failure = await src.poll_once()
    assert isinstance(failure, SourceFailure)
    assert (failure.reason, failure.error) == ("unavailable", "connection refused")


async def test_token_never_appears_in_failures() -> None:
    failure = await source(answer(401, json={"detail": f"token {TOKEN} is revoked"})).poll_once()
    assert isinstance(failure, SourceFailure)
    assert TOKEN not in repr(failure) and "***" in failure.error


async def test_missing_token_fails_as_auth_without_a_request() -> None:
    fake = FakeSentry(new=[])
    failure = await SentrySource.from_env(
        environ={},
        base_url=BASE,
        org="acme",
        since=SINCE,
        transport=httpx.MockTransport(fake),
    ).poll_once()
    assert isinstance(failure, SourceFailure) and failure.reason == "auth"
    assert "SENTRY_AUTH_TOKEN" in failure.error
    assert fake.requests == []


async def test_from_env_reads_the_token() -> None:
    fake = FakeSentry(new=[])
    src = SentrySource.from_env(
        environ={"SENTRY_AUTH_TOKEN": TOKEN},
        base_url=BASE,
        org="acme",
        since=SINCE,
        transport=httpx.MockTransport(fake),
        clock=lambda: AT,
    )
    assert isinstance(await src.poll_once(), SentrySample)
    assert fake.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("offset", [100, 150])
async def test_a_token_echoed_near_the_cut_leaves_no_prefix(offset: int) -> None:
    """Scrubbed before the cut: the detail was cut at 160 characters first, leaving the
    token's first characters when it sat across the cut."""
    detail = "x" * offset + f"{TOKEN} is revoked " + "y" * 200
    failure = await source(answer(403, json={"detail": detail})).poll_once()
    assert isinstance(failure, SourceFailure) and failure.reason == "auth"
    prefixes = [TOKEN[:n] for n in range(4, len(TOKEN) + 1) if TOKEN[:n] in repr(failure)]
    assert prefixes == [] and "***" in failure.error


async def take(src: SentrySource, count: int) -> list[Item]:
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


async def test_spent_budget_holds_the_next_poll_until_the_reset() -> None:
    polls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal polls
        path = request.url.path
        polls += path.endswith("/issues/")  # one issue list per poll (no release)
        spent = polls == 1  # the first poll spends the budget
        headers = {
            "X-Sentry-Rate-Limit-Remaining": "0" if spent else "30",
            "X-Sentry-Rate-Limit-Reset": str(int(AT.timestamp()) + 40),
        }
        body: Any = stats([]) if path.endswith("/events-stats/") else []
        return httpx.Response(200, json=body, headers=headers)

    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    items = await take(source(handler, interval=5.0, sleep=fake_sleep), 4)
    assert [type(i) for i in items] == [SentrySample, SourceFailure, SentrySample, SentrySample]
    # The interval, then the rest of the reset (40 s) with the reason said; then the interval.
    assert slept[0] == 5.0 and 33 <= slept[1] <= 35 and slept[2] == 5.0
    held = items[1]
    assert isinstance(held, SourceFailure) and held.reason == "rate limited"
    assert held.error.startswith("waiting 40s")


async def test_a_huge_retry_after_is_capped_and_said() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(429, json={"detail": "slow"}, headers={"Retry-After": "100000"})
        if request.url.path.endswith("/events-stats/"):
            return httpx.Response(200, json=stats([]))
        return httpx.Response(200, json=[])

    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    failure, sample = await take(source(handler, release=None, sleep=fake_sleep), 2)
    assert isinstance(failure, SourceFailure) and failure.reason == "rate limited"
    assert failure.error == "waiting 300s (server asked 100000s) · HTTP 429: slow"
    assert failure.retry_in == MAX_SERVER_WAIT_S and slept[0] == MAX_SERVER_WAIT_S
    assert isinstance(sample, SentrySample)


async def test_429_backs_off_then_recovers() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(429, json={"detail": "slow"}, headers={"Retry-After": "20"})
        if request.url.path.endswith("/events-stats/"):
            return httpx.Response(200, json=stats([]))
        return httpx.Response(200, json=[])

    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    src = source(handler, release=None, interval=1.0, sleep=fake_sleep)
    failure, sample = await take(src, 2)
    assert isinstance(failure, SourceFailure) and failure.reason == "rate limited"
    assert failure.retry_in is not None and failure.retry_in >= 20
    assert slept[0] >= 20
    assert isinstance(sample, SentrySample)


def test_importing_the_module_loads_no_sdk() -> None:
    code = (
        "import sys, sources.sentry; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'httpx', 'sentry_sdk', 'datadog_api_client', 'textual'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
