"""The App: wires config, sources, screens and global keys. Logic lives elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from tui.engine.store import Store
from tui.messages import SourceCrashed, StoreChanged
from tui.screens.dashboard import DashboardScreen
from tui.screens.help import HelpScreen
from tui.wiring import build_rulebook, build_sources

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sources.model import Source
    from tui.config import Settings


def utc_now() -> datetime:
    """The real clock (tests inject a frozen one)."""
    return datetime.now(UTC)


class DeployWatchApp(App[None]):
    """deploywatch: see a deployment, judge it, act on it."""

    CSS_PATH = "app.tcss"
    TITLE = "deploywatch"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", tooltip="Leave deploywatch; nothing is changed", id="quit"),
        Binding(
            "question_mark",
            "help",
            "Help",
            key_display="?",
            tooltip="Every key, and what STALE means",
            id="help",
        ),
    ]

    def __init__(
        self,
        settings: Settings,
        sources: Sequence[Source] | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        read_only: bool = False,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.clock = clock
        self.read_only = read_only or settings.environment.read_only
        self.store = Store(
            ((ref.key, ref.display) for ref in settings.services), build_rulebook(settings)
        )
        self.sources = tuple(
            sources if sources is not None else build_sources(settings, self.store, clock)
        )
        self.dashboard = DashboardScreen(settings, self.store, clock)

    def on_mount(self) -> None:
        self.push_screen(self.dashboard)
        for source in self.sources:
            self.run_worker(
                self._consume(source),
                name=f"source:{source.name}",
                group="sources",
                exit_on_error=False,
            )

    async def _consume(self, source: Source) -> None:
        """Feed one source's items into the store; tell the dashboard."""
        try:
            async for item in source.stream():
                if self.store.ingest(item):
                    self.dashboard.post_message(StoreChanged())
        except Exception as exc:  # a bug in a source: visible, never fatal
            self.dashboard.post_message(SourceCrashed(source.name, f"{type(exc).__name__}: {exc}"))

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        rows: dict[tuple[str, str], list[str]] = {}
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not binding.description or not binding.tooltip:
                continue  # ours all carry a tooltip; Textual's scroll keys are noise here
            display = binding.key_display or self.get_key_display(binding) or key
            rows.setdefault((binding.description, binding.tooltip), []).append(display)
        # One row per action, its keys together: "j / ↓  Next service".
        keys = [(" / ".join(k), d, t) for (d, t), k in rows.items()]
        self.push_screen(HelpScreen(keys))
