"""ALB weighted target groups in the sandbox: the front proxy follows the weights of the
listener's (or a rule's) forward action in moto, changed through real boto3 elbv2 calls,
and the product's config carries the ARNs deploywatch needs to drive the canary."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from engine.config import load_config
from sandbox.runtime import SandboxUrls, aws_client, config_text
from sandbox.scenario import ScenarioError, load_scenario, parse_scenario

if TYPE_CHECKING:
    from pathlib import Path

    from sandbox.alb_sim import AlbArns
    from sandbox.runtime import Sandbox
    from tests.conftest import StartSandbox

pytestmark = pytest.mark.integration

PROXY_SETTLE_S = 1.0
"""The proxy reuses a weights answer for 0.5 s: a weight change shows in the request log
within this long."""
SHARE_TOLERANCE = 0.08
"""The proxy's smooth weighted round-robin follows the weights within a request or two
of any window; the tolerance covers the window's edges."""


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


def share(counts: dict[str, int], version: str) -> float:
    total = sum(counts.values())
    assert total >= 20, f"too little traffic to judge a split: {counts}"
    return counts.get(version, 0) / total


def weighted(arns: AlbArns, stable: int, canary: int) -> list[dict[str, Any]]:
    """A forward action as the product sends it: both target groups with their weights."""
    return [
        {
            "Type": "forward",
            "ForwardConfig": {
                "TargetGroups": [
                    {"TargetGroupArn": arns.stable_target_group_arn, "Weight": stable},
                    {"TargetGroupArn": arns.canary_target_group_arn, "Weight": canary},
                ]
            },
        }
    ]


def weights_of(actions: list[dict[str, Any]]) -> dict[str, int]:
    (action,) = [a for a in actions if a["Type"] == "forward"]
    return {
        g["TargetGroupArn"].split("/")[-2]: g["Weight"]
        for g in action["ForwardConfig"]["TargetGroups"]
    }


def listener_weights(elbv2: Any, arns: AlbArns) -> dict[str, int]:
    (listener,) = elbv2.describe_listeners(ListenerArns=[arns.listener_arn])["Listeners"]
    return weights_of(listener["DefaultActions"])


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


# --------------------------------------------------------------------------- listener


def test_listener_weights_drive_the_proxy_split(sandbox_world: StartSandbox) -> None:
    world = sandbox_world("alb-canary", speed=8.0)
    info = world.info()["services"]["web"]
    assert info["split"] == "alb-listener"
    assert info["alb"]["canary_service"] == "web-canary"
    assert info["alb"]["rule_arn"] is None
    arns = world.albs["web"].arns
    elbv2 = aws_client("elbv2", world.aws_endpoint, world.region)
    ecs = world.client()

    # What a client sees: ALB, two target groups, each filled by one ECS service.
    (balancer,) = elbv2.describe_load_balancers(Names=["web-alb"])["LoadBalancers"]
    assert balancer["LoadBalancerArn"] == arns.load_balancer_arn
    assert balancer["Type"] == "application"
    groups = elbv2.describe_target_groups(LoadBalancerArn=arns.load_balancer_arn)["TargetGroups"]
    assert {g["TargetGroupName"]: g["TargetGroupArn"] for g in groups} == {
        "web-stable": arns.stable_target_group_arn,
        "web-canary": arns.canary_target_group_arn,
    }
    services = ecs.describe_services(cluster="alb", services=["web", "web-canary"])["services"]
    assert {s["serviceName"]: s["runningCount"] for s in services} == {"web": 4, "web-canary": 1}
    assert {s["serviceName"]: s["loadBalancers"][0]["targetGroupArn"] for s in services} == {
        "web": arns.stable_target_group_arn,
        "web-canary": arns.canary_target_group_arn,
    }

    # 100 / 0: every request on v1.
    assert listener_weights(elbv2, arns) == {"web-stable": 100, "web-canary": 0}
    assert set(served_split(world, "web", 2.0)) == {"v1"}

    # 75 / 25 through ModifyListener: the request log follows, v2 tagged as such.
    answer = elbv2.modify_listener(
        ListenerArn=arns.listener_arn, DefaultActions=weighted(arns, 75, 25)
    )
    assert weights_of(answer["Listeners"][0]["DefaultActions"]) == {
        "web-stable": 75,
        "web-canary": 25,
    }
    assert listener_weights(elbv2, arns) == {"web-stable": 75, "web-canary": 25}
    started = time.time()
    counts = served_split(world, "web", 3.0)
    assert set(counts) == {"v1", "v2"}
    assert share(counts, "v2") == pytest.approx(0.25, abs=SHARE_TOLERANCE)
    records = world.request_log.query(started, time.time(), service="web")
    statuses = {v: {r.status for r in records if r.version == v} for v in ("v1", "v2")}
    assert 500 in statuses["v2"], "v2's PaymentGatewayError answers are logged as v2"
    assert 500 not in statuses["v1"]

    # ELB's checks that moto skips on ModifyListener: nothing changes.
    with pytest.raises(ClientError) as unknown:
        elbv2.modify_listener(
            ListenerArn=arns.listener_arn,
            DefaultActions=[
                {"Type": "forward", "TargetGroupArn": arns.stable_target_group_arn + "0"}
            ],
        )
    assert error_code(unknown) == "TargetGroupNotFound"
    with pytest.raises(ClientError) as heavy:
        elbv2.modify_listener(ListenerArn=arns.listener_arn, DefaultActions=weighted(arns, 1000, 0))
    assert error_code(heavy) == "ValidationError"
    assert listener_weights(elbv2, arns) == {"web-stable": 75, "web-canary": 25}

    # Back to 100 / 0 (the rollback): no more canary traffic.
    elbv2.modify_listener(ListenerArn=arns.listener_arn, DefaultActions=weighted(arns, 100, 0))
    assert listener_weights(elbv2, arns) == {"web-stable": 100, "web-canary": 0}
    assert set(served_split(world, "web", 2.0)) == {"v1"}
    assert world.scheduler.error is None


