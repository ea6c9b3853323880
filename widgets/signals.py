"""Verdict banner and the metrics, errors and probes panes.

Each pane is one widget rendering a few lines of text: the screen hands it the
latest state and the rules' evidence; it repaints only when told something changed
(or on resize). Breaching values are drawn in the error tone, next to the threshold
they break. Nothing here calls an API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from rich.text import Text
from textual.containers import Vertical

from engine.compare import CompareEvidence, Outcome
from engine.durations import ago_words as ago
from engine.durations import span_words as age_text
from engine.durations import window_words as _per
from engine.rules import OPERATORS, RuleState
from engine.verdict import Verdict
from widgets.format import number, spark, threshold_ceiling
from widgets.rowlist import RowList
from widgets.safe import clean
from widgets.tones import Toned

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from textual.app import ComposeResult

    from engine.rules import Evidence
    from engine.verdict import Report
    from sources.model import MetricSample, ProbeSample, SentrySample, SourceFailure

BANNER_LINES = 4
"""Reasons shown under the verdict before "and N more"."""
ISSUES_SHOWN = 8
"""Sentry issues listed in the errors pane."""
TITLE_MAX = 160
"""Longest Sentry issue title shown (longer ones end in "…"): one issue never pushes
the others out of the pane."""
RELEASE_MAX = 60
"""Longest release name shown (versions and commit SHAs are far shorter)."""

_STATE_TONE = {
    RuleState.OK: "ok",
    RuleState.WARN: "warn",
    RuleState.CRITICAL: "bad",
    RuleState.NO_DATA: "none",
    RuleState.STALE: "warn",
}
_VERDICT_CLASS = {
    Verdict.HEALTHY: "-healthy",
    Verdict.DEGRADED: "-degraded",
    Verdict.FAILING: "-failing",
    Verdict.ROLLED_BACK: "-rolled-back",
    Verdict.NO_DATA: "-no-data",
}
_VERDICT_TONE = {
    Verdict.HEALTHY: "ok",
    Verdict.DEGRADED: "warn",
    Verdict.FAILING: "bad",
    Verdict.ROLLED_BACK: "busy",
    Verdict.NO_DATA: "none",
}


def _stale_line(text: Text, widget: Toned, failure: SourceFailure | None, now: datetime) -> None:
    """`` STALE 12s  http 503: ...`` — the pane keeps its last data below."""
    if failure is None:
        return
    age = (now - failure.at).total_seconds()
    text.append(f" STALE {age_text(age)} ", widget.tone("stale"))
    text.append(f" {clean(failure.reason)}: {clean(failure.error)}\n", widget.tone("warn"))


def spark_line(
    text: Text, cells: Sequence[tuple[str, str]], tone: Callable[[str], str], ok: str
) -> None:
    """Append a sparkline's cells to ``text``, one span per run of cells of a kind (a
    span per cell costs every render and every byte sent); ``ok`` is the tone of cells
    that breach nothing."""
    kinds = {"bad": "bad", "gap": "muted"}
    run: list[str] = []
    kind = ""
    for char, cell_kind in cells:
        if cell_kind != kind and run:
            text.append("".join(run), tone(kinds.get(kind, ok)))
            run = []
        kind = cell_kind
        run.append(char)
    if run:
        text.append("".join(run), tone(kinds.get(kind, ok)))


def shown(evidence: Sequence[Evidence]) -> tuple[tuple[object, ...], ...]:
    """What the panes show of some evidence: rule, comparison, action, state and, when
    OK, its reason. A new judgement that changes none of it (a sample count, an age)
    changes nothing on screen, and the pane is left alone."""
    return tuple(
        (
            e.subject,
            e.rule,
            e.op,
            e.threshold,
            e.action,
            e.state,
            e.reason if e.state is RuleState.OK else "",
            e.summary() if isinstance(e, CompareEvidence) else "",
        )
        for e in evidence
    )


def thresholds(evidence: Sequence[Evidence]) -> tuple[Evidence, ...]:
    """The threshold rules' evidence (a comparison's has no threshold on the scale)."""
    return tuple(e for e in evidence if not isinstance(e, CompareEvidence))


def comparisons(evidence: Sequence[Evidence]) -> tuple[CompareEvidence, ...]:
    """The comparison rules' evidence, in a stable order."""
    found = [e for e in evidence if isinstance(e, CompareEvidence)]
    return tuple(sorted(found, key=lambda e: e.rule))


