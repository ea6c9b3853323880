"""A scrolling list of text rows that builds and paints only what is in view.

Hundreds of row widgets with ``height: auto`` cost Textual a layout of all of them
whenever one changes height, and a render of each to learn its height. A
:class:`RowList` is one widget on Textual's Line API (a ``ScrollView``): it keeps each
row's height, builds a row's text when the row is in view (or, off screen, only to
measure it), caches the row's rendered lines, and repaints only the cells that changed.
Rows are keyed by a string and stay in the order they were given.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, cast

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style as RichStyle
from textual.content import Content
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.style import Style
from textual.visual import Visual

from widgets.tones import Toned, changed_span

if TYPE_CHECKING:
    from collections.abc import Iterable

    from rich.text import Text
    from textual.color import Color
    from textual.css.styles import RulesMap

EDGE = "▎"
"""The left edge of a row: the glyph of Textual's ``wide`` left border."""
CURSOR = "▶"
"""The first cell of a highlighted row's edge: the selection, visible without colour."""


@dataclass(slots=True, eq=False)
class _Row:
    """What the list remembers of one row."""

    key: str
    height: int = 1
    """Lines of text (the gap after the row not included)."""
    plain: str | None = None
    """The row's text at its last build; ``None`` when its data changed since."""
    strips: list[Strip] | None = None
    """The row's rendered lines, frame included; ``None`` when out of date."""
    clock: datetime | None = None
    """The clock the strips were built at (rows whose text moves with time)."""
    moves: bool = False
    """The row's text changes with the clock (an elapsed time, an age)."""
    lines: dict[object, list[Strip]] = field(default_factory=dict)
    """The rendered lines of each line of the row's text at its last render, by the
    line's text, spans and frame: a line that did not change is not rendered again."""


