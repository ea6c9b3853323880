"""The deployment watch: one controller that every face of deploywatch drives.

It owns everything that makes a watch safe — the store, rule evaluation and the
verdict, the automatic-action countdowns, the ALB canary drivers, the MTTR clock, the
action engine, the actions in flight and their results, read-only — and no Textual.
The dashboard, the headless gate and a relay all feed it the same inputs and render
the same output:

- **inputs**: source items (:meth:`Controller.ingest`), the clock, and operator
  intents (:meth:`plan`, :meth:`act`, :meth:`declined`, :meth:`cancel_automatic`);
- **output**: an immutable :class:`Snapshot` after every judgement, handed to every
  listener in an :class:`Update` (plus ``data`` updates when the store has news for
  the panes, and the result of every action).

It judges when something can change, not on a fixed beat: when new data arrives
(coalesced, at most every :data:`JUDGE_EVERY` seconds), and at the next moment a rule,
a countdown or a canary step can change by the clock alone (a window ending, a point
ageing past its freshness, a countdown reaching zero, a step's wait ending).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from engine.actions import ActionEngine, ActionResult, Outcome, Plan, Verb, plan
from engine.autopilot import AutoPilot, MttrClock
from engine.bake import Bake, BakeView
from engine.canary import CanaryDriver
from engine.compare import build_comparebook, load_scipy
from engine.contexts import fleet_plan, note_fleet, source_name
from engine.rules import RuleState
from engine.smoke import SmokeRun, run_smoke, wanted
from engine.store import EcsStatus, Store
from engine.verdict import Report, Verdict, judge
from engine.wiring import build_rulebook
from sources.ecs import revision_of
from sources.model import EcsServiceSample, FleetChange, SourceFailure

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence

    from engine.actions import ApiCall
    from engine.audit import AuditLog
    from engine.config import Settings
    from engine.recording import Recorder
    from engine.rules import Evidence
    from sources.model import Item, Source

log = logging.getLogger(__name__)

T = TypeVar("T")

JUDGE_EVERY = 0.5
"""Seconds between two judgements caused by new data (a burst is judged once)."""

COALESCE = 0.1
"""Seconds new data is collected before it is judged."""

MIN_SLEEP = 0.01
"""The shortest pause between two judgements, whatever is due."""

MAX_SLEEP = 30.0
"""The longest the watch sleeps without judging, whatever it expects (a safety net)."""

TICK_WHILE_PENDING = 1.0
"""While a breach is pending or a countdown runs, judge at least this often: the
evidence's 'pending 12s of 20s' and the countdown move on screen and in the gate."""


def _next_whole_second(when: datetime) -> datetime:
    """``when`` rounded up to a whole second (unchanged when it is one)."""
    whole = when.replace(microsecond=0)
    return whole if whole == when else whole + timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class CountdownView:
    """One pending automatic action."""

    key: str
    label: str
    verb: Verb
    rule: str
    due: datetime
    evidence: Evidence

    def remaining(self, now: datetime) -> float:
        """Seconds left (never negative)."""
        return max(0.0, (self.due - now).total_seconds())


@dataclass(frozen=True, slots=True)
class CanaryView:
    """Where an ALB canary driven by deploywatch stands."""

    key: str
    label: str
    observed: float | None
    """The canary's live share of traffic, percent (``None``: not known yet)."""
    step: int
    """Index of the live step; -1 before the first."""
    steps: int
    started: bool
    complete: bool
    held: bool
    """Held by an operator."""
    held_by_verdict: bool
    """Not advancing because a rule is FAILING."""
    waits_for_promote: bool
    """At a step with ``pause = true`` (or no wait): only a promote moves it."""
    next_weight: int | None
    next_at: datetime | None
    """When the current step's wait ends (it then advances by itself)."""
    rolled_back: bool
    """At 0 % after a rollback of ours (not 'never started')."""


