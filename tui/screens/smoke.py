"""The smoke suites, live: each one's state and elapsed time, then each test case with
pass / fail / skip and the first line of its failure. Opened (and the suites of the key
run) with ``t``; ``escape``, ``q`` or ``t`` closes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from widgets.smoke import smoke_text

if TYPE_CHECKING:
    from rich.text import Text
    from textual import events
    from textual.app import ComposeResult

    from engine.controller import Controller

REFRESH = 0.5
"""Seconds between two repaints while open (the elapsed time moves)."""


class SmokeScreen(ModalScreen[None]):
    """Every ``[[smoke]]`` suite's latest run."""

    DEFAULT_CSS = """
    SmokeScreen { align: center middle; }
    #smoke-box {
        width: 100;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: round $accent;
        background: $surface;
        padding: 1 2;
    }
    #smoke-foot { color: $text-muted; margin-top: 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Close", tooltip="Close the smoke tests", id="smoke.close"),
    ]

    def __init__(self, controller: Controller, key: str) -> None:
        super().__init__(id="smoke")
        self.controller = controller
        self.key = key
        """The configured smoke key: it closes the screen it opened."""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="smoke-box") as box:
            box.border_title = "Smoke tests"
            yield Static(self._text(), id="smoke-text", markup=False)
            yield Static("escape / q closes this", id="smoke-foot", markup=False)

    def on_mount(self) -> None:
        self.set_interval(REFRESH, self.refresh_runs, name="smoke-refresh")

    def _text(self) -> Text:
        snapshot = self.controller.snapshot
        names = [entry.name for entry in self.controller.settings.smoke]
        return smoke_text(snapshot.smoke, self.controller.clock(), configured=names)

    def refresh_runs(self) -> None:
        """Repaint from the watch's latest snapshot."""
        self.query_one("#smoke-text", Static).update(self._text())

    def on_key(self, event: events.Key) -> None:
        if event.key == self.key:
            event.stop()
            self.dismiss()
