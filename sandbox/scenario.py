"""Scenario files: the script of a rehearsal, loaded from TOML into frozen dataclasses.

A scenario names one ECS cluster, its services (desired count, deployment configuration,
traffic rate, alert thresholds, the versions that can be deployed, how their tasks behave
in ECS and how their processes answer), a timeline of actions and the faults switched on
at sandbox-time offsets. See ``sandbox/scenarios/README.md`` for the schema.

Every table is read strictly: an unknown key is an error naming the file and the key, so
a typo never silently turns into a default.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

FAULT_ENDPOINTS_FIXED: tuple[str, ...] = ("aws", "datadog", "sentry")
"""Fault endpoint names that exist in every sandbox (besides ``proxy:<service>`` and
``<service>:<version>``)."""

DEFAULT_RATE = 10.0
"""Requests per second (real time) the traffic generator sends to a service by default."""

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
"""Where the bundled scenarios live (``<name>.toml``)."""

FailureMode = Literal["none", "fail_to_start", "crash"]
"""How the tasks of a version misbehave.

``fail_to_start``: every task stops before reaching RUNNING (the circuit breaker counts
these). ``crash``: tasks reach RUNNING, then exit ``crash_after_seconds`` later (ECS's
breaker does not count these, because a task that reaches RUNNING resets its count).
"""

FAILURE_MODES: tuple[FailureMode, ...] = ("none", "fail_to_start", "crash")
STRATEGIES: tuple[str, ...] = ("ROLLING", "BLUE_GREEN", "CANARY", "LINEAR")
ACTIONS: tuple[str, ...] = ("deploy",)


class ScenarioError(Exception):
    """A scenario cannot be found, parsed or validated. The message names file and key."""


@dataclass(frozen=True)
class CircuitBreakerSpec:
    """ECS ``deploymentCircuitBreaker``."""

    enable: bool = False
    rollback: bool = False


@dataclass(frozen=True)
class HookSpec:
    """One ECS deployment lifecycle hook (``deploymentConfiguration.lifecycleHooks``)."""

    target_type: str
    """``PAUSE`` (waits for ``ContinueServiceDeployment``) or ``AWS_LAMBDA``."""
    stages: tuple[str, ...]
    timeout_minutes: int | None = None
    timeout_action: str | None = None
    target_arn: str | None = None

    def to_api(self) -> dict[str, Any]:
        """Return the hook in the shape of the ECS API."""
        hook: dict[str, Any] = {
            "targetType": self.target_type,
            "lifecycleStages": list(self.stages),
        }
        if self.target_arn is not None:
            hook["hookTargetArn"] = self.target_arn
        timeout: dict[str, Any] = {}
        if self.timeout_minutes is not None:
            timeout["timeoutInMinutes"] = self.timeout_minutes
        if self.timeout_action is not None:
            timeout["action"] = self.timeout_action
        if timeout:
            hook["timeoutConfiguration"] = timeout
        return hook


@dataclass(frozen=True)
class DeploymentSpec:
    """The parts of ECS ``deploymentConfiguration`` the sandbox honours."""

    minimum_healthy_percent: int = 100
    maximum_percent: int = 200
    circuit_breaker: CircuitBreakerSpec = field(default_factory=CircuitBreakerSpec)
    strategy: str = "ROLLING"
    """``ROLLING``, ``BLUE_GREEN``, ``CANARY`` or ``LINEAR``."""
    bake_time_minutes: int | None = None
    canary_percent: float | None = None
    canary_bake_time_minutes: int | None = None
    linear_step_percent: float | None = None
    linear_step_bake_time_minutes: int | None = None
    hooks: tuple[HookSpec, ...] = ()
    minute_seconds: float = 60.0
    """Sandbox seconds one API minute lasts (bake times, hook timeouts, CodeDeploy
    waits): a rehearsal may compress AWS's whole-minute durations."""
    controller: str = "ECS"
    """Deployment controller: ``ECS`` or ``CODE_DEPLOY``."""
    codedeploy_config: str = "CodeDeployDefault.ECSAllAtOnce"
    """CODE_DEPLOY: the deployment config (ECSAllAtOnce, ECSCanary<P>Percent<M>Minutes,
    ECSLinear<P>PercentEvery<M>Minutes)."""
    ready_wait_minutes: int | None = None
    """CODE_DEPLOY: wait this long for ``ContinueDeployment(READY_WAIT)`` before traffic
    moves (``deploymentReadyOption`` STOP_DEPLOYMENT); ``None``: traffic moves at once."""
    termination_wait_minutes: int = 0
    """CODE_DEPLOY: keep the original task set this long after the traffic moved."""

    def to_api(self) -> dict[str, Any]:
        """Return the configuration in the shape of the ECS API.

        Returns:
            A ``deploymentConfiguration`` dict for ``create_service``/``update_service``.
        """
        api: dict[str, Any] = {
            "minimumHealthyPercent": self.minimum_healthy_percent,
            "maximumPercent": self.maximum_percent,
            "deploymentCircuitBreaker": {
                "enable": self.circuit_breaker.enable,
                "rollback": self.circuit_breaker.rollback,
            },
        }
        if self.strategy == "ROLLING":
            return api
        api["strategy"] = self.strategy
        if self.bake_time_minutes is not None:
            api["bakeTimeInMinutes"] = self.bake_time_minutes
        if self.strategy == "CANARY":
            canary: dict[str, Any] = {}
            if self.canary_percent is not None:
                canary["canaryPercent"] = self.canary_percent
            if self.canary_bake_time_minutes is not None:
                canary["canaryBakeTimeInMinutes"] = self.canary_bake_time_minutes
            api["canaryConfiguration"] = canary
        if self.strategy == "LINEAR":
            linear: dict[str, Any] = {}
            if self.linear_step_percent is not None:
                linear["stepPercent"] = self.linear_step_percent
            if self.linear_step_bake_time_minutes is not None:
                linear["stepBakeTimeInMinutes"] = self.linear_step_bake_time_minutes
            api["linearConfiguration"] = linear
        if self.hooks:
            api["lifecycleHooks"] = [h.to_api() for h in self.hooks]
        return api


