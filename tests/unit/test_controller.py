"""The deployment watch without a screen: scripted items, a fake clock, no Textual.

Each test drives :class:`engine.controller.Controller` the way a face does — items in,
intents in, snapshots out — and jumps time with the fake clock instead of sleeping.
``tests/test_architecture.py`` runs this module in a process of its own and checks that
Textual was never imported.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from engine.actions import Outcome, Verb
from engine.audit import AuditLog
from engine.controller import Controller, Update
from engine.verdict import Verdict
from sources.model import AlbWeights, SourceFailure
from tests.fakes import (
    T0,
    FakeSource,
    FrozenClock,
    bad_release_signals,
    deployment,
    mid_deploy_script,
    sample,
    service_deployment,
    settings,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

    from engine.actions import ApiCall
    from engine.config import Settings


@pytest.fixture(autouse=True)
def _no_textual() -> Iterator[None]:
    """In the architecture check's own process, Textual must never be imported."""
    yield
    if os.environ.get("DEPLOYWATCH_ASSERT_NO_TEXTUAL"):
        assert "textual" not in sys.modules


class Recorder:
    """Stands in for AWS: records each call, answers like ECS."""

    def __init__(self) -> None:
        self.calls: list[ApiCall] = []

    def __call__(self, call: ApiCall) -> Mapping[str, Any]:
        self.calls.append(call)
        return {"ok": True}

    @property
    def operations(self) -> list[str]:
        return [c.operation for c in self.calls]


def watch(
    tmp_path: Path,
    config: Settings | None = None,
    *,
    clock: FrozenClock | None = None,
    read_only: bool = False,
) -> tuple[Controller, Recorder, FrozenClock]:
    clock = clock or FrozenClock()
    rec = Recorder()
    controller = Controller(
        config or settings(signals=True),
        clock=clock,
        executor=rec,
        audit=AuditLog(tmp_path / "audit.jsonl"),
        operator=lambda: "tester",
        read_only=read_only,
    )
    return controller, rec, clock


def audit(tmp_path: Path) -> list[dict[str, Any]]:
    return AuditLog(tmp_path / "audit.jsonl").read()


def bad_release(controller: Controller) -> None:
    """web mid-rollout and 6 minutes of v2 at 14.8 %: the rollback rule is critical."""
    for item in [*mid_deploy_script()[:1], *bad_release_signals(minutes=6)]:
        controller.ingest(item)


async def test_countdown_then_exactly_one_automatic_rollback(tmp_path: Path) -> None:
    controller, rec, clock = watch(tmp_path)
    bad_release(controller)
    snapshot = controller.step()
    assert snapshot.verdict is Verdict.FAILING
    [countdown] = snapshot.countdowns
    assert (countdown.key, countdown.verb, countdown.rule) == (
        "demo/web",
        Verb.ROLLBACK,
        "error rate: roll back",
    )
    assert countdown.due == T0 + timedelta(seconds=10)
    assert controller.next_wake(clock()) is not None
    clock.advance(9)
    controller.step()
    await controller.settle()
    assert rec.calls == [] and controller.snapshot.countdowns[0].remaining(clock()) == 1
    clock.advance(1)
    controller.step()
    await controller.settle()
    assert rec.operations == ["stop_service_deployment"]
    for _ in range(5):  # later judgements never send it again
        clock.advance(5)
        controller.step()
        await controller.settle()
    assert rec.operations == ["stop_service_deployment"]
    result = controller.snapshot.last_result
    assert result is not None and result.automatic and result.outcome is Outcome.DONE
    intent = next(e for e in audit(tmp_path) if e["phase"] == "intent")
    assert intent["automatic"] is True
    assert any("error rate: roll back" in line for line in intent["evidence"])


async def test_cancel_stops_the_countdown_and_is_audited(tmp_path: Path) -> None:
    controller, rec, clock = watch(tmp_path)
    bad_release(controller)
    controller.step()
    cancelled, error = await controller.cancel_automatic()
    assert error is None
    assert [(c.key, c.verb) for c in cancelled] == [("demo/web", Verb.ROLLBACK)]
    assert controller.snapshot.countdowns == ()
    for _ in range(4):
        clock.advance(10)
        controller.step()
        await controller.settle()
    assert rec.calls == []
    assert [e["phase"] for e in audit(tmp_path)] == ["cancelled"]
    assert await controller.cancel_automatic() == ([], None)  # nothing left to cancel


def canary_settings() -> Settings:
    from tests.unit.test_canary import driver

    base = settings(services=(("demo", "web"),))
    ref = base.services[0].model_copy(update={"canary": driver().settings})
    return base.model_copy(update={"services": (ref,)})


