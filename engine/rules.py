"""Threshold rules with a ``for`` window, judged from bounded series, with evidence.

Semantics (the same as Prometheus' ``for``): a rule *breaches* once its condition
has held on every sample for the whole window. A gap is never data: when the newest
sample is older than the rule's freshness bound, the rule is NO DATA (or STALE when
its source is failing), never OK and never CRITICAL — unless its ``no_data`` policy
explicitly says otherwise.
"""

from __future__ import annotations

import itertools
import operator
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING

from engine.durations import window_words as _dur

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

SERIES_MAX_POINTS = 2048
"""Bound on the points kept per series (beyond the time window, oldest dropped)."""
JUST_AFTER = timedelta(microseconds=1)
"""How long after a strict bound (``older than``) a rule is judged again."""
STEP_POINTS = 4
"""Newest points whose spacing tells a series' bucket size."""


class RuleState(Enum):
    """What a rule says now."""

    OK = "OK"
    WARN = "WARN"
    CRITICAL = "CRITICAL"
    NO_DATA = "NO DATA"
    STALE = "STALE"

    @property
    def rank(self) -> int:
        """Severity order for sorting: CRITICAL first."""
        return _RANK[self]


_RANK = {
    RuleState.CRITICAL: 0,
    RuleState.WARN: 1,
    RuleState.STALE: 2,
    RuleState.NO_DATA: 3,
    RuleState.OK: 4,
}


class Severity(Enum):
    """How bad a breach is."""

    WARN = "warn"
    CRITICAL = "critical"


class NoDataPolicy(Enum):
    """What a rule says when its subject has no fresh data."""

    NO_DATA = "no_data"
    """Say NO DATA (the default: a gap is not evidence either way)."""
    OK = "ok"
    """Treat silence as fine (e.g. "new Sentry issues": none reported is good)."""
    BREACH = "breach"
    """Treat silence as a breach (e.g. a heartbeat that must keep coming)."""


OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True, slots=True)
class Point:
    """One measured value of a series."""

    at: datetime
    value: float


