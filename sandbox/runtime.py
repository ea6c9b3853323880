"""The running sandbox: one rehearsal world on 127.0.0.1, and the product's config file.

:class:`Sandbox` wires every part together:

- **AWS**: moto (extended by :mod:`sandbox.aws`) driven by the ECS
  :class:`~sandbox.ecs_sim.Scheduler`; the world is built through the real AWS API
  (boto3 against the sandbox's own endpoint) and the scenario's timeline plays the calls
  a CI pipeline makes (``register_task_definition`` + ``update_service``).
- **The service**: per scenario service, one :class:`~sandbox.service.ServiceProcess`
  per version that can run (its DSN on the sandbox Sentry, ``release`` = the version),
  a :class:`~sandbox.proxy.WeightedProxy` splitting traffic by a :class:`TrafficSplit`
  (the scheduler's live task mix), and a :class:`~sandbox.traffic.TrafficGenerator`.
  A version process that exits (a scripted crash) is restarted after the version's
  ``start_seconds``, as ECS would start a replacement task; meanwhile the proxy answers
  502 for the requests it sends there.
- **ALB**: a service with ``[service.alb]`` gets an :class:`~sandbox.alb_sim.AlbCanary`
  (load balancer, stable and canary target groups, listener or rule, and a second ECS
  service behind the canary group); its proxy's :class:`TrafficSplit` then follows the
  forward action's weights in moto, and the config gets ``[service.canary]``.
- **Datadog** (:class:`~sandbox.datadog_api.DatadogServer`) over the proxies' shared
  :class:`~sandbox.requestlog.RequestLog`; **Sentry**
  (:class:`~sandbox.sentry_api.SentryServer`), one project per service.
- **Faults**: one :class:`~sandbox.faults.FaultRegistry` on the sandbox clock, its
  :class:`~sandbox.faults.FaultControlServer`, and every endpoint wrapped: ``aws``,
  ``datadog``, ``sentry``, ``proxy:<service>``, ``<service>:<version>``. The scenario's
  ``[[fault]]`` entries are scheduled at their offsets.

Times: the sandbox clock counts sandbox seconds from the moment the world is steady
(:meth:`Sandbox.now`); it runs ``speed`` times faster than real time. Scenario offsets,
durations and behaviour times are sandbox seconds; traffic rates, latencies and the
rule windows written into the product's config are real.

:meth:`Sandbox.stop` stops every thread and child process; children also exit on their
own when this process dies (they watch their stdin pipe).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from sandbox.alb_sim import AlbArns, AlbCanary
from sandbox.aws import (
    MotoServer,
    install_codedeploy_extensions,
    install_ecs_extensions,
    reset_ecs_backend,
    uninstall_ecs_extensions,
)
from sandbox.codedeploy_sim import CodeDeploySim
from sandbox.datadog_api import DatadogServer
from sandbox.ecs_sim import DEFAULT_ACCOUNT, SandboxClock, Scheduler
from sandbox.faults import Fault, FaultControlServer, FaultRegistry
from sandbox.proxy import WeightedProxy
from sandbox.requestlog import RequestLog
from sandbox.scenario import (
    CanaryStepSpec,
    CompareSpec,
    Scenario,
    ServiceSpec,
    TimelineAction,
    VersionSpec,
    load_scenario,
)
from sandbox.sentry_api import DEFAULT_TOKEN, SentryServer
from sandbox.service import ServiceProcess, ServiceStartError
from sandbox.traffic import TrafficGenerator

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

log = logging.getLogger(__name__)

CREDENTIALS_ENV = {"AWS_ACCESS_KEY_ID": "sandbox", "AWS_SECRET_ACCESS_KEY": "sandbox"}
"""AWS credentials the sandbox accepts; clients take them from the environment."""

DD_API_KEY = "sandbox-dd-api-key"
DD_APP_KEY = "sandbox-dd-app-key"
SENTRY_ORG = "sandbox"
SENTRY_ENVIRONMENT = "sandbox"

CLIENT_ENV = {
    **CREDENTIALS_ENV,
    "DD_API_KEY": DD_API_KEY,
    "DD_APP_KEY": DD_APP_KEY,
    "SENTRY_AUTH_TOKEN": DEFAULT_TOKEN,
}
"""Every credential a client of the sandbox needs, by the environment variable the
product (and the usual CLIs) read it from. None of them is ever written to a file."""

CONFIG_NAME = "deploywatch.toml"

REHEARSAL_AUDIT_FILE = "rehearsal-audit.jsonl"


def rehearsal_audit_path() -> Path:
    """The audit log written into the sandbox's config: rehearsals never mix with real history.

    ``rehearsal-audit.jsonl`` beside the real ``audit.jsonl``, in deploywatch's user state
    directory (``$XDG_STATE_HOME/deploywatch/``, ``~/.local/state/deploywatch/`` by
    default), so it outlives the sandbox's temporary folder and can be read afterwards.
    """
    import platformdirs

    return Path(platformdirs.user_state_dir("deploywatch", appauthor=False)) / REHEARSAL_AUDIT_FILE


# How often the supervisor looks at the version processes (real seconds).
_SUPERVISE_S = 0.2


def ecs_client(endpoint: str, region: str) -> Any:
    """Return a boto3 ECS client for the sandbox endpoint, with the sandbox credentials.

    Args:
        endpoint: The moto endpoint URL.
        region: AWS region.
    """
    return boto3.session.Session().client(
        "ecs",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=CREDENTIALS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


def aws_client(kind: str, endpoint: str, region: str) -> Any:
    """Return a boto3 client of any service for the sandbox endpoint (sandbox credentials).

    Args:
        kind: boto3 service name, e.g. ``"codedeploy"``, ``"elbv2"``.
        endpoint: The moto endpoint URL.
        region: AWS region.
    """
    return boto3.session.Session().client(
        kind,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=CREDENTIALS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


def codedeploy_names(service: str) -> tuple[str, str]:
    """``(application, deployment group)`` of a CODE_DEPLOY service in the sandbox."""
    return service, f"{service}-dg"


def appspec(task_definition: str, service: ServiceSpec) -> str:
    """The ECS AppSpec (JSON) a pipeline sends to CodeDeploy for one task definition."""
    return json.dumps(
        {
            "version": 0.0,
            "Resources": [
                {
                    "TargetService": {
                        "Type": "AWS::ECS::Service",
                        "Properties": {
                            "TaskDefinition": task_definition,
                            "LoadBalancerInfo": {
                                "ContainerName": service.name,
                                "ContainerPort": 8080,
                            },
                        },
                    }
                }
            ],
        }
    )


def register_version(client: Any, service: ServiceSpec, version: str) -> str:
    """Register the task definition of one version of a service, as a pipeline would.

    Args:
        client: boto3 ECS client.
        service: The scenario service.
        version: Version label, e.g. ``"v2"``.

    Returns:
        The new task definition ARN.
    """
    spec = service.version(version)
    answer = client.register_task_definition(
        family=service.name,
        requiresCompatibilities=["EC2"],
        networkMode="bridge",
        containerDefinitions=[
            {
                "name": service.name,
                "image": spec.image,
                "essential": True,
                "memory": 512,
                "portMappings": [{"containerPort": 8080, "hostPort": 0}],
            }
        ],
    )
    return str(answer["taskDefinition"]["taskDefinitionArn"])


def process_behaviour(version: VersionSpec, speed: float) -> dict[str, Any]:
    """The behaviour dict a version's process runs with, its times turned into real time.

    A version whose tasks ``crash`` in ECS also crashes its process after
    ``crash_after_seconds`` unless its behaviour says otherwise.

    Args:
        version: The scenario version.
        speed: Sandbox seconds per real second.
    """
    data = copy.deepcopy(version.behaviour)
    if version.failure == "crash" and "crash_after_s" not in data:
        data["crash_after_s"] = version.crash_after_seconds
    if data.get("crash_after_s") is not None:
        data["crash_after_s"] = float(data["crash_after_s"]) / speed
    health = data.get("health")
    if isinstance(health, dict):
        for key in ("flap_period_s", "flap_down_s"):
            if health.get(key) is not None:
                health[key] = float(health[key]) / speed
    return data


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SandboxUrls:
    """Where the sandbox's endpoints listen: what the product's config points at."""

    aws: str
    datadog: str
    sentry: str
    proxies: Mapping[str, str]
    """Service name -> its front proxy's URL."""


