"""One frozen settings model, loaded once from a TOML file and passed in.

A broken config must never end in a traceback: :func:`load_config` raises
:class:`ConfigError`, whose message is one line naming the file, the key and what
was expected, and the CLI turns it into exit code 2.
"""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_CONFIG = Path("deploywatch.toml")


class ConfigError(Exception):
    """The config file cannot be used. The message is one line, fit for a terminal."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EnvironmentSettings(_Frozen):
    """Which environment this deployment window is about."""

    name: Annotated[str, Field(min_length=1, max_length=40)] = "default"
    """Shown in the top bar, e.g. ``production`` or ``staging-eu``."""
    production: bool = False
    """A production environment is shown in a warning colour and asks for more
    care before destructive actions."""
    read_only: bool = False
    """Refuse every action in this environment, whatever the command line says."""


class AwsSettings(_Frozen):
    """How to reach AWS. Credentials come from the standard chain, never from here."""

    region: Annotated[str, Field(min_length=1)] = "us-east-1"
    """AWS region of the clusters."""
    profile: str | None = None
    """Named profile from ``~/.aws/config``; ``None`` uses the default chain."""
    endpoint_url: str | None = None
    """Override for the AWS endpoint, e.g. the local sandbox."""

    @field_validator("endpoint_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL")
        return value


class EcsSettings(_Frozen):
    """How the ECS source polls."""

    poll_interval: Annotated[float, Field(ge=0.2, le=300)] = 5.0
    """Seconds between two polls of ``describe_services``."""
    connect_timeout: Annotated[float, Field(gt=0, le=60)] = 2.0
    """botocore connect timeout, seconds."""
    read_timeout: Annotated[float, Field(gt=0, le=120)] = 5.0
    """botocore read timeout, seconds."""
    max_concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    """How many AWS calls the ECS poller may have in flight at once (worker threads)."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> timedelta:
    """``"5m"``, ``"30s"``, ``"1.5h"``, ``"250ms"`` or a number of seconds → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError('a duration such as "30s", "5m" or "1h"')
    if seconds < 0:
        raise ValueError("a duration that is not negative")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class DatadogSettings(_Frozen):
    """Where Datadog is. Keys come from ``DD_API_KEY`` / ``DD_APP_KEY``, never from here."""

    site: str | None = None
    """``datadoghq.com``, ``datadoghq.eu`` ...; ``DD_SITE`` wins when set."""
    host: str | None = None
    """Full URL override, e.g. the sandbox's endpoint."""
    poll_interval: Annotated[float, Field(ge=1, le=600)] = 15.0
    """Seconds between two queries."""
    window: Duration = timedelta(minutes=15)
    """How much history each query asks for (what the sparklines show)."""


class MetricSettings(_Frozen):
    """A named Datadog query, e.g. ``avg:trace.http.request.errors{service:web} by {version}``."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    """Short name, used by rules as ``metric:<name>``."""
    query: Annotated[str, Field(min_length=1)]
    unit: str = ""
    """Shown after values: ``%``, ``ms``, ``req/s``."""
    service: str | None = None
    """The service (``cluster/service`` or its label) this metric belongs to."""


class SentrySettings(_Frozen):
    """Sentry's web API. The token comes from ``SENTRY_AUTH_TOKEN``, never from here."""

    base_url: str = "https://sentry.io"
    org: Annotated[str, Field(min_length=1)]
    projects: tuple[str, ...] = ()
    """Project slugs or ids; empty means all of the organization's."""
    environment: str | None = None
    release: str | None = None
    """The release being deployed; when unset, the new revision's image tag is used."""
    service: str | None = None
    poll_interval: Annotated[float, Field(ge=1, le=600)] = 30.0