def test_alb_canary_config_loads_with_the_arns(sandbox_world: StartSandbox) -> None:
    world = sandbox_world("alb-canary", speed=8.0)
    arns = world.albs["web"].arns
    settings = load_config(world.config_path)
    web, canary_service = settings.services
    assert (web.cluster, web.service) == ("alb", "web")
    assert (canary_service.cluster, canary_service.service) == ("alb", "web-canary")
    assert canary_service.canary is None
    canary = web.canary
    assert canary is not None
    assert canary.listener_arn == arns.listener_arn
    assert canary.rule_arn is None
    assert canary.stable_target_group_arn == arns.stable_target_group_arn
    assert canary.canary_target_group_arn == arns.canary_target_group_arn
    assert [
        (s.weight, s.wait.total_seconds() if s.wait else None, s.pause) for s in canary.steps
    ] == [(10, 20.0, False), (25, None, True), (50, 20.0, False), (100, None, False)]
    # The ARNs are the live ones.
    elbv2 = aws_client("elbv2", world.aws_endpoint, world.region)
    (listener,) = elbv2.describe_listeners(ListenerArns=[canary.listener_arn])["Listeners"]
    assert weights_of(listener["DefaultActions"]) == {"web-stable": 100, "web-canary": 0}
    rules = {r.name: r for r in settings.rules}
    assert rules["web error rate: roll back"].action == "rollback"
    assert "web-canary new tasks failing" in rules
    assert {m.name for m in settings.metrics} == {"web_error_rate", "web_p95_ms", "web_throughput"}


# --------------------------------------------------------------------------- rule

ALB_RULE = """
description = "ALB canary, weights on a listener rule"
cluster = "t"

[[service]]
name = "shop"
desired_count = 2
initial_version = "v1"
stop_seconds = 1
rate = 30

[service.alb]
canary_service = "shop-next"
canary_version = "v2"
canary_weight = 10
weights_on = "rule"
steps = [{ weight = 50, pause = true }, { weight = 100 }]

[service.versions.v1]
start_seconds = 1

[service.versions.v2]
start_seconds = 1
"""


