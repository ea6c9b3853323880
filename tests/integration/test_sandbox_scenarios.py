"""The whole sandbox, wired: scenarios observed through the real clients.

One in-process sandbox runs ``bad-release`` (plus a scripted AWS fault) at speed 4 for the
module: web v1 (clean) rolls to v2 (15 % PaymentGatewayError) while the traffic
generator sends 20 requests per second through the proxy. What datadog-api-client, httpx
and boto3 see must match the proxy's request log; the config the sandbox writes must be
valid for the product. A last test runs the sandbox as a child process and checks that
nothing outlives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ApiException
from datadog_api_client.v1.api.metrics_api import MetricsApi as MetricsApiV1
from datadog_api_client.v2.api.metrics_api import MetricsApi as MetricsApiV2
from datadog_api_client.v2.model.metrics_data_source import MetricsDataSource
from datadog_api_client.v2.model.metrics_timeseries_query import MetricsTimeseriesQuery
from datadog_api_client.v2.model.query_formula import QueryFormula
from datadog_api_client.v2.model.timeseries_formula_query_request import (
    TimeseriesFormulaQueryRequest,
)
from datadog_api_client.v2.model.timeseries_formula_request import TimeseriesFormulaRequest
from datadog_api_client.v2.model.timeseries_formula_request_attributes import (
    TimeseriesFormulaRequestAttributes,
)
from datadog_api_client.v2.model.timeseries_formula_request_queries import (
    TimeseriesFormulaRequestQueries,
)
from datadog_api_client.v2.model.timeseries_formula_request_type import (
    TimeseriesFormulaRequestType,
)
from urllib3.util.retry import Retry

from engine.config import load_config
from sandbox.process import SandboxProcess
from sandbox.runtime import Sandbox, SandboxUrls, config_text
from sandbox.scenario import SCENARIO_DIR, list_scenarios, load_scenario

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

SPEED = 4.0
AWS_FAULT_AT = 8.0  # sandbox seconds
AWS_FAULT_FOR = 8.0
SECRETS = ("DD_API_KEY", "DD_APP_KEY", "SENTRY_AUTH_TOKEN")
BAD_RELEASE_WITH_FAULT = f"""
[[fault]]
at = {AWS_FAULT_AT}
endpoint = "aws"
fault = "http429"
retry_after = 1
duration = {AWS_FAULT_FOR}
"""


@dataclass
class Call:
    """One ``describe_services`` call, bracketed in sandbox time."""

    before: float
    after: float
    status: int
    retry_after: str | None = None


@dataclass
class AwsObserver:
    """Calls the AWS endpoint every 0.1 s (real) through boto3, without retries."""

    world: Sandbox
    calls: list[Call] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        env = self.world.client_env()
        client = boto3.session.Session().client(
            "ecs",
            endpoint_url=self.world.aws_endpoint,
            region_name=self.world.region,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            config=BotoConfig(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5),
        )
        cluster = self.world.scenario.cluster
        while not self.stop.wait(0.1):
            before = self.world.now()
            try:
                client.describe_services(cluster=cluster, services=["web"])
                status, retry_after = 200, None
            except ClientError as exc:
                meta = exc.response["ResponseMetadata"]
                status = meta["HTTPStatusCode"]
                retry_after = meta["HTTPHeaders"].get("retry-after")
            self.calls.append(Call(before, self.world.now(), status, retry_after))


@dataclass
class World:
    """The module's running bad-release sandbox and its AWS observer."""

    sandbox: Sandbox
    aws: AwsObserver
    env: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """bad-release, plus a scripted 429 on the AWS endpoint, at speed 4."""
    path = tmp_path_factory.mktemp("scenario") / "bad-release-429.toml"
    text = (SCENARIO_DIR / "bad-release.toml").read_text(encoding="utf-8")
    path.write_text(text + BAD_RELEASE_WITH_FAULT, encoding="utf-8")
    began = time.monotonic()
    sandbox = Sandbox(str(path), speed=SPEED).start()
    print(f"sandbox started in {time.monotonic() - began:.2f} s")
    observer = AwsObserver(sandbox)
    thread = threading.Thread(target=observer.run, name="aws-observer", daemon=True)
    thread.start()
    try:
        yield World(sandbox, observer, sandbox.client_env())
    finally:
        observer.stop.set()
        thread.join(10)
        began = time.monotonic()
        sandbox.stop()
        print(f"sandbox stopped in {time.monotonic() - began:.2f} s")