class Series:
    """A bounded, time-ordered run of points for one subject.

    Args:
        keep: How much history to keep (the longest window that reads it).
        max_points: Hard bound on points, whatever the time span.
    """

    def __init__(self, keep: timedelta, max_points: int = SERIES_MAX_POINTS) -> None:
        self.keep = keep
        self.points: deque[Point] = deque(maxlen=max_points)
        self._step: timedelta | None = None
        """:attr:`step`, until the next point (every judgement and wake reads it)."""

    def add(self, at: datetime, value: float) -> None:
        """Append a point (an out-of-order point older than the newest is ignored)."""
        if self.points and at < self.points[-1].at:
            return
        self._step = None
        if self.points and at == self.points[-1].at:
            self.points[-1] = Point(at, value)  # a re-read of the same bucket wins
        else:
            self.points.append(Point(at, value))
        horizon = at - self.keep
        while self.points and self.points[0].at < horizon:
            self.points.popleft()

    @property
    def latest(self) -> Point | None:
        """The newest point."""
        return self.points[-1] if self.points else None

    @property
    def step(self) -> timedelta:
        """The span a point stands for (its bucket): the smallest spacing among the
        newest points (a gap between two of them is not a bucket); zero with fewer than
        two."""
        step = self._step
        if step is None:
            newest = [self.points[-i].at for i in range(1, min(STEP_POINTS, len(self.points)) + 1)]
            pairs = itertools.pairwise(newest)
            step = self._step = min((a - b for a, b in pairs), default=timedelta(0))
        return step

    def count_from(self, start: datetime, step: timedelta = timedelta(0)) -> int:
        """How many points reach into ``[start, …)``: at or after it, or with their
        bucket (``step``) ending after it. Counted from the newest (a window is usually
        a small part of what is kept)."""
        count = 0
        for point in reversed(self.points):
            if point.at >= start or point.at + step > start:
                count += 1
            else:
                break
        return count

    def since(self, start: datetime) -> list[Point]:
        """Points at or after ``start``, oldest first."""
        return [p for p in self.points if p.at >= start]


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[[rule]]``: subject, comparison, window, severity, action, no-data policy."""

    name: str
    subject: str
    """Series key, e.g. ``metric:error_rate@demo/web#new``, ``probe:web-health``."""
    op: str
    threshold: float
    window: timedelta
    severity: Severity
    action: str = "none"
    """``none``, ``pause`` or ``rollback`` (executed by the actions layer)."""
    no_data: NoDataPolicy = NoDataPolicy.NO_DATA
    fresh_for: timedelta = timedelta(minutes=2)
    """A newest point older than this is no data."""
    unit: str = ""

    def breaches(self, value: float) -> bool:
        """Does one value violate the threshold?"""
        return OPERATORS[self.op](value, self.threshold)

    def describe(self) -> str:
        """``error_rate > 5% for 5m``."""
        return f"{self.subject} {self.op} {_fmt(self.threshold)}{self.unit} for {_dur(self.window)}"


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why a rule says what it says — shown next to every verdict."""

    rule: str
    state: RuleState
    value: float | None
    """The newest measured value, or ``None`` with no data."""
    threshold: float
    op: str
    window: timedelta
    samples: int
    """Points inside the window."""
    since: datetime | None
    """When the current breach (or pending breach) began; when no data began."""
    breached_for: timedelta | None
    """How long the condition has held (pending or firing)."""
    unit: str = ""
    reason: str = ""
    """Extra words: "pending 1m12s of 5m", the source's error when STALE."""
    group: str | None = None
    """The group judged, e.g. ``version:v2``, for a grouped subject."""
    subject: str = ""
    action: str = "none"
    """The rule's action (``none``, ``pause``, ``rollback``)."""

    def summary(self) -> str:
        """``error rate [version:v2] 14.8% > 5% for 5m · 31 samples · since 02:03:10``."""
        value = "—" if self.value is None else f"{_fmt(self.value)}{self.unit}"
        name = f"{self.rule} [{self.group}]" if self.group else self.rule
        limit = f"{_fmt(self.threshold)}{self.unit}"
        if self.window:
            parts = [f"{name} {value} {self.op} {limit} for {_dur(self.window)}"]
            parts.append(f"{self.samples} sample{'s' if self.samples != 1 else ''}")
        else:  # an instant rule: the latest value decides, there is no window to count
            parts = [f"{name} {value} {self.op} {limit}"]
        if self.since is not None:
            parts.append(f"since {self.since.strftime('%H:%M:%S')}")
        if self.reason:
            parts.append(self.reason)
        return " · ".join(parts)


