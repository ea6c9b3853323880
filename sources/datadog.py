"""Datadog source: configured metric queries as series, via the v2 timeseries query API.

Every poll sends all configured queries in one ``POST /api/v2/query/timeseries``
(:class:`TimeseriesFormulaQueryRequest`), chunked when there are more metric queries
than one request should carry. Each configured query becomes one formula; a query
written with arithmetic (``sum:a{*}.as_count() / sum:b{*}.as_count() * 100``, the v1
style) is split into named metric queries and a formula over their names, since v2 takes
arithmetic only in formulas.

The real ``datadog-api-client`` is used, synchronously, in a worker thread. It is
imported lazily (in that thread, on the first poll) so importing this module costs
nothing before the first paint. The client's own retries are limited to one reconnect:
rate limits and 5xx are handled here, with back-off, ``X-RateLimit-*`` honoured, and a
failure yielded as a :class:`~sources.model.SourceFailure`, so that the screen learns
of it at once instead of waiting on a client that sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sources.model import (
    Item,
    MetricPoint,
    MetricSample,
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

DEFAULT_SITE = "datadoghq.com"
MAX_QUERIES_PER_REQUEST = 10
"""Metric queries per v2 request before the poll is split into several requests.

Datadog documents no hard number for the timeseries endpoint; ten keeps each answer
small (a 15-minute window of ten grouped series) and matches the widget editor's habit.
"""

# One metric query inside a v1-style expression:
# [aggregator:]metric{scope}[ by {tags}][.as_count()|.as_rate()|.rollup(...)|.fill(...)]
_METRIC_QUERY = re.compile(
    r"(?:[A-Za-z0-9_]+:)?[A-Za-z_][A-Za-z0-9_.]*\{[^{}]*\}"
    r"(?:\s*by\s*\{[^{}]*\})?"
    r"(?:\.[A-Za-z_]+\([^()]*\))*"
)
# What may stay around the metric queries: names, numbers, operators and the calls and
# quoted arguments of formula functions (``top(q, 10, 'mean', 'desc')``).
_FORMULA_LEFTOVER = re.compile(r"^[\sA-Za-z0-9_.+\-*/(),']*$")


@dataclass(frozen=True, slots=True)
class DatadogQuery:
    """A named metric query, as configured.

    Attributes:
        name: Short name (``error_rate``), the ``metric`` of the samples.
        query: Datadog query text: one metric query, or v1-style arithmetic over
            several (``sum:a{*} by {version}.as_count() / sum:b{*} by {version}.as_count()``).
        service: The configured service key the metric belongs to, if any.
        unit: Display unit; when ``None`` the unit Datadog reports is used.
    """

    name: str
    query: str
    service: str | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class _Planned:
    """A configured query, translated into named v2 metric queries and one formula."""

    query: DatadogQuery
    parts: tuple[tuple[str, str], ...]
    """``(name, metric query)`` pairs."""
    formula: str


def split_query(text: str, prefix: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """Split a v1-style query into named v2 metric queries and a formula over the names.

    Args:
        text: The query as configured.
        prefix: Name prefix, unique per configured query within one request.

    Returns:
        ``((name, metric_query), ...)`` and the formula.

    Raises:
        ValueError: If the text holds no metric query, or something between the
            metric queries that a formula cannot carry.
    """
    parts: list[tuple[str, str]] = []

    def name_it(match: re.Match[str]) -> str:
        name = f"{prefix}_{len(parts)}"
        parts.append((name, match.group(0).strip()))
        return name

    formula = _METRIC_QUERY.sub(name_it, text).strip()
    if not parts:
        raise ValueError(f"no metric query in {text!r}")
    if not _FORMULA_LEFTOVER.match(formula):
        raise ValueError(f"cannot turn {text!r} into a v2 formula")
    return tuple(parts), formula


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() == wanted:
            return str(value)
    return None


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds  # capped where it is honoured (sources.poll.MAX_SERVER_WAIT_S)


def _unit_name(raw: Any) -> str | None:
    """``[{"name": "request"}, {"name": "second"}]`` → ``request/second``."""
    if not isinstance(raw, list | tuple) or not raw:
        return None
    names = [u.get("name") if isinstance(u, dict) else None for u in raw[:2]]
    if not names[0]:
        return None
    if len(names) > 1 and names[1]:
        return f"{names[0]}/{names[1]}"
    return str(names[0])


def _error_text(body: Any) -> str:
    """The first message of Datadog's ``{"errors": [...]}``, or a short body excerpt."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        with contextlib.suppress(ValueError):
            body = json.loads(body)
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e) for e in errors[:2])
        if isinstance(errors, str):
            return errors
    # Whole: the failure scrubs secrets and only then cuts (sources.redact).
    return str(body or "").strip()


