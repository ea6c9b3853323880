"""The App: wires config, sources, screens and global keys. Logic lives elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import sys
import termios
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.geometry import Size

from engine.audit import AuditLog, default_audit_path
from engine.contexts import FleetActions, build_actions
from engine.controller import Controller
from engine.report import ReportBook, default_report_base, watch_outcome, write_report
from engine.wiring import build_sources
from tui.commands import DeploymentCommands
from tui.screens.dashboard import DashboardScreen
from tui.screens.help import HelpScreen
from tui.screens.toosmall import TooSmallScreen, too_small
from widgets.safe import LONG, clean

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from textual import events
    from textual.notifications import SeverityLevel
    from textual.screen import Screen

    from engine.actions import ApiCall
    from engine.config import Settings
    from sources.model import Source


EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""Signals that end the app the way ``q`` does: Textual's driver restores the terminal
(alternate screen off, mouse off, cursor shown) and the caller's cleanup runs."""


def detach_from_a_hung_up_terminal() -> bool:
    """After a hang-up (the terminal is gone), point stdin, stdout and stderr at /dev/null.

    Textual's exit writes the restoring sequences to the terminal; on a hung-up one
    every write fails and the exit would never finish. Returns whether it detached (a
    ``kill -HUP`` with the terminal still there leaves it alone, so it is restored).
    """
    try:
        termios.tcgetattr(sys.__stdin__.fileno() if sys.__stdin__ else 0)
    except termios.error as exc:
        if exc.args[0] != errno.EIO:
            return False
    except (OSError, ValueError):
        return False
    else:
        return False
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (0, 1, 2):
            os.dup2(null, fd)
    finally:
        os.close(null)
    return True


def utc_now() -> datetime:
    """The real clock (tests inject a frozen one)."""
    return datetime.now(UTC)


