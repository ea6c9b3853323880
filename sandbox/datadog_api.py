"""A local Datadog metric query API, computed from the front proxy's request log.

Serves what the real ``datadog-api-client`` calls (see ``sandbox/DATADOG_QUERIES.md`` for
the query language subset, the metrics and their tags):

- v1 ``GET /api/v1/query?from=&to=&query=`` (epoch seconds),
- v2 ``POST /api/v2/query/timeseries`` (``timeseries_request`` with named metric
  queries and formulas, epoch milliseconds),

with Datadog's response shapes. Both need ``DD-API-KEY`` and ``DD-APPLICATION-KEY``
(403 ``{"errors": ["Forbidden"]}`` otherwise), carry the ``X-RateLimit-*`` headers and
enforce the limit (429), and answer 400 ``{"errors": [...]}`` for anything outside the
supported subset.

How a metric query is computed, the way Datadog does it for metrics reported per
context: request records (health checks excluded) are split into contexts (service,
version, plus any grouping tag), each context gets one native point per
``resolution_s`` (like an agent flush), the points are rolled up in time into the query
interval (``.rollup()`` method, default ``sum`` for counts and ``avg`` for gauges), then
aggregated in space across the contexts of each group (``avg:``/``sum:``/``min:``/
``max:``). ``sandbox.latency`` is a distribution: its percentiles are computed over all
raw latencies of a group and interval.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import threading
import time
import zlib
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from sandbox.datadog_eval import (
    INTERVALS_S,
    MAX_POINTS,
    Grid,
    SeriesSet,
    Values,
    _scalar_series,
    default_interval,
    evaluate,
    make_grid,
    percentile,
)
from sandbox.datadog_query import (
    _IDENT_RE,
    METRICS,
    Expr,
    MetricDef,
    MetricQuery,
    QueryError,
    _leaves,
    parse_expression,
    split_top_level,
)
from sandbox.httpserver import FixedWindowLimiter, WindowState, WsgiServer, json_body
from sandbox.requestlog import RequestRecord

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from types import TracebackType

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from sandbox.faults import FaultSource
    from sandbox.requestlog import RequestLog

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_RATE_PERIOD_S",
    "INTERVALS_S",
    "MAX_POINTS",
    "METRICS",
    "DatadogApp",
    "DatadogServer",
    "MetricDef",
    "QueryError",
    "evaluate",
    "make_grid",
    "parse_expression",
    "percentile",
]

DEFAULT_RATE_LIMIT = 100
DEFAULT_RATE_PERIOD_S = 10
# Longest query range accepted.
MAX_RANGE_S = 31 * 86400


def _json(status: int, payload: Any) -> Response:
    return Response(json_body(payload), status=status, content_type="application/json")


def _errors(status: int, *messages: str) -> Response:
    return _json(status, {"errors": list(messages)})


class DatadogApp:
    """The WSGI app of the local Datadog.

    Args:
        log: The request log metrics are computed from.
        api_key: Required ``DD-API-KEY`` value (any non-empty value when ``None``).
        app_key: Required ``DD-APPLICATION-KEY`` value (any non-empty value when ``None``).
        rate_limit: Requests per period, per endpoint.
        rate_period_s: Rate-limit period in seconds.
        resolution_s: Native resolution of the metrics (one point per context per this).
        clock: Wall clock in epoch seconds (for rate-limit windows).
    """

    RATE_LIMIT_NAMES = {"v1": "metrics_query", "v2": "timeseries_query"}

    def __init__(
        self,
        log: RequestLog,
        api_key: str | None = None,
        app_key: str | None = None,
        rate_limit: int = DEFAULT_RATE_LIMIT,
        rate_period_s: int = DEFAULT_RATE_PERIOD_S,
        resolution_s: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if resolution_s not in INTERVALS_S:
            raise ValueError(f"resolution_s must be one of {INTERVALS_S}")
        self.log = log
        self.api_key = api_key
        self.app_key = app_key
        self.resolution_s = resolution_s
        self.clock = clock
        self.limiters = {
            name: FixedWindowLimiter(rate_limit, rate_period_s, clock)
            for name in self.RATE_LIMIT_NAMES.values()
        }
        self._lock = threading.Lock()
        self.requests_served = 0

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        return self._dispatch(request)(environ, start_response)

    def _authorised(self, request: Request) -> bool:
        api = request.headers.get("DD-API-KEY", "")
        app = request.headers.get("DD-APPLICATION-KEY", "")
        if not api or not app:
            return False
        if self.api_key is not None and api != self.api_key:
            return False
        return self.app_key is None or app == self.app_key

    def _dispatch(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path == "/api/v1/query":
            version, method = "v1", "GET"
        elif path == "/api/v2/query/timeseries":
            version, method = "v2", "POST"
        else:
            return _errors(404, f"Not found: {request.path}")
        limiter_name = self.RATE_LIMIT_NAMES[version]
        limiter = self.limiters[limiter_name]
        if not self._authorised(request):
            resp = _errors(403, "Forbidden")
            return self._with_limits(resp, limiter.peek(), limiter_name)
        window = limiter.take()
        if not window.allowed:
            resp = _errors(
                429,
                f"Rate limit of {window.limit} requests per {window.period_s:g} seconds "
                f"reached for {limiter_name}",
            )
            return self._with_limits(resp, window, limiter_name)
        if request.method != method:
            resp = _errors(405, f"{request.path} expects {method}")
            return self._with_limits(resp, window, limiter_name)
        try:
            payload = self._v1(request) if version == "v1" else self._v2(request)
            resp = _json(200, payload)
        except QueryError as exc:
            resp = _errors(400, str(exc))
        with self._lock:
            self.requests_served += 1
        return self._with_limits(resp, window, limiter_name)

    def _with_limits(self, resp: Response, window: WindowState, name: str) -> Response:
        resp.headers["X-RateLimit-Limit"] = str(window.limit)
        resp.headers["X-RateLimit-Period"] = f"{window.period_s:g}"
        resp.headers["X-RateLimit-Remaining"] = str(max(0, window.remaining))
        resp.headers["X-RateLimit-Reset"] = str(window.reset_in(self.clock()))
        resp.headers["X-RateLimit-Name"] = name
        return resp

    def _records(self, from_s: float, to_s: float) -> list[RequestRecord]:
        """Records inside the query range (not the whole first and last buckets)."""
        return self.log.query(from_s, to_s, include_health=False)

    def _grid(
        self, from_s: float, to_s: float, exprs: Sequence[Expr], interval_s: int | None
    ) -> Grid:
        if not math.isfinite(from_s) or not math.isfinite(to_s) or to_s <= from_s:
            raise QueryError("'to' must be after 'from'")
        if to_s - from_s > MAX_RANGE_S:
            raise QueryError(f"the query range may not exceed {MAX_RANGE_S // 86400} days")
        step = default_interval(to_s - from_s, self.resolution_s)
        if interval_s is not None:
            if interval_s < self.resolution_s:
                interval_s = self.resolution_s
            # Never more than MAX_POINTS * 5 points, whatever was asked for.
            step = max(interval_s, math.ceil((to_s - from_s) / (MAX_POINTS * 5)))
        for expr in exprs:
            for leaf in _leaves(expr):
                if leaf.rollup_s is not None:
                    step = max(step, leaf.rollup_s)
        if step % self.resolution_s:
            step += self.resolution_s - step % self.resolution_s
        return make_grid(from_s, to_s, step)

    # ------------------------------------------------------------------ v1

    def _v1(self, request: Request) -> dict[str, Any]:
        args = request.args
        missing = [k for k in ("from", "to", "query") if not args.get(k)]
        if missing:
            raise QueryError(f"missing parameter(s): {', '.join(missing)}")
        try:
            from_s, to_s = float(args["from"]), float(args["to"])
        except ValueError as exc:
            raise QueryError("'from' and 'to' must be epoch seconds") from exc
        query_text = args["query"]
        exprs = [parse_expression(part) for part in split_top_level(query_text)]
        grid = self._grid(from_s, to_s, exprs, None)
        records = self._records(from_s, to_s)
        series: list[dict[str, Any]] = []
        group_by: list[str] = []
        for index, (expr, text) in enumerate(zip(exprs, split_top_level(query_text), strict=True)):
            result = _scalar_series(evaluate(expr, records, grid, self.resolution_s), grid)
            for tag in result.by:
                if tag not in group_by:
                    group_by.append(tag)
            for tags, values in result.series.items():
                series.append(self._v1_series(index, expr, text, result, tags, values, grid))
        return {
            "status": "ok",
            "res_type": "time_series",
            "resp_version": 1,
            "query": query_text,
            "from_date": int(from_s * 1000),
            "to_date": int(to_s * 1000),
            "series": series,
            "message": "",
            "group_by": group_by,
            "values": [],
            "times": [],
        }

    @staticmethod
    def _v1_series(
        index: int,
        expr: Expr,
        text: str,
        result: SeriesSet,
        tags: tuple[str, ...],
        values: Values,
        grid: Grid,
    ) -> dict[str, Any]:
        leaf = expr if isinstance(expr, MetricQuery) else None
        first = result.leaves[0] if result.leaves else None
        base_scope = first.scope_text if first is not None else "*"
        if tags:
            scope = ",".join(tags) if base_scope == "*" else f"{base_scope},{','.join(tags)}"
        else:
            scope = base_scope
        if leaf is not None:
            metric = leaf.metric
            suffix = text[text.index("}") + 1 :]
            suffix = re.sub(r"^\s*by\s*\{[^}]*\}", "", suffix)
            expression = f"{leaf.aggr}:{leaf.metric}{{{scope}}}{suffix}"
        else:
            metric = text
            expression = text
        points = [
            [float((grid.start_s + i * grid.interval_s) * 1000), v] for i, v in enumerate(values)
        ]
        return {
            "metric": metric,
            "display_name": metric,
            "aggr": leaf.aggr if leaf is not None else None,
            "scope": scope,
            "tag_set": list(tags),
            "expression": expression,
            "pointlist": points,
            "interval": grid.interval_s,
            "start": grid.start_s * 1000,
            "end": grid.end_s * 1000 - 1,
            "length": len(points),
            "unit": list(result.unit),
            "query_index": index,
            "attributes": {},
        }

    # ------------------------------------------------------------------ v2

    def _v2(self, request: Request) -> dict[str, Any]:
        raw = request.get_data()
        encoding = (request.headers.get("Content-Encoding") or "").lower()
        try:
            if encoding == "gzip":
                raw = gzip.decompress(raw)
            elif encoding == "deflate":
                raw = zlib.decompress(raw)
            elif encoding not in ("", "identity"):
                raise QueryError(f"unsupported Content-Encoding {encoding!r}")
            body = json.loads(raw)
        except (OSError, zlib.error, ValueError) as exc:
            if isinstance(exc, QueryError):
                raise
            raise QueryError(f"request body is not JSON: {exc}") from exc
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise QueryError('body must be {"data": {"type": "timeseries_request", ...}}')
        if data.get("type") != "timeseries_request":
            raise QueryError(f"data.type must be 'timeseries_request', not {data.get('type')!r}")
        attrs = data.get("attributes")
        if not isinstance(attrs, dict):
            raise QueryError("data.attributes is required")
        unknown = set(attrs) - {"from", "to", "queries", "formulas", "interval"}
        if unknown:
            raise QueryError(f"unsupported attribute(s): {', '.join(sorted(unknown))}")
        from_ms, to_ms = attrs.get("from"), attrs.get("to")
        if not isinstance(from_ms, int) or not isinstance(to_ms, int):
            raise QueryError("data.attributes.from and .to must be epoch milliseconds")
        interval_ms = attrs.get("interval")
        if interval_ms is not None and (not isinstance(interval_ms, int) or interval_ms <= 0):
            raise QueryError("data.attributes.interval must be positive milliseconds")
        queries = attrs.get("queries")
        if not isinstance(queries, list) or not queries:
            raise QueryError("data.attributes.queries must be a non-empty list")
        names: list[str] = []
        exprs: list[Expr] = []
        for i, q in enumerate(queries):
            if not isinstance(q, dict):
                raise QueryError(f"queries[{i}] must be an object")
            extra = set(q) - {"data_source", "query", "name", "cross_org_uuids"}
            if extra:
                raise QueryError(f"queries[{i}]: unsupported key(s) {', '.join(sorted(extra))}")
            if q.get("data_source") != "metrics":
                raise QueryError(
                    f"queries[{i}]: data_source {q.get('data_source')!r} is not supported; "
                    "only 'metrics'"
                )
            text = q.get("query")
            if not isinstance(text, str):
                raise QueryError(f"queries[{i}].query must be a string")
            name = q.get("name", f"query{i + 1}")
            if not isinstance(name, str) or not _IDENT_RE.fullmatch(name):
                raise QueryError(f"queries[{i}].name must be an identifier")
            if name in names:
                raise QueryError(f"duplicate query name {name!r}")
            expr = parse_expression(text)
            if not isinstance(expr, MetricQuery):
                raise QueryError(
                    f"queries[{i}]: arithmetic belongs in formulas, not in a query: {text!r}"
                )
            names.append(name)
            exprs.append(expr)
        formulas_raw = attrs.get("formulas")
        formulas: list[tuple[Expr, dict[str, Any] | None]] = []
        if formulas_raw is not None:
            if not isinstance(formulas_raw, list):
                raise QueryError("data.attributes.formulas must be a list")
            for i, f in enumerate(formulas_raw):
                if not isinstance(f, dict) or not isinstance(f.get("formula"), str):
                    raise QueryError(f'formulas[{i}] must be {{"formula": "..."}}')
                extra = set(f) - {"formula", "limit", "alias"}
                if extra:
                    raise QueryError(f"formulas[{i}]: unsupported key(s) {sorted(extra)}")
                limit = f.get("limit")
                if limit is not None and (
                    not isinstance(limit, dict)
                    or set(limit) - {"count", "order"}
                    or not isinstance(limit.get("count", 10), int)
                    or limit.get("order", "desc") not in ("asc", "desc")
                ):
                    raise QueryError(
                        f'formulas[{i}].limit must be {{"count": int, "order": asc|desc}}'
                    )
                formulas.append(
                    (parse_expression(f["formula"], allow_refs=True, allow_metrics=False), limit)
                )
        grid = self._grid(
            from_ms / 1000,
            to_ms / 1000,
            exprs,
            None if interval_ms is None else max(1, interval_ms // 1000),
        )
        records = self._records(from_ms / 1000, to_ms / 1000)
        named = {
            name: evaluate(expr, records, grid, self.resolution_s)
            for name, expr in zip(names, exprs, strict=True)
        }
        outputs: list[tuple[SeriesSet, dict[str, Any] | None]] = []
        if formulas:
            for expr, limit in formulas:
                outputs.append(
                    (
                        _scalar_series(
                            evaluate(expr, records, grid, self.resolution_s, named), grid
                        ),
                        limit,
                    )
                )
        else:
            outputs = [(named[n], None) for n in names]
        series: list[dict[str, Any]] = []
        values: list[Values] = []
        for index, (result, limit) in enumerate(outputs):
            items = list(result.series.items())
            if limit is not None:
                items = _apply_limit(
                    items, int(limit.get("count", 10)), str(limit.get("order", "desc"))
                )
            for tags, vals in items:
                series.append(
                    {
                        "group_tags": list(tags),
                        "query_index": index,
                        "unit": list(result.unit) if any(result.unit) else None,
                    }
                )
                values.append(vals)
        return {
            "data": {
                "type": "timeseries_response",
                "attributes": {"series": series, "times": grid.times_ms, "values": values},
            }
        }


def _apply_limit(
    items: list[tuple[tuple[str, ...], Values]], count: int, order: str
) -> list[tuple[tuple[str, ...], Values]]:
    def mean(vals: Values) -> float:
        present = [v for v in vals if v is not None]
        return sum(present) / len(present) if present else -math.inf

    ranked = sorted(items, key=lambda kv: mean(kv[1]), reverse=order == "desc")
    return ranked[: max(0, count)]


class DatadogServer:
    """The local Datadog on ``127.0.0.1:<free port>``.

    Configure the real client with ``Configuration(host=server.url)`` and any API and
    application keys (or the ones given here).

    Args:
        log: The request log metrics are computed from.
        api_key: Required ``DD-API-KEY`` (any non-empty when ``None``).
        app_key: Required ``DD-APPLICATION-KEY`` (any non-empty when ``None``).
        faults: Optional fault source; the app is wrapped in a
            :class:`~sandbox.faults.FaultMiddleware` for ``fault_endpoint``.
        fault_endpoint: Endpoint name in the fault registry.
        **app_options: Further :class:`DatadogApp` options (rate limit, resolution...).
    """

    def __init__(
        self,
        log: RequestLog,
        api_key: str | None = None,
        app_key: str | None = None,
        faults: FaultSource | None = None,
        fault_endpoint: str = "datadog",
        **app_options: Any,
    ) -> None:
        self.app = DatadogApp(log, api_key, app_key, **app_options)
        wsgi: WSGIApplication = self.app
        self._server = WsgiServer(wsgi, name="datadog")
        if faults is not None:
            from sandbox.faults import FaultMiddleware

            middleware = FaultMiddleware(self.app, faults, fault_endpoint)
            self._server = WsgiServer(middleware, name="datadog", on_stop=[middleware.close])

    def start(self) -> DatadogServer:
        """Start serving.

        Returns:
            This server.
        """
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    @property
    def url(self) -> str:
        """Base URL, the ``host`` of the client's ``Configuration``."""
        return self._server.url

    def __enter__(self) -> DatadogServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
