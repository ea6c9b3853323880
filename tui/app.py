"""The App: wires config, sources, screens and global keys. Logic lives elsewhere."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.geometry import Size

from engine.actions import ActionEngine, Verb
from engine.audit import AuditLog, default_audit_path
from engine.autopilot import AutoPilot, MttrClock
from engine.store import Store
from engine.wiring import build_rulebook, build_sources
from sources.aws_actions import AwsActions
from tui.messages import SourceCrashed, StoreChanged
from tui.screens.dashboard import DashboardScreen
from tui.screens.help import HelpScreen
from tui.screens.toosmall import TooSmallScreen, too_small
from widgets.safe import LONG, clean, markup_literal

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from pathlib import Path

    from textual import events
    from textual.notifications import SeverityLevel
    from textual.screen import Screen

    from engine.actions import ApiCall
    from engine.config import Settings
    from sources.model import Source


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
        executor: Callable[[ApiCall], Mapping[str, Any]] | None = None,
        audit_path: Path | None = None,
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
        self.aws = AwsActions(
            region=settings.aws.region,
            profile=settings.aws.profile,
            endpoint_url=settings.aws.endpoint_url,
        )
        self.actions = ActionEngine(
            audit=AuditLog(audit_path or settings.actions.audit_log or default_audit_path()),
            executor=executor or self.aws,
            read_only=self.read_only,
            operator=lambda: self.aws.operator,
            clock=clock,
        )
        rule_targets = {rule.name: settings.rule_service(rule) for rule in settings.rules}
        self.dashboard = DashboardScreen(
            settings,
            self.store,
            clock,
            actions=self.actions,
            autopilot=AutoPilot(rule_targets, settings.actions.countdown),
            mttr=MttrClock(rule_targets),
        )
        keys = settings.keys
        self.set_keymap(
            {
                "rollback": keys.rollback,
                "promote": keys.promote,
                "pause": keys.pause,
                "resume": keys.resume,
                "cancel": keys.cancel,
                "freeze": keys.freeze,
            }
        )

    def on_mount(self) -> None:
        self.push_screen(self.dashboard)
        self.screen_change_signal.subscribe(self, lambda _: self._fit())
        self._fit()
        for source in self.sources:
            self.run_worker(
                self._consume(source),
                name=f"source:{source.name}",
                group="sources",
                exit_on_error=False,
            )
        if self.actions.executor is self.aws:
            # Who acts, for the audit log: looked up once, off the event loop, after the
            # first paint (it imports boto3).
            self.set_timer(2.0, self._resolve_operator, name="identity")

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size)

    def _fit(self, size: Size | None = None) -> None:
        """Below the minimum size the dashboard gives way to a "terminal too small"
        notice (a dialog open on top of it checks its own size)."""
        width, height = size or self.size
        small = too_small(width, height)
        if small and self.screen is self.dashboard:
            self.push_screen(TooSmallScreen())
        elif not small and isinstance(self.screen, TooSmallScreen):
            self.pop_screen()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every toast shows its words literally: messages carry outside text (AWS
        errors, service names, exception text) that must never be read as markup or
        reach the terminal as control characters."""
        super().notify(
            clean(message, LONG),
            title=clean(title),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    def _resolve_operator(self) -> None:
        self.run_worker(asyncio.to_thread(self.aws.resolve_operator), group="identity")

    async def _consume(self, source: Source) -> None:
        """Feed one source's items into the store; tell the dashboard."""
        try:
            async for item in source.stream():
                if self.store.ingest(item):
                    self.dashboard.post_message(StoreChanged())
        except Exception as exc:  # a bug in a source: visible, never fatal
            self.dashboard.post_message(SourceCrashed(source.name, f"{type(exc).__name__}: {exc}"))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if screen is not self.dashboard:
            return
        for ref in self.settings.services:
            for verb in (Verb.ROLLBACK, Verb.PROMOTE, Verb.PAUSE, Verb.RESUME):
                planned = self.dashboard.plan(verb, ref.key)
                help_text = (
                    planned.effect
                    if planned.enabled
                    else f"not possible: {planned.disabled_reason}"
                )
                # Textual reads a command's title and help as markup: service names,
                # revisions and reasons are outside text, so they go in literally.
                yield SystemCommand(
                    markup_literal(f"{planned.title} ({planned.change})"),
                    markup_literal(help_text),
                    partial(self.dashboard.act_on, verb, ref.key),
                )
        yield SystemCommand(
            "Cancel automatic actions",
            "Cancel every pending automatic pause or rollback",
            self.dashboard.action_cancel_auto,
        )
        yield SystemCommand(
            "Freeze / unfreeze the display",
            "Data and rules keep running while frozen",
            self.dashboard.action_freeze,
        )

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        rows: dict[str, tuple[str, str, list[str]]] = {}
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not binding.description or not binding.tooltip:
                continue  # ours all carry a tooltip; Textual's scroll keys are noise here
            display = binding.key_display or self.get_key_display(binding) or key
            # One row per action (q and Textual's ^q both quit), its keys together.
            row = rows.setdefault(binding.action, (binding.description, binding.tooltip, []))
            if display not in row[2]:
                row[2].append(display)
        keys = [(" / ".join(k), d, t) for d, t, k in rows.values()]
        self.push_screen(HelpScreen(keys))