def wait_for(what: str, predicate: Any, timeout: float, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until truthy, within a real-time bound."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- Datadog


def dd_config(world: World) -> Any:
    config: Any = cast("Any", Configuration)(host=world.sandbox.datadog.url)
    config.api_key["apiKeyAuth"] = world.env["DD_API_KEY"]
    config.api_key["appKeyAuth"] = world.env["DD_APP_KEY"]
    config.retry_policy = Retry(total=0)  # a 429 must surface, not sleep Retry-After x3
    return config


def dd_v1(world: World, query: str, from_s: int, to_s: int) -> Any:
    with ApiClient(dd_config(world)) as client:
        return cast("Any", MetricsApiV1)(client).query_metrics(_from=from_s, to=to_s, query=query)


def dd_v2(
    world: World, queries: dict[str, str], formulas: list[str], from_s: int, to_s: int
) -> dict[str, Any]:
    body = TimeseriesFormulaQueryRequest(
        data=TimeseriesFormulaRequest(
            type=TimeseriesFormulaRequestType.TIMESERIES_REQUEST,
            attributes=TimeseriesFormulaRequestAttributes(
                _from=from_s * 1000,
                to=to_s * 1000,
                queries=cast("Any", TimeseriesFormulaRequestQueries)(
                    [
                        MetricsTimeseriesQuery(
                            data_source=MetricsDataSource.METRICS, query=q, name=name
                        )
                        for name, q in queries.items()
                    ]
                ),
                formulas=[QueryFormula(formula=f) for f in formulas],
            ),
        )
    )
    with ApiClient(dd_config(world)) as client:
        answer = cast("Any", MetricsApiV2)(client).query_timeseries_data(body)
    result: dict[str, Any] = answer.to_dict()["data"]["attributes"]
    return result


def by_version_v1(response: Any) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {}
    for series in response.to_dict()["series"]:
        (tag,) = series["tag_set"]
        out[tag.removeprefix("version:")] = [v for _, v in series["pointlist"]]
    return out


def by_version_v2(attrs: dict[str, Any], query_index: int) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {}
    for series, values in zip(attrs["series"], attrs["values"], strict=True):
        if series["query_index"] == query_index:
            (tag,) = series["group_tags"]
            out[tag.removeprefix("version:")] = values
    return out


def total(values: list[float | None]) -> float:
    return sum(v for v in values if v is not None)


def test_bad_release_datadog_matches_the_request_log(world: World) -> None:
    sandbox = world.sandbox
    log = sandbox.request_log
    began = time.time()
    # Wait for the rollout to finish and for v2 to have served a fair sample.
    wait_for(
        "web to run only v2",
        lambda: sandbox.scheduler.task_mix(sandbox.scenario.cluster, "web") == {"v2": 4},
        timeout=30,
    )
    wait_for(
        "200 requests served by v2",
        lambda: len(log.query(version="v2", include_health=False)) >= 200,
        timeout=30,
    )
    to_s = int(time.time())
    from_s = to_s - 30
    time.sleep(0.3)  # the last records of [from_s, to_s) are in the log by now
    settings = load_config(sandbox.config_path)
    queries = {m.name: m.query for m in settings.metrics}

    # Counts, through the real v1 client: exactly the log's, per version.
    requests = by_version_v1(
        dd_v1(world, "sum:sandbox.requests{service:web} by {version}.as_count()", from_s, to_s)
    )
    errors = by_version_v1(
        dd_v1(world, "sum:sandbox.errors{service:web} by {version}.as_count()", from_s, to_s)
    )
    assert set(requests) == {"v1", "v2"}
    rates = {}
    for version in ("v1", "v2"):
        records = log.query(from_s, to_s, service="web", version=version, include_health=False)
        failed = sum(r.is_error for r in records)
        assert total(requests[version]) == len(records)
        assert total(errors[version]) == failed
        rates[version] = 100 * failed / len(records)
        print(
            f"datadog {version}: {len(records)} requests, {failed} errors, "
            f"error rate {rates[version]:.2f} %"
        )
    assert abs(rates["v2"] - 15) <= 3
    assert rates["v1"] <= 1

    # The config's own error_rate query, through v1 and v2 (formula): the same series.
    v1 = by_version_v1(dd_v1(world, queries["web_error_rate"], from_s, to_s))
    attrs = dd_v2(
        world,
        {
            "e": "sum:sandbox.errors{service:web} by {version}.as_count()",
            "r": "sum:sandbox.requests{service:web} by {version}.as_count()",
        },
        ["e / r * 100"],
        from_s,
        to_s,
    )
    v2 = by_version_v2(attrs, 0)
    assert set(v1) == set(v2) == {"v1", "v2"}
    for version in v1:
        assert v1[version] == pytest.approx(v2[version])
    # And v2's raw queries sum to the same counts as v1's.
    raw = dd_v2(
        world,
        {"r": "sum:sandbox.requests{service:web} by {version}.as_count()"},
        [],
        from_s,
        to_s,
    )
    assert {k: total(v) for k, v in by_version_v2(raw, 0).items()} == {
        k: total(v) for k, v in requests.items()
    }
    # The p95 and throughput queries of the config answer for v2 too.
    p95 = by_version_v1(dd_v1(world, queries["web_p95_ms"], from_s, to_s))
    assert max(v for v in p95["v2"] if v is not None) > 20
    throughput = dd_v1(world, queries["web_throughput"], from_s, to_s).to_dict()["series"]
    assert len(throughput) == 1
    print(f"datadog checks took {time.time() - began:.1f} s (sandbox time {sandbox.now():.1f})")


# --------------------------------------------------------------------------- Sentry


def quiet_for(sandbox: Sandbox, seconds: float) -> bool:
    """Whether the request log stays unchanged for ``seconds``."""
    seen = sandbox.request_log.total
    time.sleep(seconds)
    return sandbox.request_log.total == seen


def test_bad_release_sentry_shows_the_new_issue_for_v2(world: World) -> None:
    sandbox = world.sandbox
    wait_for(
        "v2 errors",
        lambda: sum(r.status == 500 for r in sandbox.request_log.query(version="v2")) >= 10,
        timeout=30,
    )
    sandbox.set_rate("web", 0)
    try:
        # Let the requests in flight land, then compare with what Sentry ingested.
        wait_for("the traffic to drain", lambda: quiet_for(sandbox, 0.5), timeout=15)
        expected = sum(r.status == 500 for r in sandbox.request_log.query(version="v2"))
        headers = {"Authorization": f"Bearer {world.env['SENTRY_AUTH_TOKEN']}"}
        url = f"{sandbox.sentry.url}/api/0/organizations/sandbox/issues/"
        project = sandbox.sentry.app.project_id("web")
        params: dict[str, str | int] = {
            "query": "is:unresolved release:v2",
            "project": project,
            "environment": "sandbox",
            "statsPeriod": "1h",
        }

        def issues() -> list[dict[str, Any]]:
            resp = httpx.get(url, params=params, headers=headers, timeout=5)
            assert resp.status_code == 200, resp.text
            body: list[dict[str, Any]] = resp.json()
            return body

        def settled() -> list[dict[str, Any]] | None:
            found = issues()
            return found if found and int(found[0]["count"]) >= expected else None

        found = wait_for(f"Sentry to hold {expected} events", settled, timeout=15, interval=0.2)
        (issue,) = found
        print(f"sentry: issue {issue['shortId']} {issue['title']!r} count {issue['count']}")
        assert issue["metadata"]["type"] == "PaymentGatewayError"
        assert int(issue["count"]) == expected
        assert issue["firstRelease"]["version"] == "v2"
        # v1 raised nothing: release v1 has no issue at all.
        params["query"] = "is:unresolved release:v1"
        assert issues() == []
        # Without the token: 401.
        assert httpx.get(url, params=params, timeout=5).status_code == 401
    finally:
        sandbox.set_rate("web", sandbox.scenario.service("web").rate)


# --------------------------------------------------------------------------- faults


def test_scenario_fault_switches_on_at_its_offset_and_off_after_its_duration(
    world: World,
) -> None:
    sandbox = world.sandbox
    off_at = AWS_FAULT_AT + AWS_FAULT_FOR
    wait_for("the AWS fault to be over", lambda: sandbox.now() > off_at + 2, timeout=30)
    calls = list(world.aws.calls)
    refused = [c for c in calls if c.status == 429]
    assert refused, "the scripted 429 was never seen"
    assert all(c.retry_after == "1" for c in refused)
    assert all(c.status == 200 for c in calls if c not in refused)
    first, last = refused[0], refused[-1]
    before = [c for c in calls if c.after < first.before]
    after = [c for c in calls if c.before > last.after]
    print(
        f"aws fault: {len(refused)} answers 429 between sandbox {first.before:.2f} s and "
        f"{last.after:.2f} s (scripted {AWS_FAULT_AT:g} s for {AWS_FAULT_FOR:g} s)"
    )
    # On no earlier than its offset, and promptly (0.4 sandbox s between calls at speed 4;
    # the margin leaves room for a slow call on a busy machine).
    assert first.after >= AWS_FAULT_AT
    assert first.before <= AWS_FAULT_AT + 2.0
    assert before and before[-1].before <= AWS_FAULT_AT
    # Off after its duration, promptly.
    assert last.before <= off_at
    assert after and after[0].after >= off_at
    assert after[0].before <= off_at + 2.0


def test_run_time_faults_through_the_control_endpoint(world: World) -> None:
    sandbox = world.sandbox
    control = sandbox.info()["faults"]
    now = int(time.time())
    # In-process endpoint: Datadog answers 429 with Retry-After to the real client ...
    resp = httpx.post(control, json={"endpoint": "datadog", "fault": "http429", "retry_after": 7})
    assert resp.status_code == 200, resp.text
    with pytest.raises(ApiException) as refused:
        dd_v1(world, "sum:sandbox.requests{*}.as_count()", now - 10, now)
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == "7"
    listing = httpx.get(control).json()
    assert listing["active"]["datadog"]["fault"] == "http429"
    # ... and answers again once switched off.
    assert httpx.delete(f"{control}/datadog").json()["cleared"] is True
    assert dd_v1(world, "sum:sandbox.requests{*}.as_count()", now - 10, now).to_dict()["series"]

    # A service process (it polls the control endpoint): web v1's own URL answers 500.
    wait_for(
        "web to run only v2",
        lambda: sandbox.scheduler.task_mix(sandbox.scenario.cluster, "web") == {"v2": 4},
        timeout=30,
    )
    v1_url = sandbox.process("web", "v1").url
    assert httpx.get(f"{v1_url}/").status_code == 200
    httpx.post(control, json={"endpoint": "web:v1", "fault": "http500"}).raise_for_status()
    answer = wait_for(
        "web v1 to answer 500",
        lambda: (r := httpx.get(f"{v1_url}/")).status_code == 500 and r,
        timeout=5,
    )
    assert "sandbox fault on web:v1" in answer.text
    httpx.delete(f"{control}/web:v1").raise_for_status()
    wait_for("web v1 to answer 200", lambda: httpx.get(f"{v1_url}/").status_code == 200, 5)

    # The proxy: garbage (200 with a body that is not JSON), then its real answers.
    proxy = sandbox.services["web"].proxy.url
    httpx.post(control, json={"endpoint": "proxy:web", "fault": "garbage"}).raise_for_status()
    garbage = httpx.get(f"{proxy}/health")
    assert garbage.status_code == 200
    with pytest.raises(ValueError):
        garbage.json()
    httpx.delete(f"{control}/proxy:web").raise_for_status()
    health = httpx.get(f"{proxy}/health")
    assert health.json()["version"] == "v2"
    assert httpx.get(control).json()["active"] == {}


# --------------------------------------------------------------------------- config


def test_the_written_config_is_valid_for_the_product(world: World) -> None:
    sandbox = world.sandbox
    text = sandbox.config_path.read_text(encoding="utf-8")
    settings = load_config(sandbox.config_path)
    urls = sandbox.urls()
    assert settings.aws.endpoint_url == urls.aws
    assert [s.key for s in settings.services] == [f"{sandbox.scenario.cluster}/web"]
    assert settings.datadog is not None and settings.datadog.host == urls.datadog
    assert [m.name for m in settings.metrics] == ["web_error_rate", "web_p95_ms", "web_throughput"]
    assert settings.sentry is not None
    assert settings.sentry.base_url == urls.sentry
    assert settings.sentry.projects == ("web",)
    assert settings.sentry.environment == "sandbox"
    (probe,) = settings.probes
    assert probe.url == f"{urls.proxies['web']}/health"
    assert httpx.get(probe.url).status_code == probe.expect_status
    names = {r.name: r for r in settings.rules}
    assert names["web error rate"].threshold == 5
    assert names["web error rate"].window.total_seconds() == 20
    assert names["web availability"].op == "<"
    # No secret in the file: the product reads them from the environment.
    for key in SECRETS:
        assert world.env[key] not in text
    assert "aws_access_key_id" not in text.lower()


@pytest.mark.parametrize("name", [name for name, _ in list_scenarios()])
def test_every_bundled_scenario_writes_a_valid_config(name: str, tmp_path: Path) -> None:
    scenario = load_scenario(name)
    assert scenario.description and "invalid" not in scenario.description
    urls = SandboxUrls(
        aws="http://127.0.0.1:1",
        datadog="http://127.0.0.1:2",
        sentry="http://127.0.0.1:3",
        proxies={s.name: f"http://127.0.0.1:{10 + i}" for i, s in enumerate(scenario.services)},
    )
    path = tmp_path / "deploywatch.toml"
    path.write_text(config_text(scenario, urls, "us-east-1"), encoding="utf-8")
    settings = load_config(path)
    assert len(settings.services) == len(scenario.services)
    assert len(settings.metrics) == 3 * len(scenario.services)
    assert len(settings.probes) == len(scenario.services)
    assert tomllib.loads(path.read_text())["environment"]["name"] == f"sandbox-{name}"


# --------------------------------------------------------------------------- processes


def processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, state, command) of every live (non-zombie) process, from ``ps``."""
    out = subprocess.run(
        ["ps", "-e", "-ww", "-o", "pid=,ppid=,stat=,args="],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    table = {}
    for line in out.splitlines():
        pid, ppid, stat, *args = line.split(None, 3)
        if not stat.startswith("Z"):
            table[int(pid)] = (int(ppid), stat, args[0] if args else "")
    return table


def children(pid: int) -> dict[int, str]:
    return {p: cmd for p, (ppid, _, cmd) in processes().items() if ppid == pid}


def descendants(pid: int) -> dict[int, str]:
    """Children, their children, and so on (the broker runs under its guard)."""
    table = processes()
    found: dict[int, str] = {}
    parents = {pid}
    while parents:
        parents = {p for p, (ppid, _, _) in table.items() if ppid in parents and p not in found}
        found.update({p: table[p][2] for p in parents})
    return found


def test_the_sandbox_process_leaves_no_orphans() -> None:
    # 1. A normal stop (stdin closed, SIGTERM): the service processes go with it.
    with SandboxProcess("clean-rollout", speed=SPEED) as proc:
        assert proc.pid is not None
        kids = children(proc.pid)
        services = {pid: cmd for pid, cmd in kids.items() if "sandbox.service" in cmd}
        assert sorted(cmd.split("--version ")[1].split()[0] for cmd in services.values()) == [
            "v1",
            "v2",
        ]
        # Beside them, at most the deployment bus's broker (through its guard).
        others = set(kids) - set(services)
        assert all("sandbox.broker_guard" in kids[pid] for pid in others), kids
        kids = descendants(proc.pid)
        env = proc.client_env
        assert set(SECRETS) | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
        keys = {"DD-API-KEY": env["DD_API_KEY"], "DD-APPLICATION-KEY": env["DD_APP_KEY"]}
        query = {
            "from": str(int(time.time()) - 60),
            "to": str(int(time.time())),
            "query": "sum:sandbox.requests{*}.as_count()",
        }
        assert (
            httpx.get(f"{proc.datadog_url}/api/v1/query", params=query, headers=keys).status_code
            == 200
        )
        assert httpx.get(f"{proc.datadog_url}/api/v1/query", params=query).status_code == 403
        assert httpx.get(f"{proc.services['web']['proxy']}/health").status_code == 200
        config = load_config(proc.config_path)
        assert config.datadog is not None and config.datadog.host == proc.datadog_url
        sandbox_pid = proc.pid
    wait_for(
        "the sandbox and its services to exit",
        lambda: not ({sandbox_pid, *kids} & set(processes())),
        timeout=10,
    )

    # 2. The sandbox killed outright: its services notice (stdin EOF) and exit.
    proc = SandboxProcess("clean-rollout", speed=SPEED).start()
    try:
        assert proc.pid is not None
        kids = descendants(proc.pid)
        assert sum("sandbox.service" in cmd for cmd in kids.values()) == 2
        os.kill(proc.pid, signal.SIGKILL)
        wait_for(
            "the orphaned services (and the broker) to exit",
            lambda: not (set(kids) & set(processes())),
            10,
        )
    finally:
        with contextlib.suppress(Exception):
            proc.stop()


# --------------------------------------------------------------------------- schema, CLI

SCHEMA_BASE = """
description = "test"
cluster = "c"

