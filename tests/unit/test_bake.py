"""The bake window: healthy time after completion, paused by NO DATA, failed (or
restarted) by FAILING, reset by a new deployment, signed off when full."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from engine.audit import AuditLog
from engine.bake import Bake, BakeState
from engine.config import parse_config
from engine.controller import Controller
from tests.fakes import T0, FrozenClock, deployment, sample

MIN = timedelta(minutes=1)


def state(bake: Bake) -> BakeState:
    """The bake's state now (a call, so the type checker does not narrow it)."""
    return bake.state


def test_healthy_time_counts_and_signs_off_when_the_window_is_full() -> None:
    bake = Bake("demo/web", 5 * MIN)
    bake.step(T0, done=True, healthy=True, failing=False, why="")
    assert state(bake) is BakeState.BAKING and bake.due() == T0 + 5 * MIN
    view = bake.view("web")
    assert view.healthy_time(T0 + 2 * MIN) == 2 * MIN
    assert view.left(T0 + 2 * MIN) == 3 * MIN
    bake.step(T0 + 5 * MIN, done=True, healthy=True, failing=False, why="")
    assert state(bake) is BakeState.SIGNED_OFF and bake.signed_off_at == T0 + 5 * MIN


def test_no_data_pauses_and_is_not_healthy_time() -> None:
    bake = Bake("demo/web", 5 * MIN)
    bake.step(T0, done=True, healthy=True, failing=False, why="")
    bake.step(T0 + 2 * MIN, done=True, healthy=False, failing=False, why="NO DATA: web")
    assert state(bake) is BakeState.PAUSED and bake.reason == "NO DATA: web"
    assert bake.due() is None
    # Ten silent minutes add nothing.
    bake.step(T0 + 12 * MIN, done=True, healthy=True, failing=False, why="")
    assert bake.baked == 2 * MIN and state(bake) is BakeState.BAKING
    bake.step(T0 + 14 * MIN, done=True, healthy=True, failing=False, why="")
    assert state(bake) is BakeState.BAKING  # 4 of 5 minutes
    bake.step(T0 + 15 * MIN, done=True, healthy=True, failing=False, why="")
    assert state(bake) is BakeState.SIGNED_OFF


def test_failing_fails_the_bake_for_good_until_a_new_deployment() -> None:
    bake = Bake("demo/web", 5 * MIN)
    bake.step(T0, done=True, healthy=True, failing=False, why="")
    bake.step(T0 + MIN, done=True, healthy=False, failing=True, why="FAILING: error rate")
    assert state(bake) is BakeState.FAILED and "error rate" in bake.reason
    bake.step(T0 + 20 * MIN, done=True, healthy=True, failing=False, why="")
    assert state(bake) is BakeState.FAILED  # a calm moment later does not sign it off
    bake.step(T0 + 21 * MIN, done=False, healthy=True, failing=False, why="")
    assert state(bake) is BakeState.WAITING and bake.baked == timedelta(0)


def test_failing_restarts_the_bake_when_so_configured() -> None:
    bake = Bake("demo/web", 5 * MIN, restart_on_failing=True)
    bake.step(T0, done=True, healthy=True, failing=False, why="")
    bake.step(T0 + 4 * MIN, done=True, healthy=False, failing=True, why="FAILING: x")
    assert state(bake) is BakeState.PAUSED and bake.baked == timedelta(0) and bake.restarts == 1
    bake.step(T0 + 5 * MIN, done=True, healthy=True, failing=False, why="")
    bake.step(T0 + 9 * MIN, done=True, healthy=True, failing=False, why="")
    assert state(bake) is BakeState.BAKING
    bake.step(T0 + 10 * MIN, done=True, healthy=True, failing=False, why="")
    assert state(bake) is BakeState.SIGNED_OFF


def test_a_zero_window_signs_off_at_the_first_healthy_moment() -> None:
    bake = Bake("demo/web", timedelta(0))
    bake.step(T0, done=True, healthy=False, failing=False, why="DEGRADED")
    assert state(bake) is BakeState.PAUSED
    bake.step(T0 + MIN, done=True, healthy=True, failing=False, why="")
    assert state(bake) is BakeState.SIGNED_OFF and bake.signed_off_at == T0 + MIN


def _controller(tmp_path: Path, clock: FrozenClock) -> Controller:
    config = parse_config(
        {
            "environment": {"name": "t", "bake": "30m"},
            "aws": {"endpoint_url": "http://127.0.0.1:9"},
            "service": [
                {"cluster": "demo", "service": "web", "bake": "10m"},
                {"cluster": "demo", "service": "api"},
            ],
        },
        Path("t.toml"),
    )
    return Controller(
        config,
        clock=clock,
        executor=lambda call: {},
        audit=AuditLog(tmp_path / "audit.jsonl"),
        operator=lambda: "t",
    )


def test_the_watch_bakes_only_a_deployment_it_saw_in_flight(tmp_path: Path) -> None:
    clock = FrozenClock()
    controller = _controller(tmp_path, clock)
    assert controller.bakes["demo/web"].window == 10 * MIN  # the service's own
    assert controller.bakes["demo/api"].window == 30 * MIN  # the environment's
    controller.ingest(sample("demo/api", [deployment("api:7")]))
    controller.ingest(sample("demo/web", [deployment("web:2")]))
    controller.step()
    # A deployment finished before the watch began is not ours to sign off.
    assert controller.snapshot.bakes[0].state is BakeState.WAITING
    moving = deployment("web:3", rollout="IN_PROGRESS", running=2, pending=2)
    controller.ingest(sample("demo/web", [moving, deployment("web:2", status="ACTIVE")]))
    controller.step()
    clock.advance(30)
    controller.ingest(sample("demo/web", [deployment("web:3")], at=clock()))
    controller.ingest(sample("demo/api", [deployment("api:7")], at=clock()))
    controller.step()
    web = next(v for v in controller.snapshot.bakes if v.key == "demo/web")
    assert web.state is BakeState.BAKING and web.since == clock()
    # The watch wakes when the window is full, and signs off then.
    assert controller.next_wake(clock()) == clock() + 10 * MIN
    clock.advance(600)
    controller.step()
    web = next(v for v in controller.snapshot.bakes if v.key == "demo/web")
    assert web.state is BakeState.SIGNED_OFF and web.signed_off_at == clock()


def test_another_service_failing_neither_fails_nor_pauses_a_bake(tmp_path: Path) -> None:
    from tests.fakes import mid_deploy_script

    clock = FrozenClock()
    controller = _controller(tmp_path, clock)
    moving = deployment("web:3", rollout="IN_PROGRESS", running=2, pending=2)
    controller.ingest(sample("demo/web", [moving, deployment("web:2", status="ACTIVE")]))
    controller.ingest(sample("demo/api", [deployment("api:7")]))
    controller.step()
    clock.advance(30)
    controller.ingest(sample("demo/web", [deployment("web:3")], at=clock()))
    api_rolling_back = next(i for i in mid_deploy_script() if getattr(i, "key", "") == "demo/api")
    controller.ingest(api_rolling_back)
    snapshot = controller.step()
    assert snapshot.verdict.value == "FAILING"  # api: ECS is rolling it back
    web = next(v for v in snapshot.bakes if v.key == "demo/web")
    assert web.state is BakeState.BAKING, web.reason
