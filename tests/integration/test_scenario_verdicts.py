"""Each sandbox scenario, judged by the real product engine, headless.

Every test starts ``python -m sandbox --json`` as a child process (a faster clock keeps
them short), takes the ``deploywatch.toml`` it writes through :func:`engine.config.load_config`,
builds the real sources and rule book (:mod:`engine.wiring`), feeds a
:class:`~engine.store.Store` and judges it with :func:`engine.verdict.judge` every
:data:`TICK` seconds: the code path of the dashboard, without Textual. Credentials reach
the sources through the environment only (the sandbox's ``client_env``). One last test
runs the Textual app itself and reads its verdict banner.

Times printed (``pytest -s``) are real seconds. Rule windows, poll intervals, timeouts and
Retry-After are real; scenario offsets are sandbox seconds (divided by the speed).
"""

from __future__ import annotations

import asyncio
import copy
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import pytest

from engine.actions import ActionEngine, ApiCall, Outcome, Plan, Verb, plan
from engine.audit import AuditLog
from engine.canary import CanaryDriver
from engine.config import load_config
from engine.rules import NoDataPolicy, RuleState
from engine.store import EcsStatus, Store
from engine.verdict import Verdict, judge
from engine.wiring import build_rulebook, build_sources
from sandbox.scenario import SCENARIO_DIR
from sources.aws_actions import AwsActions
from sources.datadog import DatadogSource
from sources.model import EcsServiceSample, SourceFailure

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from engine.config import Settings
    from engine.rules import Evidence, RuleBook, Series
    from engine.verdict import Report
    from sandbox.process import SandboxProcess
    from sources.model import Source
    from tests.conftest import StartSandboxProcess

pytestmark = pytest.mark.integration

TICK = 0.25
"""Real seconds between two judgements (the dashboard judges every second and on change)."""
SERVICE = "rehearsal/web"
"""The one service every bundled single-service scenario has."""
ECS_FAILING = frozenset(
    {
        EcsStatus.FAILED,
        EcsStatus.ROLLBACK_REQUESTED,
        EcsStatus.ROLLBACK_IN_PROGRESS,
        EcsStatus.ROLLBACK_SUCCESSFUL,
        EcsStatus.ROLLBACK_FAILED,
    }
)
SUBJECTS = {"datadog": "metric:", "sentry": "sentry:", "ecs": "ecs:"}
"""Which rule subjects each source feeds (probes never fail as a source: a failed round is
data)."""
FORGET_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "DD_SITE")
"""The test machine's own settings that would steer the clients away from the sandbox."""


# --------------------------------------------------------------------------- the harness


@dataclass(frozen=True)
class Tick:
    """One judgement: what the banner would say, and what it rests on."""

    at: float
    """Real seconds since the sandbox's second 0 (its steady state)."""
    when: datetime
    """The wall clock the rules were judged at."""
    report: Report
    evidence: dict[str, Evidence]
    """Each rule's evidence (its worst group), by rule name."""
    ecs: EcsStatus
    sample: EcsServiceSample | None

    @property
    def verdict(self) -> Verdict:
        return self.report.verdict

    def state(self, rule: str) -> RuleState:
        return self.evidence[rule].state

    def v2_running(self) -> int:
        """RUNNING tasks of the v2 deployment, as the ECS source last saw them."""
        if self.sample is None:
            return 0
        return sum(
            d.running or 0
            for d in self.sample.deployments
            if any(i.endswith(":v2") for i in d.images)
        )

    def line(self) -> str:
        return (
            f"{self.at:6.2f}s {self.verdict.value:8} ecs {self.ecs.value:20} {self.report.headline}"
        )


@dataclass
class Spell:
    """A run of failures of one source, as the store holds it (STALE, with its reason)."""

    source: str
    reason: str
    error: str
    began: float
    latest: dict[tuple[str, str | None], datetime | None]
    """Newest point of every series the source feeds, when the spell began."""
    ended: float | None = None
    recovered: bool = False
    """Ended by good data (not by another kind of failure)."""
    checked_ahead: bool = False