@dataclass(frozen=True, slots=True)
class MttrView:
    """One service's incident clock: first breach → decision → recovery."""

    key: str
    label: str
    breach: datetime | None
    decided: datetime | None
    recovered: datetime | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the watch knows and decided at one moment; any face renders it.

    Pane data (samples per metric, probe, Sentry; service events) stays in the
    controller's :class:`~engine.store.Store`, which faces read and never write.
    """

    at: datetime
    report: Report
    evidence: tuple[Evidence, ...]
    statuses: Mapping[str, EcsStatus]
    countdowns: tuple[CountdownView, ...]
    canaries: tuple[CanaryView, ...]
    sending: tuple[Plan, ...]
    last_result: ActionResult | None
    mttr: tuple[MttrView, ...]
    read_only: bool
    judgements: int
    """How many judgements the watch has made (1 for the first)."""
    bakes: tuple[BakeView, ...] = ()
    """Services with a bake window, and where their bake stands."""
    version: int = 0
    """Counts snapshots: a new one for every judgement and every change of actions."""
    signal_version: int = 0
    """The store's :attr:`~engine.store.Store.signal_version` this judgement saw."""
    smoke: tuple[SmokeRun, ...] = ()
    """The latest run of each ``[[smoke]]`` suite (live while it runs)."""

    @property
    def verdict(self) -> Verdict:
        """The banner's word."""
        return self.report.verdict


@dataclass(frozen=True, slots=True)
class Update:
    """What a listener is told. Any field may be empty."""

    snapshot: Snapshot | None = None
    """A new judgement (or a change of the actions in flight)."""
    data: bool = False
    """The store has news for the panes (read its dirty sets)."""
    result: ActionResult | None = None
    """An action finished (done, failed or refused)."""
    crashed: tuple[str, str] | None = None
    """A source's stream ended with an unexpected error: ``(source, error)``."""


@dataclass
class _Pending:
    """The controller's scheduling state."""

    data: bool = False
    """New data not judged yet."""
    urgent: bool = False
    """Among it, a source newly failing: judged after COALESCE, not JUDGE_EVERY (the
    panes say STALE as soon as the source's deadline has passed)."""
    judged_at: float = float("-inf")
    """Loop time of the last judgement."""


def canary_view(
    key: str, label: str, driver: CanaryDriver, *, failing: bool, rolled_back: bool = False
) -> CanaryView:
    """Where a canary stands, for a snapshot.

    Args:
        key: The service key.
        label: The service's label.
        driver: Its driver.
        failing: Whether the verdict is FAILING (which holds the canary).
        rolled_back: Whether a rollback of ours brought it to 0 %.
    """
    step = driver.settings.steps[driver.step] if driver.step >= 0 else None
    moving = driver.started and not driver.complete and not driver.held and not failing
    next_at = None
    waits = step is None or step.pause or step.wait is None
    if moving and step is not None and step.wait is not None and not step.pause and driver.since:
        next_at = driver.since + step.wait
    return CanaryView(
        key=key,
        label=label,
        observed=driver.observed,
        step=driver.step,
        steps=len(driver.settings.steps),
        started=driver.started,
        complete=driver.complete,
        held=driver.held,
        held_by_verdict=failing and driver.started and not driver.complete,
        waits_for_promote=driver.started and not driver.complete and waits,
        next_weight=driver.next_weight(),
        next_at=next_at,
        rolled_back=rolled_back and not driver.started,
    )


def rollback_words(sample: EcsServiceSample, *, healthy: bool) -> str:
    """``rolled back to web:1 at 02:04:10 by the circuit breaker; web:1 serves, its rules
    OK`` — a rollback that is over, in a deployer's words."""
    newest = sample.newest
    primary = sample.primary
    serving = revision_of(sample.task_definition) if sample.task_definition else None
    if serving in (None, "?") and primary is not None:
        serving = primary.revision
    parts = [f"rolled back to {serving or 'the old revision'}"]
    if newest is not None:
        when = newest.finished_at or newest.stopped_at
        if when is not None:
            parts.append(f"at {when.strftime('%H:%M:%S')}")
        breaker = newest.circuit_breaker
        if breaker is not None and breaker.status == "TRIGGERED":
            parts.append("by the circuit breaker")
        else:
            parts.append("on request")
    words = " ".join(parts)
    if healthy:
        return f"{words}; {serving or 'the old revision'} serves and its rules are OK"
    return f"{words}; the old revision serves"


def _initial_report() -> Report:
    return Report(Verdict.NO_DATA, (), ())