class ProbeSettings(_Frozen):
    """An HTTP health probe."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    url: str
    method: Literal["GET", "HEAD", "POST"] = "GET"
    headers: dict[str, str] = {}
    expect_status: Annotated[int, Field(ge=100, le=599)] = 200
    body_contains: str | None = None
    json_path: str | None = None
    """Dotted path into a JSON body, e.g. ``status`` or ``checks.db``."""
    json_value: str | None = None
    timeout: Duration = timedelta(seconds=2)
    interval: Duration = timedelta(seconds=5)
    window: Annotated[int, Field(ge=1, le=1000)] = 20
    """Rounds in the rolling success ratio."""
    service: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL")
        return value


RULE_SUBJECT = re.compile(
    r"^(metric:[A-Za-z0-9_.-]+|probe:[A-Za-z0-9_-]+(\.(availability|latency))?"
    r"|sentry:(new_issues|errors)|ecs:failed_tasks)$"
)


class RuleSettings(_Frozen):
    """One ``[[rule]]``: subject, comparison, window, severity, action, no-data policy."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: Annotated[str, Field(min_length=1, max_length=60)]
    subject: str
    """``metric:<name>``, ``probe:<name>[.availability|.latency]``, ``sentry:new_issues``,
    ``sentry:errors`` or ``ecs:failed_tasks``."""
    op: Literal[">", ">=", "<", "<="]
    threshold: float
    window: Annotated[Duration, Field(alias="for")]
    """How long the condition must hold, e.g. ``"5m"``."""
    severity: Literal["warn", "critical"] = "critical"
    action: Literal["none", "pause", "rollback"] = "none"
    no_data: Literal["no_data", "ok", "breach"] = "no_data"
    """What silence means: NO DATA (default), OK, or a breach."""
    service: str | None = None
    """For ``ecs:failed_tasks`` (and to scope a rule to one service)."""
    group: str | None = None
    """For a grouped metric, only this group, e.g. ``version:v2``; default: any group."""

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        if not RULE_SUBJECT.match(value):
            raise ValueError(
                "metric:<name>, probe:<name>[.availability|.latency], sentry:new_issues, "
                "sentry:errors or ecs:failed_tasks"
            )
        return value


class ActionSettings(_Frozen):
    """How actions are executed and recorded."""

    audit_log: Path | None = None
    """The JSONL audit log; default: the user state directory
    (``~/.local/state/deploywatch/audit.jsonl`` on Linux)."""
    countdown: Duration = timedelta(seconds=10)
    """How long an automatic pause or rollback waits, visibly, for a cancel."""


KEY_NAME = re.compile(r"^[A-Za-z0-9!@#$%^&*()_+=\-]$|^(ctrl|shift|alt)\+[a-z0-9]+$|^f[0-9]{1,2}$")


class KeySettings(_Frozen):
    """The keymap of the actions (Textual key names: ``R``, ``ctrl+r``, ``f5``...)."""

    rollback: str = "R"
    promote: str = "P"
    pause: str = "p"
    resume: str = "r"
    cancel: str = "c"
    """Cancel a pending automatic action."""
    freeze: str = "f"
    """Freeze / unfreeze the display (data keeps flowing and rules keep judging)."""

    @field_validator("*")
    @classmethod
    def _key(cls, value: str) -> str:
        if not KEY_NAME.match(value):
            raise ValueError('a key such as "R", "p", "ctrl+r" or "f5"')
        return value

    @model_validator(mode="after")
    def _distinct(self) -> KeySettings:
        seen: dict[str, str] = {}
        for name, key in self.model_dump().items():
            if key in seen:
                raise ValueError(f"distinct keys, but {key!r} is both {seen[key]} and {name}")
            if key in ("q", "question_mark", "?", "j", "k", "tab"):
                raise ValueError(f"{name}: a key not already used ({key!r} is taken)")
            seen[key] = name
        return self


class CodeDeploySettings(_Frozen):
    """The CodeDeploy application and deployment group of a ``CODE_DEPLOY`` service."""

    application: Annotated[str, Field(min_length=1)]
    deployment_group: Annotated[str, Field(min_length=1)]


class CanaryStep(_Frozen):
    """One step of an ALB weighted canary: a canary weight, then a wait or a pause."""

    weight: Annotated[int, Field(ge=0, le=100)]
    """Percent of traffic to the canary target group."""
    wait: Duration | None = None
    """Advance by itself after this long (only while no rule is FAILING)."""
    pause: bool = False
    """Wait for an operator's promote."""

    @model_validator(mode="after")
    def _wait_or_pause(self) -> CanaryStep:
        if self.wait is not None and self.pause:
            raise ValueError("either wait or pause = true, not both")
        return self