@dataclass(frozen=True)
class VersionSpec:
    """One deployable version of a service and how its tasks behave."""

    name: str
    image: str
    start_seconds: float = 5.0
    """Sandbox seconds from launch until a task is RUNNING (or fails to start)."""
    failure: FailureMode = "none"
    crash_after_seconds: float = 10.0
    """With ``failure = "crash"``: seconds a task stays RUNNING before it exits."""
    behaviour: dict[str, Any] = field(default_factory=dict, hash=False)
    """How this version's process answers: the behaviour dict of :mod:`sandbox.service`
    (validated at load time; times in it are sandbox seconds, latencies real ms)."""

    @property
    def runs(self) -> bool:
        """Whether a task of this version can ever be RUNNING (and so serve traffic)."""
        return self.failure != "fail_to_start"


@dataclass(frozen=True)
class CompareSpec:
    """The ``[[compare]]`` rules the sandbox writes for a service: its p95 and its error
    rate, new version against old (Mann-Whitney U, see ``engine/compare.py``).

    Windows are real seconds, like the alerts'.
    """

    window: float = 60.0
    """Each side's points over this long are compared."""
    min_samples: int = 20
    confidence: float = 0.95
    p95_allowed_increase: float = 1.2
    p95_critical_increase: float = 3.0
    error_allowed_increase: float = 2.0
    """The error rate compares means (most one-second buckets hold no error)."""
    error_critical_increase: float = 20.0
    action: str = "rollback"
    """What a failing canary score does: ``none``, ``pause`` or ``rollback``."""


@dataclass(frozen=True)
class AlertSpec:
    """Thresholds of the rules the sandbox writes into ``deploywatch.toml`` for a service.

    Windows are real seconds: the product judges rules on the wall clock.
    """

    error_rate: float = 5.0
    """Percent of requests answered 5xx (any version) ..."""
    error_rate_for: float = 30.0
    """... held this long: critical."""
    rollback_error_rate: float = 10.0
    """Percent of 5xx ..."""
    rollback_for: float = 60.0
    """... held this long: critical, with ``action = "rollback"``."""
    p95_ms: float = 300.0
    """p95 latency in milliseconds ..."""
    p95_for: float = 30.0
    """... held this long: critical."""
    availability: float = 99.5
    """Health probe success percentage below which ..."""
    availability_for: float = 20.0
    """... for this long: critical."""
    rollup_seconds: float = 0.0
    """Datadog rollup of the error-rate counts (0: native 1 s buckets). A service with a
    few requests a second (a small canary) needs longer buckets for a ratio to mean
    anything."""


