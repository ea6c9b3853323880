"""The footer, with quit and help always first, then roll back, cancel and evidence.

Textual's footer lists the focused widget's keys, then the screen's, then the app's, and
a narrow terminal cuts the last ones: ``q`` and ``?`` would go first. Here they lead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.widgets import Footer
from textual.widgets._footer import FooterKey

if TYPE_CHECKING:
    from textual.app import ComposeResult

FIRST: tuple[str, ...] = ("quit", "help", "act('rollback')", "cancel_auto", "evidence")
"""Actions whose keys come first in the footer, in this order (the others follow in
their own order): leave, help, then what a failing deployment needs."""


class KeyFooter(Footer):
    """A :class:`~textual.widgets.Footer` whose first keys are quit and help (see FIRST)."""

    FIRST: ClassVar[tuple[str, ...]] = FIRST

    def compose(self) -> ComposeResult:
        children = list(super().compose())
        rank = {action: n for n, action in enumerate(self.FIRST)}

        def first(widget: object) -> int:
            if isinstance(widget, FooterKey):
                return rank.get(widget.action, len(rank))
            return len(rank)

        yield from sorted(children, key=first)  # stable: the others keep their order
