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
ACTIONS: tuple[str, ...] = ("deploy",)


class ScenarioError(Exception):
    """A scenario cannot be found, parsed or validated. The message names file and key."""


@dataclass(frozen=True)
class CircuitBreakerSpec:
    """ECS ``deploymentCircuitBreaker``."""

    enable: bool = False
    rollback: bool = False


@dataclass(frozen=True)
class DeploymentSpec:
    """The parts of ECS ``deploymentConfiguration`` the sandbox honours."""

    minimum_healthy_percent: int = 100
    maximum_percent: int = 200
    circuit_breaker: CircuitBreakerSpec = field(default_factory=CircuitBreakerSpec)

    def to_api(self) -> dict[str, Any]:
        """Return the configuration in the shape of the ECS API.

        Returns:
            A ``deploymentConfiguration`` dict for ``create_service``/``update_service``.
        """
        return {
            "minimumHealthyPercent": self.minimum_healthy_percent,
            "maximumPercent": self.maximum_percent,
            "deploymentCircuitBreaker": {
                "enable": self.circuit_breaker.enable,
                "rollback": self.circuit_breaker.rollback,
            },
        }


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


def _load_deployment(table: _Table, desired: int) -> DeploymentSpec:
    table.check_keys({"minimum_healthy_percent", "maximum_percent", "circuit_breaker"})
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
    return DeploymentSpec(
        minimum_healthy_percent=minimum,
        maximum_percent=maximum,
        circuit_breaker=CircuitBreakerSpec(
            enable=breaker.boolean("enable", False), rollback=breaker.boolean("rollback", False)
        ),
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
    return ServiceSpec(
        name=name,
        desired_count=desired,
        initial_version=initial,
        versions=tuple(versions),
        deployment=_load_deployment(table.table("deployment"), desired),
        stop_seconds=table.number("stop_seconds", 2.0),
        steady_seconds=table.number("steady_seconds", 3.0),
        rate=_rate(table),
        paths=_paths(table),
        alerts=_load_alerts(table.table("alerts")),
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
    root.check_keys({"description", "cluster", "service", "timeline", "fault"})
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
    timeline = [_load_action(t, services) for t in root.tables("timeline")]
    scenario = Scenario(
        name=path.stem,
        path=path,
        description=description,
        cluster=root.string("cluster"),
        services=tuple(services.values()),
        timeline=tuple(sorted(timeline, key=lambda a: a.at)),
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
