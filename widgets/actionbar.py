"""The action bar: automatic countdowns, the action being sent, the last result, MTTR.

Hidden while there is nothing to say. It renders plain data handed over by the screen;
it never calls an API.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from widgets.safe import LONG, clean
from widgets.tones import Toned


@dataclass(frozen=True, slots=True)
class ActionLine:
    """One line of the bar: a tone (``warn``, ``bad``, ``ok``, ``busy``, ``muted``) and text.

    The text may hold outside words (an AWS error, a service name): it is shown literally,
    cleaned of control characters and bounded, never read as markup.
    """

    tone: str
    label: str
    text: str


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
        for i, line in enumerate(self.lines):
            if i:
                text.append("\n")
            text.append(f" {clean(line.label)} ", self.tone(line.tone) + " reverse")
            text.append(
                f"  {clean(line.text, LONG)}",
                self.tone(line.tone if line.tone != "ok" else "muted"),
            )
        return text
