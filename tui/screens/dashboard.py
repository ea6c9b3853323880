"""The dashboard: deployments, events, metrics, errors and probes on one screen.

It renders and forwards, nothing more: keys become intents to the deployment watch
(:class:`engine.controller.Controller`), and the watch's snapshots become widgets.
Judging, countdowns, canary steps and the MTTR clock live in the controller, which
runs with or without this screen.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Protocol

from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input

from engine.actions import Outcome, Plan, Verb
from engine.contexts import ContextLabels
from engine.store import EcsStatus, Store
from engine.wiring import freshness
from tui.screens.confirm import ConfirmScreen
from tui.screens.evidence import EvidenceScreen, evidence_text
from tui.screens.history import HistoryFeed, HistoryMemory, HistoryScreen
from tui.screens.smoke import SmokeScreen
from tui.screens.takeover import TakeoverScreen, card_locks, take_over
from widgets.actionbar import ActionBar, KeyHints, action_lines
from widgets.deployments import SORT_NAME, SORT_URGENCY, DeploymentsPane
from widgets.events import EVENT_LOG_LINES, EventsLog
from widgets.filterbar import FilterInput, context_lines
from widgets.footer import KeyFooter
from widgets.panes import NotConfigured
from widgets.safe import LONG, clean
from widgets.signals import ErrorsPane, MetricsPane, MetricView, ProbesPane, VerdictBanner
from widgets.topbar import TopBar

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from textual.app import ComposeResult
    from textual.binding import BindingType
    from textual.dom import DOMNode
    from textual.events import DescendantFocus, Resize

    from engine.config import Settings
    from engine.controller import Controller, Snapshot, Update
    from sources.model import EcsEvent
    from tui.screens.takeover import HeldLock


class SignalPanes(NamedTuple):
    """The dashboard's signal panes by kind (none where the config has no such source)."""

    metrics: list[MetricsPane]
    errors: list[ErrorsPane]
    probes: list[ProbesPane]


class OperatorLock(Protocol):
    """The bus's operator lock, as the dashboard uses it (``sources.bus.LockClient``)."""

    def refusal(self, service: str) -> str | None: ...

    def mine(self, service: str) -> bool: ...

    async def claim(self, service: str, *, takeover: bool = False) -> None: ...

    async def release(self, service: str) -> None: ...

    def touch(self, now: datetime) -> None: ...

    @property
    def locks(self) -> Mapping[str, HeldLock]: ...

    @property
    def changed(self) -> asyncio.Event: ...


FLUSH_DELAY = 0.1
"""Seconds a burst of store changes is collected before one repaint (≤ 10 flushes/s)."""

PANES_MAX_WAIT = 1.0
"""Seconds the signal panes may wait for the judgement of newer data (see _show_panes)."""

EVENTS_EVERY = 1.0
"""Seconds between two batches of service events handed to the events log."""

COMPACT_WIDTH = 100
"""Below this many columns the dashboard takes its compact form: a card's deployment
line (revision, bar, counts, state, time, image: about 100 cells) wraps, and the
signal column falls under 33 columns."""
COMPACT_HEIGHT = 30
"""Below this many lines the compact form too: a full banner (5 lines), an action bar
(up to 4), the top bar and the footer would leave the deployments under 10 lines."""


def is_compact(width: int, height: int) -> bool:
    """Whether a terminal of this size gets the compact layout (banner and action bar
    cut to a line or two, the rest one key away; a shorter summary; small events pane)."""
    return width < COMPACT_WIDTH or height < COMPACT_HEIGHT


class WatchUpdated(Message):
    """The deployment watch has news (a snapshot, data for the panes, a result).

    Data-only updates carry nothing the screen does not read from the store, so a
    backlog of them collapses into one.
    """

    def __init__(self, update: Update) -> None:
        super().__init__()
        self.update = update

    def can_replace(self, message: Message) -> bool:
        if not isinstance(message, WatchUpdated):
            return False
        mine, theirs = self.update, message.update
        return (
            mine.result is None
            and theirs.result is None
            and mine.crashed is None
            and theirs.crashed is None
            and (mine.snapshot is not None or theirs.snapshot is None)
            and (mine.data or not theirs.data)
        )