def _q(text: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these texts)."""
    return json.dumps(text)


def _secs(seconds: float) -> str:
    return _q(f"{seconds:g}s")


def metric_queries(service: str, rollup_seconds: float = 0) -> list[tuple[str, str, str]]:
    """``(name, query, unit)`` of the Datadog metrics written for ``service``.

    Names carry the service (metric names are unique across a config).

    Args:
        service: Service name.
        rollup_seconds: Bucket of the error-rate counts (0: native).
    """
    scope = f"{{service:{service}}}"
    rollup = f".rollup(sum, {int(rollup_seconds)})" if rollup_seconds > 0 else ""
    return [
        (
            f"{service}_error_rate",
            f"sum:sandbox.errors{scope} by {{version}}.as_count(){rollup} / "
            f"sum:sandbox.requests{scope} by {{version}}.as_count(){rollup} * 100",
            "%",
        ),
        (f"{service}_p95_ms", f"p95:sandbox.latency{scope} by {{version}}", "ms"),
        (f"{service}_throughput", f"sum:sandbox.requests{scope}.as_rate()", "req/s"),
    ]


def _rule(
    name: str,
    subject: str,
    op: str,
    threshold: float,
    window: float,
    severity: str,
    service: str | None = None,
    action: str | None = None,
    no_data: str | None = None,
) -> list[str]:
    lines = [
        "",
        "[[rule]]",
        f"name = {_q(name)}",
        f"subject = {_q(subject)}",
        f"op = {_q(op)}",
        f"threshold = {threshold:g}",
        f"for = {_secs(window)}",
        f"severity = {_q(severity)}",
    ]
    if action is not None:
        lines.append(f"action = {_q(action)}")
    if no_data is not None:
        lines.append(f"no_data = {_q(no_data)}")
    if service is not None:
        lines.append(f"service = {_q(service)}")
    return lines


def compare_tables(service: str, spec: CompareSpec) -> list[str]:
    """The ``[[compare]]`` tables of a service: p95 and error rate, new against old.
    With one version serving there is nothing to compare: that is no evidence either way
    (``no_data = "ok"``), so a rehearsal before and after a deployment can be HEALTHY."""
    lines: list[str] = []
    for name, metric, statistic, allowed, critical in (
        (
            f"{service} p95",
            f"{service}_p95_ms",
            "median",
            spec.p95_allowed_increase,
            spec.p95_critical_increase,
        ),
        (
            f"{service} errors",
            f"{service}_error_rate",
            "mean",
            spec.error_allowed_increase,
            spec.error_critical_increase,
        ),
    ):
        lines += [
            "",
            "[[compare]]",
            f"name = {_q(name)}",
            f"subject = {_q('metric:' + metric)}",
            f"statistic = {_q(statistic)}",
            'direction = "increase"',
            f"confidence = {spec.confidence:g}",
            f"allowed_increase = {allowed:g}",
            f"critical_increase = {critical:g}",
            f"min_samples = {spec.min_samples}",
            f"window = {_secs(spec.window)}",
            'no_data = "ok"',
            f"action = {_q(spec.action)}",
            f"service = {_q(service)}",
        ]
    return lines


def _step(step: CanaryStepSpec) -> str:
    parts = [f"weight = {step.weight}"]
    if step.wait is not None:
        parts.append(f"wait = {_secs(step.wait)}")
    if step.pause:
        parts.append("pause = true")
    return "{ " + ", ".join(parts) + " }"


def _service_tables(
    scenario: Scenario, service: ServiceSpec, albs: Mapping[str, AlbArns]
) -> list[str]:
    """The ``[[service]]`` table(s) of one scenario service: the service, its
    ``[service.codedeploy]`` or ``[service.canary]``, and an ALB canary's second ECS
    service."""
    lines = [
        "",
        "[[service]]",
        f"cluster = {_q(scenario.cluster)}",
        f"service = {_q(service.name)}",
    ]
    if service.deployment.controller == "CODE_DEPLOY":
        application, group = codedeploy_names(service.name)
        lines += [
            "",
            "[service.codedeploy]",
            f"application = {_q(application)}",
            f"deployment_group = {_q(group)}",
        ]
    arns = albs.get(service.name)
    if service.alb is not None and arns is not None:
        lines += [
            "",
            "# ALB weighted canary: deploywatch moves the weights of this forward action",
            f"# (stable {service.name} / canary {service.alb.canary_service}).",
            "[service.canary]",
            f"listener_arn = {_q(arns.listener_arn)}",
        ]
        if arns.rule_arn is not None:
            lines.append(f"rule_arn = {_q(arns.rule_arn)}")
        lines += [
            f"stable_target_group_arn = {_q(arns.stable_target_group_arn)}",
            f"canary_target_group_arn = {_q(arns.canary_target_group_arn)}",
            "steps = [" + ", ".join(_step(s) for s in service.alb.steps) + "]",
            "",
            "[[service]]",
            f"cluster = {_q(scenario.cluster)}",
            f"service = {_q(service.alb.canary_service)}",
        ]
    return lines


def config_text(
    scenario: Scenario,
    urls: SandboxUrls,
    region: str,
    albs: Mapping[str, AlbArns] | None = None,
    audit_log: Path | None = None,
    smoke_dir: Path | None = None,
) -> str:
    """Return the product's config file (TOML) for a scenario served at ``urls``.

    No credential goes into it: the product reads them from the environment
    (:data:`CLIENT_ENV`).

    Args:
        scenario: The running scenario.
        urls: Where the sandbox's endpoints listen (loopback).
        region: AWS region.
        albs: Front service name -> the ARNs of its ALB (services with ``[service.alb]``);
            without them no ``[service.canary]`` is written.
        audit_log: The rehearsal audit log (default :func:`rehearsal_audit_path`), never
            the real one.
        smoke_dir: Where the smoke suites run and write their JUnit reports; with it,
            each service gets a ``[[smoke]]`` suite (:mod:`sandbox.smoke`) and a rule.
    """
    names = [s.name for s in scenario.services]
    lines = [
        f"# Written by the deploywatch sandbox for scenario {_q(scenario.name)}. "
        "Points at 127.0.0.1 only.",
        "# Credentials come from the environment (AWS_*, DD_*, SENTRY_AUTH_TOKEN), never "
        "from this file.",
        "[environment]",
        f"name = {_q(f'sandbox-{scenario.name}')}",
        "production = false",
        *([f'bake = "{scenario.bake_seconds:g}s"'] if scenario.bake_seconds else []),
        "",
        "[aws]",
        f"region = {_q(region)}",
        f"endpoint_url = {_q(urls.aws)}",
        "",
        "[ecs]",
        "poll_interval = 1.0",
        "",
        "# A rehearsal is audited in a log of its own, never in the real audit.jsonl.",
        "[actions]",
        f"audit_log = {_q(str(audit_log or rehearsal_audit_path()))}",
    ]
    for service in scenario.services:
        lines += _service_tables(scenario, service, albs or {})
    lines += [
        "",
        "[datadog]",
        f"host = {_q(urls.datadog)}",
        "poll_interval = 2",
        'window = "2m"',
    ]
    for service in scenario.services:
        for name, query, unit in metric_queries(service.name, service.alerts.rollup_seconds):
            lines += [
                "",
                "[[metric]]",
                f"name = {_q(name)}",
                f"query = {_q(query)}",
                f"unit = {_q(unit)}",
                f"service = {_q(service.name)}",
            ]
    lines += [
        "",
        "[sentry]",
        f"base_url = {_q(urls.sentry)}",
        f"org = {_q(SENTRY_ORG)}",
        "projects = [" + ", ".join(_q(n) for n in names) + "]",
        f"environment = {_q(SENTRY_ENVIRONMENT)}",
        "poll_interval = 2",
    ]
    if len(names) == 1:
        lines.append(f"service = {_q(names[0])}")
    for service in scenario.services:
        lines += [
            "",
            "[[probe]]",
            f"name = {_q(service.name)}",
            f"url = {_q(urls.proxies[service.name].rstrip('/') + '/health')}",
            "expect_status = 200",
            'json_path = "status"',
            'json_value = "ok"',
            'timeout = "1s"',
            'interval = "2s"',
            f"service = {_q(service.name)}",
        ]
    for service in scenario.services:
        a, n = service.alerts, service.name
        lines += _rule(
            f"{n} error rate",
            f"metric:{n}_error_rate",
            ">",
            a.error_rate,
            a.error_rate_for,
            "critical",
            n,
        )
        lines += _rule(
            f"{n} error rate: roll back",
            f"metric:{n}_error_rate",
            ">",
            a.rollback_error_rate,
            a.rollback_for,
            "critical",
            n,
            action="rollback",
        )
        lines += _rule(
            f"{n} p95 latency", f"metric:{n}_p95_ms", ">", a.p95_ms, a.p95_for, "critical", n
        )
        lines += _rule(
            f"{n} availability",
            f"probe:{n}.availability",
            "<",
            a.availability,
            a.availability_for,
            "critical",
            n,
        )
        lines += _rule(
            f"{n} new tasks failing",
            "ecs:failed_tasks",
            ">=",
            1,
            10,
            "warn",
            n,
            no_data="ok",
        )
        if service.alb is not None and albs and service.name in albs:
            canary = service.alb.canary_service
            lines += _rule(
                f"{canary} new tasks failing",
                "ecs:failed_tasks",
                ">=",
                1,
                10,
                "warn",
                canary,
                no_data="ok",
            )
    lines += _rule("new Sentry issues", "sentry:new_issues", ">=", 1, 0, "warn", no_data="ok")
    if smoke_dir is not None and scenario.smoke:
        lines += smoke_tables(scenario, urls, smoke_dir)
    for service in scenario.services:
        if service.compare is not None:
            lines += compare_tables(service.name, service.compare)
    return "\n".join(lines) + "\n"


SMOKE_SUITE = Path(__file__).parent / "smoke"
"""The sandbox's smoke suite (pytest: health, cart, checkout)."""