@dataclass
class RuleTracker:
    """Follows one rule over time: its current breach streak."""

    rule: Rule
    group: str | None = None
    streak_start: datetime | None = None
    """First point of the current run of violating points."""
    last_seen: datetime | None = None
    """Newest point already folded into the streak."""
    evidence: Evidence | None = None
    stale_point: datetime | None = None
    """The newest point when the rule was last judged without fresh data. Until a newer
    point comes (which wakes the watch), the clock only makes that point older: the
    rule cannot change by the clock alone."""

    def evaluate(
        self, series: Series | None, now: datetime, source_error: str | None = None
    ) -> Evidence:
        """Judge the rule at ``now``.

        Args:
            series: The subject's points (``None`` if never seen).
            now: Current time.
            source_error: Set when the subject's source is failing right now.

        Returns:
            The evidence, also kept on ``self.evidence``.
        """
        rule = self.rule
        latest = series.latest if series is not None else None
        fresh = latest is not None and now - latest.at <= rule.fresh_for
        step = timedelta(0)
        if series is not None and latest is not None:
            self._fold(series)
            # A breach is only claimed while it is observed: when the newest point's
            # bucket does not reach into a non-zero window (e.g. a version that no
            # longer gets traffic after a rollback), the rule has no data, whatever its
            # last point said. A point stands for its whole bucket (up to the next
            # point): sparse points (10 s buckets under a 20 s window) are not a gap
            # between two of them, and their streak is not restarted. A lone point's
            # bucket is unknown: it stands for at most one window.
            step = series.step if len(series.points) > 1 else rule.window
            if fresh and rule.window > timedelta(0) and latest.at + step < now - rule.window:
                fresh = False
        self.stale_point = latest.at if latest is not None and not fresh else None
        if source_error is not None:
            # The source is failing right now: what it said before is not evidence that
            # all is well (nor that it is not). STALE at once; the streak is kept so a
            # short outage does not restart a breach's window.
            evidence = self._no_data(series, latest, now, source_error)
            self.evidence = evidence
            return evidence
        if not fresh:
            self.streak_start = None
            evidence = self._no_data(series, latest, now, source_error)
        else:
            assert latest is not None and series is not None
            # Samples: the points whose bucket reaches into the window.
            start = now - rule.window
            in_window = series.count_from(start, step)
            held = now - self.streak_start if self.streak_start is not None else None
            if held is not None and held >= rule.window:
                state = RuleState.CRITICAL if rule.severity is Severity.CRITICAL else RuleState.WARN
                reason = ""
            else:
                state = RuleState.OK
                reason = f"pending {_dur(held)} of {_dur(rule.window)}" if held is not None else ""
            evidence = Evidence(
                rule=rule.name,
                state=state,
                value=latest.value,
                threshold=rule.threshold,
                op=rule.op,
                window=rule.window,
                samples=in_window,
                since=self.streak_start,
                breached_for=held,
                unit=rule.unit,
                reason=reason,
                group=self.group,
                subject=rule.subject,
                action=rule.action,
            )
        self.evidence = evidence
        return evidence

    def next_change(self, series: Series | None, now: datetime) -> datetime | None:
        """The earliest time after ``now`` at which this rule can change state with no
        new data: its newest point ageing past freshness, its window emptying, or a
        pending breach maturing. ``None`` when only new data can change it."""
        latest = series.latest if series is not None else None
        if latest is None or latest.at == self.stale_point:
            return None  # (no data yet, or none fresh at the last judgement: only data)
        rule = self.rule
        # Freshness ends just *after* its bound (a point exactly ``fresh_for`` old is
        # still fresh): wake a microsecond later, or the judgement at the bound itself
        # would see no change and the next would come only with the safety net.
        times = [latest.at + rule.fresh_for + JUST_AFTER]
        if rule.window > timedelta(0):
            times.append(latest.at + rule.window)
            # The newest point's bucket leaving the window (see evaluate()).
            step = series.step if series is not None and len(series.points) > 1 else rule.window
            times.append(latest.at + step + rule.window + JUST_AFTER)
            if self.streak_start is not None:
                times.append(self.streak_start + rule.window)
        later = [t for t in times if t > now]
        return min(later) if later else None

    def _fold(self, series: Series) -> None:
        """Advance the streak over points not yet seen (found from the newest end: a
        judgement usually has a point or none to fold, in a series of a hundred)."""
        points = series.points
        first = 0
        if self.last_seen is not None:
            first = len(points)
            for point in reversed(points):
                if point.at <= self.last_seen:
                    break
                first -= 1
        for index in range(first, len(points)):
            point = points[index]
            if self.rule.breaches(point.value):
                if self.streak_start is None:
                    self.streak_start = point.at
            else:
                self.streak_start = None
            self.last_seen = point.at

    def _no_data(
        self, series: Series | None, latest: Point | None, now: datetime, source_error: str | None
    ) -> Evidence:
        rule = self.rule
        policy = rule.no_data
        if source_error is not None:
            state, reason = RuleState.STALE, source_error
        elif policy is NoDataPolicy.OK:
            state, reason = RuleState.OK, "no data (policy: ok)"
        elif policy is NoDataPolicy.BREACH:
            severe = rule.severity is Severity.CRITICAL
            state = RuleState.CRITICAL if severe else RuleState.WARN
            reason = "no data (policy: breach)"
        else:
            state, reason = RuleState.NO_DATA, "no fresh data"
        age = f"last point {_dur(now - latest.at)} ago" if latest is not None else "never seen"
        return Evidence(
            rule=rule.name,
            state=state,
            value=None,
            threshold=rule.threshold,
            op=rule.op,
            window=rule.window,
            samples=0 if series is None else len(series.since(now - rule.window)),
            since=latest.at if latest is not None else None,
            breached_for=None,
            unit=rule.unit,
            reason=f"{reason}; {age}",
            group=self.group,
            subject=rule.subject,
            action=rule.action,
        )