def compare_text(evidence: CompareEvidence) -> str:
    """One comparison as its line under the sparklines it judged: the outcome, then the
    numbers (``Fail     p95 v2 131 ms vs v1 82 ms ×1.6 > ×1.1, p=0.003, 30/30
    samples``); a narrow pane wraps it, never cuts it."""
    word = evidence.outcome.value if evidence.state is not RuleState.STALE else "STALE"
    line = f"  {word:<8} {clean(evidence.summary())}"
    if evidence.state is RuleState.OK and evidence.outcome is Outcome.FAIL:
        line += " (outvoted)"
    return line


def _breach_test(evidence: Sequence[Evidence]) -> Callable[[float], bool] | None:
    tests = [(OPERATORS[e.op], e.threshold) for e in evidence]
    if not tests:
        return None
    return lambda value: any(op(value, limit) for op, limit in tests)


class VerdictBanner(Toned):
    """HEALTHY / DEGRADED / FAILING / NO DATA, with the evidence that drives it."""

    DEFAULT_CSS = """
    VerdictBanner { height: auto; padding: 0 1; background: $panel; }
    VerdictBanner.-healthy { background: $success 20%; }
    VerdictBanner.-degraded { background: $warning 20%; }
    VerdictBanner.-failing { background: $error 25%; }
    VerdictBanner.-rolled-back { background: $primary 20%; }
    VerdictBanner.-no-data { background: $panel; }
    """

    def __init__(self) -> None:
        super().__init__(id="verdict")
        self.report: Report | None = None
        self.compact: str | None = None
        """The key that shows the full evidence, when the banner is cut to one line
        (a small terminal); ``None``: every reason, up to ``BANNER_LINES``."""

    def show(self, report: Report) -> None:
        """Show a new report; repaints only when it says something different."""
        if report == self.report:
            return
        self.report = report
        for verdict, css in _VERDICT_CLASS.items():
            self.set_class(verdict is report.verdict, css)
        self.repaint()

    def set_compact(self, key: str | None) -> None:
        """One line (the verdict, the headline cut with "…", ``+N · e evidence``) when
        ``key`` names the key that shows the rest; every reason when ``None``."""
        if key != self.compact:
            self.compact = key
            self.repaint()

    def render(self) -> Text:
        report = self.report
        text = Text(overflow="fold")
        if report is None:
            text.append(" NO DATA ", self.tone("none"))
            text.append("  waiting for the first answers", self.tone("muted"))
            return text
        tone = _VERDICT_TONE[report.verdict]
        text.append(f" {report.verdict.value} ", self.tone(tone) + " reverse")
        headline = Text(
            f"  {clean(report.headline)}", self.tone(tone if report.reasons else "muted")
        )
        if self.compact is not None:
            more = len(report.reasons) - 1
            hint = (
                f"  +{more} · {self.compact} evidence" if more > 0 else f"  {self.compact} evidence"
            )
            room = self.text_width - text.cell_len - len(hint)
            if headline.cell_len > room:
                headline.truncate(max(room, 2), overflow="ellipsis")
            text.append_text(headline)
            text.append(hint, self.tone("muted"))
            return text
        text.append_text(headline)
        for reason in report.reasons[1:BANNER_LINES]:
            text.append(f"\n{'':11}{clean(reason)}", self.tone("muted"))
        hidden = len(report.reasons) - BANNER_LINES
        if hidden > 0:
            text.append(f"\n{'':11}and {hidden} more (see the panes)", self.tone("muted"))
        return text


@dataclass(frozen=True, slots=True)
class MetricView:
    """What a metric row needs to know about its metric."""

    name: str
    unit: str
    fresh_for: timedelta | None = None
    """How old a group's newest point may be before it is silent (its rules' freshness):
    then its value is ``?`` with the age, never the old value as if current."""


