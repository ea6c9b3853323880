"""Comparison rules: the new version against the old, judged statistically.

A ``[[compare]]`` rule reads one grouped metric (``by {version}``) and compares the
canary group's points with the baseline group's over the same window, the way
Spinnaker's Kayenta judges a canary: a Mann-Whitney U test at a confidence level
(default 0.95) in the direction that is bad (``increase``, ``decrease`` or
``either``), and an effect size — the ratio of the canary's statistic (median by
default) to the baseline's — against an allowed and a critical ratio.

Per comparison the outcome is:

- **Fail**: the shift is significant (p < 1 - confidence) *and* the ratio is past the
  allowed one in a bad direction;
- **Marginal**: the ratio is past the allowed one but the test does not prove it
  (not significant) — shown, counted as a pass, as in Kayenta where only a
  significant High/Low fails a metric;
- **Pass**: otherwise;
- **No data**: fewer than ``min_samples`` fresh points on a side, or one version only
  (then the rule's ``no_data`` policy says what it means).

The **canary score** (0–100) is the weighted share of judged comparisons that pass.
A ``critical`` comparison that fails, or any Fail past its *critical* ratio, fails the
canary alone (score 0). Kayenta's defaults: a score under 50 (``marginal_score``)
fails the canary, under 75 (``pass_score``) is marginal. The score maps to rule
states so the verdict, the autopilot and the MTTR clock treat comparisons like any
rule: when the canary fails, each failing comparison is CRITICAL (its ``action`` —
pause, roll back — runs); when it is marginal, each failing comparison is WARN;
when it passes, every comparison is OK (a lone Fail outvoted by the others says so in
its reason).

The test is run off the event loop (:meth:`CompareBook.refresh`, scipy imported
lazily in the worker thread) and only when a side's points changed; judging the
rule book (:meth:`CompareBook.evaluate`) only reads the cached results.
"""

from __future__ import annotations

import asyncio
import math
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING

from engine.durations import window_words
from engine.rules import Evidence, NoDataPolicy, RuleState
from engine.wiring import freshness

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from engine.config import Settings
    from engine.rules import RuleBook, Series

PASS_SCORE = 75.0
"""Kayenta's default: a canary scoring at least this passes."""
MARGINAL_SCORE = 50.0
"""Kayenta's default: a canary scoring under this fails (between the two: marginal)."""
SCORE_RULE = "canary score"
"""The name of the score's own evidence."""
SCORE_SUBJECT = "compare:score"


class Direction(Enum):
    """Which way a change is bad."""

    INCREASE = "increase"
    DECREASE = "decrease"
    EITHER = "either"


class Outcome(Enum):
    """What one comparison says."""

    PASS = "Pass"
    MARGINAL = "Marginal"
    FAIL = "Fail"
    NO_DATA = "No data"


@dataclass(frozen=True, slots=True)
class CompareRule:
    """One ``[[compare]]``."""

    name: str
    subject: str
    """A grouped metric series, e.g. ``metric:web_p95_ms``."""
    baseline: str | None = None
    """The baseline group (``version:v1``); default: the group seen first."""
    canary: str | None = None
    """The canary group (``version:v2``); default: the group seen last."""
    direction: Direction = Direction.INCREASE
    confidence: float = 0.95
    statistic: str = "median"
    """``median`` or ``mean``: what the ratio compares and the line shows."""
    allowed_increase: float = 1.1
    critical_increase: float = 2.0
    allowed_decrease: float = 0.9
    critical_decrease: float = 0.5
    min_samples: int = 10
    """Fewest points per side in the window for a judgement."""
    window: timedelta = timedelta(minutes=5)
    no_data: NoDataPolicy = NoDataPolicy.NO_DATA
    """``no_data``: NO DATA, left out of the score; ``ok``: a pass; ``breach``: a fail."""
    weight: float = 1.0
    critical: bool = False
    """A Fail fails the canary alone."""
    action: str = "none"
    fresh_for: timedelta = timedelta(minutes=2)
    unit: str = ""


