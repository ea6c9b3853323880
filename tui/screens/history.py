"""The deployment history (``h``): above, the figures the journey cards track, coloured
against their targets; below, every service's recent deployments — when, from → to,
kind, duration, outcome, who acted (from the audit log).

The history source runs while the screen is open (off the event loop, every minute);
a fetch that fails marks it STALE with its reason above the last good history, like any
pane. ``escape``, ``q`` or ``h`` closes it; ``j``/``k`` and the arrows scroll.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from engine.durations import span_words as age_text
from engine.history import (
    BY_BREAKER,
    BY_OPERATOR,
    BY_RULE,
    COMPLETED,
    IN_PROGRESS,
    ROLLBACK_FAILED,
    ROLLED_BACK,
    STOPPED,
    Figure,
    Row,
    acts_from_audit,
    build_history_source,
    duration_words,
    figures,
    rows,
)
from sources.model import SourceFailure
from widgets.safe import add

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from datetime import datetime

    from textual import events
    from textual.app import ComposeResult

    from engine.config import Settings
    from engine.controller import Controller
    from sources.history import HistorySample


class HistoryFeed(Protocol):
    """What the screen follows: the history source's stream."""

    def stream(self) -> AsyncIterator[HistorySample | SourceFailure]:
        """Samples and failures until cancelled."""
        ...


@dataclass
class HistoryMemory:
    """The last history fetched and the current failure (kept while the screen is
    closed, so that reopening it shows the last good history at once)."""

    sample: HistorySample | None = None
    rows: list[Row] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    failure: SourceFailure | None = None
    failing_since: datetime | None = None


OUTCOME_STYLES = {
    COMPLETED: "green",
    IN_PROGRESS: "cyan",
    STOPPED: "yellow",
    BY_BREAKER: "bold red",
    BY_OPERATOR: "bold yellow",
    BY_RULE: "bold yellow",
    ROLLED_BACK: "bold yellow",
    ROLLBACK_FAILED: "bold red",
}
OUTCOME_SHORT = {
    BY_BREAKER: "↩ by breaker",
    BY_OPERATOR: "↩ by operator",
    BY_RULE: "↩ by rule",
    ROLLED_BACK: "↩ rolled back",
    ROLLBACK_FAILED: "↩ failed",
}
"""Shorter words where the screen is narrow (below WIDE)."""
WIDE = 110
"""From this many columns the table shows the outcomes in full and the kind."""


def figures_text(figs: list[Figure], width: int) -> Text:
    """The rates, then the times to deploy, then MTTR — each coloured against its
    target (a narrow screen gets the short form: ``success 92% (> 95%)``)."""
    wide = width >= WIDE
    text = Text()
    for index, fig in enumerate(figs):
        if index in (2, 4):
            text.append("\n")
        elif index:
            text.append("   ")
        met = fig.met
        style = {True: "bold green", False: "bold red", None: "dim"}[met]
        mark = {True: "✓", False: "✗", None: "?"}[met]
        text.append(f"{mark} ", style)
        text.append(fig.text() if wide else fig.short(), style)
    return text


def table_text(listed: list[Row], width: int) -> Text:
    """One line per deployment, newest first per service; on a narrow screen the
    outcome is short (``↩ by breaker``: rolled back by the breaker) and who acted is cut
    to the width."""
    wide = width >= WIDE
    outcome_width = 27 if wide else 13
    text = Text()
    head = f"{'started':<11} {'service':<7} {'from → to':<15} "
    head += f"{'kind':<11} " if wide else ""
    head += f"{'took':>6}  {'outcome':<{outcome_width}} who"
    text.append(head, "bold")
    who_width = max(8, width - len(head) + 3 - 4)
    if not listed:
        text.append("\nno deployment listed", "dim")
    for row in listed:
        entry = row.entry
        begun = entry.begun.strftime("%m-%d %H:%M") if entry.begun else "?"
        text.append(f"\n{begun:<11} ")
        add(text, f"{_cut(row.label, 7):<7} ")
        change = f"{entry.from_revision or '?'} → {entry.to_revision or '?'}"
        add(text, f"{_cut(change, 15):<15} ")
        if wide:
            add(text, f"{_cut(entry.kind, 11):<11} ")
        text.append(f"{duration_words(entry.duration):>6}  ")
        words = row.outcome if wide else OUTCOME_SHORT.get(row.outcome, row.outcome)
        text.append(f"{words:<{outcome_width}}", OUTCOME_STYLES.get(row.outcome, ""))
        text.append(" ")
        add(text, _cut(", ".join(row.who), who_width) or "—", "" if row.who else "dim")
    return text