LABEL_MAX = 16
"""Widest group label column of a metric row; longer labels end in a visible "…"."""


class MetricRows(RowList):
    """One row per metric: its rules' thresholds and state, then one sparkline per group.

    Only the rows in view are built (a sparkline is a few dozen styled cells); a row
    whose samples and judgement did not change is not touched.
    """

    ROW_GAP = 1
    ROW_PADDING = 1
    WIDTH_FREE = False  # the sparklines fill the width

    def __init__(self, views: Sequence[MetricView]) -> None:
        self.views = {view.name: view for view in views}
        super().__init__(self.views, id="metric-rows")
        self.samples: dict[str, dict[str | None, MetricSample]] = {}
        self.evidence: dict[str, tuple[Evidence, ...]] = {}
        self._head_lines: dict[str, tuple[tuple[Evidence, ...], int, int]] = {}
        """Lines of each row's head, with the evidence and width they were measured at."""
        self.now: datetime | None = None
        self.failing = False
        """Datadog is failing: the pane's STALE line says how old everything is."""
        self._silence: dict[str, tuple[str | None, ...]] = {}
        """Each row's silent groups. Their ages move with the clock: such a row is
        built again on each tick while in view (``row_moves``), never off screen."""
        self._quiet_until: dict[str, datetime | None] = {}
        """The moment the first of a row's fresh groups can fall silent (before it, the
        clock changes no group's silence); ``None``: only new samples can change it."""

    def show(
        self,
        samples: Mapping[str, Mapping[str | None, MetricSample]],
        evidence: Mapping[str, Sequence[Evidence]],
        now: datetime | None = None,
        failing: bool = False,
    ) -> None:
        """New data or new judgement; rows with nothing new are left alone."""
        changed = []
        for name in self.views:
            mine = samples.get(name, {})
            judged = tuple(evidence.get(name, ()))
            before = self.evidence.get(name, ())
            if judged is not before and shown(judged) == shown(before):
                judged = before  # says the same: keep what is shown
            if mine != self.samples.get(name, {}) or judged is not before:
                self.samples[name], self.evidence[name] = dict(mine), judged
                changed.append(name)
        self._age(now, failing, changed)

    def tick(self, now: datetime) -> None:
        """The clock moved: rows where a group fell silent change; the silent groups'
        ages move in the rows in view (the others are built when they scroll in)."""
        self._age(now, self.failing, [])
        super().tick(now)

    def row_moves(self, key: str) -> bool:
        return bool(self._silence.get(key))

    def _age(self, now: datetime | None, failing: bool, changed: list[str]) -> None:
        if now is not None:
            self.now = now
        if failing != self.failing:
            self._quiet_until.clear()
        self.failing = failing
        recheck = set(changed)
        for name in self.views:
            if name in self._quiet_until and name not in recheck and self.now is not None:
                quiet = self._quiet_until[name]
                if quiet is None or self.now <= quiet:
                    continue  # nothing in it can have fallen silent yet
            silence = self._silent(name)
            if silence != self._silence.get(name, ()):
                self._silence[name] = silence
                if name not in changed:
                    changed.append(name)
        if changed:
            self.update_rows(changed)

    def _silent(self, name: str) -> tuple[str | None, ...]:
        """The groups of ``name`` whose newest point is past freshness; none while
        Datadog fails (the STALE line above says how old all of it is)."""
        fresh_for, now = self.views[name].fresh_for, self.now
        self._quiet_until.pop(name, None)
        if fresh_for is None or now is None or self.failing:
            if now is not None and not self.failing:
                self._quiet_until[name] = None  # only new samples change it
            return ()
        out = []
        fresh_until: datetime | None = None
        for group, sample in self.samples.get(name, {}).items():
            newest = _newest(sample)
            if newest is None or now - newest > fresh_for:
                out.append(group)
            elif fresh_until is None or newest + fresh_for < fresh_until:
                fresh_until = newest + fresh_for
        self._quiet_until[name] = fresh_until  # None: none fresh, nothing more to fall
        return tuple(sorted(out, key=lambda group: group or ""))

    def _age_words(self, sample: MetricSample) -> str:
        """How old a silent group's newest point is now (``2m10s``; ``never``)."""
        newest = _newest(sample)
        if newest is None or self.now is None:
            return "never"
        return age_text((self.now - newest).total_seconds())

    def row_height(self, key: str, width: int) -> int | None:
        evidence = self.evidence.get(key, ())
        known = self._head_lines.get(key)
        if known is None or known[0] is not evidence or known[1] != width:
            known = self._head_lines[key] = (
                evidence,
                width,
                self.lines_of(self._head(key).plain, width),
            )
        extra = 0
        if self.samples.get(key):
            extra = sum(self.lines_of(compare_text(e), width) for e in comparisons(evidence))
        return known[2] + max(1, len(self.samples.get(key, {}))) + extra

    def _head(self, name: str) -> Text:
        """The metric's name, its rules' thresholds and its worst state."""
        view = self.views[name]
        evidence = thresholds(self.evidence.get(name, ()))
        text = Text()
        worst = min(evidence, key=lambda e: e.state.rank, default=None)
        text.append(clean(view.name), self.tone("label"))
        several = len(evidence) > 1
        for ev in sorted(evidence, key=lambda e: (e.threshold, e.rule)):  # stable order
            text.append(f"  {ev.op} {number(ev.threshold, view.unit)}", self.tone("muted"))
            if ev.action != "none":
                text.append(f" → {clean(ev.action)}", self.tone("muted"))
            if several:  # every rule says its own state, not only the worst one
                text.append(f" {ev.state.value}", self.tone(_STATE_TONE[ev.state]))
                if ev.reason and ev.state is RuleState.OK:
                    text.append(f" ({clean(ev.reason)})", self.tone("muted"))
        if worst is not None:  # then the metric's own state: its worst rule's
            text.append("  · " if several else "  ", self.tone("muted"))
            text.append(worst.state.value, self.tone(_STATE_TONE[worst.state]))
            if worst.reason and worst.state is RuleState.OK and not several:
                text.append(f" ({clean(worst.reason)})", self.tone("muted"))
        return text

    def row_text(self, key: str, width: int) -> Text:
        view = self.views[key]
        samples = self.samples.get(key, {})
        judged = self.evidence.get(key, ())
        evidence = thresholds(judged)
        text = self._head(key)
        if not samples:
            text.append("\n  waiting for Datadog…", self.tone("muted"))
            return text
        breaches = _breach_test(evidence)
        labels = {g: clean((g or "all").split(":", 1)[-1]) for g in samples}
        # One label column for every group (long ones cut with a visible "…"), so the
        # values and sparklines stay in line.
        col = min(LABEL_MAX, max(6, *(len(label) for label in labels.values())))
        cells = max(8, width - col - 14)
        # One scale for every group: old and new compare at a glance. The threshold
        # sits at half height (a value under it never draws more than half a cell, one
        # over it always does); without a rule, the highest value tops the scale.
        ceiling = threshold_ceiling([(e.op, e.threshold) for e in evidence])
        if ceiling is None:
            known = [p.value for s in samples.values() for p in s.points if p.value is not None]
            ceiling = max(known, default=1.0)
        silent = self._silence.get(key, ())
        for group in sorted(samples, key=lambda g: g or ""):
            sample = samples[group]
            values = [p.value for p in sample.points]
            latest = next((v for v in reversed(values) if v is not None), None)
            label = labels[group]
            if len(label) > col:
                label = label[: col - 1] + "…"
            text.append(f"\n  {label:<{col}}", self.tone("muted"))
            width = cells
            if group in silent:
                # No point within its freshness: its old value is not a current one.
                age = self._age_words(sample)
                note = "(no value yet)" if age == "never" else f"(last {age} ago)"
                text.append(f"{'?':>9} ", self.tone("none"))
                text.append(f"{note}  ", self.tone("muted"))
                width = max(8, cells - len(note) - 1)
            else:
                bad = latest is not None and breaches is not None and breaches(latest)
                value = number(latest, view.unit)
                text.append(f"{value:>9}  ", self.tone("bad" if bad else "label"))
            spark_line(
                text,
                spark(values, width, breaches=breaches, floor=0.0, ceiling=ceiling),
                self.tone,
                "ok",
            )
        for compared in comparisons(judged):
            tone = self.tone(_STATE_TONE[compared.state])
            text.append("\n" + compare_text(compared), tone)
        return text


