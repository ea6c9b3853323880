"""Help: every key the current screen answers to, from the bindings themselves."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

if TYPE_CHECKING:
    from collections.abc import Iterable

    from textual.app import ComposeResult


class HelpScreen(ModalScreen[None]):
    """A modal table of keys; ``escape``, ``q`` or ``?`` closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape,q,question_mark", "dismiss", "Close", tooltip="Close help", id="help.close"
        ),
    ]

    def __init__(self, keys: Iterable[tuple[str, str, str]]) -> None:
        super().__init__(id="help")
        self.keys = list(keys)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "Keys"
            yield Static(
                "deploywatch watches ECS deployments and the signals around them. "
                "Times are UTC. STALE means the last fetch failed: the data shown is "
                "the last good answer, with its age.",
                id="help-intro",
            )
            table: DataTable[str] = DataTable(show_cursor=False, zebra_stripes=True)
            table.add_columns("key", "does", "details")
            for key, description, tooltip in self.keys:
                table.add_row(key, description, tooltip)
            yield table
            yield Static("escape / ? / q closes this", id="help-foot")