async def test_canary_steps_are_held_while_the_verdict_is_failing(tmp_path: Path) -> None:
    controller, rec, clock = watch(tmp_path, canary_settings())
    failed = sample("demo/web", [deployment("web:2", rollout="FAILED", reason="tasks failed")])
    controller.ingest(replace(failed, alb=AlbWeights(90, 10)))
    snapshot = controller.step()
    assert snapshot.verdict is Verdict.FAILING
    [view] = snapshot.canaries
    assert view.observed == 10 and view.held_by_verdict and view.next_at is None
    clock.advance(120)  # far past the 30 s wait of step 1
    controller.step()
    await controller.settle()
    assert rec.calls == []
    healthy = sample("demo/web", [deployment("web:2")], at=clock())
    controller.ingest(replace(healthy, alb=AlbWeights(90, 10)))
    snapshot = controller.step()
    assert snapshot.verdict is not Verdict.FAILING
    # The step's wait counts from when it was first seen live: over, so it moves now.
    await controller.settle()
    assert rec.operations == ["modify_listener"]
    groups = rec.calls[0].params["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    assert [g["Weight"] for g in groups] == [75, 25]


async def test_canary_wakes_the_watch_when_its_wait_ends(tmp_path: Path) -> None:
    controller, _rec, clock = watch(tmp_path, canary_settings())
    web = sample("demo/web", [deployment("web:2")])
    controller.ingest(replace(web, alb=AlbWeights(90, 10)))
    snapshot = controller.step()
    [view] = snapshot.canaries
    assert view.next_at == T0 + timedelta(seconds=30)
    assert controller.next_wake(clock()) == T0 + timedelta(seconds=30)


async def test_mttr_breach_decided_then_recovered_only_when_settled(tmp_path: Path) -> None:
    controller, _rec, clock = watch(tmp_path)
    bad_release(controller)
    controller.step()
    clock.advance(10)
    controller.step()
    await controller.settle()
    [mttr] = controller.snapshot.mttr
    assert mttr.key == "demo/web" and mttr.breach is not None
    assert mttr.decided == T0 + timedelta(seconds=10) and mttr.recovered is None
    # The call was sent, but nothing has recovered yet: still the old ECS sample.
    clock.advance(5)
    controller.step()
    assert controller.snapshot.mttr[0].recovered is None
    # ECS says the rollback succeeded, but the rules still see v2 breaching.
    rolled_back = sample(
        "demo/web",
        [deployment("web:1")],
        service_deployments=[
            service_deployment("ROLLBACK_SUCCESSFUL", source="web:1", target="web:2")
        ],
        at=clock(),
    )
    controller.ingest(rolled_back)
    controller.step()
    assert controller.snapshot.mttr[0].recovered is None
    # v2 gets no traffic any more: its points age out of the rule's window.
    clock.advance(130)
    controller.ingest(replace(rolled_back, at=clock()))
    controller.step()
    recovered = controller.snapshot.mttr[0].recovered
    assert recovered == clock()


async def test_a_manual_rollback_while_healthy_invents_no_breach(tmp_path: Path) -> None:
    controller, rec, _clock = watch(tmp_path, settings())
    for item in mid_deploy_script()[:1]:
        controller.ingest(item)
    controller.step()
    result = await controller.act(controller.plan(Verb.ROLLBACK, "demo/web"))
    assert result.outcome is Outcome.DONE and rec.operations == ["stop_service_deployment"]
    [mttr] = controller.snapshot.mttr
    assert mttr.breach is None and mttr.decided is not None


async def test_a_plan_made_stale_while_confirming_is_refused_and_audited(tmp_path: Path) -> None:
    controller, rec, clock = watch(tmp_path, settings())
    controller.ingest(mid_deploy_script()[0])
    planned = controller.plan(Verb.ROLLBACK, "demo/web")
    assert planned.enabled
    # The deployment finished while the dialog was open.
    clock.advance(30)
    controller.ingest(
        sample(
            "demo/web",
            [deployment("web:2")],
            service_deployments=[
                service_deployment("SUCCESSFUL", source="web:1", target="web:2", finished=clock())
            ],
            at=clock(),
        )
    )
    result = await controller.act(planned)
    assert result.outcome is Outcome.REFUSED and "changed while you confirmed" in result.message
    assert rec.calls == []
    assert [e["phase"] for e in audit(tmp_path)] == ["refused"]


async def test_read_only_is_enforced_where_actions_run(tmp_path: Path) -> None:
    controller, rec, _clock = watch(tmp_path, settings(), read_only=True)
    controller.ingest(mid_deploy_script()[0])
    result = await controller.act(controller.plan(Verb.ROLLBACK, "demo/web"))
    assert result.outcome is Outcome.REFUSED and "read-only" in result.message
    assert controller.snapshot.read_only and rec.calls == []
    assert [e["phase"] for e in audit(tmp_path)] == ["refused"]


async def test_declined_confirmation_is_audited(tmp_path: Path) -> None:
    controller, rec, _clock = watch(tmp_path, settings())
    controller.ingest(mid_deploy_script()[0])
    assert await controller.declined(controller.plan(Verb.ROLLBACK, "demo/web")) is None
    assert rec.calls == []
    [entry] = audit(tmp_path)
    assert (entry["phase"], entry["action"], entry["target"]["service"]) == (
        "declined",
        "rollback",
        "web",
    )


def test_next_wake_is_when_a_rule_can_change_by_the_clock_alone(tmp_path: Path) -> None:
    controller, _rec, clock = watch(tmp_path)
    assert controller.next_wake(clock()) is None  # nothing seen: only data can change it
    from sources.model import MetricPoint, MetricSample

    # One breaching point of v2, 5 s old: the 1 m rule is pending from that point.
    at = T0 - timedelta(seconds=5)
    controller.ingest(
        MetricSample("error_rate", "demo/web", "version:v2", (MetricPoint(at, 7.0),), "%", T0)
    )
    controller.step()
    # While a breach is pending the evidence moves each second ("pending 5s of 1m").
    assert controller.next_wake(clock()) == T0 + timedelta(seconds=1)
    rules = controller.store.rules
    assert rules.next_change(clock()) == at + timedelta(minutes=1)  # the streak matures


async def test_run_judges_a_burst_once_and_sleeps_when_nothing_can_change(
    tmp_path: Path,
) -> None:
    controller, _rec, clock = watch(tmp_path, settings())
    source = FakeSource(mid_deploy_script())
    updates: list[Update] = []
    controller.listen(updates.append)
    task = asyncio.create_task(controller.run([source]))

    async def until(check: Callable[[], bool]) -> None:
        for _ in range(400):
            if check():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("condition not reached within 4 s")

    try:
        # Two ECS samples arrive together: judged once after them (plus the first look).
        await until(lambda: controller.snapshot.judgements >= 2)
        assert set(controller.snapshot.statuses) == {"demo/web", "demo/api"}
        judged = controller.snapshot.judgements
        assert judged == 2
        assert any(u.data for u in updates) and any(u.snapshot for u in updates)
        # No rule, no countdown, no canary: nothing can change until data comes.
        assert controller.next_wake(clock()) is None
        clock.advance(3600)  # an hour passes on the clock: woken once, judged once
        await until(lambda: controller.snapshot.judgements == judged + 1)
        source.push(replace(mid_deploy_script()[0], at=clock()))
        await until(lambda: controller.snapshot.judgements == judged + 2)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_finished_rollback_is_a_calm_state_that_says_how_and_when(
    tmp_path: Path,
) -> None:
    from sources.model import CircuitBreaker

    controller, _rec, clock = watch(tmp_path, settings())
    in_progress = sample(
        "demo/web",
        [deployment("web:1", rollout="IN_PROGRESS"), deployment("web:2", status="ACTIVE")],
        service_deployments=[
            service_deployment(
                "ROLLBACK_IN_PROGRESS",
                source="web:1",
                target="web:2",
                breaker=CircuitBreaker(True, True, "TRIGGERED", 3, 3),
            )
        ],
    )
    controller.ingest(in_progress)
    assert controller.step().verdict is Verdict.FAILING  # act now: still rolling back
    clock.advance(40)
    done = sample(
        "demo/web",
        [deployment("web:1")],
        service_deployments=[
            service_deployment(
                "ROLLBACK_SUCCESSFUL",
                source="web:1",
                target="web:2",
                finished=clock(),
                breaker=CircuitBreaker(True, True, "TRIGGERED", 3, 3),
            )
        ],
        at=clock(),
    )
    controller.ingest(done)
    snapshot = controller.step()
    assert snapshot.verdict is Verdict.ROLLED_BACK
    assert snapshot.report.headline == (
        "ECS demo/web: rolled back to web:1 at 02:00:40 by the circuit breaker; "
        "the old revision serves"
    )


async def test_with_no_rules_a_stale_ecs_answer_is_no_data_never_healthy(
    tmp_path: Path,
) -> None:
    """HEALTHY is earned: with no rules, only ECS vouches for a service, and a service
    whose latest ECS fetch failed cannot be vouched for (its last status still counts)."""
    controller, _rec, clock = watch(tmp_path, settings())
    steady = [deployment("web:2")]
    controller.ingest(sample("demo/web", steady))
    controller.ingest(sample("demo/api", steady))
    assert controller.step().verdict is Verdict.HEALTHY
    clock.advance(5)
    controller.ingest(
        SourceFailure("ecs", "demo/api", "ThrottlingException: Rate exceeded", "throttled", clock())
    )
    snapshot = controller.step()
    assert snapshot.verdict is Verdict.NO_DATA
    assert controller.report.reasons == (
        "ECS demo/api: STALE, throttled: ThrottlingException: Rate exceeded",
    )
    clock.advance(5)
    controller.ingest(sample("demo/api", steady))  # it answers again: HEALTHY again
    assert controller.step().verdict is Verdict.HEALTHY