def _newest(sample: MetricSample) -> datetime | None:
    """When a group's newest point with a value was."""
    return next((p.at for p in reversed(sample.points) if p.value is not None), None)


class StaleLine(Toned):
    """`` STALE 12s  http 503: ...`` above a pane's last good data; hidden when fresh."""

    DEFAULT_CSS = """
    StaleLine { height: auto; padding: 0 1; display: none; }
    StaleLine.-on { display: block; }
    """

    def __init__(self) -> None:
        super().__init__(classes="stale-line")
        self.failure: SourceFailure | None = None
        self.now = datetime.min

    def show(self, failure: SourceFailure | None, now: datetime) -> None:
        """Show (or hide) the current failure; its age moves with ``now``."""
        if failure is None and self.failure is None:
            return
        self.failure, self.now = failure, now
        self.set_class(failure is not None, "-on")
        self.refresh()

    def render(self) -> Text:
        text = Text()
        _stale_line(text, self, self.failure, self.now)
        text.rstrip()
        return text


class MetricsPane(Vertical):
    """Every configured metric, in config order; a STALE line above when Datadog fails."""

    DEFAULT_CSS = """
    MetricsPane { height: 1fr; }
    """

    def __init__(self, views: Sequence[MetricView]) -> None:
        super().__init__(id="metrics")
        self.stale = StaleLine()
        self.rows = MetricRows(views)
        self._judged: Sequence[Evidence] | None = None
        self._by_metric: dict[str, tuple[Evidence, ...]] = {}

    def compose(self) -> ComposeResult:
        yield self.stale
        yield self.rows

    def show(
        self,
        samples: Mapping[str, Mapping[str | None, MetricSample]],
        evidence: Sequence[Evidence],
        failure: SourceFailure | None,
        now: datetime,
    ) -> None:
        """Update every row (rows with nothing new do not repaint)."""
        self.stale.show(failure, now)
        if evidence is not self._judged:  # a new judgement: sort it once, not per row
            self._judged = evidence
            by_metric: dict[str, list[Evidence]] = {}
            for ev in evidence:
                if ev.subject.startswith("metric:"):
                    by_metric.setdefault(ev.subject.removeprefix("metric:"), []).append(ev)
            self._by_metric = {name: tuple(evs) for name, evs in by_metric.items()}
        self.rows.show(samples, self._by_metric, now, failure is not None)

    def tick(self, now: datetime) -> None:
        """The clock moved: silent groups age."""
        self.rows.tick(now)