@dataclass
class Watch:
    """The product's engine on a running sandbox: sources → store → rules → verdict."""

    sandbox: SandboxProcess
    speed: float
    settings: Settings
    store: Store
    sources: list[Source]
    zero: float
    """``time.monotonic()`` at the sandbox's second 0."""
    service: str = SERVICE
    """The service key whose ECS state each tick reads."""
    ticks: list[Tick] = field(default_factory=list)
    spells: list[Spell] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def on(cls, sandbox: SandboxProcess, speed: float, service: str = SERVICE) -> Watch:
        settings = load_config(sandbox.config_path)
        store = Store(
            ((ref.key, ref.display) for ref in settings.services), build_rulebook(settings)
        )
        sources = build_sources(settings, store)
        # The sandbox's clock, read once: its fault control endpoint says where it is.
        before = time.monotonic()
        answer = httpx.get(sandbox.fault_control_url, timeout=5).json()
        after = time.monotonic()
        zero = (before + after) / 2 - float(answer["clock"]) / speed
        return cls(sandbox, speed, settings, store, sources, zero, service)

    # ---- time

    def now(self) -> float:
        """Real seconds since the sandbox's second 0."""
        return time.monotonic() - self.zero

    def real(self, sandbox_s: float) -> float:
        """A scenario offset (sandbox seconds) in real seconds since second 0."""
        return sandbox_s / self.speed

    # ---- running

    async def __aenter__(self) -> Watch:
        self._tasks = [
            asyncio.create_task(self._consume(s), name=f"source:{s.name}") for s in self.sources
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=10)

    async def _consume(self, source: Source) -> None:
        try:
            async for item in source.stream():
                self.store.ingest(item)
                self._note_spells()
        except Exception as exc:  # the stream must never raise: a product bug
            self.crashed.append(f"{source.name}: {type(exc).__name__}: {exc}")

    def failure(self, source: str) -> SourceFailure | None:
        """The store's current failure of a source (for ECS: of any service)."""
        if source == "ecs":
            failures = [s.failure for s in self.store.services.values() if s.failure]
            return failures[0] if failures else None
        return self.store.signal_error(source)

    def fed_by(self, source: str) -> dict[tuple[str, str | None], Series]:
        prefix = SUBJECTS[source]
        return {k: s for k, s in self.store.rules.series.items() if k[0].startswith(prefix)}

    def _note_spells(self) -> None:
        now = self.now()
        for source in SUBJECTS:
            failure = self.failure(source)
            spell = next((s for s in self.spells if s.source == source and s.ended is None), None)
            if spell is not None and (failure is None or failure.reason != spell.reason):
                spell.ended, spell.recovered = now, failure is None
                spell = None
            if failure is not None and spell is None:
                latest = {
                    k: s.latest.at if s.latest else None for k, s in self.fed_by(source).items()
                }
                self.spells.append(Spell(source, failure.reason, failure.error, now, latest))

    def judge(self) -> Tick:
        """Judge now, as the dashboard does, and check what must always hold."""
        when = datetime.now(UTC)
        store = self.store
        evidence = store.rules.evaluate(when, store.source_error)
        report = judge(evidence, {k: s.status for k, s in store.services.items()})
        state = store.services[self.service]
        evidence_by_rule = {e.rule: e for e in evidence}
        tick = Tick(self.now(), when, report, evidence_by_rule, state.status, state.sample)
        self._check_no_data(when)
        self._check_gaps(when)
        self.ticks.append(tick)
        return tick

    def _check_no_data(self, when: datetime) -> None:
        """A group without fresh data is NO DATA, or STALE while its source fails: never
        OK (unless its policy says so and the source answers), never WARN or CRITICAL."""
        book = self.store.rules
        for rule, group in ((r, g) for r in book.rules for g in book.groups(r)):
            name, evidence = rule.name, book.trackers[(rule.name, group)].evidence
            assert evidence is not None
            series = book.series.get((rule.subject, group))
            latest = series.latest if series is not None else None
            if latest is not None and when - latest.at <= rule.fresh_for:
                continue
            error = self.store.source_error(rule.subject, group)
            if error is not None:
                allowed = {RuleState.STALE}
            elif rule.no_data is NoDataPolicy.OK:
                allowed = {RuleState.OK}
            else:
                allowed = {RuleState.NO_DATA}
            assert evidence.state in allowed, f"{name} [{group}] without fresh data: {evidence}"
            assert evidence.value is None, f"{name} [{group}] shows a value it has not: {evidence}"

    def _check_gaps(self, when: datetime) -> None:
        """While a source fails, nothing is recorded for it: a gap is never data. Judged
        as if the gap had outlasted every freshness bound (the rule book's copy, so the
        real streaks are untouched), each of its rules is STALE with the source's error."""
        for spell in self.spells:
            if spell.ended is not None:
                continue
            for key, series in self.fed_by(spell.source).items():
                newest = series.latest.at if series.latest else None
                assert newest == spell.latest.get(key), (
                    f"{key} got a point while {spell.source} was failing ({spell.reason})"
                )
            if spell.checked_ahead:
                continue
            book: RuleBook = copy.deepcopy(self.store.rules)
            prefix = SUBJECTS[spell.source]
            mine = [r for r in book.rules if r.subject.startswith(prefix)]
            if not mine:
                continue
            ahead = when + max(r.fresh_for for r in mine) + timedelta(seconds=1)
            for evidence in book.evaluate(ahead, self.store.source_error):
                if not evidence.subject.startswith(prefix):
                    continue
                assert evidence.state is RuleState.STALE, evidence
                assert evidence.value is None and spell.reason in evidence.reason, evidence
            spell.checked_ahead = True

    async def until(self, what: str, predicate: Callable[[Tick], bool], timeout: float) -> Tick:
        """Judge every :data:`TICK` until ``predicate`` holds (bounded in time)."""
        deadline = time.monotonic() + timeout
        while True:
            tick = self.judge()
            assert not self.crashed, self.crashed
            if predicate(tick):
                return tick
            if time.monotonic() > deadline:
                log = await asyncio.to_thread(self.sandbox.log_text, 2000)  # a file read
                raise AssertionError(
                    f"no {what} within {timeout:g} s; last: {tick.line()}\n"
                    + "\n".join(e.summary() for e in tick.evidence.values())
                    + f"\nsandbox log:\n{log}"
                )
            await asyncio.sleep(TICK)

    async def hold(self, seconds: float) -> list[Tick]:
        """Judge every :data:`TICK` for ``seconds``; the ticks of that stretch."""
        first = len(self.ticks)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.judge()
            assert not self.crashed, self.crashed
            await asyncio.sleep(TICK)
        return self.ticks[first:]

    def first(self, predicate: Callable[[Tick], bool]) -> Tick | None:
        return next((t for t in self.ticks if predicate(t)), None)

    def transitions(self) -> str:
        """When the verdict changed: ``0.0s NO DATA → 2.7s HEALTHY``."""
        changes = [
            t for i, t in enumerate(self.ticks) if i == 0 or self.ticks[i - 1].verdict != t.verdict
        ]
        return " → ".join(f"{t.at:.1f}s {t.verdict.value}" for t in changes)

    def poll_interval(self, source: str) -> float:
        """Seconds between two polls of a source, as configured."""
        settings = self.settings
        if source == "datadog" and settings.datadog is not None:
            return settings.datadog.poll_interval
        if source == "sentry" and settings.sentry is not None:
            return settings.sentry.poll_interval
        assert source == "ecs", source
        return settings.ecs.poll_interval


