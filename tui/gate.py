"""``deploywatch gate``: the deployment watch as a pipeline step, with no screen.

The same config, rules and controller as the dashboard; no Textual. It prints one plain
line per change worth knowing (or one JSON object per line with ``--json``), waits for
the watched deployments to finish, bakes them for a while, and ends with one summary
line and an exit code a pipeline can trust:

====  =============================================================================
code  meaning
====  =============================================================================
0     every watched deployment completed and stayed HEALTHY for the whole bake
      window: signed off
1     failed and not rolled back: a FAILING verdict, ECS ``FAILED``, or a rollback
      that failed
2     usage or config error (one line, as ``check-config``)
3     rolled back: by ECS's circuit breaker, by a rule's automatic action, or by an
      operator during the window
4     timed out: still in progress, or NO DATA / STALE at the deadline
====  =============================================================================

A signal (Ctrl-C, the runner's SIGTERM) ends it with a summary line and 128 + the
signal's number. Without ``--act`` the gate is read-only: rules with an action only
report; with it, they act (audited like any action). With ``--bus URL`` it also
announces itself on the deployment bus and records the pipeline events it hears
(``engine/gatebus.py``); the bus never changes its verdict or exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from engine.actions import Outcome, Verb
from engine.bake import BakeState
from engine.config import DEFAULT_CONFIG, ConfigError, load_config, parse_duration
from engine.durations import span_words
from engine.history import acts_from_audit, build_history_source, figures
from engine.history import rows as history_rows
from engine.history import to_json as history_json
from engine.report import ReportBook, write_report
from engine.store import EcsStatus
from engine.text import clean
from engine.verdict import Verdict
from sources.model import SourceError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from engine.bake import BakeView
    from engine.controller import Controller, Snapshot, Update
    from engine.gatebus import GateBus
    from engine.recording import Recorder
    from sources.bus import BusSettings
    from sources.model import Source


class Exit(IntEnum):
    """The gate's exit codes (see the module's table)."""

    SIGNED_OFF = 0
    FAILED = 1
    USAGE = 2
    ROLLED_BACK = 3
    TIMED_OUT = 4


HISTORY_WAIT = 30.0
"""Seconds the gate waits at exit for the deployment history of its report."""

FAILED_GRACE = timedelta(seconds=30)
"""How long ECS may say FAILED before the gate calls it failed (ECS says FAILED for a
moment before its circuit breaker starts the rollback)."""

BAKE_REPORT_EVERY = timedelta(seconds=60)
"""How often bake progress is printed."""

TICK = 1.0
"""Seconds between two looks at the clock (bake time, timeout)."""


def _clean(text: str, limit: int = 400) -> str:
    """Outside text for a plain line: control and bidi characters made visible, bounded."""
    return clean(text, limit)


_dur = span_words


@dataclass
class GateOptions:
    """What the gate waits for and how long."""

    services: tuple[str, ...]
    """Keys of the watched services (``cluster/service``)."""
    timeout: timedelta
    bake: timedelta | None
    """The bake window of every watched service (``None``: the config's)."""
    act: bool
    json: bool
    report: Path | None = None
    """Write the deployment report here at exit (``.md`` and ``.json`` beside each other)."""
    since: timedelta | None = None
    """Also accept a deployment that started this recently before the gate (without it,
    the gate must see each deployment in flight: it never signs off the previous one)."""


@dataclass
class Gate:
    """Follows a :class:`~engine.controller.Controller` to an exit code.

    Args:
        controller: The watch (read-only unless the gate may act).
        options: Services, timeout, bake, output form.
        out: Where lines go.
        clock: UTC now (the controller's).
    """

    controller: Controller
    options: GateOptions
    out: TextIO
    clock: Callable[[], datetime]
    started: datetime = field(init=False)
    _statuses: dict[str, EcsStatus] = field(default_factory=dict)
    _verdict: Verdict | None = None
    _headline: str = ""
    _countdowns: set[tuple[str, str]] = field(default_factory=set)
    _failed_since: dict[str, datetime] = field(default_factory=dict)
    _rolled_back_by_us: set[str] = field(default_factory=set)
    _rollback_failed: str | None = None
    _bake_states: dict[str, BakeState] = field(default_factory=dict)
    _bake_reported: dict[str, datetime] = field(default_factory=dict)
    _outcome: tuple[Exit, str] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    book: ReportBook | None = None
    before_finish: Callable[[], Awaitable[None]] | None = None
    """Awaited once the outcome is known, before the report and the summary line (the
    recording is closed then: the summary stays the last line)."""
    history: dict[str, Any] | None = None
    """The deployment history for the report, once fetched."""
    after_finish: Callable[[int, str, str], None] | None = None
    """Told the outcome once the summary line is out: ``(code, words, why)`` (the bus
    announces the gate's exit with it)."""

    def __post_init__(self) -> None:
        self.started = self.clock()
        if self.options.bake is not None:
            self.controller.set_bake(self.options.services, self.options.bake)
        if self.options.since is not None:
            self.controller.accept_since = self.started - self.options.since
        self.controller.listen(self._on_update)
        if self.options.report is not None:
            self.book = ReportBook(self.controller, self.options.services, self.started)

    # ---- output --------------------------------------------------------------------

    def emit(self, event: str, text: str, **fields: Any) -> None:
        """One line: plain (``02:03:10  text``) or a JSON object."""
        now = self.clock()
        if self.options.json:
            record = {"at": now.isoformat(timespec="seconds"), "event": event, **fields}
            record.setdefault("text", text)
            self.out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        else:
            self.out.write(f"{now.strftime('%H:%M:%S')}  {text}\n")
        self.out.flush()

    # ---- following the watch ----------------------------------------------------------

    def _on_update(self, update: Update) -> None:
        if update.result is not None:
            result = update.result
            plan = result.plan
            how = "automatic " if result.automatic else ""
            self.emit(
                "action",
                f"{how}{plan.verb.value} of {_clean(plan.label)} {result.outcome.value.upper()}: "
                f"{_clean(result.message)}",
                service=plan.key,
                verb=plan.verb.value,
                outcome=result.outcome.value,
                automatic=result.automatic,
                call=plan.call.describe() if plan.call else None,
            )
            if plan.verb is Verb.ROLLBACK and plan.key in self.options.services:
                if result.outcome is Outcome.DONE:
                    self._rolled_back_by_us.add(plan.key)
                elif result.outcome is Outcome.FAILED:
                    self._rollback_failed = f"the rollback of {plan.label} failed: {result.message}"
        if update.crashed is not None:
            source, error = update.crashed
            self.emit("crash", f"source {source} stopped: {_clean(error)}", source=source)
        if update.snapshot is not None:
            self._observe(update.snapshot)
            if self.book is not None:
                self.book.observe(update.snapshot, self.clock())
        self._changed.set()

    def _observe(self, snapshot: Snapshot) -> None:
        now = self.clock()
        labels = {k: s.label for k, s in self.controller.store.services.items()}
        for key in self.options.services:
            status = snapshot.statuses.get(key, EcsStatus.NO_DATA)
            if self._statuses.get(key) is not status:
                before = self._statuses.get(key)
                self._statuses[key] = status
                arrow = f"{before.value} → " if before is not None else ""
                self.emit(
                    "state",
                    f"{_clean(labels.get(key, key))}  {arrow}{status.value}",
                    service=key,
                    status=status.value,
                )
            if status.failed:
                self._failed_since.setdefault(key, now)
            else:
                self._failed_since.pop(key, None)
        report = snapshot.report
        # A change worth a line: the verdict's word, or the rules that drive it (not
        # their values and sample counts, which move with every judgement).
        driving = ",".join(sorted(e.rule for e in report.driving)) or report.headline.split(":")[0]
        if report.verdict is not self._verdict or driving != self._headline:
            self.emit(
                "verdict",
                f"verdict {report.verdict.value}: {_clean(report.headline)}",
                verdict=report.verdict.value,
                reasons=[_clean(r) for r in report.reasons],
            )
            self._verdict = report.verdict
            self._headline = driving
        pending = {(c.key, c.rule) for c in snapshot.countdowns}
        for countdown in snapshot.countdowns:
            if (countdown.key, countdown.rule) not in self._countdowns:
                self.emit(
                    "countdown",
                    f"AUTO {countdown.verb.value.upper()} of {_clean(countdown.label)} in "
                    f"{countdown.remaining(now):.0f}s: {_clean(countdown.evidence.summary())}",
                    service=countdown.key,
                    verb=countdown.verb.value,
                    rule=countdown.rule,
                )
        self._countdowns = pending
        self._report_bakes(now)

    def _report_bakes(self, now: datetime) -> None:
        """A line when a watched service's bake changes state, and every
        :data:`BAKE_REPORT_EVERY` while it runs."""
        for key in self.options.services:
            bake = self.controller.bakes.get(key)
            if bake is None or not bake.window:
                continue
            view = bake.view(self.controller.store.services[key].label)
            before = self._bake_states.get(key)
            self._bake_states[key] = view.state
            last = self._bake_reported.get(key)
            periodic = view.state is BakeState.BAKING and (
                last is None or now - last >= BAKE_REPORT_EVERY
            )
            if view.state is before and not periodic:
                continue
            if view.state is BakeState.WAITING and before is None:
                continue
            self._bake_reported[key] = now
            self.emit(
                "bake",
                _bake_line(view, now),
                service=key,
                state=view.state.value,
                baked_s=int(view.healthy_time(now).total_seconds()),
                bake_s=int(view.window.total_seconds()),
                restarts=view.restarts,
            )

    # ---- deciding -------------------------------------------------------------------

    def decide(self, now: datetime) -> tuple[Exit, str] | None:
        """The outcome, once there is one."""
        snapshot = self.controller.snapshot
        watched = self.options.services
        statuses = {k: snapshot.statuses.get(k, EcsStatus.NO_DATA) for k in watched}
        if self._rollback_failed is not None:
            return Exit.FAILED, self._rollback_failed
        rolled = [k for k, s in statuses.items() if s.rolled_back]
        if rolled:
            how = "by deploywatch" if set(rolled) & self._rolled_back_by_us else "by ECS"
            return Exit.ROLLED_BACK, f"{', '.join(rolled)} rolled back ({how})"
        rolling_back = [k for k, s in statuses.items() if s.rolling_back]
        acting = bool(snapshot.countdowns or snapshot.sending) or bool(
            self._rolled_back_by_us & set(watched)
        )
        if not rolling_back:
            for key, since in self._failed_since.items():
                if statuses.get(key) is EcsStatus.ROLLBACK_FAILED or now - since >= FAILED_GRACE:
                    return Exit.FAILED, f"ECS {key}: {statuses[key].value}"
            recovered = [
                v.key for v in snapshot.mttr if v.key in self._rolled_back_by_us and v.recovered
            ]
            if recovered:
                return Exit.ROLLED_BACK, f"{', '.join(recovered)} rolled back by deploywatch"
            bakes = [self.controller.bakes[k] for k in watched]
            restarting = all(
                b.restart_on_failing and b.state is not BakeState.WAITING for b in bakes
            )
            failing = snapshot.verdict is Verdict.FAILING and not restarting
            if failing and not acting and not self._may_act(snapshot):
                failed = [b for b in bakes if b.state is BakeState.FAILED]
                if failed:
                    why = f"FAILING during the bake of {failed[0].key}: {failed[0].reason}"
                    return Exit.FAILED, why
                return Exit.FAILED, f"FAILING: {snapshot.report.headline}"
        bakes = [self.controller.bakes[k] for k in watched]
        if all(b.state is BakeState.SIGNED_OFF for b in bakes):
            longest = max(b.baked for b in bakes)
            return Exit.SIGNED_OFF, (
                f"{', '.join(watched)} completed and HEALTHY for {_dur(longest)}: signed off"
            )
        return None

    def _may_act(self, snapshot: Snapshot) -> bool:
        """With ``--act``: whether a rule that rolls back or pauses a watched service is
        on its way to acting (its breach has begun), so FAILING is not yet the end."""
        if not self.options.act:
            return False
        targets = self.controller.autopilot.rule_targets
        return any(
            ev.action in ("rollback", "pause")
            and targets.get(ev.rule) in self.options.services
            and ev.breached_for is not None
            for ev in snapshot.evidence
        )

    def timed_out(self) -> tuple[Exit, str]:
        """What the deadline found."""
        snapshot = self.controller.snapshot
        parts = [
            f"{k} {self._statuses.get(k, EcsStatus.NO_DATA).value}" for k in self.options.services
        ]
        parts.append(f"verdict {snapshot.verdict.value}")
        now = self.clock()
        for key in self.options.services:
            bake = self.controller.bakes[key]
            if bake.window:
                view = bake.view(key)
                parts.append(f"{key} baked {_dur(view.healthy_time(now))} of {_dur(view.window)}")
        return Exit.TIMED_OUT, f"timed out after {_dur(self.options.timeout)}: " + ", ".join(parts)

    async def run(self, sources: Sequence[Source]) -> Exit:
        """Watch until there is an outcome or the deadline passes."""
        watch = asyncio.create_task(self.controller.run(sources), name="watch")
        deadline = time.monotonic() + self.options.timeout.total_seconds()
        try:
            while True:
                outcome = self.decide(self.clock())
                if outcome is not None:
                    break
                if time.monotonic() >= deadline:
                    outcome = self.timed_out()
                    break
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TICK):
                        await self._changed.wait()
            await self.controller.settle()
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watch
        if self.book is not None:
            await self._fetch_history()
        if self.before_finish is not None:
            await self.before_finish()
        self.finish(*outcome)
        return outcome[0]

    async def _fetch_history(self) -> None:
        """The deployment history for the report: bounded; without it the report says
        nothing of history (and a line says why)."""
        settings = self.controller.settings
        try:
            async with asyncio.timeout(HISTORY_WAIT):
                sample = await build_history_source(settings, self.clock).fetch()
                entries = await asyncio.to_thread(self.controller.actions.audit.read)
        except TimeoutError:
            self.emit(
                "report", f"deployment history not in the report: no answer in {HISTORY_WAIT:g}s"
            )
            return
        except SourceError as exc:
            self.emit("report", f"deployment history not in the report: {_clean(str(exc))}")
            return
        labels = {ref.key: ref.display for ref in settings.services}
        listed = history_rows(sample, acts_from_audit(entries), labels, self.clock())
        self.history = history_json(listed, figures(listed, settings.history), sample)

    def finish(self, code: int, why: str) -> None:
        """The summary line."""
        names: dict[int, str] = {
            Exit.SIGNED_OFF: "SIGNED OFF",
            Exit.FAILED: "FAILED",
            Exit.ROLLED_BACK: "ROLLED BACK",
            Exit.TIMED_OUT: "TIMED OUT",
        }
        words = names.get(code, "INTERRUPTED")
        elapsed = self.clock() - self.started
        if self.book is not None and self.options.report is not None:
            self._write_report(words, code, why)
        self.emit(
            "summary",
            f"deploywatch gate: {words} (exit {int(code)}) after {_dur(elapsed)} — {_clean(why)}",
            outcome=words,
            code=int(code),
            elapsed_s=round(elapsed.total_seconds(), 1),
        )
        if self.after_finish is not None:
            self.after_finish(int(code), words, why)

    def _write_report(self, words: str, code: int, why: str) -> None:
        assert self.book is not None and self.options.report is not None
        now = self.clock()
        self.book.close(now)
        data = self.book.to_json(
            outcome=words, code=code, why=why, ended=now, audit=self.controller.actions.audit
        )
        if self.history is not None:
            data["history"] = self.history
        try:
            written = [str(p) for p in write_report(self.options.report, data)]
        except OSError as exc:
            self.emit("report", f"the report could not be written: {_clean(str(exc))}")
            return
        self.emit("report", f"report: {', '.join(written)}", paths=written)