class ErrorsPane(Toned):
    """Sentry: new issues since the deployment began, and error counts over time."""

    DEFAULT_CSS = """
    ErrorsPane { height: auto; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__(id="errors")
        self.sample: SentrySample | None = None
        self.evidence: tuple[Evidence, ...] = ()
        self.failure: SourceFailure | None = None
        self.now = datetime.min

    def show(
        self,
        sample: SentrySample | None,
        evidence: Sequence[Evidence],
        failure: SourceFailure | None,
        now: datetime,
    ) -> None:
        """New answer, judgement or failure."""
        evidence = tuple(evidence)
        if shown(evidence) == shown(self.evidence):
            evidence = self.evidence  # says the same: keep what is shown
        unchanged = (sample, evidence, failure) == (self.sample, self.evidence, self.failure)
        if unchanged and failure is None:
            return  # while STALE, repaint anyway: the age moves with ``now``
        self.sample, self.evidence, self.failure, self.now = sample, evidence, failure, now
        self.repaint()

    def tick(self, now: datetime) -> None:
        """The clock moved: repaint only when the deployment's age reads differently."""
        sample = self.sample
        if sample is None or since_words(sample.since, now) == since_words(sample.since, self.now):
            return
        self.now = now
        self.repaint()

    def render(self) -> Text:
        text = Text()
        _stale_line(text, self, self.failure, self.now)
        sample = self.sample
        if sample is None:
            text.append("waiting for Sentry…", self.tone("muted"))
            return text
        new = len(sample.new_issues)
        text.append(f"{new} new issue{'s' if new != 1 else ''}", self.tone("bad" if new else "ok"))
        # The window said plainly, with its age: a bare "since 02:43:07" beside a 03:43
        # clock reads like a timezone bug.
        text.append(f" {since_words(sample.since, self.now)}", self.tone("muted"))
        if sample.release:
            count = len(sample.release_issues)
            text.append(
                f" · release {clean(sample.release, RELEASE_MAX)}: {count} unresolved",
                self.tone("muted"),
            )
        if self.evidence:
            text.append("\n")
            for ev in self.evidence:
                text.append(f"{clean(ev.rule)} ", self.tone("muted"))
                text.append(f"{ev.state.value}  ", self.tone(_STATE_TONE[ev.state]))
        values = [p.value for p in sample.error_counts]
        latest = next((v for v in reversed(values) if v is not None), None)
        judged = [e for e in self.evidence if e.subject == "sentry:errors"]
        breaches = _breach_test(judged)
        ceiling = threshold_ceiling([(e.op, e.threshold) for e in judged])
        # Two numbers the eye can trust: the last *complete* bucket (the one still
        # filling holds a fraction of it) and every error since the deployment began.
        text.append("\nerrors: ", self.tone("label"))
        bad = latest is not None and breaches is not None and breaches(latest)
        text.append(number(latest), self.tone("bad" if bad else "label"))
        text.append(f" in {last_full(sample.bucket_seconds)}", self.tone("muted"))
        total, partial = errors_since(sample)
        if total is not None:
            text.append(" · ", self.tone("muted"))
            text.append(("≥" if partial else "") + number(total), self.tone("label"))
            text.append(" since the deploy began", self.tone("muted"))
        per = {60: "per minute", 3600: "per hour"}.get(sample.bucket_seconds or 0, "per bucket")
        if sample.bucket_seconds and per == "per bucket":
            per = f"per {_per(sample.bucket_seconds)}"
        text.append(f"\n{per:<8}  ", self.tone("muted"))
        width = max(8, self.text_width - 12)
        cells = spark(values, width, breaches=breaches, floor=0.0, ceiling=ceiling)
        spark_line(text, cells, self.tone, "busy")
        for issue in sample.new_issues[:ISSUES_SHOWN]:
            first = issue.first_seen.strftime("%H:%M:%S") if issue.first_seen else "?"
            text.append(f"\n{number(issue.count) + ' x':>8} ", self.tone("bad"))
            text.append(clean(issue.title, TITLE_MAX), self.tone("label"))
            release = f" · {clean(issue.first_release, RELEASE_MAX)}" if issue.first_release else ""
            text.append(f"\n{'':9}first seen {first}{release}", self.tone("muted"))
        hidden = len(sample.new_issues) - ISSUES_SHOWN
        if hidden > 0:
            text.append(f"\n        and {hidden} more", self.tone("muted"))
        return text