class RuleBook:
    """All rules, their series (one per subject and group) and their trackers.

    A subject may arrive in groups (a Datadog query ``by {version}``): each group is a
    series of its own, judged on its own; the rule says what its worst group says.

    Args:
        rules: The rules, in config order.
        scope: Optional group filter per rule name (e.g. a service key, ``version:v2``).
    """

    def __init__(self, rules: Iterable[Rule], scope: dict[str, str] | None = None) -> None:
        self.rules = tuple(rules)
        self.scope = dict(scope or {})
        self.series: dict[tuple[str, str | None], Series] = {}
        self.trackers: dict[tuple[str, str | None], RuleTracker] = {}
        self._keep: dict[str, timedelta] = {}
        self._groups: dict[str, list[str | None]] = {}
        """Groups seen per subject (an index: scanning every series per rule would be quadratic)."""
        for rule in self.rules:
            span = rule.window + rule.fresh_for
            self._keep[rule.subject] = max(self._keep.get(rule.subject, timedelta()), span)

    def record(self, subject: str, at: datetime, value: float, group: str | None = None) -> bool:
        """Add a point to a subject that some rule reads; returns whether one does."""
        keep = self._keep.get(subject)
        if keep is None:
            return False
        series = self.series.get((subject, group))
        if series is None:
            series = self.series[(subject, group)] = Series(keep)
            self._groups.setdefault(subject, []).append(group)
        series.add(at, value)
        return True

    def record_points(
        self,
        subject: str,
        points: Iterable[tuple[datetime, float | None]],
        group: str | None = None,
    ) -> None:
        """:meth:`record` each point with a value, as ``record`` would take it; points
        older than the series' newest are skipped at once (a source that re-reads its
        whole window each time brings one or two new points among a hundred)."""
        keep = self._keep.get(subject)
        if keep is None:
            return
        series = self.series.get((subject, group))
        latest = series.latest if series is not None else None
        newest = latest.at if latest is not None else None
        for at, value in points:
            if value is None or (newest is not None and at < newest):
                continue
            self.record(subject, at, value, group)

    def keep(self, subject: str, span: timedelta) -> None:
        """Keep ``subject``'s points for at least ``span`` (a reader other than a
        threshold rule, such as a comparison, needs them)."""
        self._keep[subject] = max(self._keep.get(subject, timedelta()), span)

    def subject_groups(self, subject: str) -> list[str | None]:
        """The groups of ``subject`` seen so far, in the order they were first seen."""
        return list(self._groups.get(subject, ()))

    def groups(self, rule: Rule) -> list[str | None]:
        """The groups of ``rule``'s subject seen so far, within its scope."""
        wanted = self.scope.get(rule.name)
        seen = self._groups.get(rule.subject, ())
        found = [g for g in seen if wanted is None or g == wanted]
        return found or [wanted]

    def evaluate(
        self,
        now: datetime,
        source_errors: Callable[[str, str | None], str | None] = lambda _s, _g: None,
    ) -> list[Evidence]:
        """Judge every rule (its worst group); worst rule first.

        Args:
            now: Current time.
            source_errors: The current error of the source behind ``(subject, group)``,
                or ``None`` when it answers.
        """
        results = []
        for rule in self.rules:
            per_group = []
            for group in self.groups(rule):
                tracker = self.trackers.get((rule.name, group))
                if tracker is None:
                    tracker = self.trackers[(rule.name, group)] = RuleTracker(rule, group)
                series = self.series.get((rule.subject, group))
                error = source_errors(rule.subject, group)
                per_group.append(tracker.evaluate(series, now, error))
            # A group that stopped reporting (the old version after a full rollout)
            # does not drag down the groups that do report.
            reporting = [e for e in per_group if e.state is not RuleState.NO_DATA]
            results.append(min(reporting or per_group, key=_badness))
        return sorted(results, key=lambda e: e.state.rank)

    def next_change(self, now: datetime) -> datetime | None:
        """The earliest time after ``now`` at which some rule can change with no new data."""
        soonest: datetime | None = None
        for (_name, group), tracker in self.trackers.items():
            when = tracker.next_change(self.series.get((tracker.rule.subject, group)), now)
            if when is not None and (soonest is None or when < soonest):
                soonest = when
        return soonest


def _badness(evidence: Evidence) -> tuple[int, float]:
    """Worst state first; among equals, the one breaching longest."""
    held = evidence.breached_for.total_seconds() if evidence.breached_for else 0.0
    return (evidence.state.rank, -held)


def _fmt(value: float) -> str:
    return f"{value:.4g}"
