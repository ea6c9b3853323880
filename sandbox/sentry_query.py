"""The local Sentry's search language: the ``query`` of the issues and events-stats
endpoints (``is:``, ``release:``, ``firstSeen:>-1h``, negation, free text) and the
``statsPeriod``/``start``/``end`` forms of a time window. Pure: text in, filters out, or a
400."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


_PERIOD_RE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_STATUSES = {"unresolved", "resolved", "ignored"}


class _BadRequest(Exception):
    """A 4xx answer with Sentry's ``{"detail": ...}`` body."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


def _parse_datetime(text: str) -> float:
    value = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _BadRequest(f"Invalid date: {text!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _parse_duration(text: str) -> float:
    match = _PERIOD_RE.match(text.strip())
    if not match:
        raise _BadRequest(f"Invalid duration {text!r}: use e.g. 30m, 24h, 14d")
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class _Filters:
    """Parsed search query."""

    statuses: set[str] | None = None
    releases: set[str] | None = None
    first_releases: set[str] | None = None
    environments: set[str] | None = None
    levels: set[str] | None = None
    error_types: set[str] | None = None
    short_ids: set[str] | None = None
    first_seen: list[tuple[str, float]] = field(default_factory=list)
    last_seen: list[tuple[str, float]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    negated: list[tuple[str, set[str]]] = field(default_factory=list)


_ISSUE_KEYS = {
    "is",
    "release",
    "firstRelease",
    "firstSeen",
    "lastSeen",
    "level",
    "environment",
    "error.type",
    "issue",
    "event.type",
}
_EVENT_KEYS = {"release", "environment", "level", "error.type", "issue", "event.type"}


def _values(raw: str) -> set[str]:
    if raw.startswith("[") and raw.endswith("]"):
        return {v.strip().strip('"') for v in raw[1:-1].split(",") if v.strip()}
    return {raw}


def _date_condition(raw: str, now: float) -> tuple[str, float]:
    op = ">="
    for candidate in (">=", "<=", ">", "<"):
        if raw.startswith(candidate):
            op, raw = candidate, raw[len(candidate) :]
            break
    else:
        if raw.startswith("+"):
            return "<", now - _parse_duration(raw[1:])
        if raw.startswith("-"):
            return ">=", now - _parse_duration(raw[1:])
    rel = raw[1:] if raw.startswith(("-", "+")) else raw
    if _PERIOD_RE.match(rel):
        return op, now - _parse_duration(rel)
    return op, _parse_datetime(raw)


def _compare(value: float, op: str, bound: float) -> bool:
    if op == ">":
        return value > bound
    if op == ">=":
        return value >= bound
    if op == "<":
        return value < bound
    return value <= bound


def _parse_query(query: str, now: float, allowed: set[str]) -> _Filters:
    filters = _Filters()
    try:
        tokens = shlex.split(query)
    except ValueError as exc:
        raise _BadRequest(f"Invalid search query: {exc}") from exc
    for token in tokens:
        negate = token.startswith("!")
        body = token[1:] if negate else token
        key, sep, raw = body.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z_.]+", key):
            filters.text.append(token.lower())
            continue
        if key not in allowed:
            raise _BadRequest(
                f"Invalid search query: the sandbox does not support the key {key!r} "
                f"(supported: {', '.join(sorted(allowed))})"
            )
        if not raw:
            raise _BadRequest(f"Invalid search query: empty value for {key!r}")
        if negate:
            if key in ("firstSeen", "lastSeen"):
                raise _BadRequest(f"Invalid search query: cannot negate {key}")
            filters.negated.append((key, _values(raw)))
            continue
        if key == "is":
            value = raw.lower()
            if value == "archived":
                value = "ignored"
            if value in _STATUSES:
                filters.statuses = (filters.statuses or set()) | {value}
            elif value == "unassigned":
                pass  # nothing is ever assigned in the sandbox
            elif value in ("assigned", "for_review", "bookmarked", "linked"):
                filters.statuses = {"__none__"}
            else:
                raise _BadRequest(f"Invalid search query: unsupported is:{raw}")
        elif key == "release":
            filters.releases = _values(raw)
        elif key == "firstRelease":
            filters.first_releases = _values(raw)
        elif key == "environment":
            filters.environments = _values(raw)
        elif key == "level":
            filters.levels = _values(raw)
        elif key == "error.type":
            filters.error_types = _values(raw)
        elif key == "issue":
            filters.short_ids = {v.upper() for v in _values(raw)}
        elif key == "event.type":
            if _values(raw) - {"error", "default"}:
                raise _BadRequest("Invalid search query: only event.type:error is stored")
        elif key == "firstSeen":
            filters.first_seen.append(_date_condition(raw, now))
        elif key == "lastSeen":
            filters.last_seen.append(_date_condition(raw, now))
    return filters