class RowList(Toned, ScrollView, can_focus=False):
    """Rows of styled text, painted from caches, built only when needed.

    Subclasses say what a row shows (:meth:`row_text`) and, if they like, whether its
    text moves with the clock (:meth:`row_moves`), the colour of its left edge
    (:meth:`row_edge`) and whether it is highlighted (:meth:`row_highlighted`); they
    call :meth:`update_rows` when rows' data changed and :meth:`tick` when the clock
    moved. Rows are framed like a widget with ``padding: 0 ROW_PADDING``, a ``wide``
    left border when ``ROW_EDGE``, and ``margin-bottom: ROW_GAP``.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {"rowlist--highlight"}

    DEFAULT_CSS = """
    RowList { height: 1fr; overflow-x: hidden; overflow-y: auto; }
    RowList > .rowlist--highlight { background: $boost; }
    """

    ROW_GAP: ClassVar[int] = 0
    """Blank lines after each row."""
    ROW_PADDING: ClassVar[int] = 1
    """Blank cells either side of a row's text."""
    ROW_EDGE: ClassVar[bool] = False
    """Draw a one-cell coloured edge left of each row."""
    WIDTH_FREE: ClassVar[bool] = True
    """A row's text does not depend on the width (its height can be measured again at
    another width from the text of its last build)."""
    SETTLE_EVERY: ClassVar[int] = 5
    """Ticks between two measures of the rows below the view that changed."""

    def __init__(self, keys: Iterable[str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._rows = [_Row(key) for key in keys]
        self._index = {row.key: i for i, row in enumerate(self._rows)}
        self._tops: list[int] = []
        """First line of each row (a prefix sum of heights and gaps)."""
        self._total = 0
        self._width = 0
        """The width the rows are measured and rendered at (0: not laid out yet)."""
        self._clock: datetime | None = None
        # Styles derived from CSS, kept until the styles change (a theme switch).
        self._row_styles: dict[bool, tuple[Style, RichStyle]] = {}
        self._edges: dict[tuple[Color | None, bool], Segment] = {}
        self._blanks: dict[int, Strip] = {}
        self._heights_off = False
        """A row rendered at another height than measured: tops are out of date."""
        self._deferred: set[int] = set()
        """Rows below the view whose data changed since they were measured. Their
        heights move nothing in view: they are measured when the list scrolls, when a
        row is selected, and every ``SETTLE_EVERY`` ticks (for the scrollbar)."""
        self._ticks = 0
        self._sized: tuple[Size, Size, Size] | None = None
        self._retop()

    # ---- for subclasses -----------------------------------------------------------

    def row_text(self, key: str, width: int) -> Text:
        """The text of a row, ``width`` cells wide at most (wrapped beyond)."""
        raise NotImplementedError

    def row_moves(self, key: str) -> bool:
        """Whether a row's text changes with the clock alone."""
        return False

    def row_edge(self, key: str) -> Color | None:
        """The colour of a row's left edge (with ``ROW_EDGE``)."""
        return None

    def row_highlighted(self, key: str) -> bool:
        """Whether a row is drawn on the highlight background."""
        return False

    def row_height(self, key: str, width: int) -> int | None:
        """A row's height in lines, when a subclass knows it cheaper than building the
        row's text; ``None``: build the text and measure it."""
        return None

    # ---- public -------------------------------------------------------------------

    @property
    def keys(self) -> list[str]:
        """The rows' keys, in order."""
        return [row.key for row in self._rows]

    def text_of(self, key: str) -> Text:
        """A row's text as it is (or would be) on screen now."""
        return self.row_text(key, self._inner_width())

    def update_rows(self, keys: Iterable[str]) -> None:
        """Rows whose data changed: rebuild those in view (repainting only the cells
        that differ); measure the others again, their text is built when they scroll
        into view."""
        changed = [self._index[key] for key in keys if key in self._index]
        for i in changed:
            self._rows[i].plain = None
        self._refresh_rows(changed)

    def tick(self, clock: datetime) -> None:
        """The clock moved: repaint the moving rows in view (the others catch up when
        they scroll into view)."""
        self._clock = clock
        self._ticks += 1
        if self._ticks % self.SETTLE_EVERY == 0:
            self._settle()
        self._refresh_rows([i for i in self._visible() if self._rows[i].moves])

    def row_region(self, key: str) -> Region:
        """Where a row is, in lines of the whole list (its gap not included)."""
        self._settle()
        i = self._index[key]
        return Region(0, self._tops[i], self._width, self._rows[i].height)

    def index_at(self, line: int) -> int | None:
        """The index of the row shown on ``line`` of the whole list, if any."""
        if line < 0 or line >= self._total:
            return None
        return bisect_right(self._tops, line) - 1

    def rebuild_rows(self) -> None:
        """Every row's text changed (its form, not its data): measure and build again."""
        for row in self._rows:
            row.plain = row.strips = None
            row.lines = {}
        if self._width > 0:
            self._deferred.clear()
            for row in self._rows:
                row.height = self._measure(row)
            self._retop()
        self.refresh()

    def set_keys(self, keys: Iterable[str]) -> None:
        """Show these rows, in this order: rows already shown keep their heights and
        caches; rows that were not (new, or shown again after a filter hid them) are
        built afresh; rows left out are forgotten."""
        rows = {row.key: row for row in self._rows}
        deferred = {self._rows[i].key for i in self._deferred}
        self._rows = [rows.get(key) or self._new_row(key) for key in dict.fromkeys(keys)]
        self._index = {row.key: i for i, row in enumerate(self._rows)}
        self._deferred = {self._index[key] for key in deferred if key in self._index}
        self._retop()
        self.refresh()

    def _new_row(self, key: str) -> _Row:
        row = _Row(key)
        if self._width > 0:
            row.height = self._measure(row)
        return row

    def repaint_row(self, key: str) -> None:
        """Repaint one row (its frame changed, e.g. the highlight)."""
        i = self._index.get(key)
        if i is not None:
            self._refresh_rows([i])

    # ---- Textual ------------------------------------------------------------------

    def notify_style_update(self) -> None:
        self._row_styles.clear()
        self._edges.clear()
        self._blanks.clear()
        for row in self._rows:
            row.strips = None
            row.lines = {}
        super().notify_style_update()

    def on_resize(self) -> None:
        self._check_width()

    def _size_updated(
        self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True
    ) -> bool:
        # ScrollView compares the compositor's virtual size (its region, for a Line API
        # widget) with its own and so repaints its scrollbar on every screen layout.
        # Pass only real changes on (scrolling and our own virtual size still update it).
        sized = (size, self.virtual_size, container_size)
        if sized == self._sized:
            return False
        self._sized = sized
        return super()._size_updated(size, virtual_size, container_size, layout)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        self._settle()  # rows about to come into view must be where they belong
        super().watch_scroll_y(old_value, new_value)

    def watch_show_vertical_scrollbar(self) -> None:
        # The scrollbar takes cells from the rows: measure them again at the new width.
        self.call_later(self._check_width)

    def render_line(self, y: int) -> Strip:
        line = y + self.scroll_offset.y
        i = self.index_at(line)
        if i is None or self._width <= 0:
            return self._blank()
        strips = self._strips(i)
        within = line - self._tops[i]
        return strips[within] if within < len(strips) else self._blank()

    # ---- inside -------------------------------------------------------------------

    def _inner_width(self) -> int:
        width = self._width or self.scrollable_content_region.width
        return max(1, width - 2 * self.ROW_PADDING - (1 if self.ROW_EDGE else 0))

    def _check_width(self) -> None:
        width = self.scrollable_content_region.width
        if width <= 0 or width == self._width:
            return
        self._width = width
        self._deferred.clear()
        self._blanks.clear()
        for row in self._rows:
            row.strips = None
            if not self.WIDTH_FREE:
                row.plain = None
            row.height = self._measure(row)
        self._retop()
        self.refresh()

    def _retop(self) -> None:
        tops = []
        line = 0
        gap = self.ROW_GAP
        for row in self._rows:
            tops.append(line)
            line += row.height + gap
        self._tops = tops
        self._total = line
        self._heights_off = False
        self._set_virtual_size(Size(self._width, line))

    def _set_virtual_size(self, size: Size) -> None:
        """The list's scrollable size. A new total height moves nothing on screen but
        the scrollbar (the list's own size is set by CSS): the scrollbar is updated
        alone, without the screen-wide layout a ``virtual_size`` change asks for (10 ms
        at 200 services); a scrollbar that comes or goes still gets its layout."""
        if size == self.virtual_size:
            return
        if self._width <= 0 or not self.container_size:
            self.virtual_size = size  # not laid out yet
            return
        self.set_reactive(RowList.virtual_size, size)
        self._scroll_update(size)  # shows or hides the scrollbar (a layout), sizes it

    def _visible(self) -> range:
        if not self._rows or self._width <= 0 or self.size.height <= 0:
            return range(0)
        top = self.scroll_offset.y
        first = self.index_at(min(top, self._total - 1)) or 0
        last = self.index_at(min(top + self.size.height, self._total) - 1)
        return range(first, (last if last is not None else first) + 1)

    def _measure(self, row: _Row) -> int:
        """A row's height at the current width, from the cheapest source."""
        inner = self._inner_width()
        known = self.row_height(row.key, inner)
        if known is not None:
            return known
        if row.plain is None:
            row.plain = self.row_text(row.key, inner).plain
        return self.lines_of(row.plain, inner)

    def lines_of(self, plain: str, width: int) -> int:
        """Lines that ``plain`` takes wrapped at ``width``, the way Textual wraps it."""
        rules = cast("RulesMap", self.styles)  # what Textual itself passes here
        return sum(
            1 if cell_len(line) <= width else Content(line).get_height(rules, width)
            for line in plain.split("\n")
        )

    def _refresh_rows(self, indexes: Iterable[int]) -> None:
        """Bring rows up to date: build those in view and repaint what changed; measure
        the others. A changed height moves the rows below it: repaint the view."""
        if self._width <= 0:
            return  # not laid out yet: measured on the first resize
        visible = self._visible()
        moved = False
        repaint: list[tuple[int, list[Strip] | None]] = []
        for i in indexes:
            row = self._rows[i]
            if i in visible:
                old = row.strips
                row.strips = None
                self._strips(i)
                repaint.append((i, old))
            elif visible and i >= visible.stop:
                row.strips = None
                self._deferred.add(i)
            else:
                row.strips = None
                height = self._measure(row)
                if height != row.height:
                    row.height = height
                    moved = True
        if moved or self._heights_off:
            self._retop()
            self.refresh()
            return
        scroll_y = self.scroll_offset.y
        view = self.size.height
        for i, old in repaint:
            new = self._rows[i].strips or []
            top = self._tops[i] - scroll_y
            for j, strip in enumerate(new):
                if not 0 <= top + j < view:
                    continue
                if old is None or j >= len(old):
                    self.refresh(Region(0, top + j, self._width, 1))
                elif old[j] != strip:
                    start, end = changed_span(old[j], strip)
                    self.refresh(Region(start, top + j, end - start, 1))

    def _settle(self) -> None:
        """Measure the rows deferred below the view; move what their heights move."""
        if not self._deferred or self._width <= 0:
            return
        moved: list[int] = []
        for i in self._deferred:
            row = self._rows[i]
            height = self._measure(row)
            if height != row.height:
                row.height = height
                moved.append(i)
        self._deferred.clear()
        if moved:
            self._retop()
            if min(moved) < self._visible().stop:
                self.refresh()  # (rows below the view move nothing in it)

    def _strips(self, i: int) -> list[Strip]:
        """A row's rendered lines, built now if out of date."""
        row = self._rows[i]
        strips = row.strips
        if strips is not None and not (row.moves and row.clock != self._clock):
            return strips
        self._deferred.discard(i)
        text = self.row_text(row.key, self._inner_width())
        row.plain = text.plain
        row.moves = self.row_moves(row.key)
        row.clock = self._clock
        strips = row.strips = self._frame(row, text)
        if len(strips) != row.height:
            row.height = len(strips)
            if not self._heights_off:
                self._heights_off = True
                self.call_later(self._fix_tops)
        return strips

    def _fix_tops(self) -> None:
        if self._heights_off:
            self._retop()
            self.refresh()

    def _frame(self, row: _Row, text: Text) -> list[Strip]:
        """Render a row's text line by line (reusing the lines that did not change) and
        frame it: edge, padding, background."""
        width = self._width
        inner = self._inner_width()
        highlight = self.row_highlighted(row.key)
        style, fill = self._styles(highlight)
        head: list[Segment] = []
        if self.ROW_EDGE:
            head.append(self._edge(self.row_edge(row.key), highlight))
        pad = Segment(" " * self.ROW_PADDING, fill) if self.ROW_PADDING else None
        if pad is not None:
            head.append(pad)
        tail = [pad] if pad is not None else []
        frame = (width, highlight, head[0] if head else None)
        before, after = row.lines, dict[object, list[Strip]]()
        strips: list[Strip] = []
        cursor = self.ROW_EDGE and highlight
        for line in text.split("\n", allow_blank=True):
            key = (line.plain, tuple(line.spans), frame, cursor)
            rendered = before.get(key)
            if rendered is None:
                content = Content.from_rich_text(line, console=self.app.console)
                rendered = [
                    Strip([*head, *part.adjust_cell_length(inner, fill), *tail], width)
                    for part in Visual.to_strips(self, content, inner, None, style)
                ]
                if cursor and rendered:
                    # The selected row's first cell: a glyph, which needs no colour.
                    edge = head[0]
                    glyph = Segment(CURSOR, (edge.style or RichStyle()) + RichStyle(bold=True))
                    first = rendered[0]
                    rendered[0] = Strip([glyph, *list(first)[1:]], width)
            cursor = False
            after[key] = rendered
            strips += rendered
        row.lines = after
        return strips

    def _styles(self, highlight: bool) -> tuple[Style, RichStyle]:
        """The text style and the background fill of a row, plain or highlighted."""
        cached = self._row_styles.get(highlight)
        if cached is None:
            background = self._background(highlight)
            style = self.visual_style + Style(background=background)
            cached = self._row_styles[highlight] = (style, Style(background=background).rich_style)
        return cached

    def _background(self, highlight: bool) -> Color:
        background = self.background_colors[1]
        if highlight:
            background = background + self.get_component_styles("rowlist--highlight").background
        return background

    def _edge(self, colour: Color | None, highlight: bool) -> Segment:
        """A row's left edge: ``EDGE`` in ``colour`` on the row's background."""
        cached = self._edges.get((colour, highlight))
        if cached is None:
            background = self._background(highlight)
            foreground = self.background_colors[1] + colour if colour is not None else None
            cached = self._edges[(colour, highlight)] = Segment(
                EDGE if colour is not None else " ",
                Style(background=background, foreground=foreground).rich_style,
            )
        return cached

    def _blank(self) -> Strip:
        """A line of background: the gap after a row, the space below the last."""
        cached = self._blanks.get(self._width)
        if cached is None:
            fill = Style(background=self._background(False)).rich_style
            cached = self._blanks[self._width] = Strip.blank(self._width, fill)
        return cached
