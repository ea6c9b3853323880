"""The sandbox's ECS world, observed through real boto3 against its moto endpoint."""

from __future__ import annotations

import math
import re
import time
import tomllib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from botocore.exceptions import ClientError

from sandbox.scenario import ScenarioError, parse_scenario
from tests.conftest import ecs_client

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.conftest import StartSandbox, StartSandboxProcess

pytestmark = pytest.mark.integration

T = TypeVar("T")

TASK_LIST = r"(?:\(task [0-9a-f]{32}\) ?)+"
EVENT_FORMS = {
    "started": re.compile(rf"^\(service [\w-]+\) has started \d+ tasks: {TASK_LIST}\.$"),
    "stopped": re.compile(rf"^\(service [\w-]+\) has stopped \d+ running tasks: {TASK_LIST}\.$"),
    "steady": re.compile(r"^\(service [\w-]+\) has reached a steady state\.$"),
    "completed": re.compile(
        r"^\(service [\w-]+\) \(deployment ecs-svc/\d+\) deployment completed\.$"
    ),
    "failed": re.compile(
        r"^\(service [\w-]+\) \(deployment ecs-svc/\d+\) deployment failed: "
        r"tasks failed to start\.$"
    ),
    "rolling back": re.compile(r"^\(service [\w-]+\) rolling back to deployment ecs-svc/\d+\.$"),
}
BREAKER_REASON = "ECS deployment circuit breaker: tasks failed to start."


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    """Poll ``probe`` until it returns something truthy, within a real-time deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def event_kind(message: str) -> str:
    for kind, pattern in EVENT_FORMS.items():
        if pattern.match(message):
            return kind
    raise AssertionError(f"event not in ECS wording: {message!r}")


class Observer:
    """Polls ``describe_services`` and checks invariants on every answer."""

    def __init__(self, client: Any, cluster: str, services: list[str]) -> None:
        self.client = client
        self.cluster = cluster
        self.services = services
        self.events: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.polls = 0

    def poll(self) -> dict[str, dict[str, Any]]:
        answer = self.client.describe_services(cluster=self.cluster, services=self.services)
        assert not answer["failures"]
        result = {s["serviceName"]: s for s in answer["services"]}
        for service in result.values():
            self.check_bounds(service)
            self.check_events(service)
            for d in service["deployments"]:
                self.deployments[d["id"]] = d
        self.polls += 1
        return result

    @staticmethod
    def check_bounds(service: dict[str, Any]) -> None:
        desired = service["desiredCount"]
        config = service["deploymentConfiguration"]
        max_live = math.floor(desired * config["maximumPercent"] / 100)
        min_healthy = math.ceil(desired * config["minimumHealthyPercent"] / 100)
        live = sum(d["runningCount"] + d["pendingCount"] for d in service["deployments"])
        assert live <= max_live, f"{service['serviceName']}: {live} tasks > maximum {max_live}"
        running = service["runningCount"]
        assert running >= min_healthy, f"{service['serviceName']}: {running} < {min_healthy}"
        assert running == sum(d["runningCount"] for d in service["deployments"])
        assert [d["status"] for d in service["deployments"]][:1] == ["PRIMARY"]

    def check_events(self, service: dict[str, Any]) -> None:
        events = service["events"]
        assert len(events) <= 100
        ids = [e["id"] for e in events]
        assert len(ids) == len(set(ids)), "event ids repeat"
        stamps = [e["createdAt"] for e in events]
        assert stamps == sorted(stamps, reverse=True), "events are not newest first"
        for event in events:
            event_kind(event["message"])
            known = self.events.setdefault(event["id"], event)
            assert known["message"] == event["message"], "an event id changed its message"

    def kinds(self, service: str) -> set[str]:
        return {
            event_kind(e["message"])
            for e in self.events.values()
            if e["message"].startswith(f"(service {service}) ")
        }


def newest_service_deployment(client: Any, cluster: str, service: str) -> dict[str, Any]:
    briefs = client.list_service_deployments(cluster=cluster, service=service)
    arn = briefs["serviceDeployments"][0]["serviceDeploymentArn"]
    found = client.describe_service_deployments(serviceDeploymentArns=[arn])
    assert not found["failures"]
    deployment: dict[str, Any] = found["serviceDeployments"][0]
    return deployment


def revision_task_definition(client: Any, arn: str) -> str:
    answer = client.describe_service_revisions(serviceRevisionArns=[arn])
    assert not answer["failures"]
    return str(answer["serviceRevisions"][0]["taskDefinition"])


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


# --------------------------------------------------------------------------- the demo


def test_demo_story_through_the_sandbox_process(sandbox_process: StartSandboxProcess) -> None:
    began = datetime.now(UTC)
    proc = sandbox_process("demo", speed=8.0)
    config = tomllib.loads(proc.config_path.read_text(encoding="utf-8"))
    assert config["aws"] == {"region": "us-east-1", "endpoint_url": proc.aws_endpoint}
    assert proc.aws_endpoint.startswith("http://127.0.0.1:")
    # The demo bakes web once its rollout completes (the scenario's bake_seconds).
    assert config["environment"] == {"name": "sandbox-demo", "production": False, "bake": "45s"}
    assert [s["service"] for s in config["service"]] == ["web", "api"]
    text = proc.config_path.read_text()
    for secret in ("DD_API_KEY", "DD_APP_KEY", "SENTRY_AUTH_TOKEN"):
        assert proc.client_env[secret] not in text, "no credentials in the config file"
    assert "aws_access_key_id" not in text.lower(), "no credentials in the config file"

    client = ecs_client(proc.aws_endpoint, proc.region)
    observer = Observer(client, "demo", ["web", "api"])

    def story_done() -> bool:
        services = observer.poll()
        web, api = services["web"]["deployments"], services["api"]["deployments"]
        failed = [d for d in observer.deployments.values() if d["rolloutState"] == "FAILED"]
        return (
            len(web) == 1
            and web[0]["taskDefinition"].endswith("/web:2")
            and web[0]["rolloutState"] == "COMPLETED"
            and bool(failed)
            and len(api) == 1
            and api[0]["taskDefinition"].endswith("/api:1")
            and api[0]["rolloutState"] == "COMPLETED"
        )

    wait_for("web v2 to complete and api to roll back", story_done, timeout=30)
    assert observer.polls > 20

    # web: the clean rollout
    web_sd = newest_service_deployment(client, "demo", "web")
    assert web_sd["status"] == "SUCCESSFUL"
    target = web_sd["targetServiceRevision"]
    assert revision_task_definition(client, target["arn"]).endswith("/web:2")
    assert target["runningTaskCount"] == 4
    assert revision_task_definition(client, web_sd["sourceServiceRevisions"][0]["arn"]).endswith(
        "/web:1"
    )
    assert web_sd["deploymentConfiguration"]["maximumPercent"] == 150
    # API timestamps are wall-clock UTC, not sandbox time: 8x speed means a short real span.
    assert began <= web_sd["createdAt"] <= web_sd["startedAt"] <= web_sd["finishedAt"]
    assert web_sd["finishedAt"] - web_sd["startedAt"] < timedelta(seconds=10)
    assert {"started", "stopped", "completed", "steady"} <= observer.kinds("web")

    # api: the breaker trips and ECS rolls back
    failed = [d for d in observer.deployments.values() if d["rolloutState"] == "FAILED"]
    assert failed[0]["taskDefinition"].endswith("/api:2")
    assert failed[0]["rolloutStateReason"] == BREAKER_REASON
    api_sd = newest_service_deployment(client, "demo", "api")
    assert api_sd["status"] == "ROLLBACK_SUCCESSFUL"
    breaker = api_sd["deploymentCircuitBreaker"]
    assert breaker["status"] == "TRIGGERED"
    assert breaker["threshold"] == 3  # clamp(ceil(0.5 * 4), 3, 200)
    assert breaker["failureCount"] >= breaker["threshold"]
    assert max(d["failedTasks"] for d in failed) >= breaker["threshold"]
    assert api_sd["rollback"]["reason"] == BREAKER_REASON
    assert revision_task_definition(client, api_sd["rollback"]["serviceRevisionArn"]).endswith(
        "/api:1"
    )
    assert {"started", "failed", "rolling back", "completed", "steady"} <= observer.kinds("api")


# --------------------------------------------------------------------------- stop, rollback


STOPPABLE = """
description = "test: a rollout slow enough to stop"
cluster = "t"