@dataclass(frozen=True)
class CanaryStepSpec:
    """One step of an ALB weighted canary, as written into the product's config."""

    weight: int
    """Percent of traffic on the canary target group (0..100)."""
    wait: float | None = None
    """REAL seconds the product waits before the next step (the product's clock)."""
    pause: bool = False
    """The product waits for an operator's promote."""


@dataclass(frozen=True)
class AlbSpec:
    """An ALB in front of a service: a listener (or a listener rule) whose forward action
    has two weighted target groups, stable (the service itself) and canary (a second
    ECS service running another version). The product drives the weights."""

    canary_service: str
    """The second ECS service, behind the canary target group."""
    canary_version: str
    """The version the canary service runs (one of the front service's versions)."""
    canary_desired_count: int = 1
    load_balancer: str = ""
    """ALB name (``<service>-alb`` when not given)."""
    stable_target_group: str = ""
    """Stable target group name (``<service>-stable`` when not given)."""
    canary_target_group: str = ""
    """Canary target group name (``<service>-canary`` when not given)."""
    canary_weight: int = 0
    """Initial canary weight; the stable target group gets ``100 - canary_weight``."""
    weights_on: str = "listener"
    """``listener`` (the listener's default action) or ``rule`` (a listener rule matching
    every path, priority 10; the default action then answers a fixed 404)."""
    steps: tuple[CanaryStepSpec, ...] = ()
    """The canary steps written into ``[service.canary]`` of the product's config."""


@dataclass(frozen=True)
class ServiceSpec:
    """One ECS service of the scenario."""

    name: str
    desired_count: int
    initial_version: str
    versions: tuple[VersionSpec, ...]
    deployment: DeploymentSpec = field(default_factory=DeploymentSpec)
    stop_seconds: float = 2.0
    """Sandbox seconds a task takes to drain and stop once ECS decides to stop it."""
    steady_seconds: float = 3.0
    """Sandbox seconds a deployment must look done before ECS calls it COMPLETED."""
    rate: float = DEFAULT_RATE
    """Requests per second (real time) the traffic generator sends to the service's proxy."""
    paths: tuple[str, ...] = ("/",)
    """Paths the traffic generator requests in turn."""
    alerts: AlertSpec = field(default_factory=AlertSpec)
    """Thresholds of the rules written into the product's config."""
    alb: AlbSpec | None = None
    """An ALB weighted canary in front of this service (its proxy follows the ALB)."""
    compare: CompareSpec | None = None
    """Comparison rules (new version against old) written for this service."""

    def canary_spec(self) -> ServiceSpec | None:
        """The ECS service behind the ALB's canary target group, as a service of its own
        (same versions, rolling, ``canary_desired_count`` tasks of ``canary_version``)."""
        if self.alb is None:
            return None
        return dataclasses.replace(
            self,
            name=self.alb.canary_service,
            desired_count=self.alb.canary_desired_count,
            initial_version=self.alb.canary_version,
            deployment=DeploymentSpec(),
            alb=None,
        )

    def version(self, name: str) -> VersionSpec:
        """Return the version called ``name``.

        Args:
            name: The version label, e.g. ``"v2"``.

        Raises:
            KeyError: The service has no such version.
        """
        for version in self.versions:
            if version.name == name:
                return version
        raise KeyError(name)

    def version_for_image(self, image: str) -> VersionSpec | None:
        """Return the version whose container image is ``image``, if any."""
        for version in self.versions:
            if version.image == image:
                return version
        return None


@dataclass(frozen=True)
class TimelineAction:
    """Something the runner does at a sandbox-time offset, through the real AWS API."""

    at: float
    action: str
    service: str
    version: str


@dataclass(frozen=True)
class FaultSpec:
    """A fault the scenario switches on at a sandbox-time offset (see :mod:`sandbox.faults`)."""

    at: float
    """Sandbox seconds after steady state."""
    endpoint: str
    """``aws``, ``datadog``, ``sentry``, ``proxy:<service>`` or ``<service>:<version>``."""
    fault: dict[str, Any] = field(hash=False)
    """``{"fault": kind, ...parameters}`` as :meth:`sandbox.faults.Fault.from_dict` reads it
    (``retry_after``, ``hang_s``, ``drip_interval_s`` are real seconds: wire values)."""
    duration: float | None = None
    """Sandbox seconds it stays on (``None``: until switched off at run time)."""


