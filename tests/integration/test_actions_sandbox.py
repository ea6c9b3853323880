"""Every verb the product can send, on each deployment kind, against the sandbox.

The product path end to end: the ECS source (real boto3) feeds the store, the action
plan is computed from what it saw, the engine audits and sends the call through
``AwsActions`` (real boto3), and the outcome is checked in the sandbox's own state as
the ECS API then describes it — not merely that a call was made.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from engine.actions import ActionEngine, Outcome, Verb, plan
from engine.audit import AuditLog
from engine.canary import CanaryDriver
from engine.config import load_config
from engine.store import EcsStatus, ServiceState, Store
from sources.aws_actions import AwsActions
from sources.ecs import AlbTarget, EcsSource, EcsTarget

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.conftest import StartSandboxProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def sandbox_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "sandbox")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sandbox")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class World:
    """One service watched through the product's ECS source, acted on by its engine."""

    def __init__(
        self,
        endpoint: str,
        cluster: str,
        tmp_path: Path,
        *,
        read_only: bool = False,
        codedeploy: tuple[str, str] | None = None,
    ) -> None:
        self.key = f"{cluster}/web"
        self.source = EcsSource(
            [EcsTarget(self.key, cluster, "web", codedeploy)],
            region="us-east-1",
            endpoint_url=endpoint,
        )
        self.store = Store([(self.key, "web")])
        self.aws = AwsActions(region="us-east-1", endpoint_url=endpoint)
        self.engine = ActionEngine(
            audit=AuditLog(tmp_path / "audit.jsonl"),
            executor=self.aws,
            read_only=read_only,
            operator=lambda: "test",
            clock=lambda: datetime.now(UTC),
        )

    @property
    def state(self) -> ServiceState:
        return self.store.services[self.key]

    async def until(
        self, what: str, done: Callable[[ServiceState], bool], timeout: float
    ) -> ServiceState:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in await self.source.poll_once():
                self.store.ingest(item)
            if done(self.state):
                return self.state
            await asyncio.sleep(0.2)
        raise AssertionError(f"not within {timeout:g}s: {what}; last status {self.state.status}")

    def plan(self, verb: Verb) -> object:
        return plan(verb, self.state, environment="rehearsal", production=False)

    async def act(self, verb: Verb) -> str:
        planned = plan(verb, self.state, environment="rehearsal", production=False)
        assert planned.enabled, planned.disabled_reason
        result = await self.engine.request(planned)
        assert result.outcome is Outcome.DONE, result.message
        assert planned.call is not None
        return planned.call.operation


def newest_status(state: ServiceState) -> str | None:
    sample = state.sample
    return sample.service_deployments[0].status if sample and sample.service_deployments else None


def progress(state: ServiceState) -> tuple[str | None, str | None, object]:
    """Lifecycle stage and the waiting hook (id, expiry): a new wait is a new expiry."""
    sample = state.sample
    if sample is None or not sample.service_deployments:
        return None, None, None
    sd = sample.service_deployments[0]
    hook = sd.awaiting_hook
    return sd.lifecycle_stage, hook.hook_id if hook else None, hook.expires_at if hook else None


def primary_revision(state: ServiceState) -> str | None:
    sample = state.sample
    if sample is None:
        return None
    return next((d.revision for d in sample.deployments if d.status == "PRIMARY"), None)