class StartWatch(Protocol):
    def __call__(self, scenario: str, speed: float, service: str = SERVICE) -> Watch: ...


@pytest.fixture
def watch(
    sandbox_process: StartSandboxProcess, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StartWatch]:
    """Start a scenario in a child process and the product's engine on it."""

    def start(scenario: str, speed: float, service: str = SERVICE) -> Watch:
        began = time.monotonic()
        sandbox = sandbox_process(scenario, speed=speed)
        for name in FORGET_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in sandbox.client_env.items():
            monkeypatch.setenv(name, value)
        config = sandbox.config_path.read_text(encoding="utf-8")
        for name in ("DD_API_KEY", "DD_APP_KEY", "SENTRY_AUTH_TOKEN"):
            assert sandbox.client_env[name] not in config, f"{name} is in {sandbox.config_path}"
        assert "secret" not in config.lower()
        watch = Watch.on(sandbox, speed, service)
        print(
            f"\n{scenario} at speed {speed:g}: sandbox up in {time.monotonic() - began:.1f} s, "
            f"at its second {watch.now() * speed:.1f}"
        )
        return watch

    yield start


def rule_window(watch: Watch, name: str) -> float:
    return next(r.window for r in watch.settings.rules if r.name == name).total_seconds()


# --------------------------------------------------------------------------- scenarios