@dataclass(frozen=True)
class Scenario:
    """A loaded, validated scenario."""

    name: str
    path: Path
    description: str
    cluster: str
    services: tuple[ServiceSpec, ...]
    timeline: tuple[TimelineAction, ...] = ()
    faults: tuple[FaultSpec, ...] = ()
    bake_seconds: float = 0.0
    smoke: bool = True
    """Whether the written config runs the sandbox's smoke suite (and judges it)."""
    """The bake window the written deploywatch config asks for (real seconds: it is
    the watcher's setting, not the sandbox's time)."""

    def fault_endpoints(self) -> list[str]:
        """Every fault endpoint name of this scenario's sandbox."""
        names = list(FAULT_ENDPOINTS_FIXED)
        for service in self.services:
            names.append(f"proxy:{service.name}")
            names += [f"{service.name}:{v.name}" for v in service.versions if v.runs]
        return names

    def service(self, name: str) -> ServiceSpec:
        """Return the service called ``name``.

        Raises:
            KeyError: The scenario has no such service.
        """
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)


class _Table:
    """Strict, typed access to one TOML table, with errors that name file and key."""

    def __init__(self, path: Path, data: dict[str, Any], prefix: str = "") -> None:
        self.path = path
        self.data = data
        self.prefix = prefix

    def where(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def error(self, key: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{self.path}: {self.where(key)}: {problem}")

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.error(key, f"unknown key (expected one of {', '.join(sorted(allowed))})")

    def _get(self, key: str, default: object) -> object:
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            raise self.error(key, "missing")
        return default

    def string(self, key: str, default: object = None) -> str:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "must be a non-empty string")
        return value

    def number(self, key: str, default: float | None = None, *, minimum: float = 0.0) -> float:
        value = self._get(key, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, "must be a number")
        if not math.isfinite(value) or value < minimum:
            raise self.error(key, f"must be a finite number >= {minimum:g}")
        return float(value)

    def integer(self, key: str, default: int | None = None, *, minimum: int = 0) -> int:
        value = self._get(key, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, "must be an integer")
        if value < minimum:
            raise self.error(key, f"must be >= {minimum}")
        return value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get(key, list(default))
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v.strip() for v in value)
        ):
            raise self.error(key, "must be a non-empty array of non-empty strings")
        return tuple(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def table(self, key: str) -> _Table:
        value = self._get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        return _Table(self.path, cast("dict[str, Any]", value), f"{self.where(key)}.")

    def tables(self, key: str) -> list[_Table]:
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, "must be an array of tables ([[" + key + "]])")
        return [
            _Table(self.path, cast("dict[str, Any]", v), f"{self.where(key)}[{i}].")
            for i, v in enumerate(value)
        ]


_REQUIRED: Any = object()
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


def _load_behaviour(table: _Table) -> dict[str, Any]:
    """Validate a version's ``behaviour`` table with the service's own parser."""
    from sandbox.service import Behaviour  # lazy: keeps ``--list`` and process.py light

    try:
        Behaviour.from_dict(table.data)
    except (ValueError, TypeError) as exc:
        raise ScenarioError(f"{table.path}: {table.prefix.rstrip('.')}: {exc}") from None
    return dict(table.data)


def _load_version(table: _Table, name: str, service: str) -> VersionSpec:
    table.check_keys({"image", "start_seconds", "failure", "crash_after_seconds", "behaviour"})
    if not _LABEL.match(name):
        raise ScenarioError(
            f"{table.path}: {table.prefix.rstrip('.')}: a version label is ASCII letters, "
            "digits, '-', '_' or '.'"
        )
    failure = table.string("failure", "none")
    if failure not in FAILURE_MODES:
        raise table.error("failure", f"must be one of {', '.join(FAILURE_MODES)}")
    return VersionSpec(
        name=name,
        image=table.string("image", f"registry.local/{service}:{name}"),
        start_seconds=table.number("start_seconds", 5.0),
        failure=failure,
        crash_after_seconds=table.number("crash_after_seconds", 10.0, minimum=0.1),
        behaviour=_load_behaviour(table.table("behaviour")),
    )


def _load_alerts(table: _Table) -> AlertSpec:
    keys = {f for f in AlertSpec.__dataclass_fields__}
    table.check_keys(keys)
    defaults = AlertSpec()
    values = {k: table.number(k, float(getattr(defaults, k))) for k in keys}
    for key in ("availability", "error_rate", "rollback_error_rate"):
        if values[key] > 100:
            raise table.error(key, "is a percentage: must be <= 100")
    return AlertSpec(**values)