class DeployWatchApp(App[None]):
    """deploywatch: see a deployment, judge it, act on it."""

    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {DeploymentCommands}
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
        self._signals: list[signal.Signals] = []
        self.settings = settings
        self.clock = clock
        self.aws = build_actions(settings)
        self.controller = Controller(
            settings,
            clock=clock,
            executor=executor or self.aws,
            audit=AuditLog(audit_path or settings.actions.audit_log or default_audit_path()),
            operator=lambda: self.aws.operator,
            read_only=read_only,
        )
        self.store = self.controller.store
        self.sources = tuple(
            sources if sources is not None else build_sources(settings, self.store, clock)
        )
        self.dashboard = DashboardScreen(settings, self.controller)
        keys = settings.keys
        self.set_keymap(
            {
                "rollback": keys.rollback,
                "promote": keys.promote,
                "pause": keys.pause,
                "resume": keys.resume,
                "cancel": keys.cancel,
                "freeze": keys.freeze,
                "evidence": keys.evidence,
                "report": keys.report,
                "history": keys.history,
                "smoke": keys.smoke,
                "takeover": keys.takeover,
                "release": keys.release,
            }
        )
        self.report_book = ReportBook(
            self.controller, tuple(ref.key for ref in settings.services), clock()
        )
        self.report_base = default_report_base(settings.environment.name, clock())
        self.report_book.follow()

    def report_data(self, audit_records: list[dict[str, Any]] | None) -> dict[str, Any]:
        """The deployment report of this watch so far (on the event loop: it reads the
        watch's state; the audit log is read beforehand, off the loop)."""
        now = self.clock()
        outcome, why = watch_outcome(self.controller.snapshot)
        return self.report_book.to_json(
            outcome=outcome, code=None, why=why, ended=now, audit=None, audit_records=audit_records
        )

    async def write_report(self) -> list[Path]:
        """Write the report into the state directory (off the event loop); its paths."""
        audit = self.controller.actions.audit
        records = await asyncio.to_thread(audit.read)
        data = self.report_data(records)
        return await asyncio.to_thread(write_report, self.report_base, data)

    def record(self, path: Path) -> None:
        """Record what the watch takes in to ``path`` (written off the event loop)."""
        from engine.recording import Recorder

        recorder = Recorder(path, self.clock)
        recorder.start(self.settings)
        self.controller.recorder = recorder

    async def action_write_report(self) -> None:
        """Write the report now and say where (or why not)."""
        try:
            paths = await self.write_report()
        except OSError as exc:
            self.notify(
                f"the report could not be written: {clean(str(exc), LONG)}",
                title="Report",
                severity="error",
                timeout=20,
                markup=False,
            )
            return
        self.notify(
            "\n".join(clean(str(p), LONG) for p in paths),
            title="Report written",
            timeout=10,
            markup=False,
        )

    def write_final_report(self) -> list[Path]:
        """At exit, once the app has stopped (nothing else runs): the report as it ends.

        Raises:
            OSError: It cannot be written.
        """
        audit = self.controller.actions.audit
        data = self.report_data(audit.read())
        return write_report(self.report_base, data)

    @property
    def read_only(self) -> bool:
        """Whether every action is refused (enforced by the watch's action engine)."""
        return self.controller.read_only

    def on_load(self) -> None:
        # Load comes before the driver enters application mode: from here on, a
        # supervisor's SIGTERM or a hang-up leaves through the normal exit path.
        loop = asyncio.get_running_loop()
        for sig in EXIT_SIGNALS:
            try:
                loop.add_signal_handler(sig, self._exit_on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                continue
            self._signals.append(sig)

    def _exit_on_signal(self, sig: signal.Signals) -> None:
        if sig == signal.SIGHUP:
            detach_from_a_hung_up_terminal()
        self.exit(return_code=128 + sig.value)

    def _resume_only_after_a_suspend(self) -> None:
        """Textual 8's SIGCONT handler restarts application mode even when the app was
        never suspended. A hang-up comes with a SIGCONT: restarting onto the dead terminal
        kills the new output thread and the exit then waits on it forever. Pass SIGCONT on
        only after a suspend (its SIGTSTP handler sets ``_must_signal_resume``)."""
        driver = self._driver
        textual_handler = signal.getsignal(signal.SIGCONT)
        if driver is None or not callable(textual_handler):
            return

        def on_sigcont(signum: int, frame: Any) -> None:
            if getattr(driver, "_must_signal_resume", False) and not self._exit:
                textual_handler(signum, frame)

        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(signal.SIGCONT, on_sigcont)

    def on_unmount(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()

    def on_mount(self) -> None:
        self._resume_only_after_a_suspend()
        self.push_screen(self.dashboard)
        self.screen_change_signal.subscribe(self, lambda _: self._fit())
        self._fit()
        # The watch starts once the first frame is drawn: the ECS poller's thread
        # imports boto3 (a second of CPU on a small machine) and would hold the first
        # paint behind it.
        self.call_after_refresh(self._start_watch)
        if self.controller.recorder is not None:
            self.run_worker(self.controller.recorder.run(), name="recorder", group="watch")
        if self.controller.actions.executor is self.aws:
            # Who acts, for the audit log: looked up once, off the event loop, after the
            # first paint (it imports boto3).
            self.set_timer(2.0, self._resolve_operator, name="identity")

    def _start_watch(self) -> None:
        self.run_worker(
            self.controller.run(self.sources), name="watch", group="watch", exit_on_error=False
        )

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
        if isinstance(self.aws, FleetActions):  # each context's account, for the dialogs
            self.run_worker(self._resolve_accounts(self.aws), group="identity")

    async def _resolve_accounts(self, fleet: FleetActions) -> None:
        self.controller.accounts.update(await asyncio.to_thread(fleet.resolve_accounts))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        # Textual's stock entries (maximize, screenshot, keys of the focused widget...)
        # would sit among the deployment verbs: the palette holds what a deployer needs.
        if screen is not self.dashboard:
            yield from super().get_system_commands(screen)
            return
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
        yield SystemCommand("Help", "Every key, and what STALE means", self.action_help)
        yield SystemCommand("Quit", "Leave deploywatch; nothing is changed", self.exit)

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