def since_words(start: datetime, now: datetime) -> str:
    """``since the deployment began 12m ago (02:43:07 UTC)``."""
    when = start.strftime("%H:%M:%S")
    if now < start:  # not begun yet by our clock (or no clock yet): the time alone
        return f"since the deployment began ({when} UTC)"
    return f"since the deployment began {ago((now - start).total_seconds())} ago ({when} UTC)"


def last_full(seconds: int | None) -> str:
    """The last complete events-stats bucket in words: ``the last full minute``."""
    if not seconds:
        return "the last full bucket"
    if seconds == 60:
        return "the last full minute"
    if seconds == 3600:
        return "the last full hour"
    return f"the last full {_per(seconds)}"


def errors_since(sample: SentrySample) -> tuple[float | None, bool]:
    """Error events since the deployment began: the complete buckets that reach past
    its start, plus the one still filling. Returns the total (``None`` when nothing is
    known) and whether a bucket Sentry did not answer makes it a lower bound."""
    step = timedelta(seconds=sample.bucket_seconds or 0)
    counted = [p.value for p in sample.error_counts if p.at + step > sample.since]
    if sample.errors_so_far is not None:
        counted.append(sample.errors_so_far)
    known = [v for v in counted if v is not None]
    if not known:
        return None, False
    return sum(known), len(known) < len(counted)