def _optional_int(table: _Table, key: str, maximum: int) -> int | None:
    if key not in table.data:
        return None
    value = table.integer(key)
    if value > maximum:
        raise table.error(key, f"must be <= {maximum}")
    return value


def _optional_percent(table: _Table, key: str, minimum: float) -> float | None:
    if key not in table.data:
        return None
    value = table.number(key, minimum=minimum)
    if value > 100:
        raise table.error(key, "is a percentage: must be <= 100")
    return value


def _load_hook(table: _Table) -> HookSpec:
    from sandbox.ecs_shift import (  # lazy, like the behaviour check
        HOOK_ACTIONS,
        HOOK_STAGES,
        HOOK_TARGETS,
        PAUSE_FORBIDDEN_STAGES,
    )

    table.check_keys({"type", "stages", "timeout_minutes", "timeout_action", "target_arn"})
    target = table.string("type")
    if target not in HOOK_TARGETS:
        raise table.error("type", f"must be one of {', '.join(sorted(HOOK_TARGETS))}")
    stages = table.strings("stages", ())
    for stage in stages:
        if stage not in HOOK_STAGES:
            raise table.error("stages", f"{stage!r} is not one of {', '.join(HOOK_STAGES)}")
        if target == "PAUSE" and stage in PAUSE_FORBIDDEN_STAGES:
            raise table.error("stages", f"ECS refuses PAUSE hooks at {stage}")
    action = table.data.get("timeout_action")
    if action is not None and action not in HOOK_ACTIONS:
        raise table.error("timeout_action", f"must be one of {', '.join(sorted(HOOK_ACTIONS))}")
    timeout = _optional_int(table, "timeout_minutes", 20160)
    if timeout is not None and timeout < 1:
        raise table.error("timeout_minutes", "must be >= 1")
    return HookSpec(
        target_type=target,
        stages=stages,
        timeout_minutes=timeout,
        timeout_action=action,
        target_arn=table.string("target_arn") if "target_arn" in table.data else None,
    )


def _load_deployment(table: _Table, desired: int) -> DeploymentSpec:
    table.check_keys(
        {
            "minimum_healthy_percent",
            "maximum_percent",
            "circuit_breaker",
            "strategy",
            "bake_time_minutes",
            "canary",
            "linear",
            "hook",
            "minute_seconds",
            "controller",
            "codedeploy_config",
            "ready_wait_minutes",
            "termination_wait_minutes",
        }
    )
    minimum = table.integer("minimum_healthy_percent", 100)
    maximum = table.integer("maximum_percent", 200, minimum=100)
    if minimum > 100:
        raise table.error("minimum_healthy_percent", "must be between 0 and 100")
    if desired and math.floor(desired * maximum / 100) <= math.ceil(desired * minimum / 100):
        raise table.error(
            "maximum_percent",
            f"leaves no room to replace a task of {desired} "
            f"(maximum {maximum} % must exceed minimum healthy {minimum} %)",
        )
    breaker = table.table("circuit_breaker")
    breaker.check_keys({"enable", "rollback"})
    strategy = table.string("strategy", "ROLLING")
    if strategy not in STRATEGIES:
        raise table.error("strategy", f"must be one of {', '.join(STRATEGIES)}")
    canary = table.table("canary")
    canary.check_keys({"percent", "bake_time_minutes"})
    linear = table.table("linear")
    linear.check_keys({"step_percent", "step_bake_time_minutes"})
    if canary.data and strategy != "CANARY":
        raise table.error("canary", 'only with strategy = "CANARY"')
    if linear.data and strategy != "LINEAR":
        raise table.error("linear", 'only with strategy = "LINEAR"')
    hooks = tuple(_load_hook(t) for t in table.tables("hook"))
    if (hooks or "bake_time_minutes" in table.data) and strategy == "ROLLING":
        raise table.error(
            "strategy", "lifecycle hooks and bake times need BLUE_GREEN, CANARY or LINEAR"
        )
    minute_seconds = table.number("minute_seconds", 60.0)
    if minute_seconds <= 0:
        raise table.error("minute_seconds", "must be > 0")
    controller = table.string("controller", "ECS")
    if controller not in ("ECS", "CODE_DEPLOY"):
        raise table.error("controller", 'must be "ECS" or "CODE_DEPLOY"')
    codedeploy_keys = {"codedeploy_config", "ready_wait_minutes", "termination_wait_minutes"}
    if controller == "ECS" and codedeploy_keys & set(table.data):
        raise table.error("controller", 'CodeDeploy settings need controller = "CODE_DEPLOY"')
    if controller == "CODE_DEPLOY" and strategy != "ROLLING":
        raise table.error("strategy", "CODE_DEPLOY services take no ECS strategy")
    codedeploy_config = table.string("codedeploy_config", "CodeDeployDefault.ECSAllAtOnce")
    from sandbox.codedeploy_sim import CodeDeployError, traffic_steps  # lazy

    try:
        traffic_steps(codedeploy_config, minute_seconds)
    except CodeDeployError as exc:
        raise table.error("codedeploy_config", exc.message) from None
    return DeploymentSpec(
        minimum_healthy_percent=minimum,
        maximum_percent=maximum,
        circuit_breaker=CircuitBreakerSpec(
            enable=breaker.boolean("enable", False), rollback=breaker.boolean("rollback", False)
        ),
        strategy=strategy,
        bake_time_minutes=_optional_int(table, "bake_time_minutes", 1440),
        canary_percent=_optional_percent(canary, "percent", 0.1),
        canary_bake_time_minutes=_optional_int(canary, "bake_time_minutes", 1440),
        linear_step_percent=_optional_percent(linear, "step_percent", 3.0),
        linear_step_bake_time_minutes=_optional_int(linear, "step_bake_time_minutes", 1440),
        hooks=hooks,
        minute_seconds=minute_seconds,
        controller=controller,
        codedeploy_config=codedeploy_config,
        ready_wait_minutes=_optional_int(table, "ready_wait_minutes", 2880),
        termination_wait_minutes=_optional_int(table, "termination_wait_minutes", 2880) or 0,
    )


