"""Automatic pause and rollback: opt-in per rule, with a visible countdown a key cancels.

When a critical rule whose action is ``pause`` or ``rollback`` has breached for its
window, a countdown starts for the rule's service. At zero the action is due, exactly
once: it is not due again while that rule stays critical. Cancelling stops every pending
countdown until its rule recovers. The MTTR clock records, per service, the first
breach, the decision and the recovery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from engine.actions import Verb
from engine.durations import span_words
from engine.rules import RuleState

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from engine.rules import Evidence

DEFAULT_COUNTDOWN = timedelta(seconds=10)


@dataclass
class Countdown:
    """One pending automatic action."""

    rule: str
    key: str
    verb: Verb
    started: datetime
    due: datetime
    evidence: Evidence
    cancelled: bool = False
    fired: bool = False

    def remaining(self, now: datetime) -> float:
        """Seconds left (never negative)."""
        return max(0.0, (self.due - now).total_seconds())


class AutoPilot:
    """Turns critical evidence into due automatic actions.

    Args:
        rule_targets: Service key per rule name (``None``: the rule has no service).
        delay: The countdown length.
    """

    def __init__(
        self, rule_targets: Mapping[str, str | None], delay: timedelta = DEFAULT_COUNTDOWN
    ) -> None:
        self.rule_targets = dict(rule_targets)
        self.delay = delay
        self.countdowns: dict[tuple[str, str], Countdown] = {}

    def update(
        self,
        now: datetime,
        evidence: Sequence[Evidence],
        can_act: Callable[[str, Verb], bool],
    ) -> list[Countdown]:
        """Start, keep or drop countdowns from this judgement; return those now due.

        Args:
            now: The judgement's time.
            evidence: Every rule's evidence.
            can_act: Whether ``verb`` is possible on a service now (e.g. not already
                rolling back); a countdown only runs while it is.
        """
        firing: dict[tuple[str, str], Evidence] = {}
        for ev in evidence:
            if ev.state is not RuleState.CRITICAL or ev.action not in ("pause", "rollback"):
                continue
            key = self.rule_targets.get(ev.rule)
            if key is not None:
                firing.setdefault((ev.rule, key), ev)
        for ident in list(self.countdowns):
            if ident not in firing:
                del self.countdowns[ident]  # recovered: a later breach starts afresh
        due: list[Countdown] = []
        for ident, ev in firing.items():
            verb = Verb(ev.action)
            countdown = self.countdowns.get(ident)
            if countdown is None:
                if not can_act(ident[1], verb):
                    continue
                countdown = Countdown(ev.rule, ident[1], verb, now, now + self.delay, ev)
                self.countdowns[ident] = countdown
            countdown.evidence = ev
            if countdown.fired or countdown.cancelled:
                continue
            if not can_act(ident[1], verb):
                del self.countdowns[ident]
                continue
            if now >= countdown.due:
                countdown.fired = True
                due.append(countdown)
        # One automatic rollback per service, even when several rules call for it.
        seen: set[str] = set()
        unique = []
        for countdown in sorted(due, key=lambda c: c.verb is not Verb.ROLLBACK):
            if countdown.key not in seen:
                seen.add(countdown.key)
                unique.append(countdown)
        return unique

    def pending(self) -> list[Countdown]:
        """Countdowns still running, soonest first."""
        live = [c for c in self.countdowns.values() if not c.fired and not c.cancelled]
        return sorted(live, key=lambda c: c.due)

    def cancel(self) -> list[Countdown]:
        """Cancel every pending countdown; returns those cancelled."""
        cancelled = self.pending()
        for countdown in cancelled:
            countdown.cancelled = True
        return cancelled


@dataclass
class Recovery:
    """The MTTR clock of one service: first breach → decision → recovered."""

    breach: datetime | None = None
    decided: datetime | None = None
    recovered: datetime | None = None

    def describe(self, now: datetime) -> str:
        """``breach 02:03:10 · decided +1m02s · recovered +2m10s`` (times from breach).

        A decision with no breach before it (an operator acting on what no rule saw)
        is timed from the decision: ``no rule breached · decided 02:03:10 · recovered +41s``.
        """
        if self.breach is None:
            if self.decided is None:
                return ""
            parts = ["no rule breached", f"decided {self.decided.strftime('%H:%M:%S')}"]
            if self.recovered is not None:
                parts.append(f"recovered +{span_words(self.recovered - self.decided)}")
            else:
                parts.append(f"recovering {span_words(now - self.decided)}")
            return " · ".join(parts)
        parts = [f"breach {self.breach.strftime('%H:%M:%S')}"]
        if self.decided is not None:
            parts.append(f"decided +{span_words(self.decided - self.breach)}")
        if self.recovered is not None:
            parts.append(f"recovered +{span_words(self.recovered - self.breach)}")
        elif self.decided is not None:
            parts.append(f"recovering {span_words(now - self.breach)}")
        else:
            parts.append(f"open {span_words(now - self.breach)}")
        return " · ".join(parts)


class MttrClock:
    """Per service :class:`Recovery`, fed by evidence, decisions and ECS status."""

    def __init__(self, rule_targets: Mapping[str, str | None]) -> None:
        self.rule_targets = dict(rule_targets)
        self.services: dict[str, Recovery] = {}

    def observe(self, evidence: Sequence[Evidence]) -> None:
        """Record the earliest critical breach per service."""
        for ev in evidence:
            key = self.rule_targets.get(ev.rule)
            if key is None or ev.state is not RuleState.CRITICAL:
                continue
            rec = self.services.setdefault(key, Recovery())
            start = ev.since
            if rec.recovered is not None:
                continue  # this incident is closed; the clock shows its figures
            if rec.decided is not None and (start is None or start > rec.decided):
                continue  # a breach seen after the decision is not what was decided on
            if start is not None and (rec.breach is None or start < rec.breach):
                rec.breach = start

    def decided(self, key: str, at: datetime) -> None:
        """An action was sent for ``key`` (the first one counts)."""
        rec = self.services.setdefault(key, Recovery())
        if rec.decided is None:
            rec.decided = at

    def recovered(self, key: str, at: datetime) -> None:
        """The service is well again after a decision: settled (e.g. ROLLBACK_SUCCESSFUL)
        as seen after the decision, and none of its rules breaching."""
        rec = self.services.get(key)
        if rec is not None and rec.decided is not None and rec.recovered is None:
            rec.recovered = at
