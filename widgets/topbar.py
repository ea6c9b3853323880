"""The top bar: environment (production in a warning colour), badges, summary, clock.

The environment's name comes from the config: it is shown literally (``Text``), never
read as markup.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Static

from widgets.safe import clean, safe_text

if TYPE_CHECKING:
    from collections.abc import Sequence


class TopBar(Horizontal):
    """One line at the top of every screen."""

    DEFAULT_CSS = """
    TopBar { dock: top; height: 1; background: $panel; }
    TopBar > Static { width: auto; padding: 0 1; }
    TopBar > #brand { text-style: bold; color: $accent; }
    TopBar > #env { background: $primary-darken-2; text-style: bold; }
    TopBar > #env.-production { background: $error; color: $text; }
    TopBar > #readonly { background: $secondary-darken-1; text-style: bold; display: none; }
    TopBar > #readonly.-on { display: block; }
    TopBar > #frozen { background: $warning; color: $background; text-style: bold; display: none; }
    TopBar > #frozen.-on { display: block; }
    TopBar > #summary { width: 1fr; color: $text-muted; }
    TopBar > #clock { color: $text; }
    TopBar > .context { background: $primary-darken-3; }
    TopBar > .context.-production { background: $warning-darken-2; color: $text; text-style: bold; }
    TopBar > .context.-stale { background: $error-darken-2; color: $text; text-style: bold; }
    """

    now: reactive[datetime] = reactive(lambda: datetime.now(UTC), init=False, repaint=False)
    """The time shown on the clock (UTC; the app's clock drives it). The clock repaints
    its own cells: a repaint of the whole bar every second would send the terminal the
    full top line (about a kilobyte) for a dozen changed cells."""
    summary: reactive[str] = reactive("", init=False)
    """One-line fleet summary, e.g. ``2 services · 1 in progress · 1 failed``."""
    frozen: reactive[bool] = reactive(False, init=False)
    """The display is frozen (data keeps flowing, rules keep judging)."""

    def __init__(
        self,
        *,
        environment: str,
        production: bool,
        read_only: bool,
        contexts: Sequence[tuple[str, bool]] = (),
    ) -> None:
        super().__init__(id="topbar")
        self.environment = environment
        self.production = production
        self.read_only = read_only
        self.contexts = tuple(contexts)
        """The named ``[[aws]]`` contexts side by side: name, production."""

    def compose(self) -> ComposeResult:
        yield Static("deploywatch", id="brand")
        label = f"{clean(self.environment, 60)}{' · PRODUCTION' if self.production else ''}"
        env = Static(safe_text(label), id="env")
        env.set_class(self.production, "-production")
        yield env
        readonly = Static("READ-ONLY", id="readonly")
        readonly.set_class(self.read_only, "-on")
        yield readonly
        for n, (name, production) in enumerate(self.contexts):
            context = Static(safe_text(clean(name, 40)), id=f"context-{n}", classes="context")
            context.set_class(production, "-production")
            yield context
        yield Static("FROZEN", id="frozen")
        yield Static("", id="summary")
        yield Static("", id="clock")

    def watch_now(self, now: datetime) -> None:
        clock = self.query_one("#clock", Static)
        text = now.strftime("%H:%M:%S UTC")
        # The clock ticks every second: a screen-wide relayout only when its width changes.
        clock.update(text, layout=len(text) != len(str(clock.content)))

    def watch_summary(self, summary: str) -> None:
        # One line, ``1fr`` wide: new words never move anything else.
        self.query_one("#summary", Static).update(safe_text(summary), layout=False)

    def show_context(self, index: int, text: str, *, stale: bool) -> None:
        """A context's words (``prod-eu 120 · STALE 120``); a stale one is marked."""
        context = self.query_one(f"#context-{index}", Static)
        context.set_class(stale, "-stale")
        context.update(safe_text(text), layout=len(text) != len(str(context.content)))

    def watch_frozen(self, frozen: bool) -> None:
        self.query_one("#frozen", Static).set_class(frozen, "-on")
