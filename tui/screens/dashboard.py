"""The dashboard: deployments, events, metrics, errors and probes on one screen."""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from engine.actions import ActionResult, Outcome, Plan, Verb, plan
from engine.canary import CanaryDriver
from engine.store import EcsStatus, Store
from engine.verdict import judge
from tui.messages import SourceCrashed, StoreChanged
from tui.screens.confirm import ConfirmScreen
from widgets.actionbar import ActionBar, ActionLine
from widgets.deployments import DeploymentsPane
from widgets.events import EVENT_LOG_LINES, EventsLog
from widgets.panes import NotConfigured
from widgets.signals import ErrorsPane, MetricsPane, MetricView, ProbesPane, VerdictBanner
from widgets.topbar import TopBar

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from textual.app import ComposeResult
    from textual.binding import BindingType
    from textual.dom import DOMNode
    from textual.events import DescendantFocus

    from engine.actions import ActionEngine, ApiCall
    from engine.autopilot import AutoPilot, MttrClock
    from engine.config import Settings
    from engine.rules import Evidence
    from engine.store import ServiceState
    from engine.verdict import Report
    from sources.model import EcsEvent, EcsServiceSample

FLUSH_DELAY = 0.1
"""Seconds a burst of store changes is collected before one repaint (≤ 10 flushes/s)."""

JUDGE_EVERY = 0.5
"""Seconds between two judgements of every rule on flushes (the 1 s tick judges too)."""

EVENTS_EVERY = 1.0
"""Seconds between two batches of service events handed to the events log."""


def fleet_summary(store: Store, statuses: Mapping[str, EcsStatus] | None = None) -> str:
    """``2 services · 1 IN_PROGRESS · 1 FAILED · 1 stale`` in a fixed, severity order.

    Args:
        store: The store.
        statuses: Each service's status, when the caller has them at hand.

    Returns:
        The summary line.
    """
    if statuses is None:
        counts = store.counts()
    else:
        counts = {}
        for status in statuses.values():
            counts[status] = counts.get(status, 0) + 1
    parts = [f"{len(store.services)} service{'s' if len(store.services) != 1 else ''}"]
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
            parts.append(f"{counts[status]} {status.value}")
    stale = sum(1 for s in store.services.values() if s.stale)
    if stale:
        parts.append(f"{stale} STALE")
    return " · ".join(parts)


