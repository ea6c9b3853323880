"""The action bar: automatic countdowns, the action being sent, the last result, MTTR.

Hidden while there is nothing to say. It renders plain data handed over by the screen;
it never calls an API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text

from engine.autopilot import Recovery
from engine.bake import BakeState
from engine.durations import clock_words
from widgets.safe import LONG, clean
from widgets.smoke import smoke_line
from widgets.tones import Toned

if TYPE_CHECKING:
    from datetime import datetime

    from engine.bake import BakeView
    from engine.controller import CanaryView, MttrView, Snapshot


@dataclass(frozen=True, slots=True)
class ActionLine:
    """One line of the bar: a tone (``warn``, ``bad``, ``ok``, ``busy``, ``muted``) and text.

    The text may hold outside words (an AWS error, a service name): it is shown literally,
    cleaned of control characters and bounded, never read as markup.
    """

    tone: str
    label: str
    text: str


COMPACT_LINES = 2
"""Rows the action bar takes at most in the compact layout (the most urgent first)."""


class ActionBar(Toned):
    """Lines about actions, most urgent first."""

    DEFAULT_CSS = """
    ActionBar { height: auto; padding: 0 1; background: $boost; display: none; }
    ActionBar.-shown { display: block; }
    ActionBar.-countdown { background: $warning 25%; }
    """

    def __init__(self) -> None:
        super().__init__(id="actionbar")
        self.lines: tuple[ActionLine, ...] = ()
        self.compact: str | None = None
        """The key that shows every line in full, when the bar is cut to two lines of
        one row each (a small terminal); ``None``: every line, wrapped."""

    def set_compact(self, key: str | None) -> None:
        """Cut to ``COMPACT_LINES`` one-row lines (``+N more · e``) when ``key`` names
        the key that shows them all; every line in full when ``None``."""
        if key != self.compact:
            self.compact = key
            self.repaint()

    def show(self, lines: tuple[ActionLine, ...]) -> None:
        """Show these lines; repaints only on a change."""
        if lines == self.lines:
            return
        self.lines = lines
        self.set_class(bool(lines), "-shown")
        self.set_class(any(line.label.startswith("AUTO") for line in lines), "-countdown")
        self.repaint()

    def render(self) -> Text:
        text = Text(overflow="fold")
        lines = self.lines
        hint = ""
        if self.compact is not None and len(lines) > COMPACT_LINES:
            hidden = len(lines) - COMPACT_LINES + 1
            lines = lines[: COMPACT_LINES - 1]
            hint = f"+{hidden} more · {self.compact} shows all"
        width = self.text_width
        for i, line in enumerate(lines):
            if i:
                text.append("\n")
            row = Text()
            row.append(f" {clean(line.label)} ", self.tone(line.tone) + " reverse")
            row.append(
                f"  {clean(line.text, LONG)}",
                self.tone(line.tone if line.tone != "ok" else "muted"),
            )
            if self.compact is not None and row.cell_len > width > 0:
                row.truncate(width, overflow="ellipsis")
            text.append_text(row)
        if hint:
            text.append(f"\n{hint}", self.tone("muted"))
        return text


@dataclass(frozen=True, slots=True)
class KeyHints:
    """The keys the hints name, as the live keymap has them (``[keys]`` remaps them)."""

    promote: str = "P"
    rollback: str = "R"
    resume: str = "r"
    cancel: str = "c"
    evidence: str = "e"
    smoke: str = "t"


def canary_words(view: CanaryView, now: datetime, keys: KeyHints) -> str:
    """``canary 25% · step 2/4 · paused: P promotes`` — where a canary stands."""
    if view.observed is None:
        return "canary weights unknown yet"
    parts = [f"canary {view.observed:.0f}%"]
    if view.step >= 0:
        parts.append(f"step {view.step + 1}/{view.steps}")
    if view.rolled_back:
        parts.append(
            f"rolled back: all traffic on stable; {keys.promote} would start the canary again"
        )
    elif not view.started:
        parts.append(f"not started: {keys.promote} starts it")
    elif view.complete:
        parts.append("all traffic on the canary")
    elif view.held:
        parts.append(f"held by the operator: {keys.resume} resumes")
    elif view.held_by_verdict:
        parts.append("held: a rule is FAILING")
    elif view.waits_for_promote:
        parts.append(f"paused: {keys.promote} promotes")
    elif view.next_at is not None:
        left = max(0, int((view.next_at - now).total_seconds()))
        parts.append(f"next {view.next_weight}% in {left}s")
    return " · ".join(parts)


def mttr_words(view: MttrView, now: datetime) -> str:
    """``breach 02:03:10 · decided +21s · recovered +1m24s``."""
    return Recovery(view.breach, view.decided, view.recovered).describe(now)


def bake_line(view: BakeView, now: datetime) -> ActionLine | None:
    """``BAKING web 12:31 left`` / ``SIGNED OFF web 04:12 UTC`` (``None``: nothing to say
    yet, the deployment is not complete)."""
    window = clock_words(view.window)
    if view.state is BakeState.BAKING:
        healthy = clock_words(view.healthy_time(now))
        return ActionLine(
            "busy",
            f"BAKING {view.label} {clock_words(view.left(now))} left",
            f"HEALTHY {healthy} of {window} since it completed; sign-off when the window is full",
        )
    if view.state is BakeState.PAUSED:
        return ActionLine(
            "warn",
            f"BAKE PAUSED {view.label} {clock_words(view.left(now))} left",
            f"{view.reason} (not healthy time)",
        )
    if view.state is BakeState.SIGNED_OFF and view.signed_off_at is not None:
        return ActionLine(
            "ok",
            f"SIGNED OFF {view.label} {view.signed_off_at.strftime('%H:%M UTC')}",
            f"HEALTHY for the whole {window} bake window after completing",
        )
    if view.state is BakeState.FAILED:
        return ActionLine("bad", f"BAKE FAILED {view.label}", view.reason)
    return None


def action_lines(snapshot: Snapshot, now: datetime, keys: KeyHints) -> tuple[ActionLine, ...]:
    """The action bar's lines for a snapshot, most urgent first."""
    lines: list[ActionLine] = []
    for countdown in snapshot.countdowns:
        lines.append(
            ActionLine(
                "warn",
                f"AUTO {countdown.verb.value.upper()} in {countdown.remaining(now):.0f}s",
                f"{countdown.label} · {countdown.evidence.summary()}"
                f" · press {keys.cancel} to cancel",
            )
        )
    for canary in snapshot.canaries:
        lines.append(
            ActionLine("busy", "CANARY", f"{canary.label}: {canary_words(canary, now, keys)}")
        )
    for planned in snapshot.sending:
        lines.append(ActionLine("busy", "SENDING", f"{planned.title}: {planned.effect}"))
    for bake in snapshot.bakes:
        line = bake_line(bake, now)
        if line is not None:
            lines.append(line)
    result = snapshot.last_result
    if result is not None:
        tone = {"done": "ok", "failed": "bad", "refused": "warn"}[result.outcome.value]
        how = "auto " if result.automatic else ""
        lines.append(
            ActionLine(
                tone,
                f"{how}{result.plan.verb.value} {result.outcome.value.upper()}",
                f"{result.plan.label} {result.plan.change} at {result.at.strftime('%H:%M:%S')}"
                f" · {result.message}",
            )
        )
    for run in snapshot.smoke:
        lines.append(ActionLine(*smoke_line(run, now, keys.smoke)))
    for view in snapshot.mttr:
        lines.append(ActionLine("muted", "MTTR", f"{view.label}: {mttr_words(view, now)}"))
    return tuple(lines)