def _cut(value: str, width: int) -> str:
    return value if len(value) <= width else value[: max(0, width - 1)] + "…"


class HistoryScreen(Screen[None]):
    """Recent deployments and their figures."""

    DEFAULT_CSS = """
    HistoryScreen { layout: vertical; }
    #history-head { height: auto; padding: 0 1; }
    #history-figures { height: auto; padding: 0 1; margin-bottom: 1; }
    #history-scroll { height: 1fr; padding: 0 1; }
    #history-foot { height: 1; padding: 0 1; color: $text-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Close", tooltip="Close the history", id="history.close"),
        Binding("j,down", "scroll(1)", "Down", show=False),
        Binding("k,up", "scroll(-1)", "Up", show=False),
    ]

    def __init__(
        self,
        settings: Settings,
        controller: Controller,
        memory: HistoryMemory,
        feed: Callable[[], HistoryFeed] | None = None,
    ) -> None:
        super().__init__(id="history")
        self.settings = settings
        self.controller = controller
        self.memory = memory
        self._feed = feed or (lambda: build_history_source(settings, controller.clock))
        self.labels = {ref.key: ref.display for ref in settings.services}

    def compose(self) -> ComposeResult:
        yield Static(id="history-head", markup=False)
        yield Static(id="history-figures", markup=False)
        with VerticalScroll(id="history-scroll"):
            yield Static(id="history-table", markup=False)
        key = self.settings.keys.history
        yield Static(
            f"escape / q / {key} closes · j/k scroll · ↩ rolled back",
            id="history-foot",
            markup=False,
        )

    def on_mount(self) -> None:
        self.repaint()
        self.run_worker(self._follow(), name="history", exclusive=True, exit_on_error=False)
        self.set_interval(1.0, self._tick, name="history-tick")

    def _tick(self) -> None:
        if self.memory.failure is not None:
            self.repaint()  # the STALE age keeps moving

    def on_resize(self, event: events.Resize) -> None:
        self.repaint()

    async def _follow(self) -> None:
        """Consume the history source while the screen is open."""
        audit = self.controller.actions.audit
        async for item in self._feed().stream():
            memory = self.memory
            if isinstance(item, SourceFailure):
                if memory.failure is None:
                    memory.failing_since = item.at
                memory.failure = item
            else:
                entries = await asyncio.to_thread(audit.read)
                memory.sample = item
                memory.rows = rows(item, acts_from_audit(entries), self.labels, item.at)
                memory.figures = figures(memory.rows, self.settings.history)
                memory.failure = memory.failing_since = None
            self.repaint()

    def repaint(self) -> None:
        """Show what the memory holds."""
        if not self.is_mounted:
            return
        memory = self.memory
        now = self.controller.clock()
        head = Text("Deployment history", "bold")
        sample = memory.sample
        if sample is not None:
            services = len(sample.services)
            head.append(
                f" · {len(memory.rows)} deployments of {services} service"
                f"{'s' if services != 1 else ''} · fetched {sample.at.strftime('%H:%M:%S')} UTC"
            )
        elif memory.failure is None:
            head.append(" · fetching…", "dim")
        failure = memory.failure
        if failure is not None:
            since = memory.failing_since or failure.at
            if sample is not None:
                since = sample.at
            age = age_text(max(0.0, (now - since).total_seconds()))
            head.append(f"\nSTALE {age}  ", "bold red")
            add(head, f"{failure.reason}: {failure.error}", "red")
        self.query_one("#history-head", Static).update(head)
        width = self.size.width or self.app.size.width
        figs = self.query_one("#history-figures", Static)
        figs.update(figures_text(memory.figures, width) if memory.figures else Text(""))
        self.query_one("#history-table", Static).update(table_text(memory.rows, width))

    def action_scroll(self, lines: int) -> None:
        self.query_one("#history-scroll", VerticalScroll).scroll_relative(y=lines, animate=False)

    def on_key(self, event: events.Key) -> None:
        if event.key == self.settings.keys.history:
            event.stop()
            self.dismiss()
