"""The dashboard: deployments, events, metrics, errors and probes on one screen."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from tui.engine.store import EcsStatus, Store
from tui.engine.verdict import judge
from tui.messages import SourceCrashed, StoreChanged
from widgets.deployments import DeploymentsPane, ServiceCard
from widgets.events import EventsLog
from widgets.panes import NotConfigured
from widgets.signals import ErrorsPane, MetricsPane, MetricView, ProbesPane, VerdictBanner
from widgets.topbar import TopBar

if TYPE_CHECKING:
    from collections.abc import Callable

    from textual.app import ComposeResult
    from textual.binding import BindingType

    from tui.config import Settings
    from tui.engine.verdict import Report

FLUSH_DELAY = 0.1
"""Seconds a burst of store changes is collected before one repaint (≤ 10 flushes/s)."""


def fleet_summary(store: Store) -> str:
    """``2 services · 1 IN_PROGRESS · 1 FAILED · 1 stale`` in a fixed, severity order."""
    counts = store.counts()
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

    BINDINGS: ClassVar[list[BindingType]] = []

    def __init__(self, settings: Settings, store: Store, clock: Callable[[], datetime]) -> None:
        super().__init__(id="dashboard")
        self.settings = settings
        self.store = store
        self.clock = clock
        self._flush_scheduled = False
        self._missed_flush = False
        self.report: Report | None = None
        """The latest verdict, re-judged every second and on every change."""

    def compose(self) -> ComposeResult:
        env = self.settings.environment
        yield TopBar(
            environment=env.name,
            production=env.production,
            read_only=env.read_only or getattr(self.app, "read_only", False),
        )
        yield VerdictBanner()
        with Horizontal(id="main"):
            with Vertical(id="left"):
                with Vertical(id="deployments-pane", classes="pane") as pane:
                    pane.border_title = "Deployments · ECS"
                    yield DeploymentsPane(self.store.services.values(), now=self.clock())
                with Vertical(id="events-pane", classes="pane") as pane:
                    pane.border_title = "Service events"
                    yield EventsLog(id="events")
            with Vertical(id="right"):
                settings = self.settings
                with VerticalScroll(id="metrics-pane", classes="pane") as pane:
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
                with VerticalScroll(id="probes-pane", classes="pane") as pane:
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
        first = self.query(ServiceCard).first()
        first.focus()

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
            self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.app.screen is not self:
            # Behind a modal: nothing visible to repaint; catch up on resume.
            self._missed_flush = True
            return
        self._missed_flush = False
        now = self.clock()
        dirty = self.store.take_dirty()
        if dirty:
            with self.app.batch_update():
                pane = self.query_one(DeploymentsPane)
                pane.update_states((self.store.services[k] for k in dirty), now)
                self.query_one(TopBar).summary = fleet_summary(self.store)
        if self.store.take_dirty_panes():
            self._judge(now)
        events = self.store.take_events()
        if events:
            labels = {k: s.label for k, s in self.store.services.items()}
            self.query_one(EventsLog).add_events((labels.get(k, k), e) for k, e in events)

    def _tick(self) -> None:
        now = self.clock()
        self.query_one(TopBar).now = now
        if self.app.screen is self:
            self.query_one(DeploymentsPane).tick(now)
            self._judge(now)

    def _judge(self, now: datetime) -> None:
        """Evaluate every rule, show the verdict, and hand each pane its evidence."""
        store = self.store
        evidence = store.rules.evaluate(now, store.source_error)
        report = judge(evidence, {key: state.status for key, state in store.services.items()})
        self.report = report
        self.query_one(VerdictBanner).show(report)
        for metrics in self.query(MetricsPane):
            metrics.show(store.metrics, evidence, store.signal_error("datadog"), now)
        for errors in self.query(ErrorsPane):
            mine = [e for e in evidence if e.subject.startswith("sentry:")]
            errors.show(store.sentry, mine, store.signal_error("sentry"), now)
        for probes in self.query(ProbesPane):
            mine = [e for e in evidence if e.subject.startswith("probe:")]
            probes.show(store.probes, mine)