def smoke_tables(scenario: Scenario, urls: SandboxUrls, smoke_dir: Path) -> list[str]:
    """One ``[[smoke]]`` suite per service (run when its deployment completes and on the
    key) and a rule that fails the verdict while it fails."""
    lines: list[str] = []
    for service in scenario.services:
        name = f"{service.name}-smoke"
        report = smoke_dir / f"smoke-{service.name}.xml"
        argv = [sys.executable, "-m", "pytest", "-q", str(SMOKE_SUITE), f"--junitxml={report}"]
        lines += [
            "",
            "[[smoke]]",
            f"name = {_q(name)}",
            "command = [" + ", ".join(_q(a) for a in argv) + "]",
            f"junit = {_q(str(report))}",
            f"cwd = {_q(str(smoke_dir))}",
            'timeout = "60s"',
            'on = ["completed", "key"]',
            f"service = {_q(service.name)}",
            f"env = {{ SMOKE_BASE_URL = {_q(urls.proxies[service.name])} }}",
        ]
        lines += _rule(
            f"{service.name} smoke tests", f"smoke:{name}", ">=", 1, 0, "critical", no_data="ok"
        )
    return lines


# --------------------------------------------------------------------------- traffic split


def split_name(spec: ServiceSpec) -> str:
    """What a service's proxy splits by, before an ALB takes over (``alb-listener`` or
    ``alb-rule`` once the world is built)."""
    if spec.deployment.controller == "CODE_DEPLOY":
        return "codedeploy-task-sets"
    return "ecs-task-mix" if spec.deployment.strategy == "ROLLING" else "ecs-traffic-shift"


