"""One vocabulary of tones for every text-rendering row, styled once in CSS.

Rows render Rich ``Text`` built from these component classes, so colours come from
the theme (``$success``, ``$error`` ...) and nowhere else.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
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

    _tones: dict[str, str] | None = None
    _height: int = -1

    def tone(self, name: str) -> str:
        """The Rich style of a tone (``ok``, ``bad``, ``muted`` ...), cached until the
        styles change (a theme switch): rendering asks for it once per span."""
        cache = self._tones
        if cache is None:
            cache = self._tones = {}
        style = cache.get(name)
        if style is None:
            style = cache[name] = str(self.get_component_rich_style(f"tone--{name}", partial=True))
        return style

    def notify_style_update(self) -> None:
        self._tones = None
        super().notify_style_update()

    def repaint(self) -> None:
        """Repaint after new data; ask for a (costly, screen-wide) layout only when the
        widget's height changes, i.e. when its wrapped text has more or fewer lines."""
        width = self.content_size.width
        if width <= 0:
            self.refresh(layout=True)
            return
        rendered = self.render()
        height = len(rendered.wrap(self.app.console, width)) if isinstance(rendered, Text) else -1
        if height != self._height or height < 0:
            self._height = height
            self.refresh(layout=True)
        else:
            self.refresh()