def _start_recording(
    controller: Controller, settings: Any, path: Path | None, now: Callable[[], datetime]
) -> tuple[Recorder, asyncio.Task[None]] | None:
    if path is None:
        return None
    from engine.recording import Recorder

    recorder = Recorder(path, now)
    recorder.start(settings)
    controller.recorder = recorder
    return recorder, asyncio.create_task(recorder.run(), name="recorder")


async def _stop_recording(gate: Gate, recorder: Recorder, task: asyncio.Task[None]) -> None:
    if recorder.closed:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    try:
        await asyncio.to_thread(recorder.close)
    except OSError as exc:
        gate.emit("record", f"the recording could not be written: {_clean(str(exc))}")
        return
    gate.emit("record", f"recording: {recorder.path}", path=str(recorder.path))


def _bake_line(view: BakeView, now: datetime) -> str:
    """One plain line for a bake's state."""
    name = _clean(view.label)
    if view.state is BakeState.SIGNED_OFF and view.signed_off_at is not None:
        return (
            f"SIGNED OFF {name} at {view.signed_off_at.strftime('%H:%M:%S UTC')}: HEALTHY "
            f"for {_dur(view.window)} after completing"
        )
    if view.state is BakeState.FAILED:
        return f"BAKE FAILED {name}: {_clean(view.reason)}"
    healthy = timedelta(seconds=round(view.healthy_time(now).total_seconds()))
    baked = f"{_dur(healthy)} of {_dur(view.window)} healthy"
    if view.state is BakeState.PAUSED:
        return f"BAKE PAUSED {name} at {baked}: {_clean(view.reason)}"
    if view.state is BakeState.WAITING:
        return f"BAKE RESET {name}: a new deployment is in flight"
    return f"BAKING {name} {baked}, {_dur(max(timedelta(0), view.window - healthy))} left"