class Controller:
    """One deployment watch.

    Args:
        settings: The config.
        clock: UTC now. A fake clock may offer ``subscribe(callback)``: the watch is
            then woken whenever it moves (tests jump time without waiting).
        executor: Performs AWS calls (blocking; run in a thread).
        audit: Where every intent, result, refusal and decision is written.
        operator: Who acts, for the audit log.
        read_only: Refuse every action (enforced in the action engine).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime],
        executor: Callable[[ApiCall], Mapping[str, Any]],
        audit: AuditLog,
        operator: Callable[[], str],
        read_only: bool = False,
        automatic: bool = True,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.automatic = automatic
        """Whether rules' automatic actions and canary steps run here (a bus viewer's
        watch only shows: the relay, or an operator, acts)."""
        self.store = Store(
            ((ref.key, ref.display) for ref in settings.services), build_rulebook(settings)
        )
        self.store.entries = frozenset(ref.key for ref in settings.services if ref.discovers)
        rule_targets = {rule.name: settings.rule_service(rule) for rule in settings.rules}
        rule_targets.update({c.name: settings.rule_service(c) for c in settings.compares})
        self.compare = build_comparebook(settings, self.store.rules)
        self.autopilot = AutoPilot(rule_targets, settings.actions.countdown)
        self.mttr = MttrClock(rule_targets)
        self.canaries: dict[str, CanaryDriver] = {
            ref.key: CanaryDriver(ref.key, ref.canary)
            for ref in settings.services
            if ref.canary is not None
        }
        self._canary_rolled_back: set[str] = set()
        restart = settings.environment.bake_on_failing == "restart"
        self.bakes: dict[str, Bake] = {
            ref.key: Bake(
                ref.key,
                ref.bake if ref.bake is not None else settings.environment.bake,
                restart_on_failing=restart,
            )
            for ref in settings.services
        }
        self.seen_in_flight: set[str] = set()
        """Services whose deployment this watch saw in flight: only such a deployment
        (or one started after :attr:`accept_since`) is baked and signed off."""
        self.accept_since: datetime | None = None
        self.recorder: Recorder | None = None
        """Where what the watch takes in is recorded (``--record``), if anywhere."""
        self._recorded_verdict: Verdict | None = None
        self.actions = ActionEngine(
            audit=audit,
            executor=executor,
            read_only=read_only or settings.environment.read_only,
            operator=operator,
            clock=clock,
            local={"hold_canary": self._hold_canary, "release_canary": self._release_canary},
        )
        self.contexts = {
            ref.key: settings.context_of(ref) for ref in settings.services if ref.context
        }
        """The named ``[[aws]]`` context of each service that has one."""
        self.accounts: dict[str, str] = {}
        """Account ids looked up (caller identity) by context name."""
        self.sending: dict[str, Plan] = {}
        self.last_result: ActionResult | None = None
        self.report = _initial_report()
        self.evidence: tuple[Evidence, ...] = ()
        self._statuses: dict[str, EcsStatus] = {}
        self._listeners: list[Callable[[Update], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._consumers: dict[str, asyncio.Task[None]] = {}
        self._pending = _Pending()
        self._wake: asyncio.Event | None = None
        self._judgements = 0
        self._versions = 0
        self._smoke_tasks: dict[str, asyncio.Task[SmokeRun]] = {}
        self._smoke_prev: dict[str, EcsStatus] = {}
        """Each service's status at the last judgement (a completion starts smoke runs)."""
        self.runs_commands = True
        """Whether ``[[smoke]]`` commands may run (a replay never runs them: its smoke
        results come from the recording)."""
        self.smoke_dir: Path | None = None
        """Where a ``[[smoke]]`` entry's relative ``cwd`` and ``junit`` are taken from
        (default: the current directory)."""
        self.snapshot = self._snapshot(clock())
        subscribe = getattr(clock, "subscribe", None)
        if callable(subscribe):
            subscribe(self.poke)

    # ---- faces --------------------------------------------------------------------

    @property
    def read_only(self) -> bool:
        """Whether every action is refused (one place: the action engine)."""
        return self.actions.read_only

    def listen(self, listener: Callable[[Update], None]) -> None:
        """Call ``listener`` with every :class:`Update` (on the event loop)."""
        self._listeners.append(listener)

    def _emit(self, update: Update) -> None:
        for listener in self._listeners:
            try:
                listener(update)
            except Exception:  # a face's bug must not stop the watch
                log.exception("listener failed")

    # ---- inputs: data ---------------------------------------------------------------

    def ingest(self, item: Item | SmokeRun) -> bool:
        """Take one source item (or a smoke run); returns whether something changed."""
        changed = self.store.ingest(item)
        if changed and self.recorder is not None:
            self.recorder.item(item)
        if isinstance(item, FleetChange):
            note_fleet(self.contexts, self.settings, item)
        if isinstance(item, EcsServiceSample):
            state = self.store.services.get(item.key)
            status = state.status if state is not None else EcsStatus.NO_DATA
            if not status.is_healthy and status is not EcsStatus.NO_DATA:
                # Noted as it comes in: a deployment that starts and finishes between
                # two judgements was still seen in flight.
                self.seen_in_flight.add(item.key)
            driver = self.canaries.get(item.key)
            if driver is not None:
                driver.observe(item.alb, self.clock())
        if changed:
            self._pending.data = True
            if isinstance(item, SourceFailure):
                self._pending.urgent = True
            self._emit(Update(data=True))
            self.poke()
        return changed

    def sources_running(self) -> dict[str, bool]:
        """Each source's consumer, by source name: still running (a source's stream
        ends only by a bug, which is reported as ``crashed``)."""
        return {name: not task.done() for name, task in self._consumers.items()}

    def poke(self) -> None:
        """Wake the watch: judge now if anything may have changed."""
        if self._wake is not None:
            self._wake.set()

    async def run(self, sources: Sequence[Source] = ()) -> None:
        """Consume ``sources`` and judge whenever something can change, until cancelled."""
        self._wake = asyncio.Event()
        if self.compare.rules:  # scipy loads in a thread while the first points arrive
            self._spawn(asyncio.to_thread(load_scipy))
        consumers = [asyncio.create_task(self._consume(s), name=source_name(s)) for s in sources]
        self._consumers = {task.get_name(): task for task in consumers}
        try:
            await self._loop()
        finally:
            for task in consumers:
                task.cancel()
            for smoke in list(self._smoke_tasks.values()):
                smoke.cancel()  # kills its process group
            for task in consumers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _consume(self, source: Source) -> None:
        try:
            async for item in source.stream():
                self.ingest(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a source: visible, never fatal
            log.exception("source %s crashed", source.name)
            self._emit(Update(crashed=(source.name, f"{type(exc).__name__}: {exc}")))

    async def _loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        await self._judge()
        while True:
            now = self.clock()
            wait = self._seconds_to_next(now)
            if self._pending.data:
                wait = min(wait, self._coalesce(loop.time()))
            self._wake.clear()
            woken = False
            wait = max(wait, MIN_SLEEP)  # never spin: actions and faces need the loop
            if wait > 0:
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                    woken = True
                except TimeoutError:
                    pass
            if woken and self._pending.data:
                # New data: collect the rest of the burst, then judge once.
                await asyncio.sleep(self._coalesce(loop.time()))
            await self._judge()

    async def _judge(self) -> None:
        """Run the comparisons' tests (in a thread, only for changed points), then judge.
        Points that arrived while the tests ran are new data: judged on the next round."""
        await self.compare.refresh(self.clock())
        self.step()
        if self.compare.outdated(self.clock()):
            self._pending.data = True

    def _coalesce(self, loop_now: float) -> float:
        """Seconds to collect new data before judging it."""
        if self._pending.urgent:
            return COALESCE
        return max(COALESCE, JUDGE_EVERY - (loop_now - self._pending.judged_at))

    def _seconds_to_next(self, now: datetime) -> float:
        when = self.next_wake(now)
        if when is None:
            return MAX_SLEEP
        # A replay's clock may run faster than real time: sleep its seconds, not ours.
        speed = float(getattr(self.clock, "speed", 1.0))
        return min(MAX_SLEEP, max(0.0, (when - now).total_seconds() / speed))

    def next_wake(self, now: datetime) -> datetime | None:
        """The next moment something can change with no new data."""
        times: list[datetime] = []
        rule_change = self.store.rules.next_change(now)
        if rule_change is not None:
            # On a whole second: hundreds of rules whose windows end at scattered
            # moments are judged together, at most once a second, not once each.
            times.append(_next_whole_second(rule_change))
        compare_change = self.compare.next_change(now)
        if compare_change is not None:
            times.append(compare_change)
        for countdown in self.autopilot.pending():
            times.append(min(countdown.due, now + timedelta(seconds=TICK_WHILE_PENDING)))
        if any(e.reason.startswith("pending ") for e in self.evidence):
            times.append(now + timedelta(seconds=TICK_WHILE_PENDING))
        for view in self.snapshot.canaries:
            if view.next_at is not None:
                times.append(view.next_at)
        for bake in self.bakes.values():
            due = bake.due()
            if due is not None:
                times.append(due)
        if any(
            rec.decided is not None and rec.recovered is None for rec in self.mttr.services.values()
        ):
            times.append(now + timedelta(seconds=TICK_WHILE_PENDING))
        # A moment already reached was handled by the judgement that saw it.
        later = [t for t in times if t > now]
        return min(later) if later else None

    # ---- judgement ------------------------------------------------------------------

    def step(self, now: datetime | None = None) -> Snapshot:
        """Judge every rule now, run the automation, publish a snapshot."""
        now = now or self.clock()
        with contextlib.suppress(RuntimeError):
            self._pending.judged_at = asyncio.get_running_loop().time()
        self._pending.data = self._pending.urgent = False
        self._judgements += 1
        statuses = self._current_statuses()
        self._smoke_on_completion(statuses)
        evidence = self.store.rules.evaluate(now, self.store.source_error)
        if self.compare.rules:
            evidence += self.compare.evaluate(now, self.store.source_error)
            evidence.sort(key=lambda e: e.state.rank)
        self.evidence = tuple(evidence)
        stale = {
            key: f"{state.failure.reason}: {state.failure.error}"
            for key in statuses
            if (state := self.store.services[key]).failure is not None
        }
        self.report = judge(evidence, statuses, self._rolled_back_words(statuses, evidence), stale)
        self._automate(now, evidence, statuses)
        self._bake(now, statuses)
        self._publish(now)
        return self.snapshot

    def set_bake(self, keys: Iterable[str], window: timedelta) -> None:
        """Give these services this bake window (the gate's ``--bake``)."""
        for key in keys:
            bake = self.bakes.get(key)
            if bake is not None:
                bake.window = window

    def ours(self, key: str) -> bool:
        """Whether the deployment a service runs now is one this watch follows: seen in
        flight, or started at or after :attr:`accept_since`."""
        if key in self.seen_in_flight:
            return True
        if self.accept_since is None:
            return False
        started = self.store.deployment_start(key)
        return started is not None and started >= self.accept_since

    def _bake(self, now: datetime, statuses: Mapping[str, EcsStatus]) -> None:
        """Each service bakes on its own signals: the rules that target it (and those
        that target no service), its ECS data, and no action pending or in flight for it
        — another service's trouble neither fails nor pauses its bake."""
        targets = self.autopilot.rule_targets
        pending = {c.key for c in self.autopilot.pending()}
        # Evidence by the service it targets, once per judgement (not once per service).
        # (Indexes keep the judgement's order: worst first.)
        by_target: dict[str | None, list[int]] = {}
        for index, ev in enumerate(self.evidence):
            by_target.setdefault(targets.get(ev.rule), []).append(index)
        untargeted = by_target.get(None, [])
        for key, bake in self.bakes.items():
            state = self.store.services[key]
            status = statuses.get(key, EcsStatus.NO_DATA)
            done = status.is_healthy and self.ours(key)
            mine = [self.evidence[i] for i in sorted([*by_target.get(key, []), *untargeted])]
            critical = [ev for ev in mine if ev.state is RuleState.CRITICAL]
            unwell = [ev for ev in mine if ev.state is not RuleState.OK]
            if critical:
                why = f"FAILING: {critical[0].summary()}"
            elif key in pending or key in self.sending:
                why = "an action is pending"
            elif state.stale:
                why = f"ECS data STALE: {state.failure.error if state.failure else ''}"
            elif unwell:
                why = f"{unwell[0].state.value}: {unwell[0].summary()}"
            else:
                why = ""
            primary = state.sample.primary if state.sample is not None else None
            bake.step(
                now,
                deployment=primary.id if primary is not None else None,
                done=done,
                healthy=not why,
                failing=bool(critical),
                why=why,
            )

    def _current_statuses(self) -> dict[str, EcsStatus]:
        entries = self.store.entries
        self._statuses = {
            key: state.status for key, state in self.store.services.items() if key not in entries
        }
        return self._statuses

    def _rolled_back_words(
        self, statuses: Mapping[str, EcsStatus], evidence: Sequence[Evidence]
    ) -> dict[str, str]:
        """How and when ECS rolled each rolled-back service back, and whether the old
        revision is healthy again (every rule of that service OK)."""
        words = {}
        for key, status in statuses.items():
            sample = self.store.services[key].sample
            if status is not EcsStatus.ROLLBACK_SUCCESSFUL or sample is None:
                continue
            mine = [ev for ev in evidence if self.autopilot.rule_targets.get(ev.rule) == key]
            healthy = bool(mine) and all(ev.state is RuleState.OK for ev in mine)
            words[key] = rollback_words(sample, healthy=healthy)
        return words

    def _automate(
        self, now: datetime, evidence: Sequence[Evidence], statuses: Mapping[str, EcsStatus]
    ) -> None:
        def can_act(key: str, verb: Verb) -> bool:
            if not self.automatic:
                return False
            return self.plan(verb, key).enabled and key not in self.sending

        for countdown in self.autopilot.update(now, evidence, can_act):
            planned = self.plan(countdown.verb, countdown.key)
            self._spawn(
                self._send(
                    planned,
                    reason=f"rule {countdown.rule!r} critical for its window",
                    automatic=True,
                    evidence=(countdown.evidence,),
                )
            )
        failing = self.report.verdict is Verdict.FAILING
        for key, driver in self.canaries.items():
            weight = driver.due(now, failing)
            if weight is None or key in self.sending or not self.automatic:
                continue
            planned = self.plan(Verb.PROMOTE, key)
            if planned.enabled and planned.to_revision == f"canary {weight}%":
                driver.sent = weight
                self._spawn(
                    self._send(planned, reason="canary step: its wait is over", automatic=True)
                )
        self.mttr.observe(evidence)
        breaching = self._breaching_services(evidence)
        for key, rec in self.mttr.services.items():
            if rec.decided is None or rec.recovered is not None or key in breaching:
                continue
            if key in self.sending:
                continue
            if self._settled_after(key, rec.decided, statuses.get(key)):
                self.mttr.recovered(key, now)

    def _breaching_services(self, evidence: Sequence[Evidence]) -> set[str]:
        """Services with a critical rule breaching: not recovered yet. (A warning, such
        as the new release's Sentry issue that stays new after a rollback, does not hold
        the MTTR clock open.)"""
        out = set()
        for ev in evidence:
            if ev.state is RuleState.CRITICAL:
                key = self.autopilot.rule_targets.get(ev.rule)
                if key is not None:
                    out.add(key)
        return out

    def _settled_after(self, key: str, decided: datetime, status: EcsStatus | None) -> bool:
        """Whether the service is back to a settled state, seen after the decision."""
        state = self.store.services.get(key)
        if state is None or state.sample is None or state.sample.at <= decided:
            return False
        driver = self.canaries.get(key)
        if driver is not None:
            return driver.observed is not None and not driver.started
        return status in (EcsStatus.ROLLBACK_SUCCESSFUL, EcsStatus.COMPLETED, EcsStatus.STEADY)

    def _publish(self, now: datetime) -> None:
        self.snapshot = self._snapshot(now)
        if self.recorder is not None and self.report.verdict is not self._recorded_verdict:
            self._recorded_verdict = self.report.verdict
            self.recorder.verdict(now, self.report.verdict.value, self.report.headline)
        self._emit(Update(snapshot=self.snapshot))

    def _snapshot(self, now: datetime) -> Snapshot:
        self._versions += 1
        labels = {k: s.label for k, s in self.store.services.items()}
        failing = self.report.verdict is Verdict.FAILING
        return Snapshot(
            at=now,
            report=self.report,
            evidence=self.evidence,
            statuses=MappingProxyType(dict(self._statuses)),
            countdowns=tuple(
                CountdownView(c.key, labels.get(c.key, c.key), c.verb, c.rule, c.due, c.evidence)
                for c in self.autopilot.pending()
            ),
            canaries=tuple(
                canary_view(
                    key,
                    labels.get(key, key),
                    driver,
                    failing=failing,
                    rolled_back=key in self._canary_rolled_back,
                )
                for key, driver in self.canaries.items()
            ),
            sending=tuple(self.sending.values()),
            last_result=self.last_result,
            mttr=tuple(
                MttrView(key, labels.get(key, key), rec.breach, rec.decided, rec.recovered)
                for key, rec in self.mttr.services.items()
                if rec.decided is not None
            ),
            read_only=self.read_only,
            judgements=self._judgements,
            bakes=tuple(
                bake.view(labels.get(key, key)) for key, bake in self.bakes.items() if bake.window
            ),
            version=self._versions,
            signal_version=self.store.signal_version,
            smoke=tuple(self.store.smoke.values()),
        )

    # ---- inputs: operator intents ---------------------------------------------------

    def plan(self, verb: Verb, key: str) -> Plan:
        """What ``verb`` would do to a service now (no side effects)."""
        env = self.settings.environment
        context = self.contexts.get(key)
        if context is not None:  # a named [[aws]] context: its label, account, region
            return fleet_plan(
                plan(
                    verb,
                    self.store.services[key],
                    environment=context.environment or context.name,
                    production=env.production or context.production,
                    canary=self.canaries.get(key),
                    context=context.name,
                ),
                context,
                self.accounts.get(context.name),
            )
        return plan(
            verb,
            self.store.services[key],
            environment=env.name,
            production=env.production,
            canary=self.canaries.get(key),
        )

    def act(self, planned: Plan, *, reason: str = "operator request") -> asyncio.Task[ActionResult]:
        """Send a confirmed plan, unless the deployment changed since it was made.

        Returns the task that sends it (its result also reaches every listener).
        """
        if self.recorder is not None:
            self.recorder.intent("act", verb=planned.verb.value, service=planned.key, reason=reason)
        return self._spawn(self._act(planned, reason))

    async def _act(self, planned: Plan, reason: str) -> ActionResult:
        now_plan = self.plan(planned.verb, planned.key)
        if planned.enabled and now_plan.call != planned.call:
            message = (
                f"the deployment changed while you confirmed ({now_plan.effect}); "
                "nothing sent — look and try again"
            )
            audit_error = await self.actions.record(
                "refused",
                action=planned.verb.value,
                target=planned.audit_target(),
                reason=reason,
                error=message,
            )
            if audit_error is not None:
                message += f" (and the refusal could not be audited: {audit_error})"
            result = ActionResult(
                planned, Outcome.REFUSED, message, False, self.clock(), uuid.uuid4().hex[:12]
            )
            self.last_result = result
            self._publish(self.clock())
            self._emit(Update(result=result))
            return result
        return await self._send(planned, reason=reason)

    async def declined(self, planned: Plan) -> str | None:
        """An operator closed the confirmation without confirming: audited, nothing sent.

        Returns:
            ``None`` once audited, else why the audit log could not be written.
        """
        if self.recorder is not None:
            self.recorder.intent("declined", verb=planned.verb.value, service=planned.key)
        return await self.actions.declined(planned)

    async def cancel_automatic(self) -> tuple[list[CountdownView], str | None]:
        """Cancel every pending automatic action (audited).

        Returns:
            Those cancelled, and ``None`` once audited, else why the audit log could not
            be written (the cancellation holds all the same).
        """
        cancelled = self.autopilot.cancel()
        if self.recorder is not None:
            self.recorder.intent("cancel", services=[c.key for c in cancelled])
        views = [
            CountdownView(
                c.key, self.store.services[c.key].label, c.verb, c.rule, c.due, c.evidence
            )
            for c in cancelled
        ]
        error = None
        if cancelled:
            self._publish(self.clock())
            error = await self.actions.record(
                "cancelled",
                action=", ".join(sorted({c.verb.value for c in cancelled})),
                targets=[c.key for c in cancelled],
                rules=[c.rule for c in cancelled],
            )
        return views, error

    # ---- sending --------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def settle(self) -> None:
        """Wait until every action in flight has finished (tests, and a face's exit)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _send(
        self,
        planned: Plan,
        *,
        reason: str,
        automatic: bool = False,
        evidence: Iterable[Evidence] = (),
    ) -> ActionResult:
        self.sending[planned.key] = planned
        self._publish(self.clock())
        try:
            result = await self.actions.request(
                planned,
                automatic=automatic,
                reason=reason,
                evidence=tuple(evidence),
            )
        finally:
            self.sending.pop(planned.key, None)
        self.last_result = result
        if result.outcome is Outcome.DONE and planned.verb is Verb.ROLLBACK:
            self.mttr.decided(planned.key, result.at)
            if planned.key in self.canaries:
                self._canary_rolled_back.add(planned.key)
        if (
            result.outcome is Outcome.DONE
            and planned.verb is Verb.PROMOTE
            and planned.key in self.canaries
        ):
            self._canary_rolled_back.discard(planned.key)
        self._publish(self.clock())
        self._emit(Update(result=result))
        self.poke()
        return result

    # ---- smoke tests ----------------------------------------------------------------

    def run_smoke(self, trigger: str = "key", service: str | None = None) -> list[str]:
        """Start the ``[[smoke]]`` suites that run on ``trigger`` (for ``completed``:
        those of ``service`` or of no service); one already running is not started twice.

        Returns:
            The names of the suites started.
        """
        started: list[str] = []
        if not self.runs_commands:
            return started
        for entry in wanted(self.settings.smoke, trigger):
            key = self.settings.service_key(entry.service)
            if trigger == "completed" and key is not None and key != service:
                continue
            running = self._smoke_tasks.get(entry.name)
            if running is not None and not running.done():
                continue
            task = asyncio.ensure_future(
                run_smoke(
                    entry,
                    service=key or service,
                    trigger=trigger,
                    clock=self.clock,
                    on_start=self.ingest,
                    base_dir=self.smoke_dir,
                )
            )
            self._smoke_tasks[entry.name] = task
            task.add_done_callback(self._smoke_done)
            started.append(entry.name)
        return started

    def smoke_running(self) -> list[str]:
        """The suites running now."""
        return [name for name, task in self._smoke_tasks.items() if not task.done()]

    def _smoke_done(self, task: asyncio.Task[SmokeRun]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:  # a bug in the runner: visible, never fatal
            log.error("smoke run crashed", exc_info=error)
            self._emit(Update(crashed=("smoke", f"{type(error).__name__}: {error}")))
            return
        self.ingest(task.result())

    def _smoke_on_completion(self, statuses: Mapping[str, EcsStatus]) -> None:
        """Start the suites of every service whose deployment the watch saw in flight
        and now sees completed (never one it only saw settled, nor a rollback)."""
        previous, self._smoke_prev = self._smoke_prev, dict(statuses)
        if not self.settings.smoke:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # judged outside the watch's loop (a script): nothing to run on
        for key, status in statuses.items():
            before = previous.get(key)
            if status is EcsStatus.COMPLETED and before is EcsStatus.IN_PROGRESS:
                self.run_smoke("completed", key)

    # ---- our own automation (``deploywatch`` calls) ---------------------------------

    def _hold_canary(self, call: ApiCall) -> dict[str, Any]:
        self.canaries[str(call.params["service"])].held = True
        return {"held": True}

    def _release_canary(self, call: ApiCall) -> dict[str, Any]:
        driver = self.canaries[str(call.params["service"])]
        driver.held = False
        driver.since = self.clock()  # the step's wait starts again from the release
        return {"held": False}


__all__ = [
    "CanaryView",
    "Controller",
    "CountdownView",
    "MttrView",
    "Snapshot",
    "Update",
    "canary_view",
]
