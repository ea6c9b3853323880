"""Deployment kinds in the sandbox: ECS native canary / linear / blue/green with lifecycle
hooks, observed through real boto3 against the sandbox's moto endpoint and through the
front proxy's request log (the traffic split that really happened)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from sandbox.runtime import Sandbox
    from tests.conftest import StartSandbox

pytestmark = pytest.mark.integration

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll ``probe`` until it returns something truthy, within a real-time deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def newest_sd(client: Any, cluster: str, service: str) -> dict[str, Any] | None:
    """The newest service deployment, if it is not the service's first one."""
    briefs = client.list_service_deployments(cluster=cluster, service=service)
    if len(briefs["serviceDeployments"]) < 2:
        return None
    arn = briefs["serviceDeployments"][0]["serviceDeploymentArn"]
    found = client.describe_service_deployments(serviceDeploymentArns=[arn])
    assert not found["failures"]
    sd: dict[str, Any] = found["serviceDeployments"][0]
    return sd


def describe_sd(client: Any, arn: str) -> dict[str, Any]:
    found = client.describe_service_deployments(serviceDeploymentArns=[arn])
    assert not found["failures"]
    sd: dict[str, Any] = found["serviceDeployments"][0]
    return sd


PROXY_SETTLE_S = 1.0
"""The proxy reuses a weights answer for 0.5 s and requests take a few ms: a split
change shows in the request log within this long."""


def served_split(world: Sandbox, service: str, seconds: float) -> dict[str, int]:
    """Requests per version the proxy served over ``seconds`` real seconds, after the
    proxy had time to pick up the current weights."""
    time.sleep(PROXY_SETTLE_S)
    start = time.time()
    time.sleep(seconds)
    counts: dict[str, int] = {}
    for record in world.request_log.query(start, time.time(), service=service):
        counts[record.version] = counts.get(record.version, 0) + 1
    return counts


def awaiting_hook(sd: dict[str, Any]) -> dict[str, Any] | None:
    return next(
        (h for h in sd.get("lifecycleHookDetails", []) if h["status"] == "AWAITING_ACTION"), None
    )


# --------------------------------------------------------------------------- canary + PAUSE


