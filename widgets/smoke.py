"""Smoke runs in words and colours: the action bar's line and the smoke screen's body."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from engine.smoke import SmokeState
from widgets.safe import add

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from engine.smoke import SmokeRun

TONES = {
    SmokeState.RUNNING: "busy",
    SmokeState.PASSED: "ok",
    SmokeState.FAILED: "bad",
    SmokeState.TIMED_OUT: "bad",
    SmokeState.ERROR: "bad",
}
CASE_MARKS = {
    "passed": ("✓ pass", "green"),
    "failed": ("✗ FAIL", "bold red"),
    "error": ("✗ ERROR", "bold red"),
    "skipped": ("- skip", "yellow"),
}
STATE_STYLES = {"busy": "bold cyan", "ok": "bold green", "bad": "bold red"}


def smoke_line(run: SmokeRun, now: datetime, key: str) -> tuple[str, str, str]:
    """``(tone, label, text)`` of the action bar's line for one suite."""
    tone = TONES[run.state]
    text = run.summary(now)
    if run.state is not SmokeState.RUNNING:
        text += f" · {key} shows each case"
    return tone, "SMOKE", text


def smoke_text(runs: Sequence[SmokeRun], now: datetime, *, configured: Sequence[str]) -> Text:
    """Every suite: its state and elapsed time, then each case with its first failure line."""
    text = Text()
    by_name = {run.name: run for run in runs}
    for index, name in enumerate(configured):
        if index:
            text.append("\n\n")
        run = by_name.get(name)
        add(text, name, "bold")
        if run is None:
            text.append("  not run yet", "dim")
            continue
        tone = TONES[run.state]
        elapsed = run.elapsed(now)
        text.append(f"  {run.state.value.upper()}", STATE_STYLES[tone])
        text.append(f"  {elapsed:.0f}s · {run.trigger}")
        if run.state is SmokeState.RUNNING:
            continue
        if run.error:
            text.append("\n  ")
            add(text, run.error, "red" if run.failing else "")
        for case in run.cases:
            mark, style = CASE_MARKS.get(case.outcome, ("?", ""))
            text.append(f"\n  {mark:<8}", style)
            add(text, case.name)
            if case.message:
                text.append(": ", "dim")
                add(text, case.message, "dim" if case.outcome == "skipped" else "red")
        if run.cases_left_out:
            text.append(f"\n  … and {run.cases_left_out} more cases", "dim")
        if not run.cases and not run.error:
            text.append("\n  no test case reported", "dim")
    return text