def classify(exc: BaseException) -> SourceError:
    """Turn a datadog-api-client / urllib3 exception into our error hierarchy.

    Args:
        exc: What the client raised.

    Returns:
        The matching :class:`~sources.model.SourceError` (its text never holds keys).
    """
    if isinstance(exc, SourceError):
        return exc
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status > 0:
        headers = getattr(exc, "headers", None)
        detail = _error_text(getattr(exc, "body", None))
        text = f"HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429:
            retry = _seconds(_header(headers, "X-RateLimit-Reset")) or _seconds(
                _header(headers, "Retry-After")
            )
            return SourceRateLimited(text, retry)
        if status in (401, 403):
            return SourceAuthError(text)
        if status == 404:
            return SourceNotFound(text)
        if status >= 500:
            return SourceUnavailable(text)
        return SourceError(text)
    # urllib3 wraps the cause in MaxRetryError.reason; walk causes and reasons.
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        nxt = getattr(seen, "reason", None)
        seen = nxt if isinstance(nxt, BaseException) else (seen.__cause__ or seen.__context__)
    names = {type(e).__name__ for e in chain}
    if names & {"ReadTimeoutError", "ConnectTimeoutError", "TimeoutError", "timeout"}:
        return SourceTimeout("no answer within the request timeout")
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return SourceUnavailable("connection refused")
    if names & {
        "NewConnectionError",
        "ProtocolError",
        "ConnectionResetError",
        "RemoteDisconnected",
        "IncompleteRead",
        "SSLError",
        "NameResolutionError",
    } or isinstance(exc, OSError):
        return SourceUnavailable(f"cannot reach Datadog ({type(chain[-1]).__name__})")
    if names & {"ApiTypeError", "ApiValueError", "ApiAttributeError", "ApiKeyError"} or (
        isinstance(exc, ValueError | KeyError | TypeError)
    ):
        return SourceBadResponse(f"unreadable answer ({type(exc).__name__})")
    return SourceError(type(exc).__name__)


def parse_response(
    planned: Sequence[_Planned], answer: Mapping[str, Any], at: datetime
) -> list[MetricSample]:
    """Map one v2 ``timeseries_response`` onto samples of the queries it answers.

    Args:
        planned: The queries of the request, in formula order.
        answer: The response as a dict (``response.to_dict()``).
        at: Time of the poll.

    Returns:
        One sample per query per group; a query without any series gets one sample
        with no points (Datadog answers nothing when nothing matched).

    Raises:
        SourceBadResponse: If the answer does not have the documented shape.
        SourceError: If Datadog answered only an ``errors`` message.
    """
    data = answer.get("data")
    errors = answer.get("errors")
    if not isinstance(data, dict):
        if errors:
            raise SourceError(f"Datadog: {errors}")
        raise SourceBadResponse("answer lacks data")
    attrs = data.get("attributes")
    if not isinstance(attrs, dict):
        raise SourceBadResponse("answer lacks data.attributes")
    series = attrs.get("series") or []
    times = attrs.get("times") or []
    values = attrs.get("values") or []
    if not isinstance(series, list) or not isinstance(times, list) or not isinstance(values, list):
        raise SourceBadResponse("series, times or values is not a list")
    if len(values) != len(series):
        raise SourceBadResponse(f"{len(series)} series but {len(values)} value lists")
    if errors and not series:
        raise SourceError(f"Datadog: {errors}")
    try:
        stamps = [datetime.fromtimestamp(float(ms) / 1000, UTC) for ms in times]
    except (TypeError, ValueError, OverflowError) as exc:
        raise SourceBadResponse("times are not epoch milliseconds") from exc
    order = sorted(range(len(stamps)), key=stamps.__getitem__)
    # The bucket holding the poll's own moment is still filling: its value is that of a
    # fraction of the interval (2 requests, 0 errors: 0 %), and the next poll reads it
    # again, complete. Only buckets that ended by ``at`` are data.
    steps = [stamps[b] - stamps[a] for a, b in itertools.pairwise(order) if stamps[b] > stamps[a]]
    if steps:
        order = [i for i in order if stamps[i] + min(steps) <= at]
    samples: list[MetricSample] = []
    answered: set[int] = set()
    for meta, row in zip(series, values, strict=True):
        if not isinstance(meta, dict) or not isinstance(row, list):
            raise SourceBadResponse("a series is not an object with a list of values")
        index = meta.get("query_index")
        if not isinstance(index, int) or not 0 <= index < len(planned):
            raise SourceBadResponse(f"series for unknown formula {index!r}")
        if len(row) != len(stamps):
            raise SourceBadResponse(f"{len(row)} values for {len(stamps)} times")
        answered.add(index)
        query = planned[index].query
        tags = meta.get("group_tags") or []
        group = ",".join(str(t) for t in tags) if tags else None
        points = tuple(MetricPoint(stamps[i], _value(row[i])) for i in order)
        samples.append(
            MetricSample(
                metric=query.name,
                service=query.service,
                group=group,
                points=points,
                unit=query.unit or _unit_name(meta.get("unit")),
                at=at,
            )
        )
    for index, plan in enumerate(planned):
        if index not in answered:
            q = plan.query
            samples.append(MetricSample(q.name, q.service, None, (), q.unit, at))
    return samples