def test_canary_pause_hook_continue_then_rollback(sandbox_world: StartSandbox) -> None:
    world = sandbox_world("canary", speed=8.0)
    client = world.client()
    assert world.info()["services"]["web"]["split"] == "ecs-traffic-shift"
    service = client.describe_services(cluster="canary", services=["web"])["services"][0]
    assert service["deploymentController"] == {"type": "ECS"}
    assert service["deploymentConfiguration"]["strategy"] == "CANARY"

    # The PAUSE hook waits before any production traffic moves; green is fully up.
    sd = wait_for(
        "the first PAUSE hook",
        lambda: (s := newest_sd(client, "canary", "web")) and awaiting_hook(s) and s,
    )
    arn = sd["serviceDeploymentArn"]
    assert sd["status"] == "IN_PROGRESS"
    assert sd["lifecycleStage"] == "PRODUCTION_TRAFFIC_SHIFT"
    assert sd["deploymentConfiguration"]["strategy"] == "CANARY"
    assert sd["deploymentConfiguration"]["canaryConfiguration"]["canaryPercent"] == 20.0
    hook = awaiting_hook(sd)
    assert hook is not None
    assert hook["targetType"] == "PAUSE"
    assert hook["hookId"].startswith("ecs-pause-")
    assert hook["timeoutAction"] == "ROLLBACK"
    assert "targetArn" not in hook
    assert sd["targetServiceRevision"]["requestedProductionTrafficWeight"] == 0.0
    assert sd["targetServiceRevision"]["runningTaskCount"] == 4
    assert sd["targetServiceRevision"]["requestedTestTrafficWeight"] == 100.0
    (blue,) = sd["sourceServiceRevisions"]
    assert blue["requestedProductionTrafficWeight"] == 100.0
    assert blue["runningTaskCount"] == 4
    assert served_split(world, "web", 1.0).keys() == {"v1"}

    # Wrong answers are refused, and change nothing.
    with pytest.raises(ClientError) as unknown:
        client.continue_service_deployment(
            serviceDeploymentArn=arn, hookId="ecs-pause-nope", action="CONTINUE"
        )
    assert error_code(unknown) == "InvalidParameterException"
    with pytest.raises(ClientError) as missing:
        client.continue_service_deployment(
            serviceDeploymentArn=arn + "x", hookId=hook["hookId"], action="CONTINUE"
        )
    assert error_code(missing) == "ServiceDeploymentNotFoundException"
    with pytest.raises(ClientError) as abort:
        client.stop_service_deployment(serviceDeploymentArn=arn, stopType="ABORT")
    assert error_code(abort) == "InvalidParameterException"

    # CONTINUE: the canary takes 20 % of production traffic.
    answer = client.continue_service_deployment(
        serviceDeploymentArn=arn, hookId=hook["hookId"], action="CONTINUE"
    )
    assert answer["serviceDeploymentArn"] == arn
    with pytest.raises(ClientError) as again:
        client.continue_service_deployment(
            serviceDeploymentArn=arn, hookId=hook["hookId"], action="CONTINUE"
        )
    assert error_code(again) == "InvalidParameterException"
    wait_for(
        "20 % on green",
        lambda: (
            describe_sd(client, arn)["targetServiceRevision"]["requestedProductionTrafficWeight"]
            == 20.0
        ),
    )
    split = served_split(world, "web", 2.5)
    total = split.get("v1", 0) + split.get("v2", 0)
    assert total >= 20
    assert 0.1 <= split.get("v2", 0) / total <= 0.3, split

    # After the canary bake, the hook waits again before the remaining 80 %: ROLLBACK.
    def second_hook() -> dict[str, Any] | None:
        waiting = awaiting_hook(describe_sd(client, arn))
        return waiting if waiting is not None and waiting != hook else None

    second = wait_for("the second PAUSE hook", second_hook)
    assert second["hookId"] != hook["hookId"]
    client.continue_service_deployment(
        serviceDeploymentArn=arn, hookId=second["hookId"], action="ROLLBACK"
    )
    statuses: list[str] = []

    def rolled_back() -> bool:
        statuses.append(describe_sd(client, arn)["status"])
        return statuses[-1] == "ROLLBACK_SUCCESSFUL"

    wait_for("ROLLBACK_SUCCESSFUL", rolled_back)
    assert statuses[0] in ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS", "ROLLBACK_SUCCESSFUL")
    sd = describe_sd(client, arn)
    assert sd["rollback"]["serviceRevisionArn"] == blue["arn"]
    assert sd["targetServiceRevision"]["requestedProductionTrafficWeight"] == 0.0
    assert sd["targetServiceRevision"]["runningTaskCount"] == 0
    service = client.describe_services(cluster="canary", services=["web"])["services"][0]
    assert [(d["status"], d["taskDefinition"].split("/")[-1]) for d in service["deployments"]] == [
        ("PRIMARY", "web:1")
    ]
    assert service["runningCount"] == 4
    assert served_split(world, "web", 1.0).keys() == {"v1"}
    assert world.scheduler.error is None
    assert world.timeline_errors == []


# --------------------------------------------------------------------------- linear


LINEAR = """
description = "test: linear 25 % steps"
cluster = "t"

[[service]]
name = "web"
desired_count = 2
initial_version = "v1"
stop_seconds = 1
steady_seconds = 1
rate = 30

[service.deployment]
strategy = "LINEAR"
minute_seconds = 4
bake_time_minutes = 1
linear = { step_percent = 25.0, step_bake_time_minutes = 1 }

[[service.deployment.hook]]
type = "AWS_LAMBDA"
stages = ["POST_SCALE_UP"]
target_arn = "arn:aws:lambda:us-east-1:123456789012:function:smoke"

[service.versions.v1]
start_seconds = 1

[service.versions.v2]
start_seconds = 1

[[timeline]]
at = 1
action = "deploy"
service = "web"
version = "v2"
"""


