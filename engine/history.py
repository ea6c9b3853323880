"""Deployment history in a deployer's words, and the figures the journey cards track.

Each deployment the history source listed gets an outcome — ``completed``, ``rolled
back by the breaker``, ``rolled back by an operator`` (or ``by a rule``), ``rolled
back``, ``rollback failed``, ``stopped``, ``failed``, ``in progress`` — and who acted on
it, joined from the audit log (an action on that service while the deployment ran).

Over the finished deployments listed: success rate (completed / finished), rollback rate
(rolled back / finished), median and p90 time to deploy (start → end of the completed
ones), and MTTR: for each rollback, from the decision (the audit log's intent; for the
circuit breaker, ECS's rollback start) to the rollback finished. Each figure is coloured
against its configurable target (``[history]``). A figure with nothing to measure is
``None`` (shown ``not measured``), never 0.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from engine.durations import span_words
from engine.wiring import _ecs_source, utc_now
from sources.history import HistoryEntry, HistorySample, HistorySource

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from engine.config import HistorySettings, Settings

COMPLETED = "completed"
BY_BREAKER = "rolled back by the breaker"
BY_OPERATOR = "rolled back by an operator"
BY_RULE = "rolled back by a rule"
ROLLED_BACK = "rolled back"
ROLLBACK_FAILED = "rollback failed"
STOPPED = "stopped"
FAILED = "failed"
IN_PROGRESS = "in progress"

ROLLED_BACK_OUTCOMES = frozenset({BY_BREAKER, BY_OPERATOR, BY_RULE, ROLLED_BACK, ROLLBACK_FAILED})
AUDIT_SLACK = timedelta(minutes=1)
"""An audited action this close before a deployment began or after it ended is about it."""


@dataclass(frozen=True, slots=True)
class Act:
    """One audited action (its intent entry), as the history joins it."""

    at: datetime
    cluster: str
    service: str
    action: str
    operator: str
    automatic: bool
    ok: bool | None
    """Its result: sent and done, failed, or ``None`` when no result was written."""

    @property
    def who(self) -> str:
        """``alice rollback`` or ``rule rollback (alice's deploywatch)``."""
        if self.automatic:
            return f"rule {self.action} ({self.operator})"
        return f"{self.operator} {self.action}"


@dataclass(frozen=True, slots=True)
class Row:
    """One deployment, with its outcome and who acted."""

    entry: HistoryEntry
    label: str
    outcome: str
    who: tuple[str, ...]
    mttr: float | None
    """Seconds from the rollback decision to the rollback finished, for a rollback."""


@dataclass(frozen=True, slots=True)
class Figure:
    """One tracked figure and its target."""

    name: str
    value: float | None
    """Percent or seconds; ``None`` when nothing was measured."""
    unit: str
    """``%`` or ``s``."""
    target: float
    above: bool
    """The target is to stay above it (else below it)."""
    samples: int

    @property
    def met(self) -> bool | None:
        """Whether it meets its target (``None``: not measured)."""
        if self.value is None:
            return None
        return self.value > self.target if self.above else self.value < self.target

    def short(self) -> str:
        """``success 92% (> 95%)``: the same, for a narrow screen."""
        value = "not measured" if self.value is None else _show(self.value, self.unit)
        op = ">" if self.above else "<"
        return f"{self.name} {value} ({op} {_show(self.target, self.unit)})"

    def text(self) -> str:
        """``success 92% (target > 95%, 12 deployments)``."""
        value = "not measured" if self.value is None else _show(self.value, self.unit)
        op = ">" if self.above else "<"
        return f"{self.name} {value} (target {op} {_show(self.target, self.unit)})"


def _show(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.0f}%" if value == int(value) else f"{value:.1f}%"
    return duration_words(value)


def duration_words(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m`` to the nearest second (a median or a mean is not
    truncated); ``?`` when unknown."""
    return span_words(None if seconds is None else round(seconds))


def acts_from_audit(entries: Iterable[dict[str, Any]]) -> list[Act]:
    """Every action intent of an audit log, with its result (when written)."""
    results: dict[str, bool] = {}
    intents: list[dict[str, Any]] = []
    for entry in entries:
        phase = entry.get("phase")
        if phase == "result" and isinstance(entry.get("id"), str):
            results[entry["id"]] = bool(entry.get("ok"))
        elif phase == "intent":
            intents.append(entry)
    acts = []
    for entry in intents:
        target = entry.get("target")
        at = _parse_time(entry.get("time"))
        if not isinstance(target, dict) or at is None:
            continue
        acts.append(
            Act(
                at=at,
                cluster=str(target.get("cluster") or ""),
                service=str(target.get("service") or ""),
                action=str(entry.get("action") or "?"),
                operator=str(entry.get("operator") or "?"),
                automatic=bool(entry.get("automatic")),
                ok=results.get(str(entry.get("id"))),
            )
        )
    return acts


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _during(act: Act, entry: HistoryEntry, now: datetime) -> bool:
    begun = entry.begun
    if begun is None:
        return False
    end = entry.finished_at or now
    return begun - AUDIT_SLACK <= act.at <= end + AUDIT_SLACK


def outcome(entry: HistoryEntry, acts: Sequence[Act]) -> str:
    """The deployment's outcome in words (``acts``: the audited actions during it)."""
    status = entry.status
    if entry.kind == "CODE_DEPLOY":
        if status.endswith("(rolled back)"):
            return _rollback_by(acts)
        return {
            "Succeeded": COMPLETED,
            "Stopped": STOPPED,
            "Failed": FAILED,
        }.get(status, IN_PROGRESS)
    if status == "SUCCESSFUL":
        return COMPLETED
    if status == "ROLLBACK_FAILED":
        return ROLLBACK_FAILED
    if status.startswith("ROLLBACK_"):
        if entry.breaker_triggered:
            return BY_BREAKER
        return _rollback_by(acts)
    if status in ("STOPPED", "STOP_REQUESTED"):
        return STOPPED
    return IN_PROGRESS


def _rollback_by(acts: Sequence[Act]) -> str:
    rollbacks = [a for a in acts if a.action == "rollback" and a.ok is not False]
    if any(not a.automatic for a in rollbacks):
        return BY_OPERATOR
    if rollbacks:
        return BY_RULE
    return ROLLED_BACK


def rows(
    sample: HistorySample,
    acts: Sequence[Act],
    labels: dict[str, str],
    now: datetime,
) -> list[Row]:
    """Every listed deployment, newest first per service, in the services' order."""
    out = []
    for key, entries in sample.services.items():
        cluster, _, service = key.partition("/")
        mine = [a for a in acts if a.service == service and a.cluster in (cluster, "")]
        for entry in entries:
            during = [a for a in mine if _during(a, entry, now)]
            words = outcome(entry, during)
            who = tuple(dict.fromkeys(a.who for a in during))
            out.append(Row(entry, labels.get(key, key), words, who, _mttr(entry, words, during)))
    return out


def _mttr(entry: HistoryEntry, words: str, acts: Sequence[Act]) -> float | None:
    if words not in ROLLED_BACK_OUTCOMES or words == ROLLBACK_FAILED:
        return None
    if entry.finished_at is None:
        return None
    decided = None
    rollbacks = [a.at for a in acts if a.action == "rollback" and a.ok is not False]
    if rollbacks:
        decided = min(rollbacks)
    elif entry.rollback_started is not None:
        decided = entry.rollback_started
    if decided is None:
        return None
    return max(0.0, (entry.finished_at - decided).total_seconds())


def _percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def figures(listed: Sequence[Row], targets: HistorySettings) -> list[Figure]:
    """Success rate, rollback rate, median and p90 time to deploy, MTTR."""
    finished = [r for r in listed if r.outcome != IN_PROGRESS]
    completed = [r for r in finished if r.outcome == COMPLETED]
    rolled = [r for r in finished if r.outcome in ROLLED_BACK_OUTCOMES]
    n = len(finished)
    times = [r.entry.duration for r in completed if r.entry.duration is not None]
    mttrs = [r.mttr for r in rolled if r.mttr is not None]
    deploy = targets.deploy_time.total_seconds()
    return [
        Figure(
            "success", 100.0 * len(completed) / n if n else None, "%", targets.success_rate, True, n
        ),
        Figure(
            "rollback", 100.0 * len(rolled) / n if n else None, "%", targets.rollback_rate, False, n
        ),
        Figure(
            "deploy median",
            statistics.median(times) if times else None,
            "s",
            deploy,
            False,
            len(times),
        ),
        Figure(
            "deploy p90", _percentile(times, 0.9) if times else None, "s", deploy, False, len(times)
        ),
        Figure(
            "MTTR",
            statistics.fmean(mttrs) if mttrs else None,
            "s",
            targets.mttr.total_seconds(),
            False,
            len(mttrs),
        ),
    ]


def build_history_source(
    settings: Settings, clock: Callable[[], datetime] | None = None
) -> HistorySource:
    """The history source of a config: the ECS source's clients and targets."""
    ecs = _ecs_source(settings)
    return HistorySource(
        ecs.targets,
        ecs.client,
        ecs.aux_client,
        per_service=settings.history.per_service,
        max_pages=settings.history.max_pages,
        clock=clock or utc_now,
    )


def to_json(listed: Sequence[Row], figs: Sequence[Figure], sample: HistorySample) -> dict[str, Any]:
    """The history as the deployment report's JSON carries it."""
    return {
        "fetched": sample.at.isoformat(),
        "figures": [
            {
                "name": f.name,
                "value": f.value,
                "unit": f.unit,
                "target": f.target,
                "above": f.above,
                "met": f.met,
                "samples": f.samples,
            }
            for f in figs
        ],
        "deployments": [
            {
                "service": r.label,
                "id": r.entry.id,
                "kind": r.entry.kind,
                "from": r.entry.from_revision,
                "to": r.entry.to_revision,
                "started": r.entry.begun.isoformat() if r.entry.begun else None,
                "finished": r.entry.finished_at.isoformat() if r.entry.finished_at else None,
                "duration_s": r.entry.duration,
                "status": r.entry.status,
                "outcome": r.outcome,
                "who": list(r.who),
                "mttr_s": r.mttr,
            }
            for r in listed
        ],
        "more": sorted(sample.more),
    }


def render_markdown(history: dict[str, Any]) -> list[str]:
    """The report's "Deployment history" section from :func:`to_json`'s data."""
    from engine.text import clean

    lines = ["", "## Deployment history", ""]
    lines.append(f"Fetched {history['fetched']}; over the deployments listed below:")
    lines.append("")
    for f in history["figures"]:
        figure = Figure(f["name"], f["value"], f["unit"], f["target"], f["above"], f["samples"])
        mark = {True: "meets its target", False: "**misses its target**", None: "not measured"}[
            figure.met
        ]
        lines.append(f"- {figure.text()}: {mark} ({f['samples']} measured)")
    lines.append("")
    if not history["deployments"]:
        lines.append("No deployment listed.")
        return lines
    lines.append("| service | started | from → to | kind | duration | outcome | who |")
    lines.append("|---|---|---|---|---|---|---|")
    for d in history["deployments"]:
        change = f"{d['from'] or '?'} → {d['to'] or '?'}"
        lines.append(
            f"| {clean(d['service'])} | {d['started'] or '?'} | {clean(change)} | "
            f"{clean(d['kind'])} | {duration_words(d['duration_s'])} | {d['outcome']} | "
            f"{clean(', '.join(d['who'])) or '—'} |"
        )
    if history["more"]:
        lines.append("")
        lines.append(f"Older deployments not listed for: {clean(', '.join(history['more']))}.")
    return lines


__all__ = [
    "Act",
    "Figure",
    "Row",
    "acts_from_audit",
    "build_history_source",
    "duration_words",
    "figures",
    "outcome",
    "rows",
    "to_json",
]