async def test_rolling_in_flight_rolls_back_to_rollback_successful(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    sandbox = await asyncio.to_thread(sandbox_process, "bad-release", speed=8)
    world = World(sandbox.aws_endpoint, "rehearsal", tmp_path)
    await world.until(
        "web:2 rolling out",
        lambda s: newest_status(s) == "IN_PROGRESS" and primary_revision(s) == "web:2",
        30,
    )
    for verb in (Verb.PAUSE, Verb.RESUME, Verb.PROMOTE):
        assert not plan(verb, world.state, environment="x", production=False).enabled
    assert await world.act(Verb.ROLLBACK) == "stop_service_deployment"
    final = await world.until(
        "ROLLBACK_SUCCESSFUL", lambda s: s.status is EcsStatus.ROLLBACK_SUCCESSFUL, 60
    )
    assert primary_revision(final) == "web:1"
    assert final.sample is not None and final.sample.running == 4
    phases = [e["phase"] for e in await asyncio.to_thread(world.engine.audit.read)]
    assert phases == ["intent", "result"]


async def test_rolling_finished_rolls_forward_to_the_old_revision(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    sandbox = await asyncio.to_thread(sandbox_process, "clean-rollout", speed=8)
    world = World(sandbox.aws_endpoint, "rehearsal", tmp_path)
    await world.until(
        "web:2 completed",
        lambda s: s.status is EcsStatus.COMPLETED and primary_revision(s) == "web:2",
        45,
    )
    planned = plan(Verb.ROLLBACK, world.state, environment="x", production=False)
    assert planned.change == "web:2 → web:1" and "roll forward" in planned.effect
    assert await world.act(Verb.ROLLBACK) == "update_service"
    final = await world.until(
        "web:1 deployed again",
        lambda s: s.status is EcsStatus.COMPLETED and primary_revision(s) == "web:1",
        45,
    )
    assert final.sample is not None and final.sample.running == 4


async def test_native_canary_promote_then_roll_back_at_the_hook(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    sandbox = await asyncio.to_thread(sandbox_process, "canary", speed=4)
    world = World(sandbox.aws_endpoint, "canary", tmp_path)

    def waiting(s: ServiceState) -> bool:
        sd = s.sample.service_deployments[0] if s.sample and s.sample.service_deployments else None
        return sd is not None and sd.awaiting_hook is not None

    first = await world.until("the PAUSE hook waits", waiting, 45)
    assert first.sample is not None
    first_hook = first.sample.service_deployments[0].awaiting_hook
    assert first_hook is not None
    pause = plan(Verb.PAUSE, first, environment="x", production=False)
    assert not pause.enabled and "already paused" in (pause.disabled_reason or "")
    assert plan(Verb.PROMOTE, first, environment="x", production=False).kind == "ECS canary"
    assert await world.act(Verb.PROMOTE) == "continue_service_deployment"

    first_progress = progress(first)

    def waiting_again(s: ServiceState) -> bool:
        sd = s.sample.service_deployments[0] if s.sample and s.sample.service_deployments else None
        return sd is not None and sd.awaiting_hook is not None and progress(s) != first_progress

    # CONTINUE moved the canary on: the next traffic step's hook waits (or a new stage).
    await world.until("the canary moved past the first hook", waiting_again, 45)
    rollback = plan(Verb.ROLLBACK, world.state, environment="x", production=False)
    assert rollback.call is not None and rollback.call.params.get("action") == "ROLLBACK"
    assert await world.act(Verb.ROLLBACK) == "continue_service_deployment"
    final = await world.until(
        "ROLLBACK_SUCCESSFUL", lambda s: s.status is EcsStatus.ROLLBACK_SUCCESSFUL, 60
    )
    assert primary_revision(final) == "web:1"


async def test_codedeploy_promote_then_stop_with_rollback(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    sandbox = await asyncio.to_thread(sandbox_process, "codedeploy", speed=4)
    world = World(sandbox.aws_endpoint, "codedeploy", tmp_path, codedeploy=("web", "web-dg"))

    def status(s: ServiceState) -> str | None:
        cd = s.sample.codedeploy if s.sample is not None else None
        return cd.status if cd is not None else None

    ready = await world.until(
        "the deployment waits at READY_WAIT", lambda s: status(s) == "Ready", 45
    )
    pause = plan(Verb.PAUSE, ready, environment="x", production=False)
    assert pause.kind == "CodeDeploy blue/green" and not pause.enabled
    promote = plan(Verb.PROMOTE, ready, environment="x", production=False)
    assert promote.call is not None
    assert promote.call.params["deploymentWaitType"] == "READY_WAIT"
    assert await world.act(Verb.PROMOTE) == "continue_deployment"
    await world.until("traffic rerouting", lambda s: status(s) not in (None, "Ready"), 30)
    rollback = plan(Verb.ROLLBACK, world.state, environment="x", production=False)
    assert rollback.call is not None and rollback.call.params["autoRollbackEnabled"] is True
    assert ready.sample is not None and ready.sample.codedeploy is not None
    original = ready.sample.codedeploy.id
    assert await world.act(Verb.ROLLBACK) == "stop_deployment"

    def rolled_back(s: ServiceState) -> bool:
        cd = s.sample.codedeploy if s.sample is not None else None
        # CodeDeploy answers the stop with a rollback deployment of the original.
        return cd is not None and cd.rollback_of == original and cd.status == "Succeeded"

    final = await world.until("the rollback deployment succeeded", rolled_back, 45)
    assert not plan(Verb.ROLLBACK, final, environment="x", production=False).enabled
    cd = await asyncio.to_thread(world.aws.client, "codedeploy")
    stopped = (await asyncio.to_thread(cd.get_deployment, deploymentId=original))["deploymentInfo"]
    assert stopped["status"] == "Stopped"


async def test_read_only_changes_nothing_in_the_sandbox(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    sandbox = await asyncio.to_thread(sandbox_process, "bad-release", speed=8)
    world = World(sandbox.aws_endpoint, "rehearsal", tmp_path, read_only=True)
    await world.until("web:2 rolling out", lambda s: newest_status(s) == "IN_PROGRESS", 30)
    planned = plan(Verb.ROLLBACK, world.state, environment="x", production=False)
    result = await world.engine.request(planned)
    assert result.outcome is Outcome.REFUSED
    final = await world.until("web:2 completed", lambda s: s.status is EcsStatus.COMPLETED, 60)
    assert primary_revision(final) == "web:2"  # the rollout went on untouched
    assert [e["phase"] for e in await asyncio.to_thread(world.engine.audit.read)] == ["refused"]


async def test_alb_canary_promote_hold_and_roll_back(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    sandbox = await asyncio.to_thread(sandbox_process, "alb-canary", speed=4)
    settings = await asyncio.to_thread(load_config, Path(sandbox.config_path))
    canary = settings.services[0].canary
    assert canary is not None
    world = World(sandbox.aws_endpoint, "alb", tmp_path)
    world.source = EcsSource(
        [
            EcsTarget(
                world.key,
                "alb",
                "web",
                alb=AlbTarget(
                    canary.listener_arn,
                    canary.rule_arn,
                    canary.stable_target_group_arn,
                    canary.canary_target_group_arn,
                ),
            )
        ],
        region="us-east-1",
        endpoint_url=sandbox.aws_endpoint,
    )
    driver = CanaryDriver(world.key, canary)

    def hold(call: object) -> dict[str, bool]:
        driver.held = True
        return {"held": True}

    world.engine.local["hold_canary"] = hold

    def weight(s: ServiceState) -> float | None:
        alb = s.sample.alb if s.sample is not None else None
        return alb.canary_percent if alb is not None else None

    async def act(verb: Verb) -> None:
        driver.observe(world.state.sample.alb if world.state.sample else None, datetime.now(UTC))
        planned = plan(verb, world.state, environment="x", production=False, canary=driver)
        assert planned.enabled, planned.disabled_reason
        result = await world.engine.request(planned)
        assert result.outcome is Outcome.DONE, result.message

    await world.until("the listener at stable 100 / canary 0", lambda s: weight(s) == 0, 30)
    await act(Verb.PROMOTE)  # starts the canary at its first step
    await world.until("canary at 10 %", lambda s: weight(s) == 10, 15)
    await act(Verb.PROMOTE)
    await world.until("canary at 25 %", lambda s: weight(s) == 25, 15)
    await act(Verb.PAUSE)  # our own hold: no AWS call, audited
    assert driver.held
    await act(Verb.ROLLBACK)
    await world.until("canary back to 0 %", lambda s: weight(s) == 0, 15)
    elbv2 = await asyncio.to_thread(world.aws.client, "elbv2")
    listener = (
        await asyncio.to_thread(elbv2.describe_listeners, ListenerArns=[canary.listener_arn])
    )["Listeners"][0]
    groups = listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    assert {g["TargetGroupArn"]: g["Weight"] for g in groups} == {
        canary.stable_target_group_arn: 100,
        canary.canary_target_group_arn: 0,
    }
    operations = [
        e["call"]["operation"]
        for e in await asyncio.to_thread(world.engine.audit.read)
        if e["phase"] == "intent"
    ]
    assert operations == ["modify_listener", "modify_listener", "hold_canary", "modify_listener"]
