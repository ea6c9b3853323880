"""The dashboard: deployments, events, metrics, errors and probes on one screen."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer

from tui.engine.store import EcsStatus, Store
from tui.messages import SourceCrashed, StoreChanged
from widgets.deployments import DeploymentsPane, ServiceCard
from widgets.events import EventsLog
from widgets.panes import NotConfigured
from widgets.topbar import TopBar

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from textual.app import ComposeResult
    from textual.binding import BindingType

    from tui.config import Settings

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

    def compose(self) -> ComposeResult:
        env = self.settings.environment
        yield TopBar(
            environment=env.name,
            production=env.production,
            read_only=env.read_only or getattr(self.app, "read_only", False),
        )
        with Horizontal(id="main"):
            with Vertical(id="left"):
                with Vertical(id="deployments-pane", classes="pane") as pane:
                    pane.border_title = "Deployments · ECS"
                    yield DeploymentsPane(self.store.services.values(), now=self.clock())
                with Vertical(id="events-pane", classes="pane") as pane:
                    pane.border_title = "Service events"
                    yield EventsLog(id="events")
            with Vertical(id="right"):
                with Vertical(id="metrics-pane", classes="pane") as pane:
                    pane.border_title = "Metrics · Datadog"
                    yield NotConfigured("Datadog metrics", "Add [[metric]] queries to the config.")
                with Vertical(id="errors-pane", classes="pane") as pane:
                    pane.border_title = "Errors · Sentry"
                    yield NotConfigured("Sentry errors", "Add a [sentry] table to the config.")
                with Vertical(id="probes-pane", classes="pane") as pane:
                    pane.border_title = "Probes · HTTP"
                    yield NotConfigured("Health probes", "Add [[probe]] endpoints to the config.")
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
        events = self.store.take_events()
        if events:
            labels = {k: s.label for k, s in self.store.services.items()}
            self.query_one(EventsLog).add_events((labels.get(k, k), e) for k, e in events)

    def _tick(self) -> None:
        now = self.clock()
        self.query_one(TopBar).now = now
        if self.app.screen is self:
            self.query_one(DeploymentsPane).tick(now)