class TrafficSplit:
    """The weights one service's proxy splits traffic by, from a swappable source.

    Every service starts on the ECS scheduler's live task mix (RUNNING tasks per
    version: a version with no running task gets no traffic). A later ALB model swaps in
    its target-group weights with :meth:`use`; the proxy keeps calling this object.

    Args:
        source: Callable returning version -> weight.
        name: What the source is, for status output (``"ecs-task-mix"``).
    """

    def __init__(self, source: Callable[[], Mapping[str, float]], name: str) -> None:
        self._source = source
        self._name = name
        self._lock = threading.Lock()

    def use(self, source: Callable[[], Mapping[str, float]], name: str) -> None:
        """Split by another source from now on.

        Args:
            source: Callable returning version -> weight.
            name: What the source is.
        """
        with self._lock:
            self._source, self._name = source, name

    @property
    def source_name(self) -> str:
        """What the weights come from."""
        with self._lock:
            return self._name

    def __call__(self) -> Mapping[str, float]:
        with self._lock:
            source = self._source
        return source()


@dataclass
class ServiceWorld:
    """The running parts of one scenario service."""

    spec: ServiceSpec
    split: TrafficSplit
    proxy: WeightedProxy
    traffic: TrafficGenerator
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    """Version -> its process (replaced when restarted after a crash)."""
    restarts: dict[str, int] = field(default_factory=dict)
    """Version -> how many times its process was restarted."""
    down_since: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- the sandbox


