"""The local Datadog's query language: the metrics it knows (their units and tags) and the
parser of the supported subset (metric queries with scopes, grouping, rollups and
functions; formulas over named queries). Pure: text in, an expression tree out, or a
:class:`QueryError`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping


Unit = dict[str, Any]


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