def _start_bus(gate: Gate, settings: BusSettings | None) -> GateBus | None:
    """With ``--bus``: announce the gate and read its pipeline events (never its verdict's
    or exit code's business)."""
    if settings is None:
        return None
    from engine.gatebus import GateBus
    from sources.bus import Topics

    controller, options = gate.controller, gate.options
    bus = GateBus(
        controller,
        options.services,
        settings,
        Topics(controller.settings.environment.name),
        clock=gate.clock,
        say=gate.emit,
        since=options.since,
    )
    bus.started(bake=_bake_words(controller, options), timeout=options.timeout, act=options.act)
    gate.after_finish = bus.finished
    bus.start()
    return bus


def _bake_words(controller: Controller, options: GateOptions) -> str:
    windows = sorted({controller.bakes[k].window for k in options.services})
    return " / ".join(_dur(w) for w in windows)


# ---- the command -------------------------------------------------------------------


EPILOG = """exit codes:
  0  every watched deployment completed and stayed HEALTHY for the whole bake window: signed off
  1  failed and not rolled back: FAILING verdict, ECS FAILED, or a rollback that failed
  2  usage or config error (one line, as check-config)
  3  rolled back: by ECS's circuit breaker, by a rule's automatic action, or by an operator
  4  timed out: still in progress, or NO DATA / STALE at the deadline
  128+N  ended by signal N (Ctrl-C: 130, SIGTERM: 143), after a summary line
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``gate`` sub-command's arguments."""
    gate: argparse.ArgumentParser = sub.add_parser(
        "gate",
        help="watch a deployment in a pipeline step, without a screen; exit code says how it went",
        description=(
            "Watch the configured services' deployments with the config's rules until they "
            "complete and stay HEALTHY for the bake window (exit 0), fail, roll back, or time out."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gate.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="TOML config (default: %(default)s)"
    )
    gate.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME",
        help="a service to wait for (its name, label or cluster/service); repeat for more "
        "(default: every configured service)",
    )
    gate.add_argument(
        "--timeout", default="30m", help="give up (exit 4) after this long (default: %(default)s)"
    )
    gate.add_argument(
        "--bake",
        default=None,
        metavar="DURATION",
        help="after completion, stay HEALTHY this long before signing off (default: the "
        "config's bake, per service or environment; 0s without one)",
    )
    gate.add_argument(
        "--act",
        action="store_true",
        help="let rules with action = rollback/pause act (audited); without it the gate only reports",
    )
    gate.add_argument(
        "--since",
        default=None,
        metavar="DURATION",
        help="also accept a deployment that started this long before the gate (default: the "
        "gate must see each deployment in flight, so it never signs off the previous one)",
    )
    gate.add_argument("--json", action="store_true", help="one JSON object per line")
    gate.add_argument(
        "--bus",
        default=None,
        metavar="URL",
        help="also announce the gate on this MQTT bus and record its pipeline events "
        "(mqtt://HOST[:PORT] or mqtts://...; as relay --bus); a broker that is away never "
        "changes the verdict or the exit code",
    )
    gate.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="PATH",
        help="at exit, write the deployment report to PATH.md and PATH.json",
    )
    return gate