_TARGET_GROUP = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$")
_WEIGHTS_ON = ("listener", "rule")


def _elb_name(table: _Table, key: str, default: str) -> str:
    name = table.string(key, default)
    if not _TARGET_GROUP.match(name):
        raise table.error(
            key, f"{name!r}: an ELB name is 1-32 letters, digits or '-', not at either end"
        )
    return name


def _load_step(table: _Table) -> CanaryStepSpec:
    table.check_keys({"weight", "wait", "pause"})
    weight = table.integer("weight")
    if weight > 100:
        raise table.error("weight", "is a percentage: must be <= 100")
    wait = table.number("wait") if "wait" in table.data else None
    pause = table.boolean("pause", False)
    if wait is not None and pause:
        raise table.error("pause", "either wait or pause = true, not both")
    return CanaryStepSpec(weight=weight, wait=wait, pause=pause)


def _load_alb(table: _Table, service: str, versions: tuple[VersionSpec, ...]) -> AlbSpec:
    table.check_keys(
        {
            "canary_service",
            "canary_version",
            "canary_desired_count",
            "load_balancer",
            "stable_target_group",
            "canary_target_group",
            "canary_weight",
            "weights_on",
            "steps",
        }
    )
    canary_service = table.string("canary_service")
    if not _LABEL.match(canary_service) or "." in canary_service:
        raise table.error("canary_service", "a service name is ASCII letters, digits, '-' or '_'")
    if canary_service == service:
        raise table.error("canary_service", "must differ from the front service")
    canary_version = table.string("canary_version")
    if canary_version not in {v.name for v in versions}:
        raise table.error("canary_version", f"{canary_version!r} is not one of the versions")
    stable_tg = _elb_name(table, "stable_target_group", f"{service}-stable")
    canary_tg = _elb_name(table, "canary_target_group", f"{service}-canary")
    if stable_tg == canary_tg:
        raise table.error("canary_target_group", "must differ from stable_target_group")
    canary_weight = table.integer("canary_weight", 0)
    if canary_weight > 100:
        raise table.error("canary_weight", "is a percentage: must be <= 100")
    weights_on = table.string("weights_on", "listener")
    if weights_on not in _WEIGHTS_ON:
        raise table.error("weights_on", f"must be one of {', '.join(_WEIGHTS_ON)}")
    steps = tuple(_load_step(t) for t in table.tables("steps"))
    if [s.weight for s in steps] != sorted(s.weight for s in steps):
        raise table.error("steps", "weights must rise from step to step")
    return AlbSpec(
        canary_service=canary_service,
        canary_version=canary_version,
        canary_desired_count=table.integer("canary_desired_count", 1, minimum=1),
        load_balancer=_elb_name(table, "load_balancer", f"{service}-alb"),
        stable_target_group=stable_tg,
        canary_target_group=canary_tg,
        canary_weight=canary_weight,
        weights_on=weights_on,
        steps=steps or (CanaryStepSpec(weight=100),),
    )


