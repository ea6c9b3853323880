"""Sentry source: new issues since the deployment began, the release's issues, error counts.

Each poll reads Sentry's web API over one ``httpx.AsyncClient``:

- ``GET /api/0/organizations/{org}/issues/`` with ``is:unresolved firstSeen:>{since}``
  (issues born during the deployment) and, when the release is known,
  ``is:unresolved release:{release}``, following ``Link`` pagination up to a page
  bound;
- ``GET /api/0/organizations/{org}/events-stats/`` with ``yAxis=count()`` for error
  events per bucket since the deployment began (of the release, when known).

The token goes in ``Authorization: Bearer`` and nowhere else: cursors from ``Link``
headers are re-sent to our own base URL, never to a URL the answer names. httpx is
imported lazily (in a worker thread, on the first poll) so importing this module costs
nothing before the first paint.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import importlib
import itertools
import math
import os
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sources.model import (
    Item,
    MetricPoint,
    SentryIssue,
    SentrySample,
    SourceAuthError,
    SourceBadResponse,
    SourceError,
    SourceFailure,
    SourceNotFound,
    SourceRateLimited,
    SourceTimeout,
    SourceUnavailable,
)
from sources.poll import Backoff, PollResult, poll, server_wait
from sources.redact import public_text
from sources.transport import failure_words

if TYPE_CHECKING:
    import httpx

PAGE_SIZE = 100
"""Issues per page (Sentry's maximum)."""
MAX_PAGES = 5
"""Pages followed per issue list and poll; beyond that the list is cut (500 issues)."""
STATS_INTERVALS: tuple[tuple[int, str], ...] = (
    (60, "1m"),
    (300, "5m"),
    (900, "15m"),
    (1800, "30m"),
    (3600, "1h"),
    (4 * 3600, "4h"),
    (86400, "1d"),
)
"""Bucket sizes for events-stats, smallest first."""
MAX_STATS_BUCKETS = 360
"""The smallest bucket keeping the deployment's span under this many is chosen."""
MAX_CONFIGURED_BUCKETS = 2000
"""A configured bucket size is used while it gives at most this many buckets."""

_LINK = re.compile(r'<(?P<url>[^>]*)>(?P<attrs>(?:\s*;\s*[A-Za-z]+\s*=\s*"[^"]*")*)')
_LINK_ATTR = re.compile(r'([A-Za-z]+)\s*=\s*"([^"]*)"')
_NEEDS_QUOTES = re.compile(r'[\s"()]')


def next_cursor(link: str | None) -> str | None:
    """The cursor of a ``Link`` header's ``rel="next"`` entry when it has results.

    Args:
        link: The header value (Sentry's ``<url>; rel="next"; results="true"; cursor="..."``).

    Returns:
        The cursor, or ``None`` when there is no further page.
    """
    if not link:
        return None
    for match in _LINK.finditer(link):
        attrs: dict[str, str] = dict(_LINK_ATTR.findall(match.group("attrs")))
        if attrs.get("rel") == "next":
            if attrs.get("results") == "true" and attrs.get("cursor"):
                return attrs["cursor"]
            return None
    return None


def search_value(value: str) -> str:
    """Quote a value for Sentry's search syntax when it needs it.

    Args:
        value: E.g. a release name.

    Returns:
        The value, double-quoted (inner quotes escaped) if it holds spaces, quotes or
        parentheses.
    """
    if not value or _NEEDS_QUOTES.search(value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S")


def _iso_ms(moment: datetime) -> str:
    # Millisecond precision: truncating to seconds would let an issue first seen in
    # the second before the deployment count as new.
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def _parse_time(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    text = raw[:-1] + "+00:00" if raw.endswith("Z") else raw
    try:
        return _utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def _int(raw: Any) -> int | None:
    # Sentry sends ``count`` as a string and ``userCount`` as a number.
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw)
    return None


def _str(raw: Any) -> str | None:
    return raw if isinstance(raw, str) and raw else None


def map_issue(raw: Mapping[str, Any]) -> SentryIssue:
    """Map one entry of the organization issues list.

    Args:
        raw: The issue as Sentry describes it.

    Returns:
        The typed issue; absent figures stay ``None``.

    Raises:
        SourceBadResponse: If the entry has no id.
    """
    issue_id = raw.get("id")
    if not isinstance(issue_id, str | int) or isinstance(issue_id, bool) or issue_id == "":
        raise SourceBadResponse("an issue without an id")
    first_release = raw.get("firstRelease")
    if isinstance(first_release, dict):
        first_release = first_release.get("version")
    return SentryIssue(
        id=str(issue_id),
        short_id=_str(raw.get("shortId")),
        title=str(raw.get("title") or ""),
        culprit=_str(raw.get("culprit")),
        level=_str(raw.get("level")),
        count=_int(raw.get("count")),
        user_count=_int(raw.get("userCount")),
        first_seen=_parse_time(raw.get("firstSeen")),
        last_seen=_parse_time(raw.get("lastSeen")),
        first_release=_str(first_release),
        permalink=_str(raw.get("permalink")),
    )


def map_stats(body: Any) -> tuple[MetricPoint, ...]:
    """Map an events-stats answer (``{"data": [[ts, [{"count": n}]], ...]}``).

    Args:
        body: The decoded answer.

    Returns:
        Points oldest first; a bucket without a count is ``None``, not zero.

    Raises:
        SourceBadResponse: If the answer does not have that shape.
    """
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise SourceBadResponse("events-stats answer lacks data")
    points: list[MetricPoint] = []
    for entry in body["data"]:
        if not isinstance(entry, list | tuple) or len(entry) != 2:
            raise SourceBadResponse("events-stats bucket is not [time, counts]")
        ts, counts = entry
        if not isinstance(ts, int | float) or isinstance(ts, bool) or not math.isfinite(ts):
            raise SourceBadResponse("events-stats bucket time is not epoch seconds")
        values = [
            c["count"]
            for c in counts or ()
            if isinstance(c, dict) and isinstance(c.get("count"), int | float)
        ]
        value = float(sum(values)) if values else None
        points.append(MetricPoint(datetime.fromtimestamp(ts, UTC), value))
    points.sort(key=lambda p: p.at)
    return tuple(points)


def _interval_seconds(text: str) -> int | None:
    """``"1m"`` → 60, ``"30s"`` → 30."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return int(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError):
        return None


def complete_buckets(points: tuple[MetricPoint, ...], now: datetime) -> tuple[MetricPoint, ...]:
    """Drop the bucket still filling at ``now``: it holds a fraction of an interval's
    errors (a falling count that is not one), and the next poll reads it complete."""
    steps = [b.at - a.at for a, b in itertools.pairwise(points) if b.at > a.at]
    if not steps:
        return points
    step = min(steps)
    return tuple(p for p in points if p.at + step <= now)


def _seconds(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class SentrySource:
    """Polls Sentry's web API for what happened since a deployment began.

    Args:
        base_url: Sentry's URL (``https://sentry.io`` or a self-hosted one).
        org: Organization slug.
        projects: Project ids (``"42"``) or slugs (``"web"``), not mixed (Sentry
            refuses both at once); empty means every project of the organization.
        token: Auth token (``None``: every poll fails with an auth error).
        environment: Only this environment's events, when set.
        since: When the deployment began: the ``firstSeen`` bound of new issues and the
            start of the error counts; or a callable giving it at each poll (the start
            of the deployment is known only once ECS has answered).
        release: The new release, or a callable giving it at each poll (it may be
            unknown for a while); ``None`` when unknown.
        service: The configured service key the samples belong to.
        interval: Seconds between the end of one poll and the start of the next.
        timeout: Per-request timeout (connect, read, write, pool), seconds.
        transport: httpx transport (tests pass ``httpx.MockTransport``).
        page_size: Issues per page (at most 100).
        max_pages: Pages followed per issue list per poll.
        stats_interval: Bucket of the error counts; chosen from the span when ``None``.
        deadline: Hard bound of one poll (default ``max(3 * timeout, timeout + 5)``).
        clock: Current UTC time.
        sleep: Injected for tests.
        backoff: Back-off policy after failures.
    """

    name = "sentry"

    def __init__(
        self,
        *,
        base_url: str,
        org: str,
        projects: Sequence[str] = (),
        token: str | None,
        environment: str | None = None,
        since: datetime | Callable[[], datetime],
        release: Callable[[], str | None] | str | None = None,
        service: str | None = None,
        interval: float = 30.0,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES,
        stats_interval: timedelta | None = None,
        deadline: float | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff: Backoff | None = None,
    ) -> None:
        projects = tuple(str(p).strip() for p in projects if str(p).strip())
        numeric = [p.lstrip("-").isdigit() for p in projects]
        if any(numeric) and not all(numeric):
            raise ValueError("Sentry projects must be all ids or all slugs, not a mix")
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{PAGE_SIZE}")
        if max_pages < 1:
            raise ValueError("max_pages must be >= 1")
        self.base_url = base_url.rstrip("/")
        self.org = org
        self.projects = projects
        self._project_param = "project" if projects and all(numeric) else "projectSlug"
        self.environment = environment
        self._since = since
        self._release = release
        self.service = service
        self.interval = interval
        self.timeout = timeout
        self.page_size = page_size
        self.max_pages = max_pages
        self.stats_interval = stats_interval
        self.deadline = deadline if deadline is not None else max(3 * timeout, timeout + 5)
        self.backoff = backoff or Backoff(base=max(interval, 1.0), cap=max(60.0, interval * 4))
        self._token = token
        self._transport = transport
        self._clock = clock
        self._sleep_impl = sleep
        self._hold_until = 0.0

    @classmethod
    def from_env(cls, *, environ: Mapping[str, str] | None = None, **options: Any) -> SentrySource:
        """Build a source whose token comes from ``SENTRY_AUTH_TOKEN``.

        Args:
            environ: Environment to read (``os.environ`` when ``None``).
            **options: The other constructor arguments.

        Returns:
            The source; a missing token shows as an auth failure on the first poll.
        """
        env = os.environ if environ is None else environ
        return cls(token=env.get("SENTRY_AUTH_TOKEN") or None, **options)

    async def stream(self) -> AsyncGenerator[Item, None]:
        """Poll forever: one :class:`SentrySample` per poll, or one failure."""
        await asyncio.to_thread(importlib.import_module, "httpx")
        # Built in a thread too: a client loads the CA bundle (tens of ms), which
        # would hold the event loop, and the first frame, while the app starts.
        async with await asyncio.to_thread(self._client) as client:
            results = cast(
                "AsyncGenerator[PollResult[SentrySample], None]",
                poll(
                    lambda: self._fetch(client),
                    self.interval,
                    deadline=self.deadline,
                    backoff=self.backoff,
                    sleep=self._sleep_impl,
                    hold=self._take_hold,
                ),
            )
            async with contextlib.aclosing(results):
                async for result in results:
                    if result.error is None and result.value is not None:
                        yield result.value
                    elif result.error is not None:
                        yield self._failure(result.error, result.retry_in)

    async def poll_once(self) -> Item:
        """One poll (for scripts and tests).

        Returns:
            The sample, or the failure the poll ended with.
        """
        await asyncio.to_thread(importlib.import_module, "httpx")
        async with self._client() as client:
            try:
                return await asyncio.wait_for(self._fetch(client), timeout=self.deadline)
            except TimeoutError:
                return self._failure(SourceTimeout(f"no answer within {self.deadline:g}s"))
            except SourceError as exc:
                retry = server_wait(exc.retry_after) if isinstance(exc, SourceRateLimited) else None
                return self._failure(exc, retry)

    def _client(self) -> httpx.AsyncClient:
        import httpx  # already loaded (in a thread) by the caller

        headers = {"Accept": "application/json", "User-Agent": "deploywatch"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(self.timeout),
            transport=self._transport,
            follow_redirects=False,  # a redirect would carry the token elsewhere
        )

    def _take_hold(self) -> float | None:
        """Seconds a spent rate-limit budget asks us to wait from now (as the server
        said, uncapped: :func:`~sources.poll.poll` caps it), consumed by the reading;
        the next answers say whether to hold again."""
        hold = self._hold_until - time.monotonic()
        self._hold_until = 0.0
        return hold if hold > 0 else None

    def _failure(self, error: SourceError, retry_in: float | None = None) -> SourceFailure:
        return SourceFailure(
            source=self.name,
            key=None,
            error=public_text(str(error) or error.reason, (self._token,)),
            reason=error.reason,
            at=self._clock(),
            retry_in=retry_in if isinstance(error, SourceRateLimited) else None,
        )

    def current_since(self) -> datetime:
        """When the deployment began, as known now."""
        since = self._since
        return _utc(since() if callable(since) else since)

    def current_release(self) -> str | None:
        """The release to watch now (calls the release callable, if one was given)."""
        release = self._release
        if callable(release):
            try:
                release = release()
            except Exception:
                # The app's lookup failing must not hide the new issues: treat the
                # release as not known yet.
                return None
        return release or None

    def _base_params(self) -> list[tuple[str, str]]:
        params = [(self._project_param, p) for p in self.projects]
        if self.environment:
            params.append(("environment", self.environment))
        return params

    async def _fetch(self, client: httpx.AsyncClient) -> SentrySample:
        if not self._token:
            raise SourceAuthError("no Sentry auth token (SENTRY_AUTH_TOKEN)")
        try:
            return await self._fetch_all(client)
        except SourceError:
            raise
        except Exception as exc:  # the stream never raises: unknown shapes are data errors
            raise SourceBadResponse(f"unreadable answer ({type(exc).__name__})") from None

    async def _fetch_all(self, client: httpx.AsyncClient) -> SentrySample:
        now = _utc(self._clock())
        since = self.current_since()
        release = self.current_release()
        # Never ask for an empty or inverted range, whatever the clocks say.
        start = min(since, now - timedelta(minutes=1))
        window = [("start", _iso(start)), ("end", _iso(now + timedelta(seconds=1)))]
        try:
            async with asyncio.TaskGroup() as group:
                new = group.create_task(
                    self._issues(client, f"is:unresolved firstSeen:>{_iso_ms(since)}", window)
                )
                released = (
                    group.create_task(
                        self._issues(client, f"is:unresolved release:{search_value(release)}", [])
                    )
                    if release
                    else None
                )
                counts = group.create_task(self._error_counts(client, release, start, now))
        except BaseExceptionGroup as failed:
            # One failing request fails the poll; report the first reason.
            first = failed.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        return SentrySample(
            service=self.service,
            at=self._clock(),
            since=since,
            new_issues=new.result(),
            release=release,
            release_issues=released.result() if released is not None else (),
            error_counts=counts.result()[0],
            errors_so_far=counts.result()[1],
            bucket_seconds=_interval_seconds(self._bucket(now - start)),
        )

    async def _issues(
        self, client: httpx.AsyncClient, query: str, window: list[tuple[str, str]]
    ) -> tuple[SentryIssue, ...]:
        path = f"/api/0/organizations/{self.org}/issues/"
        params = [
            *self._base_params(),
            ("query", query),
            ("sort", "freq"),
            ("limit", str(self.page_size)),
            *window,
        ]
        seen: dict[str, SentryIssue] = {}
        cursor: str | None = None
        for _ in range(self.max_pages):
            body, headers = await self._get(
                client, path, params + ([("cursor", cursor)] if cursor else [])
            )
            if not isinstance(body, list):
                raise SourceBadResponse("issues answer is not a list")
            for raw in body:
                if not isinstance(raw, dict):
                    raise SourceBadResponse("an issue is not an object")
                issue = map_issue(raw)
                # Counts move while we walk the pages: an issue may show up twice.
                seen.setdefault(issue.id, issue)
            cursor = next_cursor(headers.get("link"))
            if cursor is None:
                break
        # Stable: Sentry's own order among equals, unknown counts last.
        return tuple(sorted(seen.values(), key=lambda i: -(i.count if i.count is not None else -1)))

    async def _error_counts(
        self, client: httpx.AsyncClient, release: str | None, start: datetime, now: datetime
    ) -> tuple[tuple[MetricPoint, ...], float | None]:
        """Complete buckets, and the count so far of the one still filling."""
        query = "event.type:error"
        if release:
            query += f" release:{search_value(release)}"
        params = [
            *self._base_params(),
            ("query", query),
            ("yAxis", "count()"),
            ("interval", self._bucket(now - start)),
            ("start", _iso(start)),
            ("end", _iso(now + timedelta(seconds=1))),
        ]
        body, _ = await self._get(client, f"/api/0/organizations/{self.org}/events-stats/", params)
        points = map_stats(body)
        complete = complete_buckets(points, now)
        partial = points[len(complete) :]
        return complete, (partial[-1].value if partial else None)

    def _bucket(self, span: timedelta) -> str:
        seconds = max(span.total_seconds(), 1.0)
        if self.stats_interval is not None:
            size = max(1, int(self.stats_interval.total_seconds()))
            # A configured bucket is kept while the series stays drawable; a long
            # deployment falls back to the automatic choice.
            if seconds / size <= MAX_CONFIGURED_BUCKETS:
                return f"{size}s"
        for size, text in STATS_INTERVALS:
            if seconds / size <= MAX_STATS_BUCKETS:
                return text
        return STATS_INTERVALS[-1][1]

    async def _get(
        self, client: httpx.AsyncClient, path: str, params: list[tuple[str, str]]
    ) -> tuple[Any, httpx.Headers]:
        import httpx

        try:
            resp = await client.get(path, params=tuple(params))
        except httpx.TimeoutException:
            raise SourceTimeout(f"no answer within {self.timeout:g}s") from None
        except httpx.TransportError as exc:
            raise SourceUnavailable(failure_words(exc)) from None
        self._note_limits(resp)
        if resp.status_code >= 400:
            raise self._http_error(resp)
        if resp.status_code != 200:
            raise SourceBadResponse(f"unexpected HTTP {resp.status_code}")
        try:
            return resp.json(), resp.headers
        except ValueError:
            raise SourceBadResponse("answer is not JSON") from None

    def _reset_in(self, resp: httpx.Response) -> float | None:
        reset = _seconds(resp.headers.get("X-Sentry-Rate-Limit-Reset"))
        if reset is None:
            return None
        # Sentry sends the reset as epoch seconds.
        # Uncapped: sources.poll caps every server-given wait in one place.
        return max(0.0, reset - self._clock().timestamp())

    def _note_limits(self, resp: httpx.Response) -> None:
        remaining = _seconds(resp.headers.get("X-Sentry-Rate-Limit-Remaining"))
        if remaining is None or remaining > 0:
            return
        reset_in = self._reset_in(resp)
        if reset_in is not None:
            self._hold_until = max(self._hold_until, time.monotonic() + reset_in)

    def _http_error(self, resp: httpx.Response) -> SourceError:
        status = resp.status_code
        detail = ""
        with contextlib.suppress(ValueError):
            body = resp.json()
            if isinstance(body, dict) and body.get("detail"):
                detail = str(body["detail"])  # whole: scrubbed, then cut, in _failure
        text = f"HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429:
            retry = _retry_after(resp.headers.get("Retry-After"), self._clock())
            if retry is None:
                retry = self._reset_in(resp)
            if retry is not None:
                self._hold_until = max(self._hold_until, time.monotonic() + retry)
            return SourceRateLimited(text, retry)
        if status in (401, 403):
            return SourceAuthError(text)
        if status == 404:
            return SourceNotFound(text)
        if status >= 500:
            return SourceUnavailable(text)
        return SourceError(text)


def _retry_after(raw: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds, from either of its forms (delta or HTTP date)."""
    if raw is None:
        return None
    seconds = _seconds(raw)
    if seconds is None:
        with contextlib.suppress(TypeError, ValueError, IndexError):
            when = email.utils.parsedate_to_datetime(raw)
            seconds = (_utc(when) - _utc(now)).total_seconds()
    if seconds is None:
        return None
    return max(0.0, seconds)