class Sandbox:
    """A rehearsal world on 127.0.0.1, as a context manager.

    Only one ``Sandbox`` can run per process (moto's state is process-global).

    Args:
        scenario: Bundled scenario name (``"demo"``) or path to a scenario ``.toml``.
        speed: Sandbox seconds per real second.
        workdir: Where ``deploywatch.toml`` is written; a temporary directory (removed
            on stop) when not given.
        region: AWS region of the simulated world.
    """

    def __init__(
        self,
        scenario: str,
        speed: float = 1.0,
        workdir: Path | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.scenario = load_scenario(scenario)
        self.speed = speed
        self.region = region
        self._workdir = workdir
        self._own_workdir = False
        self.clock = SandboxClock(speed)
        self.scheduler = Scheduler(self.clock, account_id=DEFAULT_ACCOUNT, region=region)
        self.codedeploy = CodeDeploySim(self.scheduler)
        self.scheduler.add_ticker(self.codedeploy.tick)
        self.ready_at = 0.0
        """Sandbox time at which the world was in steady state; timeline offsets count from it."""
        self.faults = FaultRegistry(clock=self.now)
        """Faults per endpoint, on the sandbox clock (:meth:`now`)."""
        self.fault_control = FaultControlServer(self.faults)
        self._server = MotoServer(faults=self.faults, fault_endpoint="aws")
        self._internal = MotoServer(name="moto-internal")
        self.request_log = RequestLog()
        self.datadog = DatadogServer(
            self.request_log, api_key=DD_API_KEY, app_key=DD_APP_KEY, faults=self.faults
        )
        self.sentry = SentryServer(
            org=SENTRY_ORG,
            projects={i + 1: s.name for i, s in enumerate(self.scenario.services)},
            faults=self.faults,
        )
        self.services: dict[str, ServiceWorld] = {}
        self.albs: dict[str, AlbCanary] = {}
        """Front service name -> its ALB (services with ``[service.alb]``)."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._timeline: threading.Thread | None = None
        self._started = False
        self._endpoint: str | None = None
        self._internal_endpoint: str | None = None
        self.timeline_errors: list[str] = []

    # ------------------------------------------------------------------ properties

    @property
    def aws_endpoint(self) -> str:
        """The AWS endpoint URL, e.g. ``http://127.0.0.1:54321``."""
        if self._endpoint is None:
            raise RuntimeError("the sandbox is not running")
        return self._endpoint

    @property
    def workdir(self) -> Path:
        """The directory holding ``deploywatch.toml``."""
        if self._workdir is None:
            raise RuntimeError("the sandbox is not running")
        return self._workdir

    @property
    def config_path(self) -> Path:
        """Path of the written ``deploywatch.toml``."""
        return self.workdir / CONFIG_NAME

    def now(self) -> float:
        """Return sandbox seconds since the world reached steady state."""
        return self.clock.now() - self.ready_at

    def client(self) -> Any:
        """Return a new boto3 ECS client for this sandbox's public (faultable) endpoint."""
        return ecs_client(self.aws_endpoint, self.region)

    def client_env(self) -> dict[str, str]:
        """The environment variables a client needs: credentials and the AWS region."""
        return {**CLIENT_ENV, "AWS_DEFAULT_REGION": self.region}

    def urls(self) -> SandboxUrls:
        """Where the endpoints listen (while running)."""
        return SandboxUrls(
            aws=self.aws_endpoint,
            datadog=self.datadog.url,
            sentry=self.sentry.url,
            proxies={name: world.proxy.url for name, world in self.services.items()},
        )

    def info(self) -> dict[str, Any]:
        """Everything a client needs, as the ``--json`` line carries it."""
        services: dict[str, Any] = {}
        for name, world in self.services.items():
            with self._lock:
                processes = dict(world.processes)
            services[name] = {
                "proxy": world.proxy.url,
                "rate": world.traffic.rate,
                "split": world.split.source_name,
                "controller": world.spec.deployment.controller,
                "strategy": world.spec.deployment.strategy,
                "versions": {v: p.url for v, p in processes.items()},
                "never_runs": [v.name for v in world.spec.versions if not v.runs],
            }
            if world.spec.deployment.controller == "CODE_DEPLOY":
                application, group = codedeploy_names(name)
                services[name]["codedeploy"] = {
                    "application": application,
                    "deployment_group": group,
                }
            alb = self.albs.get(name)
            if alb is not None:
                services[name]["alb"] = {
                    **alb.arns.to_dict(),
                    "canary_service": alb.spec.canary_service,
                    "canary_version": alb.spec.canary_version,
                    "weights_on": alb.spec.weights_on,
                }
        return {
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "speed": self.speed,
            "region": self.region,
            "cluster": self.scenario.cluster,
            "config": str(self.config_path),
            "audit_log": str(rehearsal_audit_path()),
            "aws": self.aws_endpoint,
            "datadog": self.datadog.url,
            "sentry": self.sentry.url,
            "sentry_org": SENTRY_ORG,
            "sentry_projects": {s: self.sentry.dsn(s) for s in self.services},
            "faults": self.fault_control.url + "/faults",
            "fault_endpoints": self.scenario.fault_endpoints(),
            "services": services,
            "env": self.client_env(),
        }

    def set_rate(self, service: str, rate: float) -> None:
        """Change a service's traffic rate (requests per real second; 0 pauses).

        Args:
            service: Service name.
            rate: Requests per second.
        """
        self.services[service].traffic.set_rate(rate)

    def process(self, service: str, version: str) -> ServiceProcess:
        """The current process of one version of a service."""
        with self._lock:
            return self.services[service].processes[version]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Sandbox:
        """Start every endpoint and process, build the world, write the config, play.

        Returns:
            self
        """
        if self._started:
            return self
        self._started = True
        try:
            install_ecs_extensions(self.scheduler)
            install_codedeploy_extensions(self.codedeploy)
            reset_ecs_backend(DEFAULT_ACCOUNT, self.region)
            for spec in self.scenario.services:
                self.scheduler.register_profile(self.scenario.cluster, spec)
                canary = spec.canary_spec()
                if canary is not None:
                    self.scheduler.register_profile(self.scenario.cluster, canary)
            self.fault_control.start()
            self._endpoint = self._server.start()
            self._internal_endpoint = self._internal.start()
            self.sentry.start()
            self.datadog.start()
            self._spawn_services()  # the processes boot while the ECS world is built
            self._build_world()
            self.scheduler.start()
            self._start_proxies()
            self.ready_at = self.clock.now()
            for entry in self.scenario.faults:
                self.faults.schedule(
                    entry.endpoint, Fault.from_dict(entry.fault), entry.at, entry.duration
                )
            self._write_config()
            for world in self.services.values():
                world.traffic.start()
            self._spawn_thread(self._play, "timeline")
            self._spawn_thread(self._supervise, "supervisor")
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn_thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=f"sandbox-{name}", daemon=True)
        self._threads.append(thread)
        if name == "timeline":
            self._timeline = thread
        thread.start()

    def _new_process(self, spec: ServiceSpec, version: VersionSpec) -> ServiceProcess:
        return ServiceProcess(
            spec.name,
            version.name,
            process_behaviour(version, self.speed),
            dsn=self.sentry.dsn(spec.name),
            environment=SENTRY_ENVIRONMENT,
            fault_control_url=self.fault_control.url,
            fault_endpoint=f"{spec.name}:{version.name}",
        )

    def _spawn_services(self) -> None:
        for spec in self.scenario.services:
            split = TrafficSplit(self._traffic_weights(spec.name), split_name(spec))
            proxy = WeightedProxy(
                spec.name,
                self.request_log,
                split,
                faults=self.faults,
                fault_endpoint=f"proxy:{spec.name}",
            )
            traffic = TrafficGenerator(
                _url_of(proxy),
                spec.rate,
                paths=spec.paths,
                concurrency=max(8, min(64, math.ceil(spec.rate))),
            )
            world = ServiceWorld(spec, split, proxy, traffic)
            self.services[spec.name] = world
            for version in spec.versions:
                if version.runs:
                    with self._lock:
                        world.processes[version.name] = self._new_process(spec, version)
                    world.processes[version.name].start(wait=False)
                    world.restarts[version.name] = 0

    def _traffic_weights(self, service: str) -> Callable[[], Mapping[str, float]]:
        """The scheduler's production split: the task mix, or a traffic shift's weights."""
        cluster = self.scenario.cluster

        def weights() -> Mapping[str, float]:
            return self.scheduler.traffic_weights(cluster, service)

        return weights

    def _start_proxies(self) -> None:
        for world in self.services.values():
            for version, process in world.processes.items():
                process.wait_ready()
                world.proxy.set_upstream(version, process.url)
            world.proxy.start()

    def _build_world(self) -> None:
        client = ecs_client(self._internal_url(), self.region)
        cluster = self.scenario.cluster
        client.create_cluster(clusterName=cluster)
        for spec in self.scenario.services:
            alb: AlbCanary | None = None
            if spec.alb is not None:
                alb = AlbCanary(self.scheduler, cluster, spec)
                alb.build(
                    aws_client("elbv2", self._internal_url(), self.region),
                    aws_client("ec2", self._internal_url(), self.region),
                )
                self.albs[spec.name] = alb
            canary = spec.canary_spec()
            for ecs_spec in (spec,) if canary is None else (spec, canary):
                extra: dict[str, Any] = {}
                if alb is not None:
                    extra["loadBalancers"] = alb.load_balancers(ecs_spec.name)
                task_definition = register_version(client, ecs_spec, ecs_spec.initial_version)
                client.create_service(
                    cluster=cluster,
                    serviceName=ecs_spec.name,
                    taskDefinition=task_definition,
                    desiredCount=ecs_spec.desired_count,
                    launchType="EC2",
                    deploymentController={"type": ecs_spec.deployment.controller},
                    deploymentConfiguration=ecs_spec.deployment.to_api(),
                    **extra,
                )
                self.scheduler.settle(cluster, ecs_spec.name)
            if spec.deployment.controller == "CODE_DEPLOY":
                self._create_codedeploy_group(spec)
            if alb is not None:
                self.services[spec.name].split.use(alb.weights, alb.source_name)

    def _create_codedeploy_group(self, spec: ServiceSpec) -> None:
        """The CodeDeploy application and deployment group of a CODE_DEPLOY service."""
        client = aws_client("codedeploy", self._internal_url(), self.region)
        application, group = codedeploy_names(spec.name)
        client.create_application(applicationName=application, computePlatform="ECS")
        ready: dict[str, Any] = {"actionOnTimeout": "CONTINUE_DEPLOYMENT"}
        if spec.deployment.ready_wait_minutes is not None:
            ready = {
                "actionOnTimeout": "STOP_DEPLOYMENT",
                "waitTimeInMinutes": spec.deployment.ready_wait_minutes,
            }
        client.create_deployment_group(
            applicationName=application,
            deploymentGroupName=group,
            deploymentConfigName=spec.deployment.codedeploy_config,
            serviceRoleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/sandbox-codedeploy",
            deploymentStyle={
                "deploymentType": "BLUE_GREEN",
                "deploymentOption": "WITH_TRAFFIC_CONTROL",
            },
            blueGreenDeploymentConfiguration={
                "deploymentReadyOption": ready,
                "terminateBlueInstancesOnDeploymentSuccess": {
                    "action": "TERMINATE",
                    "terminationWaitTimeInMinutes": spec.deployment.termination_wait_minutes,
                },
            },
            autoRollbackConfiguration={
                "enabled": True,
                "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"],
            },
            ecsServices=[{"serviceName": spec.name, "clusterName": self.scenario.cluster}],
            loadBalancerInfo={
                "targetGroupPairInfoList": [
                    {
                        "targetGroups": [
                            {"name": f"{spec.name}-blue"},
                            {"name": f"{spec.name}-green"},
                        ],
                        "prodTrafficRoute": {"listenerArns": []},
                    }
                ]
            },
        )

    def _internal_url(self) -> str:
        if self._internal_endpoint is None:
            raise RuntimeError("the sandbox is not running")
        return self._internal_endpoint

    def _write_config(self) -> None:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="deploywatch-sandbox-"))
            self._own_workdir = True
        self._workdir.mkdir(parents=True, exist_ok=True)
        text = config_text(
            self.scenario,
            self.urls(),
            self.region,
            {name: alb.arns for name, alb in self.albs.items()},
            smoke_dir=self._workdir,
        )
        tmp = self.config_path.with_suffix(".toml.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.config_path)

    def _play(self) -> None:
        # The timeline talks to the internal endpoint: an ``aws`` fault is for clients,
        # it must not eat the scenario's own deploys.
        client = ecs_client(self._internal_url(), self.region)
        for action in self.scenario.timeline:
            while not self._stop.is_set():
                remaining = action.at - self.now()
                if remaining <= 0:
                    break
                self._stop.wait(min(self.clock.real_seconds(remaining), 0.5))
            if self._stop.is_set():
                return
            try:
                self._perform(client, action)
            except Exception as exc:  # keep the rest of the story going, but say so
                log.exception("timeline action %s failed", action)
                self.timeline_errors.append(f"{action}: {exc}")

    def _perform(self, client: Any, action: TimelineAction) -> None:
        if action.action == "deploy":
            spec = self.scenario.service(action.service)
            task_definition = register_version(client, spec, action.version)
            if spec.deployment.controller == "CODE_DEPLOY":
                application, group = codedeploy_names(spec.name)
                aws_client("codedeploy", self._internal_url(), self.region).create_deployment(
                    applicationName=application,
                    deploymentGroupName=group,
                    revision={
                        "revisionType": "AppSpecContent",
                        "appSpecContent": {"content": appspec(task_definition, spec)},
                    },
                )
            else:
                client.update_service(
                    cluster=self.scenario.cluster,
                    service=spec.name,
                    taskDefinition=task_definition,
                )
            log.info("deployed %s %s (%s)", spec.name, action.version, task_definition)
        else:  # pragma: no cover - the loader refuses unknown actions
            raise ValueError(f"unknown action {action.action!r}")

    def _supervise(self) -> None:
        """Restart a version process that exited, as ECS replaces a task that died."""
        while not self._stop.wait(_SUPERVISE_S):
            for world in self.services.values():
                for version, process in list(world.processes.items()):
                    if self._stop.is_set():
                        return
                    if process.alive:
                        continue
                    self._maybe_restart(world, version, process)

    def _maybe_restart(self, world: ServiceWorld, version: str, process: ServiceProcess) -> None:
        now = time.monotonic()
        if version not in world.down_since:
            world.down_since[version] = now
            log.info(
                "%s %s exited with %s; restarting it as a new task",
                world.spec.name,
                version,
                process.returncode,
            )
            process.stop()  # reap it and join its pipe readers
        delay = self.clock.real_seconds(world.spec.version(version).start_seconds)
        if now - world.down_since[version] < delay:
            return
        fresh = self._new_process(world.spec, world.spec.version(version))
        with self._lock:
            if self._stop.is_set():
                return
            world.processes[version] = fresh
            fresh.start(wait=False)
        try:
            fresh.wait_ready()
        except ServiceStartError:
            if not self._stop.is_set():
                log.exception("%s %s did not restart", world.spec.name, version)
            world.down_since[version] = time.monotonic()
            return
        world.proxy.set_upstream(version, fresh.url)
        world.restarts[version] = world.restarts.get(version, 0) + 1
        del world.down_since[version]

    def stop(self) -> None:
        """Stop traffic, processes, endpoints, scheduler and moto; remove a temporary workdir.

        Safe to call more than once, and after a failed :meth:`start`.
        """
        self._stop.set()
        self.faults.close()  # requests held by a hang or slow drip are dropped
        _in_parallel([w.traffic.stop for w in self.services.values()])
        if self._timeline is not None:
            self._timeline.join(timeout=10)
        with self._lock:
            processes = [p for w in self.services.values() for p in w.processes.values()]
        _in_parallel([p.stop for p in processes])  # they flush to Sentry: it is still up
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        for world in self.services.values():
            world.proxy.stop()
        self.datadog.stop()
        self.sentry.stop()
        self.fault_control.stop()
        self.scheduler.stop()
        uninstall_ecs_extensions(self.scheduler)
        self._server.stop()
        self._internal.stop()
        self._endpoint = None
        self._internal_endpoint = None
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self._own_workdir = False

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _url_of(proxy: WeightedProxy) -> Callable[[], str]:
    def url() -> str:
        return proxy.url

    return url


def _in_parallel(calls: list[Callable[[], object]]) -> None:
    """Run ``calls`` in threads and wait for all of them (stopping takes the slowest one)."""
    threads = [threading.Thread(target=call, daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