[[service]]
name = "web"
desired_count = 2
initial_version = "v1"
{service}

[service.versions.v1]
{version}
"""


@pytest.mark.parametrize(
    ("service", "version", "extra", "message"),
    [
        ("", "behaviour = { error_ratio = 1.5 }", "", "versions.v1.behaviour: error_ratio"),
        ("", "behaviour = { latency = { base = 3 } }", "", "unknown latency key(s): base"),
        ("rate = 5000", "", "", "service[0].rate: must be <= 1000"),
        ('paths = ["/health"]', "", "", "service[0].paths: '/health'"),
        ("[service.alerts]\nerror_rat = 3", "", "", "service[0].alerts.error_rat: unknown key"),
        ("", "", '[[fault]]\nat = 1\nendpoint = "web:v2"\nfault = "http500"', "'web:v2' is not"),
        ("", "", '[[fault]]\nat = 1\nendpoint = "aws"\nfault = "boom"', "unknown fault 'boom'"),
        ("", "", '[[fault]]\nendpoint = "aws"\nfault = "reset"', "fault[0].at: missing"),
    ],
)
def test_scenario_schema_errors_name_the_key(
    service: str, version: str, extra: str, message: str, tmp_path: Path
) -> None:
    from sandbox.scenario import ScenarioError, parse_scenario

    text = SCHEMA_BASE.format(service=service, version=version) + "\n" + extra
    with pytest.raises(ScenarioError) as error:
        parse_scenario(tmp_path / "t.toml", text)
    assert message in str(error.value)
    assert str(error.value).startswith(str(tmp_path / "t.toml"))


def test_cli_lists_one_line_per_scenario() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sandbox", "--list"],
        cwd=SCENARIO_DIR.parent.parent,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.splitlines()
    assert [line.split()[0] for line in out] == [name for name, _ in list_scenarios()]
    assert {"clean-rollout", "bad-release", "latency-regression", "crash-loop"} <= {
        line.split()[0] for line in out
    }