[[service]]
name = "web"
desired_count = 4
initial_version = "v1"
stop_seconds = 1
steady_seconds = 1

[service.deployment]
minimum_healthy_percent = 100
maximum_percent = 150

[service.versions.v1]
start_seconds = 2

[service.versions.v2]
start_seconds = 4

[service.versions.v3]
start_seconds = 600
"""


def deploy(client: Any, cluster: str, service: str, image: str) -> str:
    """Deploy like a CI pipeline: register a task definition, point the service at it."""
    td = client.register_task_definition(
        family=service,
        networkMode="bridge",
        containerDefinitions=[{"name": service, "image": image, "memory": 256}],
    )["taskDefinition"]["taskDefinitionArn"]
    client.update_service(cluster=cluster, service=service, taskDefinition=td)
    return str(td)


def test_stop_service_deployment_rolls_back_and_aborts(
    sandbox_world: StartSandbox, tmp_path: Path
) -> None:
    path = tmp_path / "stoppable.toml"
    path.write_text(STOPPABLE)
    world = sandbox_world(str(path), speed=6.0)
    client = world.client()
    observer = Observer(client, "t", ["web"])

    v2 = deploy(client, "t", "web", "registry.local/web:v2")
    assert v2.endswith("/web:2")

    def v2_partly_running() -> bool:
        primary = observer.poll()["web"]["deployments"][0]
        return bool(primary["taskDefinition"] == v2 and primary["runningCount"] >= 1)

    wait_for("v2 tasks running", v2_partly_running, timeout=15)
    assert world.scheduler.task_mix("t", "web").get("v2", 0) >= 1
    sd_arn = client.list_service_deployments(cluster="t", service="web", status=["IN_PROGRESS"])[
        "serviceDeployments"
    ][0]["serviceDeploymentArn"]

    answer = client.stop_service_deployment(serviceDeploymentArn=sd_arn, stopType="ROLLBACK")
    assert answer["serviceDeploymentArn"] == sd_arn
    statuses: list[str] = []

    def rolled_back() -> bool:
        observer.poll()
        sd = client.describe_service_deployments(serviceDeploymentArns=[sd_arn])
        statuses.append(sd["serviceDeployments"][0]["status"])
        return statuses[-1] == "ROLLBACK_SUCCESSFUL"

    wait_for("ROLLBACK_SUCCESSFUL", rolled_back, timeout=20)
    assert statuses[0] in ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
    assert "ROLLBACK_IN_PROGRESS" in statuses
    assert statuses.index("ROLLBACK_IN_PROGRESS") < statuses.index("ROLLBACK_SUCCESSFUL")

    sd = client.describe_service_deployments(serviceDeploymentArns=[sd_arn])
    sd = sd["serviceDeployments"][0]
    assert revision_task_definition(client, sd["rollback"]["serviceRevisionArn"]).endswith("/web:1")
    service = observer.poll()["web"]
    assert [(d["status"], d["rolloutState"]) for d in service["deployments"]] == [
        ("PRIMARY", "COMPLETED")
    ]
    assert service["taskDefinition"].endswith("/web:1")
    assert service["runningCount"] == 4
    running = client.list_tasks(cluster="t", desiredStatus="RUNNING")["taskArns"]
    tasks = client.describe_tasks(cluster="t", tasks=running)["tasks"]
    assert (
        sorted((t["lastStatus"], t["taskDefinitionArn"].split("/")[-1]) for t in tasks)
        == [("RUNNING", "web:1")] * 4
    )
    assert world.scheduler.task_mix("t", "web") == {"v1": 4}
    assert {"rolling back", "stopped", "started", "completed"} <= observer.kinds("web")

    # A terminal service deployment cannot be stopped; unknown ARNs are reported as such.
    with pytest.raises(ClientError) as terminal:
        client.stop_service_deployment(serviceDeploymentArn=sd_arn, stopType="ROLLBACK")
    assert error_code(terminal) == "InvalidParameterException"
    with pytest.raises(ClientError) as unknown:
        client.stop_service_deployment(serviceDeploymentArn=sd_arn + "x", stopType="ROLLBACK")
    assert error_code(unknown) == "ServiceDeploymentNotFoundException"
    missing = client.describe_service_deployments(serviceDeploymentArns=[sd_arn + "x"])
    assert missing["failures"] == [{"arn": sd_arn + "x", "reason": "MISSING"}]
    with pytest.raises(ClientError) as too_many:
        client.describe_service_deployments(serviceDeploymentArns=[sd_arn] * 21)
    assert error_code(too_many) == "InvalidParameterException"

    # ABORT: the deployment stops where it is; nothing is rolled back.
    before_v3 = datetime.now(UTC)
    deploy(client, "t", "web", "registry.local/web:v3")
    v3_arn = wait_for(
        "the v3 service deployment",
        lambda: [
            b["serviceDeploymentArn"]
            for b in client.list_service_deployments(
                cluster="t", service="web", createdAt={"after": before_v3}
            )["serviceDeployments"]
            if b["status"] == "IN_PROGRESS"
        ],
    )[0]
    client.stop_service_deployment(serviceDeploymentArn=v3_arn, stopType="ABORT")

    def aborted() -> dict[str, Any] | None:
        observer.poll()
        found = client.describe_service_deployments(serviceDeploymentArns=[v3_arn])
        sd = found["serviceDeployments"][0]
        assert sd["status"] in ("STOP_REQUESTED", "STOPPED", "IN_PROGRESS")
        return sd if sd["status"] == "STOPPED" else None

    stopped = wait_for("STOPPED", aborted, timeout=10)
    assert stopped["statusReason"]
    service = observer.poll()["web"]
    assert service["deployments"][0]["rolloutState"] == "FAILED"
    assert service["pendingCount"] == 0
    assert world.scheduler.task_mix("t", "web") == {"v1": 4}

    # Listing: newest first, status filter, pagination.
    everything = client.list_service_deployments(cluster="t", service="web")["serviceDeployments"]
    assert [b["status"] for b in everything] == ["STOPPED", "ROLLBACK_SUCCESSFUL", "SUCCESSFUL"]
    only = client.list_service_deployments(cluster="t", service="web", status=["SUCCESSFUL"])
    assert [b["status"] for b in only["serviceDeployments"]] == ["SUCCESSFUL"]
    paged: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"cluster": "t", "service": "web", "maxResults": 1}
    while True:
        page = client.list_service_deployments(**kwargs)
        paged += page["serviceDeployments"]
        if "nextToken" not in page:
            break
        kwargs["nextToken"] = page["nextToken"]
    assert paged == everything
    assert world.scheduler.error is None
    assert world.timeline_errors == []


# --------------------------------------------------------------------------- breaker, no rollback


NO_ROLLBACK = """
description = "test: breaker without rollback"
cluster = "t"

