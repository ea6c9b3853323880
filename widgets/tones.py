"""One vocabulary of tones for every text-rendering row, styled once in CSS.

Rows render Rich ``Text`` built from these component classes, so colours come from
the theme (``$success``, ``$error`` ...) and nowhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.content import Content
from textual.geometry import Region
from textual.visual import Visual
from textual.widget import Widget

if TYPE_CHECKING:
    from textual.geometry import Size
    from textual.strip import Strip


def changed_span(old: Strip, new: Strip) -> tuple[int, int]:
    """The cells ``[start, end)`` in which two lines differ.

    Lines equal on a prefix and a suffix of segments (and of characters inside the
    first and last differing segments when their style is the same) repaint only the
    middle: a count that moves repaints a few cells, not the line.
    """
    a, b = list(old), list(new)
    width = max(old.cell_length, new.cell_length)
    if any(len(s.text) != s.cell_length for s in (*a, *b)):
        return 0, width  # wide characters: don't split them
    start = 0
    i = 0
    shortest = min(len(a), len(b))
    while i < shortest and a[i] == b[i]:
        start += len(a[i].text)
        i += 1
    if i < shortest and a[i].style == b[i].style:
        ta, tb = a[i].text, b[i].text
        k = 0
        while k < min(len(ta), len(tb)) and ta[k] == tb[k]:
            k += 1
        start += k
    end = width
    if old.cell_length != new.cell_length:
        return start, end  # the ends are not aligned: no common suffix
    j = 1
    while j <= shortest - i and a[-j] == b[-j]:
        end -= len(a[-j].text)
        j += 1
    if j <= shortest - i and a[-j].style == b[-j].style:
        ta, tb = a[-j].text, b[-j].text
        k = 0
        while k < min(len(ta), len(tb)) and ta[-1 - k] == tb[-1 - k]:
            k += 1
        end -= k
    if end <= start:  # an insertion or deletion seen from both sides
        return min(start, end), max(start, end) + 1
    return start, end


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
    _shown: list[Strip] | None = None
    """The lines last painted by :meth:`repaint`, to repaint only the cells that change."""
    _shown_width: int = 0
    _shown_text: Text | None = None
    _laid_out_width: int = 0
    """The content width of the latest layout (see :attr:`text_width`)."""

    @property
    def text_width(self) -> int:
        """The width ``render()`` lays its text out for (cuts a line to, sizes a
        sparkline to). During a layout after a resize ``content_size`` still holds the
        old width: text cut for it would wrap at the new one, and the widget would keep
        the height of the wrapped text (blank rows under a one-line banner at 80x24)."""
        return self._laid_out_width or self.content_size.width

    _height: tuple[int, int] | None = None
    """``(width, height)`` of the latest :meth:`get_content_height`, until a refresh."""

    def clear_cached_dimensions(self) -> None:
        self._height = None
        super().clear_cached_dimensions()

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """The height of the text rendered for ``width`` (the width being laid out)."""
        self._laid_out_width = width
        if self._height is not None and self._height[0] == width:
            return self._height[1]
        rendered = self.render()
        if width <= 0 or not isinstance(rendered, Text):
            return super().get_content_height(container, viewport, width)
        content = Content.from_rich_text(rendered, console=self.app.console)
        height = len(Visual.to_strips(self, content, width, None, self.visual_style))
        self._height = (width, height)
        return height

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
        self._shown = self._shown_text = None
        super().notify_style_update()

    def repaint(self) -> None:
        """Repaint after new data: only the cells that differ from what is shown (a new
        judgement often says the same thing; a new count changes a few cells); ask for
        a (costly, screen-wide) layout only when the widget's height changes, i.e. when
        its wrapped text has more or fewer lines."""
        width = self.content_size.width
        rendered = self.render()
        if width <= 0 or not isinstance(rendered, Text):
            self._shown = self._shown_text = None
            self.refresh(layout=True)
            return
        if rendered == self._shown_text and width == self._shown_width:
            return
        self._shown_text = rendered
        content = Content.from_rich_text(rendered, console=self.app.console)
        lines = Visual.to_strips(self, content, width, None, self.visual_style)
        shown, self._shown = self._shown, lines
        if shown is None or len(shown) != len(lines) or width != self._shown_width:
            self._shown_width = width
            self.refresh(layout=shown is None or len(shown) != len(lines))
            return
        regions = []
        for y, (old, new) in enumerate(zip(shown, lines, strict=True)):
            if old != new:
                start, end = changed_span(old, new)
                regions.append(Region(start, y, end - start, 1))
        if regions:
            self.refresh(*regions)