async def test_clean_rollout_stays_healthy_to_completion(watch: StartWatch) -> None:
    w = watch("clean-rollout", speed=2.0)
    async with w:
        healthy = await w.until("HEALTHY", lambda t: t.verdict is Verdict.HEALTHY, timeout=20)
        started = await w.until(
            "the v2 rollout", lambda t: t.ecs is EcsStatus.IN_PROGRESS, timeout=20
        )
        done = await w.until(
            "ECS COMPLETED on v2 alone",
            lambda t: (
                t.ecs is EcsStatus.COMPLETED
                and t.sample is not None
                and len(t.sample.deployments) == 1
                and t.v2_running() == 4
            ),
            timeout=40,
        )
        after = await w.hold(4.0)
    verdicts = {t.verdict for t in w.ticks}
    rolling = [t for t in w.ticks if t.ecs is EcsStatus.IN_PROGRESS]
    print(
        f"first HEALTHY at {healthy.at:.1f} s, rollout seen from {started.at:.1f} s, "
        f"COMPLETED at {done.at:.1f} s (sandbox {done.at * w.speed:.0f} s); "
        f"{len(w.ticks)} judgements: {w.transitions()}"
    )
    assert Verdict.FAILING not in verdicts and Verdict.DEGRADED not in verdicts
    # HEALTHY is earned before the rollout ends and, once earned, never lost.
    assert healthy.at < done.at
    assert all(t.verdict is Verdict.HEALTHY for t in w.ticks if t.at >= healthy.at)
    assert any(t.verdict is Verdict.HEALTHY for t in rolling), "never judged mid-rollout"
    assert all(t.verdict is Verdict.HEALTHY and t.ecs is EcsStatus.COMPLETED for t in after)
    assert all(e.state is RuleState.OK for e in after[-1].evidence.values())


