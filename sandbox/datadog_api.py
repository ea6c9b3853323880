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
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from sandbox.httpserver import FixedWindowLimiter, WindowState, WsgiServer, json_body
from sandbox.requestlog import RequestRecord

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
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
    "parse_expression",
]

DEFAULT_RATE_LIMIT = 100
DEFAULT_RATE_PERIOD_S = 10
# Most points per series; the default interval is the smallest of INTERVALS_S that keeps
# a query under it (1 h -> 20 s, like Datadog's).
MAX_POINTS = 300
INTERVALS_S = (
    1,
    2,
    5,
    10,
    20,
    30,
    60,
    120,
    300,
    600,
    1200,
    1800,
    3600,
    7200,
    14400,
    28800,
    43200,
    86400,
)
# Longest query range accepted.
MAX_RANGE_S = 31 * 86400

Unit = dict[str, Any]
Values = list[float | None]


def _unit(family: str, name: str, plural: str, short: str, scale: float) -> Unit:
    return {
        "family": family,
        "name": name,
        "plural": plural,
        "scale_factor": scale,
        "short_name": short,
    }


UNITS: dict[str, Unit] = {
    "request": _unit("network", "request", "requests", "req", 1.0),
    "error": _unit("general", "error", "errors", "err", 1.0),
    "percent": _unit("percentage", "percent", "percent", "%", 1.0),
    "millisecond": _unit("time", "millisecond", "milliseconds", "ms", 0.001),
    "second": _unit("time", "second", "seconds", "s", 1.0),
}


class QueryError(ValueError):
    """A query outside the supported subset (answered 400)."""


@dataclass(frozen=True)
class MetricDef:
    """One metric the sandbox computes.

    Attributes:
        name: Metric name.
        kind: ``count``, ``gauge`` or ``distribution``.
        unit: Unit name (key of ``UNITS``) or ``None``.
        per_unit: Per-unit name or ``None``.
        description: What it measures.
    """

    name: str
    kind: str
    unit: str | None
    per_unit: str | None
    description: str


def _metrics() -> dict[str, MetricDef]:
    defs = [
        MetricDef("sandbox.requests", "count", "request", None, "requests answered"),
        MetricDef("sandbox.errors", "count", "error", None, "requests answered 5xx"),
        MetricDef("sandbox.throughput", "gauge", "request", "second", "requests per second"),
        MetricDef("sandbox.error_rate", "gauge", "percent", None, "5xx share, percent"),
        MetricDef("sandbox.latency", "distribution", "millisecond", None, "request latency"),
    ]
    for stat in ("avg", "p50", "p75", "p90", "p95", "p99", "max"):
        defs.append(
            MetricDef(f"sandbox.latency.{stat}", "gauge", "millisecond", None, f"latency {stat}")
        )
    return {d.name: d for d in defs}


METRICS = _metrics()
TAG_KEYS = ("service", "version", "env", "status_code", "status_class", "method")
SPACE_AGGREGATORS = ("avg", "sum", "min", "max")
DISTRIBUTION_AGGREGATORS = ("avg", "sum", "min", "max", "count", "p50", "p75", "p90", "p95", "p99")
ROLLUP_METHODS = ("avg", "sum", "min", "max", "count")
ENVIRONMENT = "sandbox"


def record_tags(rec: RequestRecord) -> dict[str, str]:
    """The tags a request record carries.

    Args:
        rec: The record.
    """
    return {
        "service": rec.service,
        "version": rec.version,
        "env": ENVIRONMENT,
        "status_code": str(rec.status),
        "status_class": f"{rec.status // 100}xx",
        "method": rec.method,
    }


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class TagFilter:
    """``key:value`` (``*`` wildcards allowed), possibly negated with ``!``."""

    key: str
    pattern: str
    negated: bool = False

    def matches(self, tags: Mapping[str, str]) -> bool:
        """Whether ``tags`` pass this filter.

        Args:
            tags: Record tags.
        """
        value = tags.get(self.key)
        hit = value is not None and fnmatchcase(value, self.pattern)
        return hit != self.negated

    def __str__(self) -> str:
        return f"{'!' if self.negated else ''}{self.key}:{self.pattern}"


