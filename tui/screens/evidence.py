"""The verdict's full evidence and every action line, one key away.

The compact layout (a small terminal) cuts the banner to one line and the action bar
to two: this shows all of it, in full and wrapped, as it stood when opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from widgets.safe import LONG, clean

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from textual import events
    from textual.app import ComposeResult

    from engine.verdict import Report
    from widgets.actionbar import ActionLine


def evidence_text(report: Report, actions: Sequence[ActionLine], at: datetime) -> Text:
    """The verdict, every reason behind it and every action line, literally."""
    text = Text()
    text.append(f"{report.verdict.value}", "bold reverse")
    text.append(f"  at {at.strftime('%H:%M:%S')} UTC\n")
    if report.reasons:
        for reason in report.reasons:
            text.append(f"\n• {clean(reason, LONG)}")
    else:
        text.append(f"\n{clean(report.headline)}")
    if actions:
        text.append("\n\nActions\n", "bold")
        for line in actions:
            text.append(f"\n{clean(line.label)}", "bold")
            text.append(f"  {clean(line.text, LONG)}")
    return text


class EvidenceScreen(ModalScreen[None]):
    """A modal with the full evidence; ``escape``, ``q`` or the evidence key closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Close", tooltip="Close the evidence", id="evidence.close"),
    ]

    def __init__(self, text: Text, key: str, key_display: str) -> None:
        super().__init__(id="evidence")
        self.text = text
        self.key = key
        """The configured evidence key: it closes the screen it opened."""
        self.key_display = key_display

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="evidence-box") as box:
            box.border_title = "Verdict and actions in full"
            yield Static(self.text, id="evidence-text", markup=False)
            yield Static(
                f"escape / q / {self.key_display} closes this", id="evidence-foot", markup=False
            )

    def on_key(self, event: events.Key) -> None:
        if event.key == self.key:
            event.stop()
            self.dismiss()