async def test_bad_release_fails_on_the_error_rate_within_its_window(watch: StartWatch) -> None:
    w = watch("bad-release", speed=4.0)
    rule, rollback = "web error rate", "web error rate: roll back"
    window, poll = rule_window(w, rule), w.poll_interval("datadog")
    async with w:
        failing = await w.until("FAILING", lambda t: t.verdict is Verdict.FAILING, timeout=60)
        # The rollback rule's longer window: FAILING must hold all along (one partial
        # Datadog bucket read as a good point would reset both streaks).
        fired = await w.until(
            "the rollback rule", lambda t: t.state(rollback) is RuleState.CRITICAL, timeout=40
        )
    v2 = w.first(lambda t: t.v2_running() > 0)
    assert v2 is not None
    evidence = failing.evidence[rule]
    assert evidence.since is not None
    from_v2 = failing.at - v2.at
    from_breach = (failing.when - evidence.since).total_seconds()
    print(
        f"v2 serving from {v2.at:.2f} s; FAILING at {failing.at:.2f} s: {failing.report.headline}"
    )
    print(
        f"time to FAILING: {from_v2:.2f} s after v2 served (rule {window:g} s + poll {poll:g} s), "
        f"{from_breach:.2f} s after the first breaching point"
    )
    assert failing.report.driving and failing.report.driving[0].rule == rule
    assert evidence.state is RuleState.CRITICAL and evidence.group == "version:v2"
    assert evidence.value is not None and 8 <= evidence.value <= 25  # v2 fails 15 %
    assert (evidence.threshold, evidence.op, evidence.window) == (5, ">", timedelta(seconds=20))
    assert evidence.samples >= 10
    assert failing.report.headline.startswith(f"{rule} [version:v2] ")
    assert "% > 5% for 20s · " in failing.report.headline
    assert failing.ecs not in ECS_FAILING  # the rules saw it, not ECS
    # Slack 3 s: v2's first RUNNING task is seen through a 1 s ECS poll, its first
    # Datadog bucket closes 1 s after its first requests, and judging runs every 0.25 s.
    assert from_v2 <= window + poll + 3.0
    assert window <= from_breach <= window + 1.0
    # Once FAILING, FAILING: no good point slipped in until the rollback rule fired.
    assert all(t.verdict is Verdict.FAILING for t in w.ticks if t.at >= failing.at)
    back = fired.evidence[rollback]
    assert back.action == "rollback" and back.value is not None and back.value > 10
    print(f"rollback rule CRITICAL {fired.at - v2.at:.2f} s after v2 served: {back.summary()}")
    assert fired.at - v2.at <= rule_window(w, rollback) + poll + 3.0


async def test_latency_regression_fails_on_p95_alone(watch: StartWatch) -> None:
    w = watch("latency-regression", speed=4.0)
    rule = "web p95 latency"
    window, poll = rule_window(w, rule), w.settings.datadog.poll_interval  # type: ignore[union-attr]
    async with w:
        failing = await w.until("FAILING", lambda t: t.verdict is Verdict.FAILING, timeout=60)
    v2 = w.first(lambda t: t.v2_running() > 0)
    assert v2 is not None
    evidence = failing.evidence[rule]
    print(
        f"v2 serving from {v2.at:.2f} s; FAILING at {failing.at:.2f} s "
        f"({failing.at - v2.at:.2f} s later; rule {window:g} s): {failing.report.headline}"
    )
    assert [e.rule for e in failing.report.driving] == [rule]
    assert evidence.group == "version:v2" and evidence.value is not None and evidence.value > 250
    for name in ("web error rate", "web error rate: roll back"):
        quiet = failing.evidence[name]
        assert quiet.state is RuleState.OK and quiet.breached_for is None, quiet
        assert quiet.value is not None and quiet.value < 5, quiet
    assert failing.state("web availability") is RuleState.OK
    assert failing.ecs not in ECS_FAILING
    # v2 takes all the traffic once both steps of the rollout are RUNNING; its buckets
    # before that are thinner. Slack: as for bad-release, plus the second step (~1 s).
    assert failing.at - v2.at <= window + poll + 8.0