def test_linear_steps_to_success(sandbox_world: StartSandbox, tmp_path: Path) -> None:
    path = tmp_path / "linear.toml"
    path.write_text(LINEAR)
    # Speed 4: each 25 % step stands for 1 s of real time, so a poll every 0.1 s sees it
    # even on two loaded cores (at speed 8 a clean-clone CI beside a busy core missed
    # the 25 % step twice).
    world = sandbox_world(str(path), speed=4.0)
    client = world.client()
    weights: list[float] = []
    stages: list[str] = []
    served: set[str] = set()
    started = time.time()

    def done() -> dict[str, Any] | None:
        sd = newest_sd(client, "t", "web")
        if sd is None:
            return None
        weight = sd["targetServiceRevision"]["requestedProductionTrafficWeight"]
        if not weights or weights[-1] != weight:
            weights.append(weight)
        if not stages or stages[-1] != sd["lifecycleStage"]:
            stages.append(sd["lifecycleStage"])
        return sd if sd["status"] == "SUCCESSFUL" else None

    sd = wait_for("the linear deployment to succeed", done, timeout=60)
    assert [w for w in weights if w > 0] == [25.0, 50.0, 75.0, 100.0]
    for stage in ("SCALE_UP", "PRODUCTION_TRAFFIC_SHIFT", "BAKE_TIME", "CLEAN_UP"):
        assert stage in stages, stages
    assert stages.index("BAKE_TIME") < stages.index("CLEAN_UP")
    assert sd["targetServiceRevision"]["runningTaskCount"] == 2
    assert sd["sourceServiceRevisions"][0]["runningTaskCount"] == 0
    served = {r.version for r in world.request_log.query(started, service="web")}
    assert served == {"v1", "v2"}
    assert served_split(world, "web", 1.0).keys() == {"v2"}
    service = client.describe_services(cluster="t", services=["web"])["services"][0]
    assert [(d["status"], d["rolloutState"]) for d in service["deployments"]] == [
        ("PRIMARY", "COMPLETED")
    ]
    assert service["taskDefinition"].endswith("/web:2")
    assert world.scheduler.error is None


# --------------------------------------------------------------------------- blue/green


BLUE_GREEN = """
description = "test: blue/green with a long bake"
cluster = "t"

[[service]]
name = "web"
desired_count = 3
initial_version = "v1"
stop_seconds = 1
steady_seconds = 1
rate = 30

[service.deployment]
strategy = "BLUE_GREEN"
minute_seconds = 60
bake_time_minutes = 10

[[service.deployment.hook]]
type = "PAUSE"
stages = ["POST_SCALE_UP"]
timeout_minutes = 1
timeout_action = "CONTINUE"

[service.versions.v1]
start_seconds = 1

[service.versions.v2]
start_seconds = 1

[[timeline]]
at = 1
action = "deploy"
service = "web"
version = "v2"
"""


def test_blue_green_hook_timeout_then_stop_rolls_back(
    sandbox_world: StartSandbox, tmp_path: Path
) -> None:
    path = tmp_path / "bluegreen.toml"
    path.write_text(BLUE_GREEN)
    world = sandbox_world(str(path), speed=12.0)
    client = world.client()
    # The PAUSE hook times out after one minute (5 s real) and CONTINUEs on its own.
    sd = wait_for(
        "the POST_SCALE_UP hook",
        lambda: (s := newest_sd(client, "t", "web")) and awaiting_hook(s) and s,
    )
    arn = sd["serviceDeploymentArn"]
    assert sd["lifecycleStage"] == "POST_SCALE_UP"
    hook = awaiting_hook(sd)
    assert hook is not None and hook["timeoutAction"] == "CONTINUE"
    assert hook["expiresAt"] > sd["startedAt"]
    # All at once: production is 100 % green during the bake, blue still runs.
    baking = wait_for(
        "BAKE_TIME",
        lambda: (s := describe_sd(client, arn))["lifecycleStage"] == "BAKE_TIME" and s,
        timeout=20,
    )
    assert baking["targetServiceRevision"]["requestedProductionTrafficWeight"] == 100.0
    assert baking["sourceServiceRevisions"][0]["runningTaskCount"] == 3
    assert served_split(world, "web", 1.0).keys() == {"v2"}

    client.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    wait_for(
        "ROLLBACK_SUCCESSFUL", lambda: describe_sd(client, arn)["status"] == "ROLLBACK_SUCCESSFUL"
    )
    assert served_split(world, "web", 1.0).keys() == {"v1"}
    service = client.describe_services(cluster="t", services=["web"])["services"][0]
    assert [(d["status"], d["taskDefinition"].split("/")[-1]) for d in service["deployments"]] == [
        ("PRIMARY", "web:1")
    ]
    assert world.scheduler.error is None


