"""Help: every key the current screen answers to, from the bindings themselves."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from widgets.safe import safe_text

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
                markup=False,
            )
            # Cells given as str are read as markup by DataTable: keys come from the
            # config's [keys] table, so every cell is literal Text.
            table: DataTable[Text] = DataTable(show_cursor=False, zebra_stripes=True)
            table.add_columns("key", "does", "details")
            for key, description, tooltip in self.keys:
                table.add_row(safe_text(key), safe_text(description), safe_text(tooltip))
            yield table
            yield Static("escape / ? / q closes this", id="help-foot", markup=False)