@dataclass(frozen=True, slots=True)
class Judgement:
    """The numbers of one comparison, and what they say."""

    outcome: Outcome
    baseline_group: str | None = None
    canary_group: str | None = None
    baseline_stat: float | None = None
    canary_stat: float | None = None
    ratio: float | None = None
    p_value: float | None = None
    baseline_n: int = 0
    canary_n: int = 0
    severe: bool = False
    """A Fail past the critical ratio (fails the canary alone)."""
    reason: str = ""
    """Why there is no judgement (too few samples, one version only)."""


def _tag(group: str | None) -> str:
    """``version:v2`` → ``v2``."""
    return "?" if group is None else group.split(":", 1)[-1]


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "?"
    if math.isinf(value):
        return "∞"
    text = f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if not unit:
        return text
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}"


def _ratio(value: float, limits: Iterable[float] = ()) -> str:
    """``1.6``, ``1.05`` (two decimals near 1, where they matter, and where one would
    read like a limit it is not: ``1.23 > 1.2``), ``∞``."""
    if math.isinf(value):
        return "∞"
    if abs(value) >= 100:
        return f"{value:.0f}"
    text = f"{value:.1f}" if abs(value - 1) >= 0.15 else f"{value:.2f}"
    if any(value != limit and f"{limit:.1f}" == text for limit in limits):
        text = f"{value:.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _p(value: float) -> str:
    if value < 0.001:
        return "<0.001"
    return "=" + (f"{value:.3f}".rstrip("0").rstrip(".") or "0")


def limit_words(rule: CompareRule, ratio: float, *, measured: bool = True) -> str:
    """``> ×1.1`` (past the allowed ratio), ``≤ ×1.1`` (within), ``> ×2 critical``
    (past the critical ratio, when ``measured`` against a non-zero baseline)."""
    up = rule.direction is not Direction.DECREASE
    down = rule.direction is not Direction.INCREASE
    if measured and up and ratio > rule.critical_increase:
        return f"> ×{_ratio(rule.critical_increase)} critical"
    if measured and down and ratio < rule.critical_decrease:
        return f"< ×{_ratio(rule.critical_decrease)} critical"
    if up and ratio > rule.allowed_increase:
        return f"> ×{_ratio(rule.allowed_increase)}"
    if down and ratio < rule.allowed_decrease:
        return f"< ×{_ratio(rule.allowed_decrease)}"
    if up and down:
        return f"within ×{_ratio(rule.allowed_decrease)}–×{_ratio(rule.allowed_increase)}"
    if up:
        return f"≤ ×{_ratio(rule.allowed_increase)}"
    return f"≥ ×{_ratio(rule.allowed_decrease)}"


def _limits(rule: CompareRule) -> tuple[float, ...]:
    return (
        rule.allowed_increase,
        rule.critical_increase,
        rule.allowed_decrease,
        rule.critical_decrease,
    )


def describe(rule: CompareRule, judgement: Judgement) -> str:
    """``p95 v2 131 ms vs v1 82 ms ×1.6 > ×1.1, p=0.003, 30/30 samples``."""
    j = judgement
    if j.ratio is None or j.p_value is None:
        return f"{rule.name}: {j.reason or 'no judgement yet'}"
    return (
        f"{rule.name} {_tag(j.canary_group)} {_value(j.canary_stat, rule.unit)} vs "
        f"{_tag(j.baseline_group)} {_value(j.baseline_stat, rule.unit)} "
        f"×{_ratio(j.ratio, _limits(rule))} {limit_words(rule, j.ratio, measured=j.baseline_stat != 0)}, "
        f"p{_p(j.p_value)}, "
        f"{j.canary_n}/{j.baseline_n} samples"
    )


def load_scipy() -> None:
    """Import the test's module (blocking, a second or two: call it in a thread early, so
    the first comparison does not wait for it)."""
    from scipy.stats import mannwhitneyu  # noqa: F401 - lazy: a heavy import