# --------------------------------------------------------------------------- CodeDeploy


def codedeploy(world: Sandbox) -> Any:
    from sandbox.runtime import aws_client

    return aws_client("codedeploy", world.aws_endpoint, world.region)


def cd_error(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def ecs_target(client: Any, deployment_id: str) -> dict[str, Any]:
    (target_id,) = client.list_deployment_targets(deploymentId=deployment_id)["targetIds"]
    target = client.get_deployment_target(deploymentId=deployment_id, targetId=target_id)
    assert target["deploymentTarget"]["deploymentTargetType"] == "ECSTarget"
    ecs: dict[str, Any] = target["deploymentTarget"]["ecsTarget"]
    return ecs


def weights_by_label(target: dict[str, Any]) -> dict[str, float]:
    return {t["taskSetLabel"]: t["trafficWeight"] for t in target["taskSetsInfo"]}


def test_codedeploy_ready_wait_canary_then_stop_rolls_back(sandbox_world: StartSandbox) -> None:
    world = sandbox_world("codedeploy", speed=8.0)
    client = codedeploy(world)
    ecs = world.client()
    assert world.info()["services"]["web"]["codedeploy"] == {
        "application": "web",
        "deployment_group": "web-dg",
    }
    service = ecs.describe_services(cluster="codedeploy", services=["web"])["services"][0]
    assert service["deploymentController"] == {"type": "CODE_DEPLOY"}

    def deployment_in(status: str) -> dict[str, Any] | None:
        ids = client.list_deployments(applicationName="web", deploymentGroupName="web-dg")
        if not ids["deployments"]:
            return None
        info: dict[str, Any] = client.get_deployment(deploymentId=ids["deployments"][0])[
            "deploymentInfo"
        ]
        return info if info["status"] == status else None

    ready = wait_for("status Ready", lambda: deployment_in("Ready"))
    deployment_id = ready["deploymentId"]
    assert ready["computePlatform"] == "ECS"
    assert ready["deploymentConfigName"] == "CodeDeployDefault.ECSCanary10Percent5Minutes"
    target = ecs_target(client, deployment_id)
    assert target["status"] == "Ready"
    assert target["targetId"] == "codedeploy:web"
    assert weights_by_label(target) == {"Blue": 100.0, "Green": 0.0}
    green = next(t for t in target["taskSetsInfo"] if t["taskSetLabel"] == "Green")
    assert green["runningCount"] == 4
    assert green["targetGroup"] == {"name": "web-green"}
    assert served_split(world, "web", 1.0).keys() == {"v1"}
    with pytest.raises(ClientError) as wrong:
        client.continue_deployment(
            deploymentId=deployment_id, deploymentWaitType="TERMINATION_WAIT"
        )
    assert cd_error(wrong) == "InvalidDeploymentWaitTypeException"

    client.continue_deployment(deploymentId=deployment_id, deploymentWaitType="READY_WAIT")
    info = client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    assert info["status"] == "InProgress"
    assert weights_by_label(ecs_target(client, deployment_id)) == {"Blue": 90.0, "Green": 10.0}
    split = served_split(world, "web", 2.5)
    total = split.get("v1", 0) + split.get("v2", 0)
    assert total >= 20
    assert 0.03 <= split.get("v2", 0) / total <= 0.2, split
    with pytest.raises(ClientError) as not_waiting:
        client.continue_deployment(deploymentId=deployment_id, deploymentWaitType="READY_WAIT")
    assert cd_error(not_waiting) == "DeploymentIsNotInReadyStateException"

    # StopDeployment with rollback: Stopped, and a rollback deployment restores blue.
    answer = client.stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True)
    assert answer["status"] == "Pending"
    info = client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    assert info["status"] == "Stopped"
    assert info["errorInformation"]["code"] == "MANUAL_STOP"
    rollback_id = info["rollbackInfo"]["rollbackDeploymentId"]
    rollback = wait_for(
        "the rollback deployment to succeed",
        lambda: (
            (d := client.get_deployment(deploymentId=rollback_id)["deploymentInfo"])["status"]
            == "Succeeded"
            and d
        ),
    )
    assert rollback["creator"] == "codeDeployRollback"
    assert rollback["rollbackInfo"]["rollbackTriggeringDeploymentId"] == deployment_id
    assert served_split(world, "web", 1.0).keys() == {"v1"}
    task_sets = ecs.describe_services(cluster="codedeploy", services=["web"])["services"][0][
        "taskSets"
    ]
    assert [
        (t["status"], t["taskDefinition"].split("/")[-1], t["runningCount"]) for t in task_sets
    ] == [("PRIMARY", "web:1", 4)]
    with pytest.raises(ClientError) as done:
        client.stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True)
    assert cd_error(done) == "DeploymentAlreadyCompletedException"
    assert world.scheduler.error is None
    assert world.timeline_errors == []