def _load_service(table: _Table) -> ServiceSpec:
    table.check_keys(
        {
            "name",
            "desired_count",
            "initial_version",
            "deployment",
            "versions",
            "stop_seconds",
            "steady_seconds",
            "rate",
            "paths",
            "alerts",
            "alb",
            "compare",
        }
    )
    name = table.string("name")
    if not _LABEL.match(name) or "." in name:
        raise table.error("name", "a service name is ASCII letters, digits, '-' or '_'")
    desired = table.integer("desired_count")
    versions_table = table.table("versions")
    versions: list[VersionSpec] = []
    for version_name in versions_table.data:
        versions.append(_load_version(versions_table.table(version_name), version_name, name))
    if not versions:
        raise table.error("versions", "at least one version is required")
    images = [v.image for v in versions]
    if len(set(images)) != len(images):
        raise table.error("versions", "two versions share one image; images identify versions")
    initial = table.string("initial_version")
    if initial not in {v.name for v in versions}:
        raise table.error("initial_version", f"{initial!r} is not one of the service's versions")
    deployment = _load_deployment(table.table("deployment"), desired)
    alb = None
    if "alb" in table.data:
        alb = _load_alb(table.table("alb"), name, tuple(versions))
        if deployment.controller != "ECS" or deployment.strategy != "ROLLING":
            raise table.error(
                "alb", "an ALB weighted canary needs a rolling service (controller ECS)"
            )
    return ServiceSpec(
        name=name,
        desired_count=desired,
        initial_version=initial,
        versions=tuple(versions),
        deployment=deployment,
        alb=alb,
        stop_seconds=table.number("stop_seconds", 2.0),
        steady_seconds=table.number("steady_seconds", 3.0),
        rate=_rate(table),
        paths=_paths(table),
        alerts=_load_alerts(table.table("alerts")),
        compare=_load_compare(table.table("compare")) if "compare" in table.data else None,
    )


def _load_compare(table: _Table) -> CompareSpec:
    table.check_keys(set(CompareSpec.__dataclass_fields__))
    d = CompareSpec()
    action = table.string("action", d.action)
    if action not in ("none", "pause", "rollback"):
        raise table.error("action", "none, pause or rollback")
    confidence = table.number("confidence", d.confidence)
    if not 0.5 <= confidence < 1:
        raise table.error("confidence", "must be in [0.5, 1)")
    ratios = {
        key: table.number(key, float(getattr(d, key)), minimum=1.0)
        for key in (
            "p95_allowed_increase",
            "p95_critical_increase",
            "error_allowed_increase",
            "error_critical_increase",
        )
    }
    return CompareSpec(
        window=table.number("window", d.window, minimum=1.0),
        min_samples=table.integer("min_samples", d.min_samples, minimum=3),
        confidence=confidence,
        action=action,
        **ratios,
    )


def _rate(table: _Table) -> float:
    from sandbox.traffic import MAX_RATE  # lazy, like the behaviour check

    rate = table.number("rate", DEFAULT_RATE)
    if rate > MAX_RATE:
        raise table.error("rate", f"must be <= {MAX_RATE:g} requests per second")
    return rate


def _paths(table: _Table) -> tuple[str, ...]:
    paths = table.strings("paths", ("/",))
    for path in paths:
        if not path.startswith("/") or path == "/health" or path.startswith("/__"):
            raise table.error(
                "paths", f"{path!r}: application paths start with '/' and are not /health or /__..."
            )
    return paths