[[service]]
name = "api"
desired_count = 10
initial_version = "v1"
steady_seconds = 1

[service.deployment]
minimum_healthy_percent = 100
maximum_percent = 150
circuit_breaker = { enable = true, rollback = false }

[service.versions.v1]
start_seconds = 1

[service.versions.v2]
start_seconds = 1
failure = "fail_to_start"

[[timeline]]
at = 1
action = "deploy"
service = "api"
version = "v2"
"""


def test_breaker_without_rollback_stops_the_deployment(
    sandbox_world: StartSandbox, tmp_path: Path
) -> None:
    path = tmp_path / "no_rollback.toml"
    path.write_text(NO_ROLLBACK)
    world = sandbox_world(str(path), speed=8.0)
    client = world.client()
    observer = Observer(client, "t", ["api"])

    def failed() -> dict[str, Any] | None:
        primary = observer.poll()["api"]["deployments"][0]
        return primary if primary["rolloutState"] == "FAILED" else None

    primary = wait_for("the breaker to trip", failed, timeout=15)
    assert primary["rolloutStateReason"] == BREAKER_REASON
    assert primary["failedTasks"] >= 5  # clamp(ceil(0.5 * 10), 3, 200)
    sd = newest_service_deployment(client, "t", "api")
    assert sd["status"] == "STOPPED"
    assert sd["statusReason"] == BREAKER_REASON
    assert sd["deploymentCircuitBreaker"]["status"] == "TRIGGERED"
    assert sd["deploymentCircuitBreaker"]["threshold"] == 5
    assert "rollback" not in sd

    # No more launches: two sandbox seconds later nothing changed, the old tasks still serve.
    time.sleep(world.clock.real_seconds(2.0))
    service = observer.poll()["api"]
    assert service["deployments"][0]["failedTasks"] == primary["failedTasks"]
    assert service["pendingCount"] == 0
    assert [d["status"] for d in service["deployments"]] == ["PRIMARY", "ACTIVE"]
    assert service["deployments"][1]["runningCount"] == 10
    assert world.scheduler.task_mix("t", "api") == {"v1": 10}
    assert "failed" in observer.kinds("api")
    assert "rolling back" not in observer.kinds("api")


# --------------------------------------------------------------------------- scenario errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("description = 'x'\ncluster = 'c'\n", "service: at least one"),
        (
            "description = 'x'\ncluster = 'c'\n[[service]]\nname = 'a'\ndesired_count = 1\n"
            "initial_version = 'v1'\n[service.versions.v1]\nstart_secs = 1\n",
            "service[0].versions.v1.start_secs: unknown key",
        ),
        (
            "description = 'x'\ncluster = 'c'\n[[service]]\nname = 'a'\ndesired_count = 1\n"
            "initial_version = 'v1'\n[service.versions.v1]\n"
            "[[timeline]]\nat = 1\naction = 'deploy'\nservice = 'a'\nversion = 'v9'\n",
            "timeline[0].version: 'v9' is not a version",
        ),
        (
            "description = 'x'\ncluster = 'c'\n[[service]]\nname = 'a'\ndesired_count = 4\n"
            "initial_version = 'v1'\n[service.versions.v1]\n"
            "[service.deployment]\nminimum_healthy_percent = 100\nmaximum_percent = 100\n",
            "service[0].deployment.maximum_percent: leaves no room",
        ),
    ],
)
def test_scenario_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    with pytest.raises(ScenarioError) as error:
        parse_scenario(path, text)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)
