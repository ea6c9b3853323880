"""Shown instead of the dashboard while the terminal is below the minimum size.

A layout squeezed below its minimum cuts panes to nothing (a deployments pane with no
height) and hides what the operator needs to read; this says so plainly instead.
The app pops it as soon as the terminal is large enough again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen
from textual.widgets import Static

if TYPE_CHECKING:
    from textual.app import ComposeResult

MIN_WIDTH = 60
"""Fewest columns the dashboard is laid out in."""
MIN_HEIGHT = 16
"""Fewest lines the dashboard is laid out in."""


def too_small(width: int, height: int) -> bool:
    """Whether a terminal of this size is below the dashboard's minimum."""
    return width < MIN_WIDTH or height < MIN_HEIGHT


class TooSmallScreen(Screen[None]):
    """``terminal too small (need 60x16)``: the data and the rules keep running."""

    DEFAULT_CSS = """
    TooSmallScreen { align: center middle; }
    TooSmallScreen > Static { width: auto; max-width: 100%; color: $warning; text-style: bold; }
    """

    def __init__(self) -> None:
        super().__init__(id="too-small")

    def compose(self) -> ComposeResult:
        yield Static(
            f"terminal too small (need {MIN_WIDTH}x{MIN_HEIGHT})\n"
            "data and rules keep running; q quits",
            markup=False,
        )