SHORT_STATUS = {
    EcsStatus.FAILED: "FAILED",
    EcsStatus.ROLLBACK_FAILED: "RB FAILED",
    EcsStatus.ROLLBACK_IN_PROGRESS: "ROLLING BACK",
    EcsStatus.ROLLBACK_REQUESTED: "RB ASKED",
    EcsStatus.ROLLBACK_SUCCESSFUL: "ROLLED BACK",
    EcsStatus.STOPPED: "STOPPED",
    EcsStatus.IN_PROGRESS: "IN FLIGHT",
    EcsStatus.COMPLETED: "DONE",
    EcsStatus.STEADY: "STEADY",
    EcsStatus.NO_DATA: "NO DATA",
}
"""The compact summary's words for each status."""


def fleet_summary(store: Store, statuses: Mapping[str, EcsStatus], *, short: bool = False) -> str:
    """``2 services · 1 IN_PROGRESS · 1 FAILED · 1 STALE`` in a fixed, severity order.

    Args:
        store: The store.
        statuses: Each service's status.
        short: The compact form (``2 svc · 1 ROLLING BACK · 1 IN FLIGHT``), for a
            narrow terminal.

    Returns:
        The summary line.
    """
    counts: dict[EcsStatus, int] = {}
    for key in store.services:
        if key in store.entries:  # a discovery entry, not a service
            continue
        status = statuses.get(key, EcsStatus.NO_DATA)
        counts[status] = counts.get(status, 0) + 1
    n = len(store.services) - len(store.entries)
    parts = [f"{n} svc" if short else f"{n} service{'s' if n != 1 else ''}"]
    for status in (
        EcsStatus.FAILED,
        EcsStatus.ROLLBACK_FAILED,
        EcsStatus.ROLLBACK_IN_PROGRESS,
        EcsStatus.ROLLBACK_REQUESTED,
        EcsStatus.ROLLBACK_SUCCESSFUL,
        EcsStatus.STOPPED,
        EcsStatus.IN_PROGRESS,
        EcsStatus.COMPLETED,
        EcsStatus.STEADY,
        EcsStatus.NO_DATA,
    ):
        if counts.get(status):
            parts.append(f"{counts[status]} {SHORT_STATUS[status] if short else status.value}")
    stale = sum(1 for k, s in store.services.items() if s.stale and k not in store.entries)
    if stale:
        parts.append(f"{stale} STALE")
    return " · ".join(parts)