async def test_crash_loop_fails_on_availability_before_ecs_says_anything(
    watch: StartWatch,
) -> None:
    w = watch("crash-loop", speed=4.0)
    async with w:
        failing = await w.until("FAILING", lambda t: t.verdict is Verdict.FAILING, timeout=60)
        later = await w.hold(3.0)
    v2 = w.first(lambda t: t.v2_running() > 0)
    assert v2 is not None and failing.sample is not None
    newest = failing.sample.service_deployments[0] if failing.sample.service_deployments else None
    breaker = (newest.circuit_breaker if newest else None) or failing.sample.circuit_breaker
    failed = max((d.failed or 0) for t in w.ticks if t.sample for d in t.sample.deployments)
    driving = [e.rule for e in failing.report.driving]
    print(
        f"v2 RUNNING from {v2.at:.2f} s; FAILING at {failing.at:.2f} s "
        f"({failing.at - v2.at:.2f} s later) on {driving}: {failing.report.headline}"
    )
    print(
        f"ECS at that moment: {failing.ecs.value}, service deployment "
        f"{newest.status if newest else None}, breaker {breaker}; most failedTasks seen "
        f"{failed}; before the breaker: {failing.ecs not in ECS_FAILING}"
    )
    assert driving and all(
        e.subject.startswith(("probe:", "ecs:")) for e in failing.report.driving
    ), driving
    assert any(e.subject == "probe:web.availability" for e in failing.report.driving)
    # Caught before ECS said anything: the breaker never trips on tasks that reach RUNNING.
    assert all(t.ecs not in ECS_FAILING for t in w.ticks)
    assert breaker is None or breaker.status != "TRIGGERED"
    assert all(t.verdict is Verdict.FAILING for t in later)
    window = rule_window(w, "web availability")
    probe = w.settings.probes[0].interval.total_seconds()
    # A v2 task lives 8 sandbox s (2 s here) before its first crash; then the probe has
    # to fail, and keep failing the ratio for the whole window.
    assert failing.at - v2.at <= 8 / w.speed + window + probe + 6.0


async def test_native_canary_promoted_at_its_hook_fails_and_rolls_back(
    watch: StartWatch, tmp_path: Path
) -> None:
    """The native canary rehearsed as the product does it: the PAUSE hook waits, a
    promote (CONTINUE) sends 20 % to v2, v2's error rate breaks both rules (its sparse
    per-second points once read 0 % every few seconds, each a good point restarting the
    streaks: DEGRADED forever), and the rollback rule's action, sent at the hook that
    waits again, rolls the service back to web:1."""
    w = watch("canary", speed=2.0, service="canary/web")
    rule, rollback = "web error rate", "web error rate: roll back"
    aws = w.settings.aws
    engine = ActionEngine(
        audit=AuditLog(tmp_path / "audit.jsonl"),
        executor=AwsActions(region=aws.region, endpoint_url=aws.endpoint_url),
        read_only=False,
        operator=lambda: "test",
        clock=lambda: datetime.now(UTC),
    )

    def hook(t: Tick) -> str | None:
        sds = t.sample.service_deployments if t.sample is not None else ()
        waiting = sds[0].awaiting_hook if sds else None
        return waiting.hook_id if waiting is not None else None

    async def act(verb: Verb) -> Plan:
        planned = plan(verb, w.store.services[w.service], environment="x", production=False)
        assert planned.enabled, planned.disabled_reason
        result = await engine.request(planned)
        assert result.outcome is Outcome.DONE, result.message
        return planned

    async with w:
        first = await w.until("the PAUSE hook", lambda t: hook(t) is not None, timeout=40)
        assert first.ecs is EcsStatus.IN_PROGRESS
        promote = await act(Verb.PROMOTE)
        assert promote.change == "web:1 → web:2"
        failing = await w.until(
            "the rollback rule", lambda t: t.state(rollback) is RuleState.CRITICAL, timeout=60
        )
        second = await w.until(
            "the hook waiting again", lambda t: hook(t) not in (None, hook(first)), timeout=30
        )
        back = await act(Verb.ROLLBACK)  # what the rule's countdown sends
        assert back.call is not None and back.call.params["action"] == "ROLLBACK"
        assert back.change == "web:2 → web:1"
        done = await w.until(
            "ROLLBACK_SUCCESSFUL", lambda t: t.ecs is EcsStatus.ROLLBACK_SUCCESSFUL, timeout=40
        )
    v2 = w.first(lambda t: t.evidence[rule].group == "version:v2")
    assert v2 is not None
    print(
        f"hook at {first.at:.1f} s, v2 judged from {v2.at:.1f} s, rollback rule CRITICAL at "
        f"{failing.at:.1f} s, hook again at {second.at:.1f} s, ROLLBACK_SUCCESSFUL at "
        f"{done.at:.1f} s: {w.transitions()}"
    )
    evidence = failing.evidence[rollback]
    assert evidence.group == "version:v2" and evidence.action == "rollback"
    assert evidence.value is not None and 10 <= evidence.value <= 30  # v2 fails 20 %
    assert failing.verdict is Verdict.FAILING
    # Once v2 breached, no good point restarted the streak: FAILING held until rolled back.
    assert failing.at - v2.at <= rule_window(w, rollback) + 15.0
    assert all(t.verdict is Verdict.FAILING for t in w.ticks if failing.at <= t.at <= second.at)
    assert done.sample is not None
    assert [d.revision for d in done.sample.deployments if d.status == "PRIMARY"] == ["web:1"]


