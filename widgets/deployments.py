"""The deployments pane: one card per service, each updated in place.

The pane is a :class:`~widgets.rowlist.RowList`: only the cards in view are built and
painted, and a poll that changes one service repaints the cells that changed on its
card, so thousands of services stay cheap. Colours come from component classes (theme
variables in CSS), never from hex codes in Python.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from engine.durations import span_words as age_text
from engine.store import EcsStatus, ServiceState
from widgets.actionbar import KeyHints
from widgets.format import bar_cells, count, since
from widgets.rowlist import RowList
from widgets.safe import LONG, clean

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from textual import events
    from textual.color import Color

    from sources.model import Discovered, EcsDeployment, EcsServiceSample, ServiceDeployment

BAR_WIDTH = 20
"""Cells in a deployment's progress bar."""
COMPACT_BAR_WIDTH = 8
"""Cells in the progress bar of a compact card (a narrow terminal)."""

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
_EDGE_TONES = ("ok", "busy", "warn", "bad")
"""States whose colour the card's edge takes."""
_LIVE_STATES = frozenset({"IN_PROGRESS", "PENDING", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"})


SORT_URGENCY = "urgency"
"""Cards by urgency (failed, then in flight or rolling back, then settled)."""
SORT_NAME = "name"
"""Cards by name, alphabetically."""

_URGENCY = {
    EcsStatus.FAILED: 0,
    EcsStatus.ROLLBACK_FAILED: 0,
    EcsStatus.IN_PROGRESS: 1,
    EcsStatus.ROLLBACK_REQUESTED: 1,
    EcsStatus.ROLLBACK_IN_PROGRESS: 1,
    EcsStatus.STOPPED: 1,
}
"""Where a card goes (``k9s``-style, by status; config order within each group): failed
with nothing moving first (act now), then deployments and rollbacks in flight, then
settled services."""


def urgency(state: ServiceState) -> int:
    """0: failed (the deployment or its rollback); 1: in flight or rolling back (or
    stopped); 2: settled or no data."""
    return _URGENCY.get(state.status, 2)


def _order(deployments: Iterable[EcsDeployment]) -> list[EcsDeployment]:
    rank = {"PRIMARY": 0, "ACTIVE": 1}
    return sorted(
        deployments,
        key=lambda d: (
            rank.get(d.status, 2),
            -(d.created_at.timestamp() if d.created_at else 0.0),
        ),
    )


def is_live(state: ServiceState) -> bool:
    """True when a service's card shows a running clock (it moves every second)."""
    if state.stale:
        return True
    sample = state.sample
    if sample is None:
        return False
    return any(d.rollout_state in _LIVE_STATES for d in sample.deployments) or any(
        sd.status in _LIVE_STATES for sd in sample.service_deployments[:1]
    )


class CardText:
    """Writes one service's card: its deployments with progress, state, elapsed time,
    and staleness, as styled text (``tone`` gives the style of a tone name)."""

    def __init__(
        self,
        state: ServiceState,
        now: datetime,
        tone: Callable[[str], str],
        *,
        compact: bool = False,
        keys: KeyHints | None = None,
    ) -> None:
        self.state = state
        self.now = now
        self.tone = tone
        self.compact = compact
        """A narrow terminal: a shorter bar, no column padding, no image (the image is
        in the task definition named on the line)."""
        self.keys = keys or KeyHints()
        """The keys the card's hints name, as the live keymap has them."""

    def build(self) -> Text:
        """The card's text."""
        state = self.state
        sample = state.sample
        status = state.status
        text = Text(no_wrap=False, overflow="fold")
        text.append(clean(state.label), self.tone("label"))
        text.append(f"  {clean(state.key)}", self.tone("muted"))
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
            failure = state.failure
            text.append(f" {clean(failure.reason)}: {clean(failure.error)}", self.tone("warn"))
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
            text.append(f"{clean(cd.status):<10} ", self.tone(tone))
            text.append(clean(cd.id), self.tone("label"))
            if cd.rollback_of:
                text.append(f"  rollback of {clean(cd.rollback_of)}", self.tone("warn"))
            if cd.status == "Ready":
                text.append(
                    f"  waiting to reroute traffic: {self.keys.promote} promotes", self.tone("warn")
                )
            elif cd.termination_wait and cd.in_flight:
                text.append(
                    "  traffic moved; original task set kept until its wait ends",
                    self.tone("muted"),
                )
            if cd.error:
                text.append(f"\n    {clean(cd.error, LONG)}", self.tone(tone))
        return text

    def _deployment_line(self, text: Text, d: EcsDeployment) -> None:
        compact = self.compact
        text.append(f"  {clean(d.status):<{0 if compact else 8}} ", self.tone("muted"))
        text.append(f"{clean(d.revision):<{0 if compact else 14}} ", self.tone("label"))
        filled, empty = bar_cells(d.running, d.desired, COMPACT_BAR_WIDTH if compact else BAR_WIDTH)
        text.append("█" * filled, self.tone("bar-done"))
        text.append("░" * empty, self.tone("bar-todo"))
        counts = f" {count(d.running)}/{count(d.desired)}"
        text.append(counts if compact else f" {count(d.running):>3}/{count(d.desired):<3}")
        extra = []
        if d.pending:
            extra.append(f"{d.pending} pending")
        if d.failed:
            extra.append(f"{d.failed} failed")
        if not compact:
            text.append(f" {', '.join(extra):<22}", self.tone("bad" if d.failed else "muted"))
        elif extra:
            text.append(f" {', '.join(extra)}", self.tone("bad" if d.failed else "muted"))
        state = clean(d.rollout_state) or "—"
        text.append(f" {state:<{0 if compact else 12}}", self.tone(_STATE_TONE.get(state, "none")))
        end = self.now if d.rollout_state in _LIVE_STATES or d.updated_at is None else d.updated_at
        text.append(f" {since(d.created_at, end):>{0 if compact else 7}}", self.tone("muted"))
        if d.images and not compact:
            text.append(f"  {clean(', '.join(d.images))}", self.tone("muted"))
        if d.rollout_state == "FAILED" and d.rollout_reason:
            text.append(f"\n    {clean(d.rollout_reason, LONG)}", self.tone("bad"))

    def _service_deployment_line(
        self, text: Text, sd: ServiceDeployment, sample: EcsServiceSample
    ) -> None:
        text.append("  deployment ", self.tone("muted"))
        text.append(clean(sd.status), self.tone(_STATE_TONE.get(sd.status, "none")))
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
            text.append(clean(status), self.tone(_STATE_TONE.get(status, "muted")))
            if cb.failure_count is not None and cb.threshold is not None:
                text.append(f" {cb.failure_count}/{cb.threshold}", self.tone("muted"))
            text.append(" (auto-rollback)" if cb.rollback else "", self.tone("muted"))
        self._shift_line(text, sd, sources, target)
        reason = sd.rollback_reason or sd.status_reason
        shown = {d.rollout_reason for d in sample.deployments if d.rollout_state == "FAILED"}
        if (
            reason
            and reason not in shown
            and sd.status not in ("IN_PROGRESS", "SUCCESSFUL", "PENDING")
        ):
            text.append(
                f"\n    {clean(reason, LONG)}", self.tone(_STATE_TONE.get(sd.status, "muted"))
            )

    def _shift_line(self, text: Text, sd: ServiceDeployment, sources: str, target: str) -> None:
        """While a native blue/green, canary or linear deployment runs: its lifecycle
        stage, the production traffic split, and a PAUSE hook that waits for a promote."""
        if sd.status not in _LIVE_STATES:
            return
        parts: list[tuple[str, str]] = []
        if sd.lifecycle_stage:
            parts.append((f"stage {sd.lifecycle_stage}", "muted"))
        weight = sd.traffic_weight
        if weight is not None and sources:
            parts.append((f"traffic {sources} {100 - weight:g}% / {target} {weight:g}%", "label"))
        hook = sd.awaiting_hook
        if hook is not None and sd.status in ("PENDING", "IN_PROGRESS"):
            keys = self.keys
            waits = f"hook waiting: {keys.promote} promotes, {keys.rollback} rolls back"
            if hook.expires_at is not None:
                action = hook.timeout_action or "ROLLBACK"
                waits += f" (else {action} at {hook.expires_at.strftime('%H:%M:%S')})"
            parts.append((waits, "warn"))
        for n, (words, tone) in enumerate(parts):
            # The hook on a line of its own: what to do next is never folded away.
            lead = "\n    " if n == 0 or tone == "warn" else " · "
            text.append(lead, self.tone("muted"))
            text.append(words, self.tone(tone))


_CODEDEPLOY_TONE = {
    "Succeeded": "ok",
    "Failed": "bad",
    "Stopped": "warn",
    "Ready": "warn",
}


def _revision(task_definition: str | None) -> str:
    if not task_definition:
        return "?"
    return clean(task_definition.rsplit("/", 1)[-1])


class DeploymentsPane(RowList, can_focus=True):
    """All watched services, one card each: failed services first, then those in flight
    or rolling back, then the settled ones, each group in config order (so the service that needs
    the operator is on screen without scrolling, even at 80x24). The selected card has a
    ``▶`` and its name in reverse, visible in 16 colours and with ``NO_COLOR``.

    Until the operator moves the selection (``j``/``k``, a click) it stays on the top,
    most urgent card; once chosen it never moves by itself (a card that moves up or down
    takes it along), so the action keys act on the service the operator chose.

    The pane is one widget on Textual's Line API: a card's text is built when it is in
    view (off screen only to measure it), so thousands of services cost what the few
    cards on screen cost. ``j``/``k`` (or the arrows) and a click move the selection,
    which the screen's action keys act on.
    """

    ROW_GAP = 1
    ROW_PADDING = 1
    ROW_EDGE = True
    WIDTH_FREE = True

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        f"deployments--edge-{name}" for name in ("none", "selected", *_EDGE_TONES, "stale")
    }

    # The edge takes the colour of the card's state; a stale card's edge says so; a
    # selected card with no state colour shows the accent (as a focused card did).
    DEFAULT_CSS = """
    DeploymentsPane > .deployments--edge-none { color: $panel-lighten-2; }
    DeploymentsPane > .deployments--edge-selected { color: $accent; }
    DeploymentsPane > .deployments--edge-ok { color: $success; }
    DeploymentsPane > .deployments--edge-busy { color: $accent; }
    DeploymentsPane > .deployments--edge-warn { color: $warning; }
    DeploymentsPane > .deployments--edge-bad { color: $error; }
    DeploymentsPane > .deployments--edge-stale { color: $warning-darken-2; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j,down", "move(1)", "Next service", show=False, tooltip="Select the next service"),
        Binding(
            "k,up", "move(-1)", "Prev service", show=False, tooltip="Select the previous service"
        ),
    ]

    def __init__(self, states: Iterable[ServiceState], *, now: datetime | None = None) -> None:
        self.filter_text = ""
        """What ``/`` filters the cards by (empty: every card)."""
        self.sort = SORT_URGENCY
        """``urgency`` (the default) or ``name``."""
        self.contexts: Mapping[str, tuple[str, bool]] = {}
        """Each service's named ``[[aws]]`` context and whether it is production."""
        self.entries: frozenset[str] = frozenset()
        """Keys of the discovery entries: their card shows only while STALE."""
        self.discovered: Mapping[str, Discovered] = {}
        """The services discovery found (their ``only_active`` window)."""
        self.key_hints = KeyHints()
        """The keys the cards' hints name (the screen sets the live keymap's)."""
        self._states = {state.key: state for state in states}
        self._config_order = {key: n for n, key in enumerate(self._states)}
        self._urgency = {key: urgency(state) for key, state in self._states.items()}
        super().__init__(self._sorted(), id="deployments")
        self._now = now or datetime.now(UTC)
        self._clock = self._now
        self.selected: str | None = next(iter(self.keys), None)
        """The key of the selected service."""
        self.chosen = False
        """The operator moved the selection: it no longer follows the top card."""
        self.compact = False
        """Compact cards (a narrow terminal): see :class:`CardText`."""
        self.locks: dict[str, tuple[str, bool]] = {}
        """The bus's operator locks: each locked service's lock in words (``locked by
        alice@bastion-1 since 02:03``, ``yours since 02:03``) and whether it is ours."""

    def set_compact(self, compact: bool) -> None:
        """Switch to compact cards or back (every card is built again)."""
        if compact != self.compact:
            self.compact = compact
            self.rebuild_rows()

    def set_locks(self, locks: Mapping[str, tuple[str, bool]]) -> None:
        """Show these operator locks on their cards (a card whose lock changed or was
        freed is built again)."""
        changed = [k for k in self.locks.keys() | locks.keys() if self.locks.get(k) != locks.get(k)]
        self.locks = dict(locks)
        if changed:
            self.update_rows(changed)

    def update_states(self, states: Iterable[ServiceState], now: datetime) -> None:
        """Show the given services' new state (cards in view repaint what changed)."""
        self._now = now  # the clocks of the other cards move on the next tick
        keys = []
        moved = False
        added = False
        for state in states:
            if state.key not in self._states:  # discovery found it
                self._states[state.key] = state
                self._config_order[state.key] = len(self._config_order)
                self._urgency[state.key] = urgency(state)
                added = True
            elif state.key in self._states:
                self._states[state.key] = state
                keys.append(state.key)
                rank = urgency(state)
                if rank != self._urgency[state.key]:
                    self._urgency[state.key] = rank
                    moved = True
        if added or (keys and (self.filter_text or self.entries or self.discovered)):
            self.update_rows(keys)  # a card's new state may be shown or hidden now
            self._show(self._sorted())
            return
        if moved and self.sort == SORT_URGENCY:
            self.set_keys(self._sorted())
            if not self.chosen and self.keys and self.selected != self.keys[0]:
                self.select(self.keys[0])
        self.update_rows(keys)

    def _sorted(self) -> list[str]:
        """The keys in card order: by urgency, then config order (or by name), only
        those the filter matches."""
        order = self._config_order
        keys: Iterable[str] = self._states
        if self.entries or self.discovered:
            keys = [k for k in keys if self.shown(k)]
        if self.filter_text:
            keys = [k for k in keys if self.matches(k)]
        if self.sort == SORT_NAME:
            return sorted(keys, key=lambda k: (self._states[k].label.casefold(), k))
        return sorted(keys, key=lambda k: (self._urgency[k], order[k]))

    def shown(self, key: str) -> bool:
        """Whether a card is shown at all: a discovery entry only while it is STALE (its
        listing failed); a service an ``only_active`` entry found only while it has a
        deployment in flight or one that changed within the window."""
        state = self._states[key]
        if key in self.entries:
            return state.stale
        found = self.discovered.get(key)
        if found is None or found.only_active is None or state.stale:
            return True
        sample = state.sample
        if sample is None:
            return False
        if is_live(state) or state.status.in_flight:
            return True
        changed = [d.updated_at for d in sample.deployments if d.updated_at is not None]
        return bool(changed) and (self._now - max(changed)).total_seconds() <= found.only_active

    def set_fleet(self, entries: Iterable[str], discovered: Mapping[str, Discovered]) -> None:
        """The discovery entries and what discovery found (a live mapping)."""
        self.entries = frozenset(entries)
        self.discovered = discovered
        if self.entries:  # their cards go until a listing fails
            self.set_keys(self._sorted())
            if self.selected not in self._index:
                self.selected = next(iter(self.keys), None)

    def remove_services(self, keys: Iterable[str]) -> None:
        """Services discovery no longer finds: their cards go."""
        gone = [key for key in keys if key in self._states]
        for key in gone:
            del self._states[key], self._urgency[key], self._config_order[key]
        if gone:
            self._show(self._sorted())

    def matches(self, key: str) -> bool:
        """Whether a service matches the filter: every word of it is in its name,
        key (cluster, service, context) or state, case aside."""
        state = self._states[key]
        context = self.contexts.get(key, ("", False))[0]
        stale = " stale" if state.stale else ""
        text = f"{state.label} {key} {context} {state.status.value}{stale}".casefold()
        return all(word in text for word in self.filter_text.casefold().split())

    def set_filter(self, text: str) -> None:
        """Show only the cards matching ``text`` (empty: all of them)."""
        if text != self.filter_text:
            self.filter_text = text
            self._show(self._sorted())

    def set_sort(self, sort: str) -> None:
        """Order the cards by ``urgency`` or by ``name``."""
        if sort != self.sort:
            self.sort = sort
            self._show(self._sorted())

    @property
    def title(self) -> str:
        """The pane's title: what it shows, the filter and the order."""
        shown = f" · /{self.filter_text}  {len(self.keys)}/{len(self._states) - len(self.entries)}"
        return f"Deployments · ECS{shown if self.filter_text else ''} · by {self.sort}"

    def _show(self, keys: list[str]) -> None:
        """Show these cards; a selection the operator chose stays on its service while
        it is shown (else it goes to the top card; with no card shown it is kept)."""
        self.set_keys(keys)
        if self.chosen and self.selected in self._index:
            self.select(self.selected)
        elif keys:
            self.select(keys[0])

    def tick(self, now: datetime) -> None:
        """Advance the clocks of the cards in view (the others catch up when shown)."""
        self._now = now
        super().tick(now)

    def card_text(self, key: str) -> Text:
        """A service's card as shown now."""
        return self.text_of(key)

    def select(self, key: str) -> None:
        """Select a service and scroll its card into view."""
        if key not in self._states:
            return
        before, self.selected = self.selected, key
        if before != key:
            if before is not None:
                self.repaint_row(before)
            self.repaint_row(key)
        self.scroll_to_region(self.row_region(key), animate=False, immediate=True)

    def action_move(self, step: int) -> None:
        """Select the next (``step`` 1) or previous (-1) service."""
        keys = self.keys
        if not keys:
            return
        index = self._index.get(self.selected, -1) if self.selected is not None else -1
        self.chosen = True
        self.select(keys[max(0, min(len(keys) - 1, index + step))])

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = self.index_at(offset.y + self.scroll_offset.y)
        if index is not None:
            self.chosen = True
            self.select(self.keys[index])

    def on_focus(self) -> None:
        if self.selected is not None:
            self.repaint_row(self.selected)

    def on_blur(self) -> None:
        if self.selected is not None:
            self.repaint_row(self.selected)

    # ---- rows -----------------------------------------------------------------------

    def row_text(self, key: str, width: int) -> Text:
        state = self._states[key]
        text = CardText(
            state, self._now, self.tone, compact=self.compact, keys=self.key_hints
        ).build()
        if key == self.selected:
            # With the edge's ▶: the selection needs no colour to be seen.
            text.stylize("bold reverse", 0, len(clean(state.label)))
        lock = self.locks.get(key)
        if lock is not None:  # the bus's operator lock: who may act on this service
            words, mine = lock
            text.append(f"\n  {clean(words)}", self.tone("ok" if mine else "warn"))
        context = self.contexts.get(key)
        if context is not None:  # its account and region, production in the warning colour
            name, production = context
            tag = Text(no_wrap=False, overflow="fold")
            tag.append(clean(name), self.tone("warn" if production else "muted"))
            tag.append(" ")
            tag.append_text(text)
            return tag
        return text

    def row_moves(self, key: str) -> bool:
        return is_live(self._states[key])

    def row_highlighted(self, key: str) -> bool:
        # Always marked: the action keys act on it wherever the focus is.
        return key == self.selected

    def row_edge(self, key: str) -> Color | None:
        state = self._states[key]
        tone = state.status.tone
        if state.stale:
            name = "stale"
        elif tone in _EDGE_TONES:
            name = tone
        elif self.row_highlighted(key):
            name = "selected"
        else:
            name = "none"
        return self.get_component_styles(f"deployments--edge-{name}").color


__all__ = ["SORT_NAME", "SORT_URGENCY", "CardText", "DeploymentsPane", "EcsStatus", "is_live"]
