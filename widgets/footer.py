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
    from textual.screen import Screen

FIRST: tuple[str, ...] = ("quit", "help", "act('rollback')", "cancel_auto", "evidence")
"""Actions whose keys come first in the footer, in this order (the others follow in
their own order): leave, help, then what a failing deployment needs."""


class KeyFooter(Footer):
    """A :class:`~textual.widgets.Footer` whose first keys are quit and help (see FIRST)."""

    FIRST: ClassVar[tuple[str, ...]] = FIRST

    _composed_for: tuple[object, ...] | None = None
    """The bindings the keys shown were composed from."""

    def bindings_changed(self, screen: Screen[object]) -> None:
        # Textual composes the footer again whenever the screen's bindings *may* have
        # changed: focus moving, and every dialog opened or closed over the screen
        # (twice per `?`), each a new set of key widgets and a layout of the screen.
        # Compose only when the keys it would show are not those shown.
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            shown = tuple(
                (key, binding, enabled, tooltip)
                for key, (_node, binding, enabled, tooltip) in screen.active_bindings.items()
            )
            if shown == self._composed_for:
                return
            self._composed_for = shown
        super().bindings_changed(screen)

    def compose(self) -> ComposeResult:
        children = list(super().compose())
        rank = {action: n for n, action in enumerate(self.FIRST)}

        def first(widget: object) -> int:
            if isinstance(widget, FooterKey):
                return rank.get(widget.action, len(rank))
            return len(rank)

        yield from sorted(children, key=first)  # stable: the others keep their order