def judge_samples(
    rule: CompareRule,
    baseline: Sequence[float],
    canary: Sequence[float],
    groups: tuple[str | None, str | None] = (None, None),
) -> Judgement:
    """Compare two samples (blocking: scipy; run it off the event loop).

    Args:
        rule: The comparison.
        baseline: The baseline's values in the window.
        canary: The canary's values in the window.
        groups: ``(baseline group, canary group)``, carried into the judgement.
    """
    base_n, can_n = len(baseline), len(canary)
    if base_n < rule.min_samples or can_n < rule.min_samples:
        return Judgement(
            Outcome.NO_DATA,
            *groups,
            baseline_n=base_n,
            canary_n=can_n,
            reason=(
                f"too few samples: {can_n}/{base_n}, need {rule.min_samples} per side "
                f"in {window_words(rule.window)}"
            ),
        )
    center = statistics.median if rule.statistic == "median" else statistics.fmean
    base_stat, can_stat = float(center(baseline)), float(center(canary))
    if base_stat == 0:
        ratio = 1.0 if can_stat == 0 else (math.inf if can_stat > 0 else -math.inf)
    else:
        ratio = can_stat / base_stat
    if len({*baseline, *canary}) == 1:
        p_value = 1.0  # every value the same: no shift to test (the U test is undefined)
    else:
        from scipy.stats import mannwhitneyu  # lazy: a heavy import, made in the worker thread

        alternative = {
            Direction.INCREASE: "greater",
            Direction.DECREASE: "less",
            Direction.EITHER: "two-sided",
        }[rule.direction]
        result = mannwhitneyu(list(canary), list(baseline), alternative=alternative)
        p_value = float(result.pvalue)
        if math.isnan(p_value):
            p_value = 1.0
    up = rule.direction is not Direction.DECREASE
    down = rule.direction is not Direction.INCREASE
    past = (up and ratio > rule.allowed_increase) or (down and ratio < rule.allowed_decrease)
    # A zero baseline (no error at all in the window) makes any canary value an
    # infinite ratio: that is a Fail when significant, but not a proof of a critical
    # effect size, which needs a baseline to measure against.
    severe = base_stat != 0 and (
        (up and ratio > rule.critical_increase) or (down and ratio < rule.critical_decrease)
    )
    significant = p_value < 1 - rule.confidence
    if past and significant:
        outcome = Outcome.FAIL
    elif past:
        outcome = Outcome.MARGINAL
    else:
        outcome = Outcome.PASS
    return Judgement(
        outcome,
        *groups,
        baseline_stat=base_stat,
        canary_stat=can_stat,
        ratio=ratio,
        p_value=p_value,
        baseline_n=base_n,
        canary_n=can_n,
        severe=outcome is Outcome.FAIL and severe,
    )


@dataclass(frozen=True, slots=True)
class CompareEvidence(Evidence):
    """A comparison's evidence: its one line is the comparison's numbers."""

    rule_def: CompareRule | None = None
    judgement: Judgement | None = None
    outcome: Outcome = Outcome.NO_DATA
    """The comparison's own outcome (the state also weighs the canary score)."""
    score: float | None = None
    """The canary score this judgement saw (``None``: none yet)."""

    def summary(self) -> str:
        """``p95 v2 131 ms vs v1 82 ms ×1.6 > ×1.1, p=0.003, 30/30 samples``."""
        if self.rule_def is None:  # the score's own line
            return self.reason
        if self.state is RuleState.STALE:
            return f"{self.rule} · STALE · {self.reason}"
        judgement = self.judgement
        if judgement is None or judgement.ratio is None or self.outcome is Outcome.NO_DATA:
            return f"{self.rule}: {self.reason or 'no judgement yet'}"
        return describe(self.rule_def, judgement)


def score_of(judged: Iterable[tuple[CompareRule, Outcome, bool]]) -> tuple[float, bool] | None:
    """The canary score over judged comparisons, and whether a critical one failed it.

    Args:
        judged: ``(rule, outcome, severe)`` of each comparison with a judgement (a
            No data comparison left out, or counted as its policy says).

    Returns:
        ``(score 0..100, failed by a critical comparison)``; ``None`` with none judged.
    """
    total = passed = 0.0
    critical = False
    for rule, outcome, severe in judged:
        total += rule.weight
        if outcome is Outcome.FAIL:
            critical = critical or rule.critical or severe
        else:
            passed += rule.weight
    if total <= 0:
        return None
    return (0.0 if critical else 100.0 * passed / total), critical


