"""How the local Datadog computes a query from the front proxy's request log: the time
grid, native points per context, rollup in time, aggregation in space, percentiles of the
latency distribution and the arithmetic of formulas. Pure: records and an expression in,
series out."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sandbox.datadog_query import (
    METRICS,
    UNITS,
    Expr,
    MetricQuery,
    Neg,
    Num,
    QueryError,
    Ref,
    Unit,
)
from sandbox.requestlog import RequestRecord

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


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
Values = list[float | None]
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