class AlbCanarySettings(_Frozen):
    """An ALB weighted canary that deploywatch drives: its forward action's two target
    groups, and the steps from config."""

    listener_arn: Annotated[str, Field(pattern=r"^arn:")]
    rule_arn: Annotated[str | None, Field(pattern=r"^arn:")] = None
    """The listener rule whose forward action holds the weights (default: the listener's
    default action)."""
    stable_target_group_arn: Annotated[str, Field(pattern=r"^arn:")]
    canary_target_group_arn: Annotated[str, Field(pattern=r"^arn:")]
    steps: Annotated[tuple[CanaryStep, ...], Field(min_length=1)]

    @field_validator("steps")
    @classmethod
    def _rising(cls, steps: tuple[CanaryStep, ...]) -> tuple[CanaryStep, ...]:
        weights = [s.weight for s in steps]
        if weights != sorted(weights):
            raise ValueError("steps with rising weights")
        return steps


class ServiceRef(_Frozen):
    """One ECS service to watch."""

    cluster: Annotated[str, Field(min_length=1)]
    """Cluster name or ARN."""
    service: Annotated[str, Field(min_length=1)]
    """Service name or ARN."""
    label: str | None = None
    """Short name shown on screen; defaults to the service name."""
    codedeploy: CodeDeploySettings | None = None
    """For a ``CODE_DEPLOY`` service: where its deployments are."""
    canary: AlbCanarySettings | None = None
    """An ALB weighted canary deploywatch drives for this service."""

    @property
    def key(self) -> str:
        """The stable key of this service: ``cluster/service``."""
        return f"{self.cluster}/{self.service}"

    @property
    def display(self) -> str:
        """The name a person sees."""
        return self.label or self.service