def test_rule_weights_and_live_tasks_drive_the_split(
    sandbox_world: StartSandbox, tmp_path: Path
) -> None:
    path = tmp_path / "alb-rule.toml"
    path.write_text(ALB_RULE)
    world = sandbox_world(str(path), speed=8.0)
    assert world.info()["services"]["shop"]["split"] == "alb-rule"
    arns = world.albs["shop"].arns
    assert arns.rule_arn is not None
    elbv2 = aws_client("elbv2", world.aws_endpoint, world.region)

    def rule_weights() -> dict[str, int]:
        (rule,) = elbv2.describe_rules(RuleArns=[arns.rule_arn])["Rules"]
        return weights_of(rule["Actions"])

    assert rule_weights() == {"shop-stable": 90, "shop-canary": 10}
    (listener,) = elbv2.describe_listeners(ListenerArns=[arns.listener_arn])["Listeners"]
    assert listener["DefaultActions"][0]["Type"] == "fixed-response"
    assert share(served_split(world, "shop", 2.0), "v2") == pytest.approx(0.1, abs=SHARE_TOLERANCE)

    # The config points the product at the rule.
    canary = load_config(world.config_path).services[0].canary
    assert canary is not None
    assert (canary.listener_arn, canary.rule_arn) == (arns.listener_arn, arns.rule_arn)
    assert [(s.weight, s.pause) for s in canary.steps] == [(50, True), (100, False)]

    # ModifyRule moves the traffic; ModifyRule with an unknown target group is refused.
    elbv2.modify_rule(RuleArn=arns.rule_arn, Actions=weighted(arns, 0, 100))
    assert rule_weights() == {"shop-stable": 0, "shop-canary": 100}
    assert set(served_split(world, "shop", 1.5)) == {"v2"}
    with pytest.raises(ClientError) as heavy:
        elbv2.modify_rule(RuleArn=arns.rule_arn, Actions=weighted(arns, 0, 1000))
    assert error_code(heavy) == "ValidationError"

    # Weights times availability: a canary target group without a RUNNING task gets
    # nothing, whatever its weight.
    elbv2.modify_rule(RuleArn=arns.rule_arn, Actions=weighted(arns, 50, 50))
    assert share(served_split(world, "shop", 2.0), "v2") == pytest.approx(0.5, abs=SHARE_TOLERANCE)
    ecs = world.client()
    ecs.update_service(cluster="t", service="shop-next", desiredCount=0)
    deadline = time.monotonic() + 30
    while ecs.describe_services(cluster="t", services=["shop-next"])["services"][0]["runningCount"]:
        assert time.monotonic() < deadline, "shop-next did not scale in"
        time.sleep(0.2)
    assert set(served_split(world, "shop", 1.5)) == {"v1"}
    assert rule_weights() == {"shop-stable": 50, "shop-canary": 50}
    assert world.scheduler.error is None


# --------------------------------------------------------------------------- config only

URLS = SandboxUrls(
    aws="http://127.0.0.1:1",
    datadog="http://127.0.0.1:2",
    sentry="http://127.0.0.1:3",
    proxies={"web": "http://127.0.0.1:4"},
)


def test_codedeploy_config_carries_its_table(tmp_path: Path) -> None:
    path = tmp_path / "deploywatch.toml"
    text = config_text(load_scenario("codedeploy"), URLS, "us-east-1")
    assert "#   codedeploy." not in text
    path.write_text(text, encoding="utf-8")
    (web,) = load_config(path).services
    assert web.codedeploy is not None
    assert (web.codedeploy.application, web.codedeploy.deployment_group) == ("web", "web-dg")


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('canary_service = "web"\ncanary_version = "v2"', "must differ from the front service"),
        ('canary_service = "web-c"\ncanary_version = "v9"', "is not one of the versions"),
        ('canary_service = "web-c"\ncanary_version = "v2"\nweights_on = "target"', "weights_on"),
        (
            'canary_service = "web-c"\ncanary_version = "v2"\ncanary_target_group = "web-stable"',
            "must differ from stable_target_group",
        ),
        (
            'canary_service = "web-c"\ncanary_version = "v2"\nsteps = [{ weight = 50 }, { weight = 10 }]',
            "weights must rise",
        ),
        (
            'canary_service = "web-c"\ncanary_version = "v2"\nsteps = [{ weight = 10, wait = 5, pause = true }]',
            "not both",
        ),
        ('canary_service = "web-c"\ncanary_version = "v2"\nlistener = 80', "unknown key"),
        (
            'canary_service = "web-c"\ncanary_version = "v2"\n[service.deployment]\nstrategy = "CANARY"',
            "needs a rolling service",
        ),
    ],
)
def test_alb_table_is_read_strictly(tmp_path: Path, table: str, problem: str) -> None:
    text = f"""
description = "x"
cluster = "c"
[[service]]
name = "web"
desired_count = 2
initial_version = "v1"
[service.versions.v1]
[service.versions.v2]
[service.alb]
{table}
"""
    with pytest.raises(ScenarioError, match=problem):
        parse_scenario(tmp_path / "bad.toml", text)