def _value(raw: Any) -> float | None:
    # A gap stays a gap: None (and a NaN, should one ever come) is never a zero.
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise SourceBadResponse(f"value {raw!r} is not a number") from exc
    return value if math.isfinite(value) else None


class DatadogSource:
    """Polls Datadog's v2 timeseries query API for a set of named queries.

    Args:
        queries: The queries; names must be unique.
        api_key: ``DD-API-KEY`` (``None``: every poll fails with an auth error).
        app_key: ``DD-APPLICATION-KEY`` (``None``: likewise).
        site: Datadog site (``datadoghq.eu`` ...); ``datadoghq.com`` when ``None``.
        host: Full base URL override (the sandbox); wins over ``site``.
        interval: Seconds between the end of one poll and the start of the next.
        window: How far back each poll looks.
        step: Interval between points asked of Datadog; ``None`` lets Datadog pick
            (about 300 points per window at most).
        timeout: Per-request timeout given to the client (connect and read).
        max_queries_per_request: Metric queries per request before chunking.
        deadline: Hard bound of one poll, seconds (default ``2 * timeout + 2``).
        client_factory: Builds the object whose ``query_timeseries_data(body)``
            answers ``(response, status, headers)``; tests inject one. Called in the
            worker thread.
        clock: Current UTC time.
        sleep: Injected for tests.
        backoff: Back-off policy after failures.
    """

    name = "datadog"

    def __init__(
        self,
        queries: Sequence[DatadogQuery],
        *,
        api_key: str | None,
        app_key: str | None,
        site: str | None = None,
        host: str | None = None,
        interval: float = 15.0,
        window: timedelta = timedelta(minutes=15),
        step: timedelta | None = None,
        timeout: float = 10.0,
        max_queries_per_request: int = MAX_QUERIES_PER_REQUEST,
        deadline: float | None = None,
        client_factory: Callable[[], Any] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff: Backoff | None = None,
    ) -> None:
        names = [q.name for q in queries]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate Datadog query names: {', '.join(duplicates)}")
        if max_queries_per_request < 1:
            raise ValueError("max_queries_per_request must be >= 1")
        if window <= timedelta(0):
            raise ValueError("window must be positive")
        self.queries = tuple(queries)
        self.host = host.rstrip("/") if host else _site_host(site or DEFAULT_SITE)
        self.interval = interval
        self.window = window
        self.step = step
        self.timeout = timeout
        self.deadline = deadline if deadline is not None else 2 * timeout + 2.0
        self.backoff = backoff or Backoff(base=max(interval, 1.0), cap=max(60.0, interval * 4))
        self._api_key = api_key
        self._app_key = app_key
        self._client_factory = client_factory or self._default_client
        self._clock = clock
        self._sleep_impl = sleep
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._hold_until = 0.0
        self._chunks = self._plan(max_queries_per_request)

    @classmethod
    def from_env(
        cls,
        queries: Sequence[DatadogQuery],
        *,
        site: str | None = None,
        host: str | None = None,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> DatadogSource:
        """Build a source with keys from ``DD_API_KEY`` / ``DD_APP_KEY``.

        ``DD_SITE`` wins over ``site``; ``host`` wins over both.

        Args:
            queries: The queries.
            site: Site from config, used when ``DD_SITE`` is unset.
            host: Base URL override.
            environ: Environment to read (``os.environ`` when ``None``).
            **options: Further constructor arguments.

        Returns:
            The source; a missing key shows as an auth failure on the first poll.
        """
        env = os.environ if environ is None else environ
        return cls(
            queries,
            api_key=env.get("DD_API_KEY") or None,
            app_key=env.get("DD_APP_KEY") or None,
            site=env.get("DD_SITE") or site,
            host=host,
            **options,
        )

    def _plan(self, limit: int) -> list[tuple[_Planned, ...]]:
        chunks: list[tuple[_Planned, ...]] = []
        current: list[_Planned] = []
        size = 0
        for index, query in enumerate(self.queries):
            parts, formula = split_query(query.query, f"q{index}")
            if current and size + len(parts) > limit:
                chunks.append(tuple(current))
                current, size = [], 0
            current.append(_Planned(query, parts, formula))
            size += len(parts)
        if current:
            chunks.append(tuple(current))
        return chunks

    async def stream(self) -> AsyncGenerator[Item, None]:
        """Poll forever: each query's samples, or one failure for the whole poll."""
        if not self._chunks:
            return
        executor = ThreadPoolExecutor(
            max_workers=min(4, len(self._chunks)), thread_name_prefix="deploywatch-datadog"
        )
        try:
            results = cast(
                "AsyncGenerator[PollResult[list[MetricSample]], None]",
                poll(
                    lambda: self._fetch(executor),
                    self.interval,
                    deadline=self.deadline,
                    backoff=self.backoff,
                    sleep=self._sleep_impl,
                    hold=self._take_hold,
                ),
            )
            async with contextlib.aclosing(results):
                async for result in results:
                    if result.error is None:
                        for sample in result.value or ():
                            yield sample
                    else:
                        yield self._failure(result.error, result.retry_in)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    async def poll_once(self) -> list[Item]:
        """One poll (for scripts and tests): the samples, or one failure.

        Returns:
            What one round of :meth:`stream` would yield.
        """
        executor = ThreadPoolExecutor(
            max_workers=min(4, max(1, len(self._chunks))), thread_name_prefix="deploywatch-datadog"
        )
        try:
            samples = await asyncio.wait_for(self._fetch(executor), timeout=self.deadline)
        except TimeoutError:
            return [self._failure(SourceTimeout(f"no answer within {self.deadline:g}s"))]
        except SourceError as exc:
            retry = server_wait(exc.retry_after) if isinstance(exc, SourceRateLimited) else None
            return [self._failure(exc, retry)]
        finally:
            # Never wait here for a thread stuck on a slow answer: that would block
            # the event loop. The thread ends with its request timeout.
            executor.shutdown(wait=False, cancel_futures=True)
        return list(samples)

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
            error=public_text(str(error) or error.reason, (self._api_key, self._app_key)),
            reason=error.reason,
            at=self._clock(),
            retry_in=retry_in if isinstance(error, SourceRateLimited) else None,
        )

    async def _fetch(self, executor: ThreadPoolExecutor) -> list[MetricSample]:
        if not self._api_key or not self._app_key:
            raise SourceAuthError("no Datadog API or application key (DD_API_KEY, DD_APP_KEY)")
        now = self._clock()
        to_ms = int(now.timestamp() * 1000)
        from_ms = int((now - self.window).timestamp() * 1000)
        loop = asyncio.get_running_loop()
        answers = await asyncio.gather(
            *(
                loop.run_in_executor(executor, self._query_chunk, chunk, from_ms, to_ms)
                for chunk in self._chunks
            )
        )
        samples: list[MetricSample] = []
        for chunk, answer in zip(self._chunks, answers, strict=True):
            samples.extend(parse_response(chunk, answer, now))
        return samples

    # ---- everything below runs in a worker thread -------------------------------

    def _default_client(self) -> Any:
        # Lazy: the SDK is heavy and never needed before the first poll.
        from datadog_api_client import ApiClient, Configuration
        from datadog_api_client.v2.api.metrics_api import MetricsApi
        from urllib3.util import Retry

        config = cast("Any", Configuration)(
            host=self.host,
            api_key={"apiKeyAuth": self._api_key, "appKeyAuth": self._app_key},
            return_http_data_only=False,  # we need the X-RateLimit-* headers
            request_timeout=(self.timeout, self.timeout),
        )
        # Without a policy urllib3's default Retry(3) would sleep on 429s and retry 5xx
        # inside the thread. One reconnect is all the client may do; status codes come
        # back to us at once and our back-off decides.
        config.retry_policy = Retry(
            total=1,
            connect=1,
            read=0,
            status=0,
            other=0,
            redirect=0,
            raise_on_status=False,
            respect_retry_after_header=False,
        )
        return cast("Any", MetricsApi)(ApiClient(config))

    def client(self) -> Any:
        """The metrics API client, built on first use (call from a worker thread)."""
        with self._client_lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def _query_chunk(self, chunk: tuple[_Planned, ...], from_ms: int, to_ms: int) -> dict[str, Any]:
        try:
            body = self._request(chunk, from_ms, to_ms)
            answer = self.client().query_timeseries_data(body)
        except Exception as exc:  # classified here: the thread must not leak SDK types
            error = classify(exc)
            self._note_limits(getattr(exc, "headers", None), error)
            raise error from None
        response, _status, headers = answer
        self._note_limits(headers, None)
        try:
            result = response.to_dict() if hasattr(response, "to_dict") else response
        except Exception as exc:
            raise SourceBadResponse(f"unreadable answer ({type(exc).__name__})") from None
        if not isinstance(result, dict):
            raise SourceBadResponse("answer is not an object")
        return result

    def _note_limits(self, headers: Mapping[str, Any] | None, error: SourceError | None) -> None:
        remaining = _seconds(_header(headers, "X-RateLimit-Remaining"))
        reset = _seconds(_header(headers, "X-RateLimit-Reset"))
        if reset is not None and (remaining == 0 or isinstance(error, SourceRateLimited)):
            self._hold_until = max(self._hold_until, time.monotonic() + reset)

    def _request(self, chunk: tuple[_Planned, ...], from_ms: int, to_ms: int) -> Any:
        from datadog_api_client.v2.model.metrics_data_source import MetricsDataSource
        from datadog_api_client.v2.model.metrics_timeseries_query import MetricsTimeseriesQuery
        from datadog_api_client.v2.model.query_formula import QueryFormula
        from datadog_api_client.v2.model.timeseries_formula_query_request import (
            TimeseriesFormulaQueryRequest,
        )
        from datadog_api_client.v2.model.timeseries_formula_request import (
            TimeseriesFormulaRequest,
        )
        from datadog_api_client.v2.model.timeseries_formula_request_attributes import (
            TimeseriesFormulaRequestAttributes,
        )
        from datadog_api_client.v2.model.timeseries_formula_request_queries import (
            TimeseriesFormulaRequestQueries,
        )
        from datadog_api_client.v2.model.timeseries_formula_request_type import (
            TimeseriesFormulaRequestType,
        )

        queries = [
            MetricsTimeseriesQuery(data_source=MetricsDataSource.METRICS, query=text, name=name)
            for plan in chunk
            for name, text in plan.parts
        ]
        options: dict[str, Any] = {}
        if self.step is not None:
            options["interval"] = max(1, int(self.step.total_seconds() * 1000))
        attributes = TimeseriesFormulaRequestAttributes(
            _from=from_ms,
            to=to_ms,
            queries=cast("Any", TimeseriesFormulaRequestQueries)(queries),
            formulas=[QueryFormula(formula=plan.formula) for plan in chunk],
            **options,
        )
        return TimeseriesFormulaQueryRequest(
            data=TimeseriesFormulaRequest(
                type=TimeseriesFormulaRequestType.TIMESERIES_REQUEST, attributes=attributes
            )
        )


def _site_host(site: str) -> str:
    site = site.strip().rstrip("/")
    if "://" in site:
        return site
    # ``app.datadoghq.eu`` is what people copy from the browser; the API lives on api.
    site = site.removeprefix("app.").removeprefix("api.")
    return f"https://api.{site}"