class DashboardScreen(Screen[None]):
    """The one screen a deployer keeps open for the whole window."""

    # Keys follow k9s/e1s where they have one (shift-R rolls back); ids let the
    # [keys] table of the config remap them (App.set_keymap).
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
    ]

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Callable[[], datetime],
        *,
        actions: ActionEngine,
        autopilot: AutoPilot,
        mttr: MttrClock,
    ) -> None:
        super().__init__(id="dashboard")
        self.settings = settings
        self.store = store
        self.clock = clock
        self.actions = actions
        self.autopilot = autopilot
        self.mttr = mttr
        self._flush_scheduled = False
        self._missed_flush = False
        self._focused_pane: DOMNode | None = None
        self._judged_at = 0.0
        """Monotonic time of the last judgement (at most JUDGE_EVERY apart on flushes)."""
        self._events: deque[tuple[str, EcsEvent]] = deque(maxlen=EVENT_LOG_LINES)
        """Service events waiting for the next batch (the log keeps no more than these)."""
        self._events_scheduled = False
        self._events_written = 0.0
        """Monotonic time of the last batch written to the events log."""
        self.frozen = False
        self.report: Report | None = None
        """The latest verdict, re-judged every second and on every change."""
        self.sending: dict[str, Plan] = {}
        """Actions being sent, per service."""
        self.last_result: ActionResult | None = None
        self.canaries = {
            ref.key: CanaryDriver(ref.key, ref.canary)
            for ref in settings.services
            if ref.canary is not None
        }
        """ALB canaries deploywatch drives, per service."""
        actions.local.update(hold_canary=self._hold_canary, release_canary=self._release_canary)
        self._deployments = DeploymentsPane(store.services.values(), now=clock())
        self._status_of: dict[str, tuple[EcsServiceSample | None, EcsStatus]] = {}
        """Each service's status and the sample it was judged from (judged again only
        when the sample changes: the rules need all of them every second)."""

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
            read_only=env.read_only or getattr(self.app, "read_only", False),
        )
        yield VerdictBanner()
        yield ActionBar()
        with Horizontal(id="main"):
            with Vertical(id="left"):
                with Vertical(id="deployments-pane", classes="pane") as pane:
                    pane.border_title = "Deployments · ECS"
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
                        yield MetricsPane([MetricView(m.name, m.unit) for m in settings.metrics])
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
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick, name="clock")
        self._tick()
        self._flush()
        self._deployments.focus()

    def on_store_changed(self, message: StoreChanged) -> None:
        message.stop()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.set_timer(FLUSH_DELAY, self._flush, name="flush")

    def on_source_crashed(self, message: SourceCrashed) -> None:
        message.stop()
        self.notify(
            f"{message.source} stopped: {message.error}",
            title="Source crashed",
            severity="error",
            timeout=30,
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

    def _status(self, state: ServiceState) -> EcsStatus:
        cached = self._status_of.get(state.key)
        if cached is None or cached[0] is not state.sample:
            cached = self._status_of[state.key] = (state.sample, state.status)
        return cached[1]

    def _statuses(self) -> dict[str, EcsStatus]:
        """Every service's deployment status, by key."""
        return {key: self._status(state) for key, state in self.store.services.items()}

    # ---- actions ------------------------------------------------------------------

    def plan(self, verb: Verb, key: str | None = None) -> Plan:
        """What ``verb`` would do to a service (the selected one by default) now."""
        env = self.settings.environment
        key = key or self.selected
        driver = self.canaries.get(key)
        if driver is not None:  # plan on the latest weights, not last second's
            sample = self.store.services[key].sample
            driver.observe(sample.alb if sample is not None else None, self.clock())
        return plan(
            verb,
            self.store.services[key],
            environment=env.name,
            production=env.production,
            canary=self.canaries.get(key),
        )

    def _hold_canary(self, call: ApiCall) -> dict[str, Any]:
        self.canaries[str(call.params["service"])].held = True
        return {"held": True}

    def _release_canary(self, call: ApiCall) -> dict[str, Any]:
        driver = self.canaries[str(call.params["service"])]
        driver.held = False
        driver.since = self.clock()  # the step's wait starts again from the release
        return {"held": False}

    def action_act(self, verb_name: str) -> None:
        """A verb key: confirm (naming the target), then send through the engine."""
        self.act_on(Verb(verb_name), self.selected)

    def act_on(self, verb: Verb, key: str) -> None:
        """Ask for ``verb`` on ``key`` (from a key or the command palette)."""
        planned = self.plan(verb, key)
        if self.actions.read_only:
            # Refused by the engine itself, so the refusal is audited like any other.
            self.run_worker(self._send(planned, reason="operator request"), group="actions")
            return
        if not planned.enabled:
            self.notify(
                planned.disabled_reason or "not possible now",
                title=f"{planned.title}: not possible",
                severity="warning",
                timeout=8,
            )
            return

        if verb in (Verb.PAUSE, Verb.RESUME):
            # Holding or releasing our own automation changes no traffic: no dialog.
            self.run_worker(self._send(planned, reason="operator request"), group="actions")
            return

        def confirmed(ok: bool | None) -> None:
            if not ok:
                self.notify(f"{planned.title}: cancelled, nothing sent", timeout=4)
                return
            now_plan = self.plan(verb, key)
            if now_plan.call != planned.call:
                self.notify(
                    f"{planned.title}: the deployment changed while you confirmed "
                    f"({now_plan.effect}); nothing sent — look and try again",
                    severity="warning",
                    timeout=12,
                )
                return
            self.run_worker(self._send(planned, reason="operator request"), group="actions")

        self.app.push_screen(ConfirmScreen(planned), confirmed)

    async def _send(
        self,
        planned: Plan,
        *,
        reason: str,
        automatic: bool = False,
        evidence: tuple[Evidence, ...] = (),
    ) -> None:
        self.sending[planned.key] = planned
        self._show_actions(self.clock())
        try:
            result = await self.actions.request(
                planned, automatic=automatic, reason=reason, evidence=evidence
            )
        finally:
            self.sending.pop(planned.key, None)
        self.last_result = result
        if result.outcome is Outcome.DONE and planned.verb is Verb.ROLLBACK:
            self.mttr.decided(planned.key, result.at)
        how = "automatic " if automatic else ""
        severity = {"done": "information", "failed": "error", "refused": "warning"}[
            result.outcome.value
        ]
        self.notify(
            result.message,
            title=f"{how}{planned.verb.value} of {planned.label}: {result.outcome.value}",
            severity=severity,  # type: ignore[arg-type]
            timeout=10 if result.outcome is Outcome.DONE else 20,
        )
        self._show_actions(self.clock())

    def action_cancel_auto(self) -> None:
        cancelled = self.autopilot.cancel()
        if not cancelled:
            self.notify("no automatic action is pending", timeout=4)
            return
        names = ", ".join(
            f"{c.verb.value} of {self.store.services[c.key].label}" for c in cancelled
        )
        self.notify(f"cancelled: {names}", title="Automatic action cancelled", timeout=8)
        self.run_worker(
            self.actions.record(
                "cancelled",
                action=", ".join(sorted({c.verb.value for c in cancelled})),
                targets=[c.key for c in cancelled],
                rules=[c.rule for c in cancelled],
            ),
            group="actions",
        )
        self._show_actions(self.clock())

    def action_freeze(self) -> None:
        self.frozen = not self.frozen
        self.query_one(TopBar).frozen = self.frozen
        if not self.frozen:
            self._flush()

    def _automate(self, now: datetime, evidence: list[Evidence]) -> None:
        """Start/advance countdowns; send what is due; keep the MTTR clock."""

        def can_act(key: str, verb: Verb) -> bool:
            return self.plan(verb, key).enabled and key not in self.sending

        for countdown in self.autopilot.update(now, evidence, can_act):
            planned = self.plan(countdown.verb, countdown.key)
            self.run_worker(
                self._send(
                    planned,
                    reason=f"rule {countdown.rule!r} critical for its window",
                    automatic=True,
                    evidence=(countdown.evidence,),
                ),
                group="actions",
            )
        failing = self.report is not None and self.report.verdict.value == "FAILING"
        for key, driver in self.canaries.items():
            sample = self.store.services[key].sample
            driver.observe(sample.alb if sample is not None else None, now)
            weight = driver.due(now, failing)
            if weight is None or key in self.sending:
                continue
            planned = self.plan(Verb.PROMOTE, key)
            if planned.enabled and planned.to_revision == f"canary {weight}%":
                driver.sent = weight
                self.run_worker(
                    self._send(planned, reason="canary step: its wait is over", automatic=True),
                    group="actions",
                )
        self.mttr.observe(evidence)
        for key, state in self.store.services.items():
            canary = self.canaries.get(key)
            if canary is not None:
                if canary.observed is not None and not canary.started:
                    self.mttr.recovered(key, now)  # the canary gets no traffic any more
            elif self._status(state) in (EcsStatus.ROLLBACK_SUCCESSFUL, EcsStatus.COMPLETED):
                self.mttr.recovered(key, now)

    def _show_actions(self, now: datetime) -> None:
        lines: list[ActionLine] = []
        labels = {k: s.label for k, s in self.store.services.items()}
        cancel_key = self.settings.keys.cancel
        for countdown in self.autopilot.pending():
            lines.append(
                ActionLine(
                    "warn",
                    f"AUTO {countdown.verb.value.upper()} in {countdown.remaining(now):.0f}s",
                    f"{labels.get(countdown.key, countdown.key)} · {countdown.evidence.summary()}"
                    f" · press {cancel_key} to cancel",
                )
            )
        failing = self.report is not None and self.report.verdict.value == "FAILING"
        for key, driver in self.canaries.items():
            lines.append(
                ActionLine(
                    "busy", "CANARY", f"{labels.get(key, key)}: {driver.describe(now, failing)}"
                )
            )
        for planned in self.sending.values():
            lines.append(ActionLine("busy", "SENDING", f"{planned.title}: {planned.effect}"))
        result = self.last_result
        if result is not None:
            tone = {"done": "ok", "failed": "bad", "refused": "warn"}[result.outcome.value]
            how = "auto " if result.automatic else ""
            lines.append(
                ActionLine(
                    tone,
                    f"{how}{result.plan.verb.value} {result.outcome.value.upper()}",
                    f"{result.plan.label} {result.plan.change} at {result.at.strftime('%H:%M:%S')}"
                    f" · {result.message}",
                )
            )
        for key, rec in self.mttr.services.items():
            if rec.decided is not None:
                lines.append(
                    ActionLine("muted", "MTTR", f"{labels.get(key, key)}: {rec.describe(now)}")
                )
        self.query_one(ActionBar).show(tuple(lines))

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
        if dirty:
            with self.app.batch_update():
                self._deployments.update_states((self.store.services[k] for k in dirty), now)
                self.query_one(TopBar).summary = fleet_summary(self.store, self._statuses())
        if self.store.take_dirty_panes():
            if time.monotonic() - self._judged_at >= JUDGE_EVERY:
                self._judge(now)
            else:
                # Judged a moment ago: the next flush or the 1 s tick judges the new
                # data and shows it with its judgement (a value and its state together).
                self.store.dirty_panes.add("metrics")
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

    def _tick(self) -> None:
        now = self.clock()
        self.query_one(TopBar).now = now
        if self.app.screen is self and not self.frozen:
            self._deployments.tick(now)
        # Rules and automatic actions never wait for the screen: judge even when frozen
        # or behind a modal (the countdown must keep counting while a dialog is open).
        self._judge(now)

    def _judge(self, now: datetime) -> None:
        """Evaluate every rule, show the verdict, and hand each pane its evidence."""
        store = self.store
        self._judged_at = time.monotonic()
        evidence = store.rules.evaluate(now, store.source_error)
        report = judge(evidence, self._statuses())
        self.report = report
        self._automate(now, evidence)
        self.query_one(VerdictBanner).show(report)
        self._show_actions(now)
        if self.frozen:
            return
        # Each pane repaints only what changed (a new judgement often says the same).
        for metrics in self.query(MetricsPane):
            metrics.show(store.metrics, evidence, store.signal_error("datadog"), now)
        for errors in self.query(ErrorsPane):
            mine = [e for e in evidence if e.subject.startswith("sentry:")]
            errors.show(store.sentry, mine, store.signal_error("sentry"), now)
        for probes in self.query(ProbesPane):
            probes.show(store.probes, evidence)