def _natural(group: str | None) -> list[object]:
    """``version:v10`` after ``version:v9``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", group or "")]


@dataclass
class _Tracker:
    rule: CompareRule
    key: tuple[object, ...] | None = None
    """What the cached judgement was computed from (groups, and each side's points)."""
    judgement: Judgement | None = None
    fail_since: datetime | None = None
    computed: int = 0
    """How many times the test ran (tests check it does not run for nothing)."""


@dataclass
class _Work:
    tracker: _Tracker
    key: tuple[object, ...]
    baseline: list[float]
    canary: list[float]
    groups: tuple[str | None, str | None]


@dataclass
class CompareBook:
    """Every comparison, judged from the rule book's series.

    Args:
        rules: The comparisons, in config order.
        book: The rule book whose series they read (it is told to keep them).
        pass_score: A canary scoring at least this passes.
        marginal_score: A canary scoring under this fails.
    """

    rules: tuple[CompareRule, ...]
    book: RuleBook
    pass_score: float = PASS_SCORE
    marginal_score: float = MARGINAL_SCORE
    trackers: dict[str, _Tracker] = field(init=False)
    first_seen: dict[tuple[str, str | None], datetime] = field(init=False)
    """The first point of each group when it was first seen: the older version is the
    group whose points began earlier."""
    score: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.rules = tuple(self.rules)
        self.trackers = {rule.name: _Tracker(rule) for rule in self.rules}
        self.first_seen = {}
        for rule in self.rules:
            self.book.keep(rule.subject, rule.window + rule.fresh_for)

    # ---- which groups ----------------------------------------------------------------

    def pair(self, rule: CompareRule, now: datetime) -> tuple[str | None, str | None]:
        """The baseline and canary groups of ``rule`` now (``None``: none fits).

        Unless the rule names them, the baseline is the reporting group whose points
        began first (the version that served before the deployment), the canary the
        one whose points began last; equal starts are ordered by their tag value
        naturally (``v9`` before ``v10``).
        """
        seen = []
        for group in self.book.subject_groups(rule.subject):
            series = self.book.series.get((rule.subject, group))
            if group is None or series is None or series.latest is None:
                continue
            self.first_seen.setdefault((rule.subject, group), series.points[0].at)
            if now - series.latest.at <= rule.fresh_for:
                seen.append(group)
        order = sorted(seen, key=lambda g: (self.first_seen[(rule.subject, g)], _natural(g)))
        baseline = rule.baseline or next((g for g in order if g != rule.canary), None)
        canary = rule.canary or next((g for g in reversed(order) if g != baseline), None)
        return baseline, canary

    def _values(self, rule: CompareRule, group: str | None, now: datetime) -> list[float]:
        series: Series | None = self.book.series.get((rule.subject, group))
        if series is None or group is None:
            return []
        latest = series.latest
        if latest is None or now - latest.at > rule.fresh_for:
            return []
        start = now - rule.window
        return [p.value for p in series.points if p.at >= start and math.isfinite(p.value)]

    # ---- judging ---------------------------------------------------------------------

    def _due(self, now: datetime) -> list[_Work]:
        """Comparisons whose points changed since they were last judged."""
        work = []
        for tracker in self.trackers.values():
            rule = tracker.rule
            groups = self.pair(rule, now)
            baseline = self._values(rule, groups[0], now)
            canary = self._values(rule, groups[1], now)
            key = (groups, tuple(baseline), tuple(canary))
            if key != tracker.key:
                work.append(_Work(tracker, key, baseline, canary, groups))
        return work

    def outdated(self, now: datetime) -> bool:
        """Whether some comparison's points changed since it was last judged."""
        return bool(self.rules) and bool(self._due(now))

    @staticmethod
    def _compute(work: list[_Work]) -> list[Judgement]:
        return [judge_samples(w.tracker.rule, w.baseline, w.canary, w.groups) for w in work]

    async def refresh(
        self,
        now: datetime,
        run: Callable[
            [Callable[[list[_Work]], list[Judgement]], list[_Work]], Awaitable[list[Judgement]]
        ]
        | None = None,
    ) -> int:
        """Judge, off the event loop, every comparison whose points changed.

        Args:
            now: Current time.
            run: Runs the blocking test (default: :func:`asyncio.to_thread`).

        Returns:
            How many comparisons were judged.
        """
        work = self._due(now)
        if not work:
            return 0
        runner = run or asyncio.to_thread
        judgements = await runner(self._compute, work)
        for item, judgement in zip(work, judgements, strict=True):
            item.tracker.key = item.key
            item.tracker.judgement = judgement
            item.tracker.computed += 1
        return len(work)

    def refresh_now(self, now: datetime) -> int:
        """:meth:`refresh` on the caller's thread (tests, tools without a loop)."""
        work = self._due(now)
        for item, judgement in zip(work, self._compute(work), strict=True):
            item.tracker.key = item.key
            item.tracker.judgement = judgement
            item.tracker.computed += 1
        return len(work)

    def evaluate(
        self,
        now: datetime,
        source_errors: Callable[[str, str | None], str | None] = lambda _s, _g: None,
    ) -> list[Evidence]:
        """Every comparison's evidence, then the canary score's (cached judgements)."""
        if not self.rules:
            return []
        outcomes: list[tuple[_Tracker, Outcome, str]] = []
        for tracker in self.trackers.values():
            rule = tracker.rule
            judgement = tracker.judgement
            groups = self.pair(rule, now)
            stale = next((e for g in groups if (e := source_errors(rule.subject, g))), None)
            if stale is not None:
                outcomes.append((tracker, Outcome.NO_DATA, f"stale: {stale}"))
                continue
            if judgement is None or judgement.outcome is Outcome.NO_DATA:
                reason = judgement.reason if judgement is not None else "not judged yet"
                if groups[1] is None or groups[0] is None:
                    reason = "one version only: nothing to compare"
                outcomes.append((tracker, Outcome.NO_DATA, reason))
                continue
            outcomes.append((tracker, judgement.outcome, ""))
        scored = []
        for tracker, outcome, _reason in outcomes:
            rule = tracker.rule
            if outcome is Outcome.NO_DATA:
                if rule.no_data is NoDataPolicy.OK:
                    scored.append((rule, Outcome.PASS, False))
                elif rule.no_data is NoDataPolicy.BREACH:
                    scored.append((rule, Outcome.FAIL, False))
                continue
            severe = tracker.judgement is not None and tracker.judgement.severe
            scored.append((rule, outcome, severe))
        result = score_of(scored)
        self.score = None if result is None else result[0]
        verdict = self._score_state(result)
        evidence: list[Evidence] = []
        for tracker, outcome, reason in outcomes:
            evidence.append(self._evidence(tracker, outcome, reason, verdict, now))
        evidence.append(self._score_evidence(result, verdict, scored, now))
        return evidence

    def _score_state(self, result: tuple[float, bool] | None) -> RuleState:
        if result is None:
            return RuleState.NO_DATA
        score, critical = result
        if critical or score < self.marginal_score:
            return RuleState.CRITICAL
        if score < self.pass_score:
            return RuleState.WARN
        return RuleState.OK

    def _evidence(
        self, tracker: _Tracker, outcome: Outcome, reason: str, verdict: RuleState, now: datetime
    ) -> CompareEvidence:
        rule, judgement = tracker.rule, tracker.judgement
        failing = outcome is Outcome.FAIL
        if not failing:
            tracker.fail_since = None
        elif tracker.fail_since is None:
            tracker.fail_since = now
        if reason.startswith("stale: "):
            state, reason = RuleState.STALE, reason.removeprefix("stale: ")
        elif outcome is Outcome.NO_DATA:
            policy = rule.no_data
            if policy is NoDataPolicy.OK:
                state, reason = RuleState.OK, f"{reason} (policy: ok)"
            elif policy is NoDataPolicy.BREACH:
                state, reason = verdict, f"{reason} (policy: breach)"
            else:
                state = RuleState.NO_DATA
        elif failing and verdict in (RuleState.CRITICAL, RuleState.WARN):
            state = verdict
        elif failing:
            state, reason = RuleState.OK, f"Fail outvoted: canary score {self.score:.0f} passes"
        else:
            state, reason = RuleState.OK, outcome.value
        op = ">" if rule.direction is not Direction.DECREASE else "<"
        limit = rule.allowed_increase if op == ">" else rule.allowed_decrease
        held = now - tracker.fail_since if tracker.fail_since is not None else None
        return CompareEvidence(
            rule=rule.name,
            state=state,
            value=None if judgement is None else judgement.ratio,
            threshold=limit,
            op=op,
            window=rule.window,
            samples=0 if judgement is None else judgement.canary_n,
            since=tracker.fail_since,
            breached_for=held,
            unit="",
            reason=reason,
            group=None if judgement is None else judgement.canary_group,
            subject=rule.subject,
            action=rule.action,
            rule_def=rule,
            judgement=judgement,
            outcome=outcome,
            score=self.score,
        )

    def _score_evidence(
        self,
        result: tuple[float, bool] | None,
        state: RuleState,
        scored: list[tuple[CompareRule, Outcome, bool]],
        now: datetime,
    ) -> CompareEvidence:
        fails = [rule.name for rule, outcome, _s in scored if outcome is Outcome.FAIL]
        if result is None:
            words = f"{SCORE_RULE}: no comparison judged yet"
        else:
            score, critical = result
            limits = f"fail < {self.marginal_score:g}, pass ≥ {self.pass_score:g}"
            words = f"{SCORE_RULE} {score:.0f}/100 ({limits}; {len(scored) - len(fails)}/{len(scored)} pass"
            if fails:
                words += f"; failing: {', '.join(fails)}"
            if critical:
                words += "; a critical comparison failed"
            words += ")"
        return CompareEvidence(
            rule=SCORE_RULE,
            state=state,
            value=None if result is None else result[0],
            threshold=self.marginal_score,
            op="<",
            window=timedelta(0),
            samples=len(scored),
            since=None,
            breached_for=None,
            reason=words,
            subject=SCORE_SUBJECT,
            outcome=Outcome.NO_DATA,
            score=None if result is None else result[0],
        )

    def next_change(self, now: datetime) -> datetime | None:
        """The earliest time a comparison can change with no new data: a side's newest
        point ageing past freshness, or its oldest leaving the window."""
        soonest: datetime | None = None
        for rule in self.rules:
            for group in self.pair(rule, now):
                series = self.book.series.get((rule.subject, group))
                if series is None or series.latest is None:
                    continue
                start = now - rule.window
                oldest = next((p.at for p in series.points if p.at >= start), None)
                times = [series.latest.at + rule.fresh_for]
                if oldest is not None:
                    times.append(oldest + rule.window)
                for when in times:
                    if when > now and (soonest is None or when < soonest):
                        soonest = when
        return soonest


def build_comparebook(settings: Settings, book: RuleBook) -> CompareBook:
    """The comparisons of a config, reading ``book``'s series."""
    rules = []
    for c in settings.compares:
        name = c.subject.removeprefix("metric:")
        unit = next((m.unit for m in settings.metrics if m.name == name), "")
        rules.append(
            CompareRule(
                name=c.name,
                subject=c.subject,
                baseline=c.baseline,
                canary=c.canary,
                direction=Direction(c.direction),
                confidence=c.confidence,
                statistic=c.statistic,
                allowed_increase=c.allowed_increase,
                critical_increase=c.critical_increase,
                allowed_decrease=c.allowed_decrease,
                critical_decrease=c.critical_decrease,
                min_samples=c.min_samples,
                window=c.window,
                no_data=NoDataPolicy(c.no_data),
                weight=c.weight,
                critical=c.critical,
                action=c.action,
                fresh_for=freshness(settings, c.subject),
                unit=unit,
            )
        )
    return CompareBook(
        tuple(rules),
        book,
        pass_score=settings.judge.pass_score,
        marginal_score=settings.judge.marginal_score,
    )