def _load_fault(table: _Table, scenario_endpoints: list[str]) -> FaultSpec:
    from sandbox.faults import Fault  # lazy, like the behaviour check

    parameters = {"retry_after", "hang_s", "drip_interval_s", "ratio"}
    table.check_keys({"at", "endpoint", "fault", "duration"} | parameters)
    endpoint = table.string("endpoint")
    if endpoint not in scenario_endpoints:
        raise table.error("endpoint", f"{endpoint!r} is not one of {', '.join(scenario_endpoints)}")
    fault = {k: v for k, v in table.data.items() if k == "fault" or k in parameters}
    table.string("fault")
    try:
        Fault.from_dict(fault)
    except ValueError as exc:
        raise table.error("fault", str(exc)) from None
    duration = None
    if "duration" in table.data:
        duration = table.number("duration")
        if duration <= 0:
            raise table.error("duration", "must be > 0")
    return FaultSpec(at=table.number("at"), endpoint=endpoint, fault=fault, duration=duration)


def _load_action(table: _Table, services: dict[str, ServiceSpec]) -> TimelineAction:
    table.check_keys({"at", "action", "service", "version"})
    action = table.string("action")
    if action not in ACTIONS:
        raise table.error("action", f"must be one of {', '.join(ACTIONS)}")
    service = table.string("service")
    if service not in services:
        raise table.error("service", f"{service!r} is not a service of this scenario")
    version = table.string("version")
    if version not in {v.name for v in services[service].versions}:
        raise table.error("version", f"{version!r} is not a version of service {service!r}")
    return TimelineAction(at=table.number("at"), action=action, service=service, version=version)


def parse_scenario(path: Path, text: str) -> Scenario:
    """Parse and validate scenario TOML.

    Args:
        path: The file the text came from (used for the name and in error messages).
        text: The TOML text.

    Returns:
        The validated scenario.

    Raises:
        ScenarioError: The text is not valid TOML or does not match the schema.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: invalid TOML: {exc}") from exc
    root = _Table(path, data)
    root.check_keys(
        {"description", "cluster", "service", "timeline", "fault", "bake_seconds", "smoke"}
    )
    smoke = root.boolean("smoke", True)
    description = root.string("description")
    if "\n" in description:
        raise root.error("description", "must be one line")
    services: dict[str, ServiceSpec] = {}
    for table in root.tables("service"):
        spec = _load_service(table)
        if spec.name in services:
            raise table.error("name", f"service {spec.name!r} is defined twice")
        services[spec.name] = spec
    if not services:
        raise root.error("service", "at least one [[service]] is required")
    ecs_names = set(services)
    for table, spec in zip(root.tables("service"), services.values(), strict=True):
        if spec.alb is None:
            continue
        if spec.alb.canary_service in ecs_names:
            raise table.error("alb.canary_service", f"{spec.alb.canary_service!r} exists already")
        ecs_names.add(spec.alb.canary_service)
    timeline = [_load_action(t, services) for t in root.tables("timeline")]
    scenario = Scenario(
        name=path.stem,
        path=path,
        description=description,
        cluster=root.string("cluster"),
        services=tuple(services.values()),
        timeline=tuple(sorted(timeline, key=lambda a: a.at)),
        bake_seconds=root.number("bake_seconds", 0.0),
        smoke=smoke,
    )
    endpoints = scenario.fault_endpoints()
    faults = [_load_fault(t, endpoints) for t in root.tables("fault")]
    return dataclasses.replace(scenario, faults=tuple(sorted(faults, key=lambda f: f.at)))


def scenario_path(name_or_path: str) -> Path:
    """Resolve a bundled scenario name (``demo``) or a path to a ``.toml`` file.

    Raises:
        ScenarioError: No such scenario.
    """
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
    else:
        path = SCENARIO_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(name for name, _ in list_scenarios()) or "none"
        raise ScenarioError(f"{path}: no such scenario (bundled scenarios: {known})")
    return path


def load_scenario(name_or_path: str) -> Scenario:
    """Load a scenario by bundled name or by path.

    Args:
        name_or_path: ``"demo"`` or ``"path/to/file.toml"``.

    Returns:
        The validated scenario.

    Raises:
        ScenarioError: Not found, invalid TOML, or invalid content.
    """
    path = scenario_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from exc
    return parse_scenario(path, text)


def list_scenarios() -> list[tuple[str, str]]:
    """Return ``(name, description)`` for every bundled scenario, sorted by name.

    A scenario that fails to load is listed with its error as the description.
    """
    result: list[tuple[str, str]] = []
    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        try:
            description = parse_scenario(path, path.read_text(encoding="utf-8")).description
        except (ScenarioError, OSError) as exc:
            description = f"(invalid: {exc})"
        result.append((path.stem, description))
    return result
