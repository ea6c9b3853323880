"""ECS service events, newest at the bottom, bounded."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.widgets import RichLog

from widgets.safe import LONG, clean

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sources.model import EcsEvent

EVENT_LOG_LINES = 1000
"""Bound on the lines kept in the events log."""

SHORT_IDS_BELOW = 100
"""Under this many columns, ECS's 32-hex task ids are cut to their first 8 (``1facfdec…``,
as git cuts a commit): a full one takes a line of its own in an 80-column pane, and two
of them halve the events that fit."""

_TASK_ID = re.compile(r"\b([0-9a-f]{8})[0-9a-f]{24,}\b")

_PREFIX = re.compile(r"^\(service [^)]*\)\s*")
_TONES = (
    (re.compile(r"fail|unhealthy|rolling back|unable|error", re.I), "bad"),
    (re.compile(r"steady state|completed", re.I), "ok"),
    (re.compile(r"has stopped|draining|deregistered", re.I), "warn"),
)


def event_tone(message: str) -> str:
    """``bad``, ``ok``, ``warn`` or ``plain`` for an event message, from ECS's wording."""
    for pattern, tone in _TONES:
        if pattern.search(message):
            return tone
    return "plain"


class EventsLog(RichLog):
    """Service events of every watched service, one line each (wrapped, never cut)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "events-log--time",
        "events-log--label",
        "events-log--ok",
        "events-log--warn",
        "events-log--bad",
        "events-log--plain",
    }
    DEFAULT_CSS = """
    EventsLog { background: $surface; scrollbar-size-vertical: 1; }
    EventsLog > .events-log--time { color: $text-muted; }
    EventsLog > .events-log--label { text-style: bold; }
    EventsLog > .events-log--ok { color: $success; }
    EventsLog > .events-log--warn { color: $warning; }
    EventsLog > .events-log--bad { color: $error; text-style: bold; }
    EventsLog > .events-log--plain { }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(max_lines=EVENT_LOG_LINES, wrap=True, markup=False, id=id)
        self.can_focus = False
        self._styles: dict[str, str] = {}
        """Each component class's style, until the styles change (a theme switch):
        three per line, and each costs a look-up through the CSS."""

    def notify_style_update(self) -> None:
        self._styles = {}
        super().notify_style_update()

    def add_events(self, events: Iterable[tuple[str, EcsEvent]]) -> None:
        """Append events, each prefixed by its time (UTC) and service label."""
        # Wrap at the pane's width, not the console's (80 columns when headless).
        width = self.scrollable_content_region.width or None
        short = width is not None and width < SHORT_IDS_BELOW
        for label, event in events:
            stamp = event.at.strftime("%H:%M:%S") if event.at else "--:--:--"
            message = clean(_PREFIX.sub("", event.message), LONG)
            if short:
                message = _TASK_ID.sub(r"\1…", message)
            line = Text(f"{stamp} ", style=self._style("time"))
            line.append(f"{clean(label):<12} ", style=self._style("label"))
            line.append(message, style=self._style(event_tone(message)))
            self.write(line, width=width)

    def _style(self, name: str) -> str:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = str(
                self.get_component_rich_style(f"events-log--{name}", partial=True)
            )
        return style
