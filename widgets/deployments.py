"""The deployments pane: one card per service, each updated in place.

A card is a single widget rendering a few lines of text, so a poll that changes one
service repaints one card, and thousands of services stay cheap. Colours come from
component classes (theme variables in CSS), never from hex codes in Python.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widget import Widget

from tui.engine.store import EcsStatus, ServiceState
from widgets.format import age_text, bar_cells, count, since
from widgets.tones import Toned

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sources.model import EcsDeployment, EcsServiceSample, ServiceDeployment

BAR_WIDTH = 20
"""Cells in a deployment's progress bar."""

_STATE_TONE = {
    "COMPLETED": "ok",
    "SUCCESSFUL": "ok",
    "ROLLBACK_SUCCESSFUL": "warn",
    "IN_PROGRESS": "busy",
    "PENDING": "busy",
    "FAILED": "bad",
    "ROLLBACK_FAILED": "bad",
    "STOPPED": "warn",
    "STOP_REQUESTED": "warn",
    "ROLLBACK_REQUESTED": "warn",
    "ROLLBACK_IN_PROGRESS": "warn",
    "TRIGGERED": "bad",
}
_LIVE_STATES = frozenset({"IN_PROGRESS", "PENDING", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"})


def _order(deployments: Iterable[EcsDeployment]) -> list[EcsDeployment]:
    rank = {"PRIMARY": 0, "ACTIVE": 1}
    return sorted(
        deployments,
        key=lambda d: (
            rank.get(d.status, 2),
            -(d.created_at.timestamp() if d.created_at else 0.0),
        ),
    )


class ServiceCard(Toned, can_focus=True):
    """One service: its deployments with progress, state, elapsed time, and staleness."""

    DEFAULT_CSS = """
    ServiceCard {
        height: auto;
        padding: 0 1;
        margin-bottom: 1;
        border-left: wide $panel-lighten-2;
    }
    ServiceCard:focus { background: $boost; border-left: wide $accent; }
    ServiceCard.-tone-ok { border-left: wide $success; }
    ServiceCard.-tone-busy { border-left: wide $accent; }
    ServiceCard.-tone-warn { border-left: wide $warning; }
    ServiceCard.-tone-bad { border-left: wide $error; }
    ServiceCard.-stale { border-left: wide $warning-darken-2; }
    """

    class Selected(Message):
        """The user moved to this service."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, state: ServiceState, *, now: datetime, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = state
        self.now = now
        self._text: Text | None = None

    @property
    def key(self) -> str:
        """The service key (``cluster/service``)."""
        return self.state.key

    @property
    def is_live(self) -> bool:
        """True when the card shows a running clock and must repaint every second."""
        if self.state.stale:
            return True
        sample = self.state.sample
        if sample is None:
            return False
        return any(d.rollout_state in _LIVE_STATES for d in sample.deployments) or any(
            sd.status in _LIVE_STATES for sd in sample.service_deployments[:1]
        )

    def update_state(self, state: ServiceState, now: datetime) -> None:
        """Show new state (called by the screen after the store changed)."""
        self.state = state
        self.now = now
        if not self.is_mounted:
            return
        self._sync_classes()
        old_lines = len(self._text.split()) if self._text is not None else -1
        self._text = self._build()
        self.refresh(layout=len(self._text.split()) != old_lines)

    def tick(self, now: datetime) -> None:
        """Advance clocks; repaints only when something on the card moves."""
        self.now = now
        if self.is_live:
            self._text = None
            self.refresh()

    def on_mount(self) -> None:
        self._sync_classes()

    def on_focus(self) -> None:
        self.post_message(self.Selected(self.key))

    def _sync_classes(self) -> None:
        tone = self.state.status.tone
        for name in ("ok", "busy", "warn", "bad", "none"):
            self.set_class(name == tone, f"-tone-{name}")
        self.set_class(self.state.stale, "-stale")

    def render(self) -> Text:
        if self._text is None:
            self._text = self._build()
        return self._text

    def _build(self) -> Text:
        state = self.state
        sample = state.sample
        status = state.status
        text = Text(no_wrap=False, overflow="fold")
        text.append(state.label, self.tone("label"))
        text.append(f"  {state.key}", self.tone("muted"))
        text.append("  ")
        text.append(status.value, self.tone(status.tone))
        if sample is not None:
            text.append(
                f"  {count(sample.running)}/{count(sample.desired)} running",
                self.tone("muted"),
            )
            if sample.pending:
                text.append(f" · {sample.pending} pending", self.tone("muted"))
        if state.stale and state.failure is not None:
            age = state.stale_age(self.now)
            text.append("  ")
            text.append(f" STALE {age_text(age)} ", self.tone("stale"))
            text.append(f" {state.failure.reason}: {state.failure.error}", self.tone("warn"))
        if sample is None:
            if not state.stale:
                text.append("\n  waiting for the first answer from ECS…", self.tone("muted"))
            return text
        for deployment in _order(sample.deployments):
            text.append("\n")
            self._deployment_line(text, deployment)
        newest = sample.service_deployments[0] if sample.service_deployments else None
        if newest is not None:
            text.append("\n")
            self._service_deployment_line(text, newest, sample)
        elif not sample.service_deployments_supported:
            text.append("\n  service deployments API not available here", self.tone("muted"))
        if sample.codedeploy is not None:
            cd = sample.codedeploy
            text.append("\n  codedeploy ", self.tone("muted"))
            tone = _CODEDEPLOY_TONE.get(cd.status, "busy")
            text.append(f"{cd.status:<10} ", self.tone(tone))
            text.append(cd.id, self.tone("label"))
            if cd.rollback_of:
                text.append(f"  rollback of {cd.rollback_of}", self.tone("warn"))
            if cd.status == "Ready":
                text.append("  waiting to reroute traffic: P promotes", self.tone("warn"))
            elif cd.termination_wait and cd.in_flight:
                text.append(
                    "  traffic moved; original task set kept until its wait ends",
                    self.tone("muted"),
                )
            if cd.error:
                text.append(f"\n    {cd.error}", self.tone(tone))
        return text

    def _deployment_line(self, text: Text, d: EcsDeployment) -> None:
        text.append(f"  {d.status:<8} ", self.tone("muted"))
        text.append(f"{d.revision:<14} ", self.tone("label"))
        filled, empty = bar_cells(d.running, d.desired, BAR_WIDTH)
        text.append("█" * filled, self.tone("bar-done"))
        text.append("░" * empty, self.tone("bar-todo"))
        counts = f" {count(d.running):>3}/{count(d.desired):<3}"
        text.append(counts)
        extra = []
        if d.pending:
            extra.append(f"{d.pending} pending")
        if d.failed:
            extra.append(f"{d.failed} failed")
        text.append(f" {', '.join(extra):<22}", self.tone("bad" if d.failed else "muted"))
        state = d.rollout_state or "—"
        text.append(f" {state:<12}", self.tone(_STATE_TONE.get(state, "none")))
        end = self.now if d.rollout_state in _LIVE_STATES or d.updated_at is None else d.updated_at
        text.append(f" {since(d.created_at, end):>7}", self.tone("muted"))
        if d.images:
            text.append(f"  {', '.join(d.images)}", self.tone("muted"))
        if d.rollout_state == "FAILED" and d.rollout_reason:
            text.append(f"\n    {d.rollout_reason}", self.tone("bad"))

    def _service_deployment_line(
        self, text: Text, sd: ServiceDeployment, sample: EcsServiceSample
    ) -> None:
        text.append("  deployment ", self.tone("muted"))
        text.append(sd.status, self.tone(_STATE_TONE.get(sd.status, "none")))
        target = _revision(sd.target_task_definition)
        sources = ", ".join(_revision(s) for s in sd.source_task_definitions)
        if not sources:
            text.append(f"  {target} (initial deployment)", self.tone("muted"))
        elif sd.status.startswith("ROLLBACK"):
            # Read as the operator thinks of it: the new revision, going back to the old.
            text.append(f"  {target} → back to {sources}", self.tone("muted"))
        else:
            text.append(f"  {sources} → {target}", self.tone("muted"))
        start = sd.started_at or sd.created_at
        end = sd.finished_at or sd.stopped_at or self.now
        text.append(f"  {since(start, end)}", self.tone("muted"))
        cb = sd.circuit_breaker or sample.circuit_breaker
        if cb is not None and cb.enabled:
            text.append("  breaker ", self.tone("muted"))
            status = cb.status or "on"
            text.append(status, self.tone(_STATE_TONE.get(status, "muted")))
            if cb.failure_count is not None and cb.threshold is not None:
                text.append(f" {cb.failure_count}/{cb.threshold}", self.tone("muted"))
            text.append(" (auto-rollback)" if cb.rollback else "", self.tone("muted"))
        reason = sd.rollback_reason or sd.status_reason
        shown = {d.rollout_reason for d in sample.deployments if d.rollout_state == "FAILED"}
        if (
            reason
            and reason not in shown
            and sd.status not in ("IN_PROGRESS", "SUCCESSFUL", "PENDING")
        ):
            text.append(f"\n    {reason}", self.tone(_STATE_TONE.get(sd.status, "muted")))


_CODEDEPLOY_TONE = {
    "Succeeded": "ok",
    "Failed": "bad",
    "Stopped": "warn",
    "Ready": "warn",
}


def _revision(task_definition: str | None) -> str:
    if not task_definition:
        return "?"
    return task_definition.rsplit("/", 1)[-1]


class DeploymentsPane(VerticalScroll, can_focus=False):
    """All watched services, in config order. Cards are mounted once and updated in place."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j,down", "move(1)", "Next service", show=False, tooltip="Select the next service"),
        Binding(
            "k,up", "move(-1)", "Prev service", show=False, tooltip="Select the previous service"
        ),
    ]

    def __init__(self, states: Iterable[ServiceState], *, now: datetime | None = None) -> None:
        super().__init__(id="deployments")
        self._now = now or datetime.now(UTC)
        self._cards = {
            state.key: ServiceCard(state, now=self._now, id=f"svc-{i}")
            for i, state in enumerate(states)
        }

    def compose(self) -> Iterable[Widget]:
        yield from self._cards.values()

    def card(self, key: str) -> ServiceCard | None:
        """The card of a service, if watched."""
        return self._cards.get(key)

    def update_states(self, states: Iterable[ServiceState], now: datetime) -> None:
        """Refresh the given services' cards in place."""
        for state in states:
            card = self._cards.get(state.key)
            if card is not None:
                card.update_state(state, now)

    def tick(self, now: datetime) -> None:
        """Advance every live clock (only visible, moving cards repaint)."""
        for card in self._cards.values():
            card.tick(now)

    def action_move(self, step: int) -> None:
        cards = list(self._cards.values())
        if not cards:
            return
        focused = self.screen.focused
        index = (
            cards.index(focused) if isinstance(focused, ServiceCard) and focused in cards else -1
        )
        target = cards[max(0, min(len(cards) - 1, index + step))]
        target.focus()
        target.scroll_visible()


__all__ = ["DeploymentsPane", "EcsStatus", "ServiceCard"]