class Settings(_Frozen):
    """Everything deploywatch needs, validated once at start-up."""

    environment: EnvironmentSettings = EnvironmentSettings()
    aws: AwsSettings = AwsSettings()
    ecs: EcsSettings = EcsSettings()
    services: Annotated[tuple[ServiceRef, ...], Field(alias="service", min_length=1)]
    """The ``[[service]]`` tables."""
    datadog: DatadogSettings | None = None
    metrics: Annotated[tuple[MetricSettings, ...], Field(alias="metric")] = ()
    sentry: SentrySettings | None = None
    probes: Annotated[tuple[ProbeSettings, ...], Field(alias="probe")] = ()
    rules: Annotated[tuple[RuleSettings, ...], Field(alias="rule")] = ()
    actions: ActionSettings = ActionSettings()
    keys: KeySettings = KeySettings()

    def rule_service(self, rule: RuleSettings) -> str | None:
        """The service key a rule is about: its own ``service``, else its metric's,
        probe's or Sentry's, else the only configured service."""
        key = self.service_key(rule.service)
        if key is not None:
            return key
        kind, _, target = rule.subject.partition(":")
        target = target.split(".", 1)[0]
        owner: str | None = None
        if kind == "metric":
            owner = next((m.service for m in self.metrics if m.name == target), None)
        elif kind == "probe":
            owner = next((p.service for p in self.probes if p.name == target), None)
        elif kind == "sentry" and self.sentry is not None:
            owner = self.sentry.service
        key = self.service_key(owner)
        if key is None and len(self.services) == 1:
            key = self.services[0].key
        return key

    def service_key(self, name: str | None) -> str | None:
        """Resolve a service reference (key, service name or label) to its key."""
        if name is None:
            return None
        for ref in self.services:
            if name in (ref.key, ref.service, ref.label):
                return ref.key
        return None

    @model_validator(mode="after")
    def _references(self) -> Settings:
        def unique(kind: str, names: list[str]) -> None:
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise ValueError(f"unique {kind} names, but {name!r} appears twice")
                seen.add(name)

        unique("metric", [m.name for m in self.metrics])
        unique("probe", [p.name for p in self.probes])
        unique("rule", [r.name for r in self.rules])
        if self.metrics and self.datadog is None:
            raise ValueError("a [datadog] table, since [[metric]] queries are configured")
        for kind, items in (("metric", self.metrics), ("probe", self.probes)):
            for item in items:
                if item.service is not None and self.service_key(item.service) is None:
                    raise ValueError(
                        f"{kind} {item.name!r}: service {item.service!r} to be a configured [[service]]"
                    )
        sentry_service = self.sentry.service if self.sentry is not None else None
        if sentry_service is not None and self.service_key(sentry_service) is None:
            raise ValueError(f"sentry.service {sentry_service!r} to be a configured [[service]]")
        metrics = {m.name for m in self.metrics}
        probes = {p.name for p in self.probes}
        for rule in self.rules:
            kind, _, target = rule.subject.partition(":")
            target = target.split(".", 1)[0]
            if kind == "metric" and target not in metrics:
                raise ValueError(
                    f"rule {rule.name!r}: subject {rule.subject!r} to name a [[metric]] (have: {', '.join(sorted(metrics)) or 'none'})"
                )
            if kind == "probe" and target not in probes:
                raise ValueError(
                    f"rule {rule.name!r}: subject {rule.subject!r} to name a [[probe]] (have: {', '.join(sorted(probes)) or 'none'})"
                )
            if kind == "sentry" and self.sentry is None:
                raise ValueError(
                    f"rule {rule.name!r}: a [sentry] table for subject {rule.subject!r}"
                )
            if rule.action != "none" and self.rule_service(rule) is None:
                raise ValueError(
                    f"rule {rule.name!r}: action = {rule.action!r} needs to know its service: set service = one of the [[service]] keys (or on its metric/probe)"
                )
            if kind == "ecs" and self.service_key(rule.service) is None:
                raise ValueError(
                    f"rule {rule.name!r}: service = one of the [[service]] keys for ecs:failed_tasks"
                )
        return self

    @field_validator("services")
    @classmethod
    def _unique(cls, services: tuple[ServiceRef, ...]) -> tuple[ServiceRef, ...]:
        seen: set[str] = set()
        for ref in services:
            if ref.key in seen:
                raise ValueError(f"unique services, but {ref.key} appears twice")
            seen.add(ref.key)
        return services


def _key_path(loc: tuple[int | str, ...]) -> str:
    """``("service", 1, "cluster")`` → ``service #2.cluster`` (tables counted from 1)."""
    text = ""
    for item in loc:
        if isinstance(item, int):
            text += f" #{item + 1}"
        else:
            text += f".{item}" if text else item
    return text or "(top level)"


def _expected(error: Any) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    if kind == "missing":
        return "a value (it is required)"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return str(error["msg"]).lower()


def format_validation_error(path: Path, exc: ValidationError) -> str:
    """Turn pydantic's error into one line: ``file: key: expected ..., got ...``."""
    # An unknown key usually explains a "missing" one next to it (a typo): say it first.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    key = _key_path(tuple(first["loc"]))
    if not first["loc"]:  # a cross-reference check: its message names the key itself
        return f"{path}: expected {_expected(first)}"
    if first["type"] == "extra_forbidden":
        return f"{path}: {key}: unknown key (check the spelling against deploywatch.example.toml)"
    got = first.get("input")
    got_text = "" if first["type"] in ("missing", "extra_forbidden") else f", got {got!r}"
    more = len(errors) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{path}: {key}: expected {_expected(first)}{got_text}{tail}"


def parse_config(data: dict[str, Any], path: Path) -> Settings:
    """Validate already-parsed TOML data.

    Args:
        data: The TOML document as a dict.
        path: Where it came from, for error messages.

    Returns:
        The frozen settings.

    Raises:
        ConfigError: One line naming the file, key and what was expected.
    """
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None


def load_config(path: Path) -> Settings:
    """Read and validate a deploywatch TOML file.

    Args:
        path: The config file.

    Returns:
        The frozen settings.

    Raises:
        ConfigError: The file is missing, unreadable, not TOML or not valid.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (pass --config FILE)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: expected UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: expected valid TOML: {exc}") from None
    return parse_config(data, path)