async def test_alb_canary_sparse_points_fire_both_rules(watch: StartWatch) -> None:
    """The ALB canary at its first step (10 %) gets ~2 requests a second: its error rate
    comes in 10 s buckets. Under the 20 s rule a point-less moment between two buckets
    once read as NO DATA and restarted the streak, so ``> 5% for 20s`` never showed while
    ``> 10% for 30s`` (whose window always held a point) went CRITICAL."""
    w = watch("alb-canary", speed=2.0, service="alb/web")
    rule, rollback = "web error rate", "web error rate: roll back"
    canary = w.settings.services[0].canary
    assert canary is not None
    operation, params = CanaryDriver(w.service, canary).weights_params(10)
    aws = w.settings.aws
    executor = AwsActions(region=aws.region, endpoint_url=aws.endpoint_url)
    async with w:
        await w.until("HEALTHY on v1", lambda t: t.verdict is Verdict.HEALTHY, timeout=40)
        await asyncio.to_thread(executor, ApiCall("elbv2", operation, params))  # 90 / 10
        v2 = await w.until(
            "v2 judged", lambda t: t.evidence[rule].group == "version:v2", timeout=40
        )
        fired = await w.until(
            f"{rule} CRITICAL", lambda t: t.state(rule) is RuleState.CRITICAL, timeout=45
        )
        both = await w.until(
            "both rules CRITICAL", lambda t: t.state(rollback) is RuleState.CRITICAL, timeout=30
        )
    print(
        f"v2 judged at {v2.at:.1f} s; {rule} CRITICAL at {fired.at:.1f} s, {rollback} at "
        f"{both.at:.1f} s: {fired.evidence[rule].summary()}"
    )
    assert fired.at <= both.at  # the shorter window fires first, as it must
    assert fired.at - v2.at <= rule_window(w, rule) + 20.0  # one 10 s bucket + lag
    evidence = both.evidence[rule]
    assert evidence.state is RuleState.CRITICAL and evidence.group == "version:v2"
    assert evidence.value is not None and 5 < evidence.value <= 30  # v2 fails 15 %
    # Once v2 was judged, neither rule ever said NO DATA between two sparse points.
    for t in w.ticks:
        if t.at >= v2.at:
            assert t.state(rule) is not RuleState.NO_DATA, t.evidence[rule].summary()
            assert t.state(rollback) is not RuleState.NO_DATA, t.evidence[rollback].summary()


@dataclass(frozen=True)
class Expect:
    """What one injected fault must look like in the store."""

    source: str
    reason: str
    words: str


EXPECT = {
    ("datadog", "http429"): Expect("datadog", "rate limited", "429"),
    ("datadog", "hang"): Expect("datadog", "timeout", "no answer"),
    ("sentry", "http500"): Expect("sentry", "unavailable", "500"),
    ("aws", "reset"): Expect("ecs", "unavailable", "connect"),
}