@dataclass(frozen=True)
class MetricQuery:
    """One metric query: ``aggr:metric{scope} by {tags}.modifier().rollup(m, s)``."""

    aggr: str
    metric: str
    filters: tuple[TagFilter, ...]
    by: tuple[str, ...]
    modifier: str | None
    rollup_method: str | None
    rollup_s: int | None
    text: str

    @property
    def scope_text(self) -> str:
        """The scope as Datadog prints it (``*`` when unfiltered)."""
        return ",".join(str(f) for f in self.filters) or "*"


@dataclass(frozen=True)
class Num:
    """A number in a formula."""

    value: float


@dataclass(frozen=True)
class Ref:
    """A reference to a named query (v2 formulas)."""

    name: str


@dataclass(frozen=True)
class BinOp:
    """``left op right``."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Neg:
    """``-operand``."""

    operand: Expr


Expr = MetricQuery | Num | Ref | BinOp | Neg

_METRIC_RE = re.compile(
    r"(?:(?P<aggr>[a-z0-9]+):)?(?P<metric>[A-Za-z][A-Za-z0-9_.]*)\{(?P<scope>[^{}]*)\}"
    r"(?:\s*by\s*\{(?P<by>[^{}]*)\})?"
)
_FUNC_RE = re.compile(r"\.(?P<name>[A-Za-z_]+)\((?P<args>[^()]*)\)")
_NUMBER_RE = re.compile(r"\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TAG_RE = re.compile(r"^(!)?([A-Za-z][A-Za-z0-9_.\-/]*):([A-Za-z0-9_.\-/*:]+)$")


def _parse_scope(scope: str) -> tuple[TagFilter, ...]:
    text = scope.strip()
    if text in ("", "*"):
        return ()
    if re.search(r"\s(AND|OR|NOT|IN)\s|\(|\)", text, flags=re.IGNORECASE):
        raise QueryError(
            f"scope {{{scope}}}: boolean operators (AND, OR, NOT, IN) are not supported; "
            "use comma-separated key:value filters, optionally negated with !"
        )
    filters = []
    for part in text.split(","):
        part = part.strip()
        m = _TAG_RE.match(part)
        if not m:
            raise QueryError(
                f"scope {{{scope}}}: cannot read {part!r}; expected key:value or !key:value"
            )
        key = m.group(2)
        if key not in TAG_KEYS:
            raise QueryError(f"scope {{{scope}}}: unknown tag {key!r}; tags: {', '.join(TAG_KEYS)}")
        filters.append(TagFilter(key, m.group(3), bool(m.group(1))))
    return tuple(filters)


def _parse_metric(match: re.Match[str], rest: str) -> tuple[MetricQuery, int]:
    """Parse a metric query whose head matched; returns it and the characters used."""
    metric = match.group("metric")
    mdef = METRICS.get(metric)
    if mdef is None:
        raise QueryError(f"unknown metric {metric!r}; metrics: {', '.join(sorted(METRICS))}")
    aggr = match.group("aggr") or "avg"
    allowed = DISTRIBUTION_AGGREGATORS if mdef.kind == "distribution" else SPACE_AGGREGATORS
    if aggr not in allowed:
        raise QueryError(
            f"aggregator {aggr!r} is not supported for {metric} ({mdef.kind}); use one of "
            + ", ".join(allowed)
        )
    filters = _parse_scope(match.group("scope"))
    by: tuple[str, ...] = ()
    if match.group("by") is not None:
        by = tuple(t.strip() for t in match.group("by").split(",") if t.strip())
        if not by:
            raise QueryError(f"{match.group(0)}: empty 'by {{}}'")
        for tag in by:
            if tag not in TAG_KEYS:
                raise QueryError(f"cannot group by {tag!r}; tags: {', '.join(TAG_KEYS)}")
    used = match.end()
    modifier: str | None = None
    rollup_method: str | None = None
    rollup_s: int | None = None
    while True:
        fm = _FUNC_RE.match(rest, used)
        if not fm:
            break
        name, args = fm.group("name"), [a.strip() for a in fm.group("args").split(",")]
        args = [a for a in args if a]
        if name in ("as_count", "as_rate"):
            if args:
                raise QueryError(f".{name}() takes no argument")
            modifier = "count" if name == "as_count" else "rate"
        elif name == "rollup":
            if not 1 <= len(args) <= 2:
                raise QueryError(".rollup() takes a method and an optional interval")
            if args[0].isdigit() and len(args) == 1:
                rollup_s = int(args[0])
            else:
                if args[0] not in ROLLUP_METHODS:
                    raise QueryError(
                        f"rollup method {args[0]!r} is not supported; use one of "
                        + ", ".join(ROLLUP_METHODS)
                    )
                rollup_method = args[0]
                if len(args) == 2:
                    if not args[1].isdigit() or int(args[1]) <= 0:
                        raise QueryError(f".rollup interval {args[1]!r} must be whole seconds")
                    rollup_s = int(args[1])
        elif name == "fill":
            raise QueryError(".fill() is not supported by the sandbox; gaps stay null")
        else:
            raise QueryError(f"function .{name}() is not supported by the sandbox")
        used = fm.end()
    query = MetricQuery(
        aggr=aggr,
        metric=metric,
        filters=filters,
        by=by,
        modifier=modifier,
        rollup_method=rollup_method,
        rollup_s=rollup_s,
        text=rest[match.start() : used],
    )
    return query, used


class _Parser:
    def __init__(self, text: str, *, allow_refs: bool, allow_metrics: bool) -> None:
        self.text = text
        self.pos = 0
        self.allow_refs = allow_refs
        self.allow_metrics = allow_metrics

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _peek(self) -> str:
        self._skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> Expr:
        expr = self._sum()
        if self._peek():
            raise QueryError(
                f"unexpected {self.text[self.pos : self.pos + 20]!r} at character {self.pos} "
                f"of {self.text!r}"
            )
        return expr

    def _sum(self) -> Expr:
        left = self._product()
        while self._peek() in ("+", "-"):
            op = self.text[self.pos]
            self.pos += 1
            left = BinOp(op, left, self._product())
        return left

    def _product(self) -> Expr:
        left = self._unary()
        while self._peek() in ("*", "/"):
            op = self.text[self.pos]
            self.pos += 1
            left = BinOp(op, left, self._unary())
        return left

    def _unary(self) -> Expr:
        if self._peek() == "-":
            self.pos += 1
            return Neg(self._unary())
        if self._peek() == "+":
            self.pos += 1
            return self._unary()
        return self._primary()

    def _primary(self) -> Expr:
        ch = self._peek()
        if not ch:
            raise QueryError(f"{self.text!r} ends where a value was expected")
        if ch == "(":
            self.pos += 1
            inner = self._sum()
            if self._peek() != ")":
                raise QueryError(f"missing ')' in {self.text!r}")
            self.pos += 1
            return inner
        if self.allow_metrics:
            m = _METRIC_RE.match(self.text, self.pos)
            if m:
                query, used = _parse_metric(m, self.text)
                self.pos = used
                return query
        m = _NUMBER_RE.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            return Num(float(m.group(0)))
        m = _IDENT_RE.match(self.text, self.pos)
        if m:
            name = m.group(0)
            after = self.text[m.end() : m.end() + 1]
            if after == "(":
                raise QueryError(f"function {name}() is not supported by the sandbox")
            if after in (":", ".", "{") and self.allow_metrics:
                raise QueryError(
                    f"cannot read a metric query at {self.text[self.pos : self.pos + 40]!r}; "
                    "expected aggr:metric{scope}"
                )
            if self.allow_refs:
                self.pos = m.end()
                return Ref(name)
            raise QueryError(
                f"cannot read {self.text[self.pos : self.pos + 40]!r}: expected "
                "aggr:metric{scope}, a number or '('"
            )
        raise QueryError(f"unexpected {ch!r} at character {self.pos} of {self.text!r}")


def parse_expression(text: str, *, allow_refs: bool = False, allow_metrics: bool = True) -> Expr:
    """Parse a metric query expression (v1 query, v2 query, or v2 formula).

    Args:
        text: The expression.
        allow_refs: Whether bare names (v2 query names) are allowed.
        allow_metrics: Whether metric queries are allowed (not in v2 formulas).

    Returns:
        The expression tree.

    Raises:
        QueryError: On anything outside the supported subset.
    """
    if not text.strip():
        raise QueryError("empty query")
    return _Parser(text, allow_refs=allow_refs, allow_metrics=allow_metrics).parse()


def split_top_level(text: str) -> list[str]:
    """Split a v1 query on commas outside ``{}``, ``()`` and ``[]``.

    Args:
        text: The v1 ``query`` parameter.
    """
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _leaves(expr: Expr) -> list[MetricQuery]:
    if isinstance(expr, MetricQuery):
        return [expr]
    if isinstance(expr, BinOp):
        return _leaves(expr.left) + _leaves(expr.right)
    if isinstance(expr, Neg):
        return _leaves(expr.operand)
    return []


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Grid:
    """The time buckets of one answer.

    Attributes:
        start_s: First bucket start, epoch seconds.
        interval_s: Bucket width in seconds.
        length: Number of buckets.
    """

    start_s: int
    interval_s: int
    length: int

    @property
    def times_ms(self) -> list[int]:
        """Bucket starts in epoch milliseconds."""
        return [(self.start_s + i * self.interval_s) * 1000 for i in range(self.length)]

    @property
    def end_s(self) -> int:
        """End of the last bucket, epoch seconds."""
        return self.start_s + self.length * self.interval_s


def default_interval(range_s: float, resolution_s: int) -> int:
    """The interval Datadog would pick: the smallest keeping <= :data:`MAX_POINTS` points.

    Args:
        range_s: Query range in seconds.
        resolution_s: Native resolution (the smallest possible interval).
    """
    for step in INTERVALS_S:
        if step >= resolution_s and range_s / step <= MAX_POINTS:
            return step
    return INTERVALS_S[-1]


def make_grid(from_s: float, to_s: float, interval_s: int) -> Grid:
    """Buckets aligned on multiples of ``interval_s`` covering ``[from_s, to_s)``.

    Args:
        from_s: Range start, epoch seconds.
        to_s: Range end, epoch seconds.
        interval_s: Bucket width.
    """
    start = int(from_s // interval_s) * interval_s
    length = max(1, math.ceil((to_s - start) / interval_s))
    return Grid(start, interval_s, length)


@dataclass
class SeriesSet:
    """The result of evaluating an expression: series keyed by group tags."""

    by: tuple[str, ...]
    series: dict[tuple[str, ...], Values]
    unit: tuple[Unit | None, Unit | None] = (None, None)
    scalar: float | None = None
    source: MetricQuery | None = None
    leaves: list[MetricQuery] = field(default_factory=list)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (like numpy's default).

    Args:
        sorted_values: Ascending values (not empty).
        q: Percentile in [0, 100].
    """
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    rank = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    frac = rank - low
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * frac)