CODEDEPLOY_ALL_AT_ONCE = """
description = "test: CodeDeploy all at once, long termination wait"
cluster = "t"

[[service]]
name = "api"
desired_count = 2
initial_version = "v1"
stop_seconds = 1
rate = 30

[service.deployment]
controller = "CODE_DEPLOY"
codedeploy_config = "CodeDeployDefault.ECSAllAtOnce"
termination_wait_minutes = 60

[service.versions.v1]
start_seconds = 1

[service.versions.v2]
start_seconds = 1

[[timeline]]
at = 1
action = "deploy"
service = "api"
version = "v2"
"""


def test_codedeploy_termination_wait_continue_succeeds(
    sandbox_world: StartSandbox, tmp_path: Path
) -> None:
    path = tmp_path / "cd.toml"
    path.write_text(CODEDEPLOY_ALL_AT_ONCE)
    world = sandbox_world(str(path), speed=8.0)
    client = codedeploy(world)
    ecs = world.client()
    # Updating the task definition of a CODE_DEPLOY service is refused, as in ECS.
    with pytest.raises(ClientError) as refused:
        ecs.update_service(cluster="t", service="api", taskDefinition="api:1")
    assert cd_error(refused) == "InvalidParameterException"

    def terminating() -> dict[str, Any] | None:
        ids = client.list_deployments(applicationName="api", deploymentGroupName="api-dg")
        if not ids["deployments"]:
            return None
        info: dict[str, Any] = client.get_deployment(deploymentId=ids["deployments"][0])[
            "deploymentInfo"
        ]
        return info if info.get("instanceTerminationWaitTimeStarted") else None

    info = wait_for("TERMINATION_WAIT", terminating)
    deployment_id = info["deploymentId"]
    assert info["status"] == "InProgress"
    target = ecs_target(client, deployment_id)
    assert weights_by_label(target) == {"Blue": 0.0, "Green": 100.0}
    statuses = {t["taskSetLabel"]: t["status"] for t in target["taskSetsInfo"]}
    assert statuses == {"Blue": "ACTIVE", "Green": "PRIMARY"}
    assert served_split(world, "api", 1.0).keys() == {"v2"}
    events = {e["lifecycleEventName"]: e["status"] for e in target["lifecycleEvents"]}
    assert events["AllowTraffic"] == "Succeeded"

    client.continue_deployment(deploymentId=deployment_id, deploymentWaitType="TERMINATION_WAIT")
    done = wait_for(
        "Succeeded",
        lambda: (
            (d := client.get_deployment(deploymentId=deployment_id)["deploymentInfo"])["status"]
            == "Succeeded"
            and d
        ),
    )
    assert done["completeTime"] >= done["startTime"]
    task_sets = ecs.describe_services(cluster="t", services=["api"])["services"][0]["taskSets"]
    assert [(t["status"], t["taskDefinition"].split("/")[-1]) for t in task_sets] == [
        ("PRIMARY", "api:2")
    ]
    assert ecs_target(client, deployment_id)["status"] == "Succeeded"
    assert world.scheduler.error is None
    assert world.timeline_errors == []