class DashboardScreen(Screen[None]):
    """The one screen a deployer keeps open for the whole window."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "R",
            "act('rollback')",
            "Roll back",
            tooltip="Roll back the selected service (asks to confirm, naming it)",
            id="rollback",
        ),
        Binding(
            "P",
            "act('promote')",
            "Promote",
            tooltip="Continue a waiting canary / blue-green step (asks to confirm)",
            id="promote",
        ),
        Binding("p", "act('pause')", "Pause", tooltip="Pause the selected deployment", id="pause"),
        Binding(
            "r", "act('resume')", "Resume", tooltip="Resume the selected deployment", id="resume"
        ),
        Binding(
            "c",
            "cancel_auto",
            "Cancel auto",
            tooltip="Cancel every pending automatic pause or rollback",
            id="cancel",
        ),
        Binding(
            "f",
            "freeze",
            "Freeze",
            tooltip="Freeze / unfreeze the display; data and rules keep running",
            id="freeze",
        ),
        Binding(
            "e",
            "evidence",
            "Evidence",
            tooltip="The verdict's full evidence and every action line (cut in a small terminal)",
            id="evidence",
        ),
        Binding(
            "w",
            "app.write_report",
            "Report",
            tooltip="Write the deployment report now (Markdown and JSON; also on quit)",
            id="report",
        ),
        Binding(
            "h",
            "history",
            "History",
            tooltip="Recent deployments, their success and rollback rates, MTTR",
            id="history",
            show=False,
        ),
        Binding(
            "t",
            "smoke",
            "Smoke tests",
            tooltip="Run the smoke suites that run on this key, and show each test case",
            id="smoke",
            show=False,
        ),
        Binding(
            "slash",
            "filter",
            "Filter",
            show=False,
            tooltip="Filter the deployments by name, cluster, context or state (esc clears)",
        ),
        Binding(
            "o",
            "sort",
            "Sort",
            show=False,
            tooltip="Order the deployments by urgency or by name",
        ),
        Binding(
            "L",
            "takeover",
            "Take over lock",
            show=False,
            tooltip="Take over the selected service's operator lock (bus; type its name)",
            id="takeover",
        ),
        Binding(
            "U",
            "release_lock",
            "Release lock",
            show=False,
            tooltip="Give the selected service's operator lock back (bus); it is renewed "
            "while you use this dashboard, else it expires",
            id="release",
        ),
    ]

    def __init__(self, settings: Settings, controller: Controller) -> None:
        super().__init__(id="dashboard")
        self.settings = settings
        self.controller = controller
        self.store = controller.store
        self.clock = controller.clock
        self._flush_scheduled = False
        self._missed_flush = False
        self._focused_pane: DOMNode | None = None
        self.operator_lock: OperatorLock | None = None
        """The bus's operator lock when this dashboard acts in a team (``run --bus
        --operate``): its actions need the service's lock (``tui/bus_cli.py``)."""
        self._lock_followed: OperatorLock | None = None
        self._events: deque[tuple[str, EcsEvent]] = deque(maxlen=EVENT_LOG_LINES)
        """Service events waiting for the next batch (the log keeps no more than these)."""
        self._events_scheduled = False
        self._events_written = 0.0
        """Monotonic time of the last batch written to the events log."""
        self._shown_judgement = 0
        """The snapshot (by version) the banner and the signal panes show."""
        self._ahead_since: float | None = None
        """Since when (monotonic) the store has held data the watch has not judged yet,
        with the signal panes waiting for that judgement; ``None``: nothing waits."""
        self._signal_panes: SignalPanes | None = None
        """The signal panes, found once at the mount (composed once, never replaced):
        a query walks every widget of the screen, and the clock asks each second."""
        self.frozen = False
        self.compact = False
        """The compact layout is on (a terminal below COMPACT_WIDTH x COMPACT_HEIGHT)."""
        self._deployments = DeploymentsPane(controller.store.services.values(), now=self.clock())
        self.history_memory = HistoryMemory()
        """The last history fetched (the history screen shows it at once when reopened)."""
        self.history_feed: Callable[[], HistoryFeed] | None = None
        """Builds what the history screen follows (default: the history source of the
        config; tests give a scripted one)."""
        self._deployments.contexts = ContextLabels(controller.contexts)
        self._deployments.set_fleet(
            (ref.key for ref in settings.services if ref.discovers), self.store.discovered
        )
        controller.listen(self._on_watch)

    @property
    def snapshot(self) -> Snapshot:
        """The watch's latest snapshot."""
        return self.controller.snapshot

    @property
    def selected(self) -> str:
        """The service the action keys act on (the selected card).

        Read from the pane when asked, so that a key typed right after ``j`` acts on
        the service ``j`` selected.
        """
        return self._deployments.selected or self.settings.services[0].key

    def compose(self) -> ComposeResult:
        env = self.settings.environment
        yield TopBar(
            environment=env.name,
            production=env.production,
            read_only=self.controller.read_only,
            contexts=[(c.name, c.production) for c in self.settings.aws_contexts],
        )
        yield VerdictBanner()
        yield ActionBar()
        with Horizontal(id="main"):
            with Vertical(id="left"):
                with Vertical(id="deployments-pane", classes="pane") as pane:
                    pane.border_title = "Deployments · ECS"
                    yield FilterInput()
                    yield self._deployments
                with Vertical(id="events-pane", classes="pane") as pane:
                    pane.border_title = "Service events"
                    yield EventsLog(id="events")
            with Vertical(id="right"):
                settings = self.settings
                # The metrics and probes scroll themselves (only the rows in view are
                # built); the errors pane is short and scrolls in its frame.
                with Vertical(id="metrics-pane", classes="pane") as pane:
                    pane.border_title = "Metrics · Datadog"
                    if settings.metrics:
                        yield MetricsPane(
                            [
                                MetricView(m.name, m.unit, freshness(settings, f"metric:{m.name}"))
                                for m in settings.metrics
                            ]
                        )
                    else:
                        yield NotConfigured(
                            "Datadog metrics", "Add [[metric]] queries to the config."
                        )
                with VerticalScroll(id="errors-pane", classes="pane") as pane:
                    pane.border_title = "Errors · Sentry"
                    if settings.sentry is not None:
                        yield ErrorsPane()
                    else:
                        yield NotConfigured("Sentry errors", "Add a [sentry] table to the config.")
                with Vertical(id="probes-pane", classes="pane") as pane:
                    pane.border_title = "Probes · HTTP"
                    if settings.probes:
                        yield ProbesPane([p.name for p in settings.probes])
                    else:
                        yield NotConfigured(
                            "Health probes", "Add [[probe]] endpoints to the config."
                        )
        yield KeyFooter()

    def on_resize(self, event: Resize) -> None:
        self._set_compact(is_compact(event.size.width, event.size.height))

    def _set_compact(self, compact: bool) -> None:
        """Switch the compact layout on or off (CSS does the layout; the banner, the
        action bar, the summary and the footer shorten their words)."""
        if compact == self.compact:
            return
        self.compact = compact
        self.set_class(compact, "-compact")
        key = self.key_hints().evidence if compact else None
        self.query_one(VerdictBanner).set_compact(key)
        self.query_one(ActionBar).set_compact(key)
        self.query_one(KeyFooter).compact = compact
        self._deployments.set_compact(compact)
        self.query_one(TopBar).summary = fleet_summary(self.store, self._statuses(), short=compact)

    def on_mount(self) -> None:
        self._signal_panes = self._find_panes()
        self._deployments.key_hints = self.key_hints()
        self._set_compact(is_compact(*self.app.size))
        self.set_interval(1.0, self._tick, name="clock")
        self._tick()
        self._flush()
        self._deployments.focus()
        self._follow_lock()

    def _on_watch(self, update: Update) -> None:
        """Called by the watch (on the event loop): hand the update to the screen."""
        self.post_message(WatchUpdated(update))

    def on_watch_updated(self, message: WatchUpdated) -> None:
        message.stop()
        update = message.update
        if update.snapshot is not None:
            self._sync_judgement(self.clock())
        if update.data and not self._flush_scheduled:
            self._flush_scheduled = True
            self.set_timer(FLUSH_DELAY, self._flush, name="flush")
        if update.result is not None:
            result = update.result
            how = "automatic " if result.automatic else ""
            severity = {
                Outcome.DONE: "information",
                Outcome.FAILED: "error",
                Outcome.REFUSED: "warning",
            }[result.outcome]
            self.notify(
                result.message,
                title=f"{how}{result.plan.verb.value} of {result.plan.label}: {result.outcome.value}",
                severity=severity,  # type: ignore[arg-type]
                timeout=10 if result.outcome is Outcome.DONE else 20,
                markup=False,
            )
        if update.crashed is not None:
            source, error = update.crashed
            self.notify(
                f"{source} stopped: {error}",
                title="Source crashed",
                severity="error",
                timeout=30,
                markup=False,
            )

    def on_screen_resume(self) -> None:
        if self._missed_flush:
            # Show the dashboard first (the key that closed the dialog gets its frame at
            # once), then catch up on what came while it was hidden.
            self.call_after_refresh(self._flush)

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        pane = next((w for w in event.widget.ancestors_with_self if w.has_class("pane")), None)
        if pane is not self._focused_pane:
            if self._focused_pane is not None:
                self._focused_pane.remove_class("-focused")
            if pane is not None:
                pane.add_class("-focused")
            self._focused_pane = pane

    # ---- intents ----------------------------------------------------------------------

    def key_hints(self) -> KeyHints:
        """The keys named in hints, from the live keymap."""
        keys = self.settings.keys

        def shown(key: str) -> str:
            return self.app.get_key_display(Binding(key, ""))

        return KeyHints(
            promote=shown(keys.promote),
            rollback=shown(keys.rollback),
            resume=shown(keys.resume),
            cancel=shown(keys.cancel),
            evidence=shown(keys.evidence),
            smoke=shown(keys.smoke),
        )

    def plan(self, verb: Verb, key: str | None = None) -> Plan:
        """What ``verb`` would do to a service (the selected one by default) now."""
        return self.controller.plan(verb, key or self.selected)

    def action_act(self, verb_name: str) -> None:
        """A verb key: confirm (naming the target), then send through the watch."""
        self.act_on(Verb(verb_name), self.selected)

    def act_on(self, verb: Verb, key: str) -> None:
        """Ask for ``verb`` on ``key`` (from a key or the command palette)."""
        if self.operator_lock is not None:
            self.operator_lock.touch(self.clock())
        planned = self.controller.plan(verb, key)
        if self.controller.read_only:
            # Refused by the engine itself, so the refusal is audited like any other.
            self.controller.act(planned)
            return
        if not planned.enabled:
            self.notify(
                planned.disabled_reason or "not possible now",
                title=f"{planned.title}: not possible",
                severity="warning",
                timeout=8,
                markup=False,
            )
            return
        lock = self.operator_lock
        if lock is not None:
            refusal = lock.refusal(key)
            if refusal is not None:
                takeover = self.app.get_key_display(Binding(self.settings.keys.takeover, ""))
                self.notify(
                    f"{refusal} · {takeover} takes it over (type the service name)",
                    title=f"{planned.title}: refused",
                    severity="warning",
                    markup=False,
                )
                return
            if not lock.mine(key):  # claimed with the first action; granted by the relay
                self.run_worker(lock.claim(key), group="lock", exit_on_error=False)
        if verb in (Verb.PAUSE, Verb.RESUME):
            # Holding or releasing our own automation changes no traffic: no dialog.
            self.controller.act(planned)
            return

        def confirmed(ok: bool | None) -> None:
            if ok and lock is not None and not lock.mine(key):
                why = lock.refusal(key) or "the bus's lock was not granted (is the relay up?)"
                self.notify(why, title=f"{planned.title}: not sent", severity="warning")
                return
            if ok:
                self.controller.act(planned)
                return
            self.notify(f"{planned.title}: cancelled, nothing sent", timeout=4, markup=False)
            self.run_worker(self._declined(planned), group="actions")

        self.app.push_screen(ConfirmScreen(planned), confirmed)

    # ---- the bus's operator lock ---------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("takeover", "release_lock"):  # only under the bus's operator lock
            return self.operator_lock is not None
        return True

    def on_key(self) -> None:
        """Someone is at this dashboard: the operator locks it holds are renewed
        (``LockClient.keep``); one left alone lets them expire."""
        if self.operator_lock is not None:
            self.operator_lock.touch(self.clock())

    def action_release_lock(self) -> None:
        """Give the selected service's lock back (only the holder's release counts)."""
        lock = self.operator_lock
        if lock is None:
            return
        key = self.selected
        if not lock.mine(key):
            why = lock.refusal(key) or f"{key}: the lock is free"
            self.notify(why, title="Nothing to release: the lock is not yours", markup=False)
            return
        self.run_worker(self._release(lock, key), group="lock", exit_on_error=False)

    async def _release(self, lock: OperatorLock, key: str) -> None:
        try:
            await lock.release(key)
        except Exception as exc:  # not connected to the bus...
            self.notify(
                clean(f"{type(exc).__name__}: {exc}", LONG),
                title=f"{key}: the lock was not released",
                severity="error",
                markup=False,
            )
            return
        self.notify(
            f"{key}: released; the card clears once the relay frees it",
            title="Lock released",
            markup=False,
        )

    def _follow_lock(self) -> None:
        """Once there is an operator lock: show each card's lock, and again whenever
        the bus says it changed."""
        lock = self.operator_lock
        if lock is None or lock is self._lock_followed:
            return
        self._lock_followed = lock
        self.refresh_bindings()
        self._deployments.set_locks(card_locks(lock))
        self.run_worker(self._lock_changes(lock), group="lock-view", exit_on_error=False)

    async def _lock_changes(self, lock: OperatorLock) -> None:
        while True:
            await lock.changed.wait()
            lock.changed.clear()
            self._deployments.set_locks(card_locks(lock))

    def action_takeover(self) -> None:
        """Take over the selected service's lock from its holder (a typed confirmation
        naming both; audited either way)."""
        lock = self.operator_lock
        if lock is None:
            return
        key = self.selected
        refusal = lock.refusal(key)
        if refusal is None:
            words = "yours already" if lock.mine(key) else "free: the first action claims it"
            self.notify(f"{key}: the lock is {words}", title="Nothing to take over", markup=False)
            return
        held = lock.locks.get(key)
        holder = held.holder if held is not None else "?"
        planned = self.controller.plan(Verb.ROLLBACK, key)  # names the service only

        def answered(ok: bool | None) -> None:
            self.run_worker(
                self._took_over(lock, planned, refusal, holder, bool(ok)), group="actions"
            )

        self.app.push_screen(TakeoverScreen(planned, refusal), answered)

    async def _took_over(
        self, lock: OperatorLock, planned: Plan, refusal: str, holder: str, ok: bool
    ) -> None:
        recorder = self.controller.recorder
        if recorder is not None:  # a recording keeps every operator intent
            what = "takeover" if ok else "declined"
            recorder.intent(what, verb="takeover", service=planned.key, holder=holder)
        async for notice in take_over(
            lock, self.controller.actions.record, planned, refusal, holder, ok
        ):
            self.notify(
                notice.message,
                title=notice.title,
                severity=notice.severity,  # type: ignore[arg-type]
                timeout=20 if notice.severity == "error" else 8,
                markup=False,
            )

    async def _declined(self, planned: Plan) -> None:
        error = await self.controller.declined(planned)
        if error is not None:
            self.notify(error, title="Audit log", severity="error", timeout=20, markup=False)

    async def action_cancel_auto(self) -> None:
        cancelled, error = await self.controller.cancel_automatic()
        if not cancelled:
            self.notify("no automatic action is pending", timeout=4)
            return
        names = ", ".join(f"{c.verb.value} of {c.label}" for c in cancelled)
        self.notify(
            f"cancelled: {names}", title="Automatic action cancelled", timeout=8, markup=False
        )
        if error is not None:
            self.notify(error, title="Audit log", severity="error", timeout=20, markup=False)

    def action_evidence(self) -> None:
        """The verdict's full evidence and every action line, in a modal."""
        now = self.clock()
        hints = self.key_hints()
        text = evidence_text(self.snapshot.report, action_lines(self.snapshot, now, hints), now)
        self.app.push_screen(EvidenceScreen(text, self.settings.keys.evidence, hints.evidence))

    def action_history(self) -> None:
        """The deployment history and its figures (fetched off the event loop)."""
        self.app.push_screen(
            HistoryScreen(self.settings, self.controller, self.history_memory, self.history_feed)
        )

    def action_smoke(self) -> None:
        """Run the smoke suites of the key (one already running is not run twice), and
        show every suite's live state and cases."""
        if not self.settings.smoke:
            self.notify(
                "no [[smoke]] suite in the config",
                title="Smoke tests",
                severity="warning",
                timeout=6,
            )
            return
        started = self.controller.run_smoke("key")
        if not started and not self.controller.smoke_running():
            self.notify("no [[smoke]] suite runs on the key (on = [...])", timeout=6)
        self.app.push_screen(SmokeScreen(self.controller, self.settings.keys.smoke))

    # ---- find and order (the deployments pane) -------------------------------------

    def action_filter(self) -> None:
        self.query_one(FilterInput).open()

    def action_sort(self) -> None:
        pane = self._deployments
        pane.set_sort(SORT_NAME if pane.sort == SORT_URGENCY else SORT_URGENCY)
        self._title_deployments()

    def on_input_changed(self, event: Input.Changed) -> None:
        if isinstance(event.input, FilterInput):
            event.stop()
            self._deployments.set_filter(event.value.strip())
            self._title_deployments()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if isinstance(event.input, FilterInput):
            event.stop()
            self._deployments.focus()

    def on_filter_input_cleared(self, event: FilterInput.Cleared) -> None:
        event.stop()
        self._deployments.set_filter("")
        self._deployments.focus()
        self._title_deployments()

    def _show_contexts(self) -> None:
        """Each named context's service count and STALE count, in the top bar."""
        if not self.settings.aws_contexts:
            return
        bar = self.query_one(TopBar)
        for index, (name, words, stale) in enumerate(
            context_lines(
                self.settings.aws_contexts,
                self.controller.contexts,
                self.store,
                self._deployments.entries,
            )
        ):
            bar.show_context(index, f"{name} {words}", stale=stale)

    def _title_deployments(self) -> None:
        pane = self._deployments
        plain = pane.filter_text == "" and pane.sort == SORT_URGENCY
        title = "Deployments · ECS" if plain else pane.title
        self.query_one("#deployments-pane").border_title = Text(title)

    def action_freeze(self) -> None:
        self.frozen = not self.frozen
        self.query_one(TopBar).frozen = self.frozen
        if not self.frozen:
            self._flush()

    # ---- repaint --------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.frozen:
            self._missed_flush = True
            return
        if self.app.screen is not self:
            # Behind a modal: nothing visible to repaint; catch up on resume.
            self._missed_flush = True
            return
        self._missed_flush = False
        now = self.clock()
        dirty = self.store.take_dirty()
        removed = self.store.take_removed()
        if removed:  # discovery: services that left
            self._deployments.remove_services(removed)
        if dirty:
            with self.app.batch_update():
                self._deployments.update_states((self.store.services[k] for k in dirty), now)
                self.query_one(TopBar).summary = fleet_summary(
                    self.store, self._statuses(), short=self.compact
                )
                self._show_contexts()
        self._sync_judgement(now)
        self._events.extend(self.store.take_events())
        self._queue_events()

    def _queue_events(self) -> None:
        """Hand the waiting events to the log in this flush if a batch is due, else
        soon (a later flush takes them, or a timer when none comes).

        The log repaints all its lines on each write (and again as it scrolls): it gets
        a batch at most every EVENTS_EVERY seconds, in a flush that repaints anyway.
        """
        if not self._events:
            return
        wait = self._events_written + EVENTS_EVERY - time.monotonic()
        log = self.query_one(EventsLog)
        laid_out = log.size.width > 0  # before that, lines would wrap at the console's width
        if wait <= 0 and laid_out:
            labels = {k: s.label for k, s in self.store.services.items()}
            log.add_events((labels.get(k, k), e) for k, e in self._events)
            self._events.clear()
            self._events_written = time.monotonic()
        elif not self._events_scheduled:
            self._events_scheduled = True
            if not laid_out:
                self.call_after_refresh(self._events_due)
            else:
                # A little after the batch falls due, so that a flush (which repaints
                # anyway) usually takes it first; the timer is for when none comes.
                self.set_timer(wait + 2 * FLUSH_DELAY, self._events_due, name="events")

    def _events_due(self) -> None:
        self._events_scheduled = False
        if self.frozen or self.app.screen is not self:
            self._missed_flush = True  # unfreezing or the screen's return catches up
            return
        self._queue_events()

    def _statuses(self) -> dict[str, EcsStatus]:
        """Every service's status from its latest sample."""
        return {key: state.status for key, state in self.store.services.items()}

    def _tick(self) -> None:
        """Once a second: the clock, the live durations and the countdowns on screen."""
        now = self.clock()
        self.query_one(TopBar).now = now
        self._follow_lock()  # an operator lock handed over after the mount
        if self.app.screen is self and not self.frozen:
            self._deployments.tick(now)
            if self.store.signal_failures:
                self._show_panes(now)  # a STALE pane's age keeps moving
            panes = self._panes()
            for errors in panes.errors:
                errors.tick(now)  # "since the deployment began 12m ago" keeps moving
            for metrics in panes.metrics:
                metrics.tick(now)  # a silent group's "? (last 2m10s ago)" keeps ageing
        self._show_actions(now)

    def _show_actions(self, now: datetime) -> None:
        self.query_one(ActionBar).show(action_lines(self.snapshot, now, self.key_hints()))

    def _sync_judgement(self, now: datetime) -> None:
        """Show the watch's newest judgement: the banner and the action bar at once
        (even when frozen or behind a dialog: a countdown must stay visible), the
        signal panes unless frozen or hidden. New data waits for its judgement, so a
        value and its state appear together."""
        snapshot = self.snapshot
        if snapshot.version == self._shown_judgement:
            return
        self.query_one(VerdictBanner).show(snapshot.report)
        self._show_actions(now)
        if self.frozen or self.app.screen is not self:
            self._missed_flush = True
            return
        self._show_panes(now)

    def _show_panes(self, now: datetime) -> None:
        """Hand each signal pane its data and evidence (each repaints only what changed).

        A value and its state appear together: while the store holds data newer than
        the watch's last judgement (the next one is at most JUDGE_EVERY away), the panes
        wait for it — for PANES_MAX_WAIT at the most, so a steady flood of data cannot
        starve them.
        """
        snapshot = self.snapshot
        if snapshot.signal_version != self.store.signal_version:
            # Measured from when the data began to wait (not from the last time the
            # panes were shown: after a quiet second, new data would be painted at once,
            # beside the state of the data before it).
            waiting = time.monotonic()
            if self._ahead_since is None:
                self._ahead_since = waiting
            if waiting - self._ahead_since < PANES_MAX_WAIT:
                return
        self._ahead_since = None
        self._shown_judgement = snapshot.version
        store = self.store
        evidence = list(snapshot.evidence)
        self.store.take_dirty_panes()
        panes = self._panes()
        for metrics in panes.metrics:
            metrics.show(store.metrics, evidence, store.signal_error("datadog"), now)
        for errors in panes.errors:
            mine = [e for e in evidence if e.subject.startswith("sentry:")]
            errors.show(store.sentry, mine, store.signal_error("sentry"), now)
        for probes in panes.probes:
            probes.show(store.probes, evidence)

    def _panes(self) -> SignalPanes:
        """The signal panes (as found at the mount; looked up until then)."""
        found = self._signal_panes
        return found if found is not None else self._find_panes()

    def _find_panes(self) -> SignalPanes:
        return SignalPanes(
            list(self.query(MetricsPane)),
            list(self.query(ErrorsPane)),
            list(self.query(ProbesPane)),
        )