def _stat(latencies: list[float], stat: str) -> float:
    if stat == "avg":
        return sum(latencies) / len(latencies)
    if stat == "max":
        return max(latencies)
    if stat == "min":
        return min(latencies)
    if stat == "sum":
        return sum(latencies)
    if stat == "count":
        return float(len(latencies))
    return percentile(sorted(latencies), float(stat[1:]))


def _native_value(metric: str, records: list[RequestRecord], resolution_s: int) -> float:
    errors = sum(1 for r in records if r.is_error)
    if metric == "sandbox.requests":
        return float(len(records))
    if metric == "sandbox.errors":
        return float(errors)
    if metric == "sandbox.throughput":
        return len(records) / resolution_s
    if metric == "sandbox.error_rate":
        return 100.0 * errors / len(records)
    stat = metric.rsplit(".", 1)[1]
    return _stat([r.latency_ms for r in records], stat)


def _rollup(values: list[float], method: str) -> float:
    if method == "sum":
        return sum(values)
    if method == "min":
        return min(values)
    if method == "max":
        return max(values)
    if method == "count":
        return float(len(values))
    return sum(values) / len(values)


def _space(values: list[float], aggr: str) -> float:
    return _rollup(values, aggr)


def _group_key(tags: Mapping[str, str], by: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{k}:{tags.get(k, 'n/a')}" for k in by)


def evaluate_metric(
    query: MetricQuery, records: Sequence[RequestRecord], grid: Grid, resolution_s: int
) -> SeriesSet:
    """Compute one metric query over ``records`` on ``grid``.

    Args:
        query: The metric query.
        records: Request records (health checks already excluded) within the grid.
        grid: Time buckets.
        resolution_s: Native point resolution.

    Returns:
        The series, one per group that had data.
    """
    mdef = METRICS[query.metric]
    unit: tuple[Unit | None, Unit | None] = (
        UNITS.get(mdef.unit or ""),
        UNITS.get(mdef.per_unit or ""),
    )
    if mdef.kind == "count" and query.modifier == "rate":
        unit = (unit[0], UNITS["second"])
    selected = []
    for rec in records:
        tags = record_tags(rec)
        if all(f.matches(tags) for f in query.filters):
            bucket = int((rec.time - grid.start_s) // grid.interval_s)
            if 0 <= bucket < grid.length:
                selected.append((rec, tags, bucket))
    out: dict[tuple[str, ...], Values] = {}
    if mdef.kind == "distribution":
        pooled: dict[tuple[str, ...], list[list[float]]] = {}
        for rec, tags, bucket in selected:
            lists = pooled.setdefault(_group_key(tags, query.by), [[] for _ in range(grid.length)])
            lists[bucket].append(rec.latency_ms)
        for key, lists in pooled.items():
            out[key] = [_stat(v, query.aggr) if v else None for v in lists]
        return SeriesSet(query.by, dict(sorted(out.items())), unit, source=query, leaves=[query])
    # Per context (service, version, grouping tags) and native slot.
    ctx_keys = ("service", "version", *[t for t in query.by if t not in ("service", "version")])
    slots: dict[tuple[str, ...], dict[int, list[RequestRecord]]] = {}
    ctx_group: dict[tuple[str, ...], tuple[str, ...]] = {}
    for rec, tags, _bucket in selected:
        ctx = tuple(tags[k] for k in ctx_keys)
        ctx_group.setdefault(ctx, _group_key(tags, query.by))
        slot = int(rec.time // resolution_s)
        slots.setdefault(ctx, {}).setdefault(slot, []).append(rec)
    method = query.rollup_method or ("sum" if mdef.kind == "count" else "avg")
    per_group: dict[tuple[str, ...], list[list[float]]] = {}
    for ctx, by_slot in slots.items():
        buckets: list[list[float]] = [[] for _ in range(grid.length)]
        for slot, recs in by_slot.items():
            bucket = int((slot * resolution_s - grid.start_s) // grid.interval_s)
            if 0 <= bucket < grid.length:
                buckets[bucket].append(_native_value(query.metric, recs, resolution_s))
        rolled: list[float | None] = []
        for vals in buckets:
            if not vals:
                rolled.append(None)
                continue
            value = _rollup(vals, method)
            if mdef.kind == "count" and query.modifier == "rate":
                value /= grid.interval_s if method in ("sum", "count") else resolution_s
            rolled.append(value)
        lists = per_group.setdefault(ctx_group[ctx], [[] for _ in range(grid.length)])
        for i, v in enumerate(rolled):
            if v is not None:
                lists[i].append(v)
    for key, lists in per_group.items():
        out[key] = [_space(v, query.aggr) if v else None for v in lists]
    return SeriesSet(query.by, dict(sorted(out.items())), unit, source=query, leaves=[query])


def _combine(op: str, a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return None
    return a / b


def _binop(op: str, left: SeriesSet, right: SeriesSet, length: int) -> SeriesSet:
    leaves = left.leaves + right.leaves
    unit = left.unit if op in "+-" and left.unit == right.unit else (None, None)
    if left.scalar is not None and right.scalar is not None:
        value = _combine(op, left.scalar, right.scalar)
        return SeriesSet((), {}, scalar=value, leaves=leaves)
    if right.scalar is not None:
        if op in "*/":
            unit = left.unit
        series = {
            k: [_combine(op, v, right.scalar) for v in vals] for k, vals in left.series.items()
        }
        return SeriesSet(left.by, series, unit, leaves=leaves)
    if left.scalar is not None:
        if op == "*":
            unit = right.unit
        series = {
            k: [_combine(op, left.scalar, v) for v in vals] for k, vals in right.series.items()
        }
        return SeriesSet(right.by, series, unit, leaves=leaves)
    if left.by == right.by:
        keys = [k for k in left.series if k in right.series]
        series = {
            k: [_combine(op, a, b) for a, b in zip(left.series[k], right.series[k], strict=True)]
            for k in keys
        }
        return SeriesSet(left.by, series, unit, leaves=leaves)
    for grouped, single, single_left in ((left, right, False), (right, left, True)):
        if single.by == () and grouped.by != ():
            if not single.series:
                return SeriesSet(grouped.by, {}, unit, leaves=leaves)
            only = next(iter(single.series.values()))
            series = {
                k: [
                    _combine(op, s, g) if single_left else _combine(op, g, s)
                    for g, s in zip(vals, only, strict=True)
                ]
                for k, vals in grouped.series.items()
            }
            return SeriesSet(grouped.by, series, unit, leaves=leaves)
    raise QueryError(
        f"cannot combine series grouped by {{{','.join(left.by)}}} with series grouped by "
        f"{{{','.join(right.by)}}}; group both sides alike"
    )


def evaluate(
    expr: Expr,
    records: Sequence[RequestRecord],
    grid: Grid,
    resolution_s: int,
    named: Mapping[str, SeriesSet] | None = None,
) -> SeriesSet:
    """Evaluate an expression tree.

    Args:
        expr: The expression.
        records: Request records within the grid (health checks excluded).
        grid: Time buckets.
        resolution_s: Native point resolution.
        named: Results of named queries (v2 formulas).

    Returns:
        The resulting series.
    """
    if isinstance(expr, MetricQuery):
        return evaluate_metric(expr, records, grid, resolution_s)
    if isinstance(expr, Num):
        return SeriesSet((), {}, scalar=expr.value)
    if isinstance(expr, Ref):
        if named is None or expr.name not in named:
            raise QueryError(f"formula refers to unknown query name {expr.name!r}")
        return named[expr.name]
    if isinstance(expr, Neg):
        inner = evaluate(expr.operand, records, grid, resolution_s, named)
        return _binop("*", inner, SeriesSet((), {}, scalar=-1.0), grid.length)
    left = evaluate(expr.left, records, grid, resolution_s, named)
    right = evaluate(expr.right, records, grid, resolution_s, named)
    return _binop(expr.op, left, right, grid.length)


def _scalar_series(result: SeriesSet, grid: Grid) -> SeriesSet:
    """A formula that is only numbers: one constant series."""
    if result.scalar is None:
        return result
    return SeriesSet((), {(): [result.scalar] * grid.length}, leaves=result.leaves)


# --------------------------------------------------------------------------- HTTP


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