async def test_flaky_sources_go_stale_and_recover_without_feeding_a_rule(
    watch: StartWatch,
) -> None:
    scenario = tomllib.loads((SCENARIO_DIR / "flaky-sources.toml").read_text(encoding="utf-8"))
    faults = scenario["fault"]
    assert {(f["endpoint"], f["fault"]) for f in faults} == set(EXPECT)
    w = watch("flaky-sources", speed=2.0)
    datadog = next(s for s in w.sources if isinstance(s, DatadogSource))

    def spell_of(fault: dict[str, Any]) -> Spell | None:
        expect = EXPECT[(fault["endpoint"], fault["fault"])]
        start = w.real(fault["at"])
        end = w.real(fault["at"] + fault["duration"])
        return next(
            (
                s
                for s in w.spells
                if s.source == expect.source
                and s.reason == expect.reason
                and start - 0.5 <= s.began <= end + datadog.timeout
            ),
            None,
        )

    def all_over(tick: Tick) -> bool:
        spells = [spell_of(f) for f in faults]
        return all(s is not None and s.recovered for s in spells)

    last = max(w.real(f["at"] + f["duration"]) for f in faults)
    async with w:
        await w.until("every fault seen and recovered from", all_over, last - w.now() + 20)
        await w.hold(1.0)
    for each in w.spells:
        print(
            f"  {each.source:8} STALE {each.began:6.2f}-{each.ended or 0:6.2f} s "
            f"{each.reason}: {each.error[:90]}"
        )
    for fault in sorted(faults, key=lambda f: float(f["at"])):
        expect = EXPECT[(fault["endpoint"], fault["fault"])]
        start, end = w.real(fault["at"]), w.real(fault["at"] + fault["duration"])
        spell = spell_of(fault)
        assert spell is not None and spell.ended is not None
        stale_after, back_after = spell.began - start, spell.ended - end
        print(
            f"{fault['endpoint']} {fault['fault']} ({start:.1f}-{end:.1f} s): {expect.source} "
            f"STALE {stale_after:.2f} s after it began, recovered {back_after:+.2f} s after it ended"
        )
        assert expect.words in spell.error, spell
        for secret in w.sandbox.client_env.values():
            assert len(secret) < 8 or secret not in spell.error
        # Seen within one poll (a hang: plus the client's request timeout), and gone
        # within the longest back-off or Retry-After that can be pending, plus a poll.
        interval = w.poll_interval(expect.source)
        wait = datadog.timeout if fault["fault"] == "hang" else 0.0
        assert stale_after <= interval + wait + 3.0
        assert back_after <= 8.0 + interval + 3.0
    # A clean rollout: the gaps fed no rule, nothing breached, everything answers again.
    verdicts = {t.verdict for t in w.ticks}
    print(f"{len(w.ticks)} judgements: {w.transitions()}")
    assert Verdict.FAILING not in verdicts and Verdict.DEGRADED not in verdicts
    assert all(s.recovered for s in w.spells)
    assert not w.store.signal_failures and not any(s.stale for s in w.store.services.values())
    assert all(s.checked_ahead for s in w.spells)


# --------------------------------------------------------------------------- the app


async def test_the_app_banner_says_failing_with_the_evidence(
    sandbox_process: StartSandboxProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tui.app import DeployWatchApp
    from widgets.signals import VerdictBanner

    sandbox = sandbox_process("bad-release", speed=4.0)
    for name in FORGET_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in sandbox.client_env.items():
        monkeypatch.setenv(name, value)
    settings = load_config(sandbox.config_path)
    app = DeployWatchApp(settings, read_only=True, audit_path=tmp_path / "audit.log")
    began = time.monotonic()
    text = ""
    async with app.run_test(size=(200, 50)) as pilot:
        while time.monotonic() - began < 60:
            await pilot.pause(0.5)
            banner = app.screen.query_one(VerdictBanner)
            text = banner.render().plain
            report = banner.report
            # FAILING may come first from the sandbox's smoke suite (checkout fails on
            # v2 as soon as the rollout completes); the error rate's window follows.
            failing = report is not None and report.verdict is Verdict.FAILING
            if failing and "web error rate [version:v2] " in text:
                break
    print(f"banner after {time.monotonic() - began:.1f} s:\n{text}")
    assert text.lstrip().startswith("FAILING"), text
    assert "web error rate [version:v2] " in text and "% > 5% for 20s · " in text
    assert " samples · since " in text