class ProbesPane(RowList):
    """HTTP probes: status, latency, success ratio and the last failure, in words.

    One row per probe; only the rows in view are built, and a probe whose round and
    judgement did not change is not touched.
    """

    ROW_PADDING = 1

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        super().__init__(self.names, id="probes")
        self.samples: dict[str, ProbeSample] = {}
        self.evidence: dict[str, tuple[Evidence, ...]] = {}
        self._name_width = max((len(clean(n)) for n in self.names), default=4)
        self._judged: Sequence[Evidence] | None = None
        self._by_probe: dict[str, tuple[Evidence, ...]] = {}

    def show(self, samples: Mapping[str, ProbeSample], evidence: Sequence[Evidence]) -> None:
        """New rounds or a new judgement; probes with nothing new are left alone."""
        if evidence is not self._judged:  # a new judgement: sort it once, not per probe
            self._judged = evidence
            by_probe: dict[str, list[Evidence]] = {}
            for ev in evidence:  # subjects read ``probe:<name>.<measure>``
                if ev.subject.startswith("probe:"):
                    by_probe.setdefault(ev.subject[6:].split(".", 1)[0], []).append(ev)
            self._by_probe = {name: tuple(evs) for name, evs in by_probe.items()}
        changed = []
        for name in self.names:
            sample = samples.get(name)
            judged = self._by_probe.get(name, ())
            before = self.evidence.get(name, ())
            if judged is not before and shown(judged) == shown(before):
                judged = before  # says the same: keep what is shown
            if sample != self.samples.get(name) or judged is not before:
                if sample is None:
                    self.samples.pop(name, None)
                else:
                    self.samples[name] = sample
                self.evidence[name] = judged
                changed.append(name)
        if changed:
            self.update_rows(changed)

    def row_text(self, key: str, width: int) -> Text:
        pad = self._name_width
        text = Text()
        text.append(f"{clean(key):<{pad}}  ", self.tone("label"))
        probe = self.samples.get(key)
        if probe is None:
            text.append("waiting for the first round…", self.tone("muted"))
            return text
        text.append("✓ " if probe.ok else "✗ ", self.tone("ok" if probe.ok else "bad"))
        text.append(f"{probe.status or '---'}  ", self.tone("ok" if probe.ok else "bad"))
        text.append(f"{number(probe.latency_ms, 'ms'):>7}  ", self.tone("muted"))
        worst = min(self.evidence.get(key, ()), key=lambda e: e.state.rank, default=None)
        ratio_tone = _STATE_TONE[worst.state] if worst is not None else "label"
        text.append(f"{probe.success_ratio * 100:6.1f}%", self.tone(ratio_tone))
        # The rounds the ratio is over, not the window it will be over once full: two
        # rounds with one failure read "50.0% of 2 attempts", never "of 20".
        if probe.attempts is not None:
            plural = "" if probe.attempts == 1 else "s"
            text.append(f" of {probe.attempts} attempt{plural}", self.tone("muted"))
        if probe.last_failure is not None:
            when = probe.last_failure.strftime("%H:%M:%S")
            text.append(f"\n{'':{pad + 2}}last failure {when}: ", self.tone("muted"))
            text.append(clean(probe.last_failure_reason), self.tone("warn"))
        return text

    def plain(self) -> str:
        """Every probe's row as text (what the pane says, scrolled or not)."""
        return "\n".join(self.text_of(name).plain for name in self.names)
