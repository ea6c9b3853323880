"""One vocabulary of tones for every text-rendering row, styled once in CSS.

Rows render Rich ``Text`` built from these component classes, so colours come from
the theme (``$success``, ``$error`` ...) and nowhere else.
"""

from __future__ import annotations

from typing import ClassVar

from textual.widget import Widget

TONES = ("label", "muted", "ok", "busy", "warn", "bad", "none", "stale", "bar-done", "bar-todo")


class Toned(Widget):
    """Base for widgets that render styled text: ``self.tone("bad")`` gives a style."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {f"tone--{name}" for name in TONES}

    DEFAULT_CSS = """
    Toned > .tone--label { text-style: bold; }
    Toned > .tone--muted { color: $text-muted; }
    Toned > .tone--ok { color: $success; text-style: bold; }
    Toned > .tone--busy { color: $primary-lighten-2; text-style: bold; }
    Toned > .tone--warn { color: $warning; text-style: bold; }
    Toned > .tone--bad { color: $error; text-style: bold; }
    Toned > .tone--none { color: $text-muted; text-style: bold; }
    Toned > .tone--stale { color: $warning; text-style: bold reverse; }
    Toned > .tone--bar-done { color: $success; }
    Toned > .tone--bar-todo { color: $panel-lighten-2; }
    """

    def tone(self, name: str) -> str:
        """The Rich style of a tone (``ok``, ``bad``, ``muted`` ...)."""
        return str(self.get_component_rich_style(f"tone--{name}", partial=True))