def _resolve(settings: Any, names: Sequence[str]) -> tuple[str, ...]:
    if not names:
        return tuple(ref.key for ref in settings.services)
    keys = []
    for name in names:
        matches = [
            ref.key for ref in settings.services if name in (ref.key, ref.service, ref.display)
        ]
        if len(matches) != 1:
            known = ", ".join(ref.key for ref in settings.services)
            what = "no configured service" if not matches else "more than one service"
            raise ConfigError(
                f"--service {name!r}: {what} is called that; expected one of: {known}"
            )
        keys.append(matches[0])
    return tuple(dict.fromkeys(keys))


def _duration(option: str, value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{option} {value!r}: expected {exc}") from None


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """``deploywatch gate``: returns the exit code."""
    from engine.contexts import headless_watch
    from engine.wiring import build_sources

    try:
        settings = load_config(args.config)
        options = GateOptions(
            services=_resolve(settings, args.service),
            timeout=_duration("--timeout", args.timeout),
            bake=_duration("--bake", args.bake) if args.bake else None,
            act=args.act,
            json=args.json,
            since=_duration("--since", args.since) if args.since else None,
            report=args.report,
        )
    except ConfigError as exc:
        print(f"deploywatch: {exc}", file=sys.stderr)
        return int(Exit.USAGE)
    bus_url = getattr(args, "bus", None)
    bus_settings: BusSettings | None = None
    if bus_url is not None:
        from sources.bus import BusError, parse_bus_url

        try:
            bus_settings = parse_bus_url(bus_url)
        except BusError as exc:
            print(f"deploywatch: --bus: {_clean(str(exc))}", file=sys.stderr)
            return int(Exit.USAGE)
    if options.timeout <= timedelta(0):
        print("deploywatch: --timeout: expected a positive duration", file=sys.stderr)
        return int(Exit.USAGE)

    def now() -> datetime:
        return datetime.now(UTC)

    async def main() -> int:
        # With [[aws]] contexts: each call with its own context's credentials.
        controller, aws = headless_watch(settings, clock=now, act=options.act, face="gate")
        gate = Gate(controller, options, out, now)
        gate.emit(
            "start",
            f"deploywatch gate: watching {', '.join(options.services)} "
            f"(timeout {_dur(options.timeout)}, bake {_bake_words(controller, options)}, "
            f"{'acting on rules' if options.act else 'read-only'})",
            services=list(options.services),
        )
        bus = _start_bus(gate, bus_settings)
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        got: list[int] = []

        def stop(sig: signal.Signals) -> None:
            # The first signal ends the watch; the gate then closes its recording and
            # the bus within their bounds (5 s). A second one must not cancel that
            # closing half-way (a traceback instead of the summary and the exit code).
            if not got:
                task.cancel()
            got.append(int(sig))

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop, sig)
        if options.act:
            await asyncio.to_thread(aws.resolve_operator)
        recording = _start_recording(controller, settings, getattr(args, "record", None), now)

        async def close_recording() -> None:
            if recording is not None:
                await _stop_recording(gate, *recording)

        gate.before_finish = close_recording
        try:
            return int(await gate.run(build_sources(settings, controller.store, now)))
        except asyncio.CancelledError:
            if not got:
                raise
            code = 128 + got[0]
            await close_recording()
            gate.finish(code, f"interrupted by {signal.Signals(got[0]).name}")
            return code
        finally:
            if bus is not None:
                await bus.close()

    return asyncio.run(main())
