"""One frozen settings model, loaded once from a TOML file and passed in.

A broken config must never end in a traceback: :func:`load_config` raises
:class:`ConfigError`, whose message is one line naming the file, the key and what
was expected, and the CLI turns it into exit code 2.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from engine.fleet import is_pattern, prepare, service_key, written_as
from sources.datadog import split_query

DEFAULT_CONFIG = Path("deploywatch.toml")
MAX_CONFIG_BYTES = 1024 * 1024
"""A config file larger than this is refused (a path to ``/dev/zero`` cannot eat memory)."""


def visible(text: str) -> str:
    """``text`` with every control or otherwise invisible character escaped (``\\x1b``,
    ``\\n``...), so a hostile name cannot drive the terminal or break the line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ConfigError(Exception):
    """The config file cannot be used. The message is one line, fit for a terminal:
    control characters in it are escaped, whatever the file or its keys contain."""

    def __init__(self, message: str) -> None:
        super().__init__(visible(message))


Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A finite TOML integer or float; ``true``, ``"5"``, ``nan`` and ``inf`` are refused."""
Int = Annotated[int, Field(strict=True)]
"""A TOML integer; ``true`` and ``5.0`` are refused."""
Bool = Annotated[bool, Field(strict=True)]
"""``true`` or ``false``; ``1`` and ``"yes"`` are refused."""


_MULTILINE = frozenset({"query", "body_contains", "command"})
"""Text fields where a TOML multi-line string (newlines, tabs) makes sense."""


def _plain(text: str, *, multiline: bool) -> bool:
    allowed = "\t\n\r" if multiline else ""
    return text.isprintable() or all(c.isprintable() or c in allowed for c in text)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_timedelta="float")

    @field_validator("*")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        """No text in the config may carry terminal control sequences to the screen."""
        texts = [value] if isinstance(value, str) else []
        if isinstance(value, tuple | list):
            texts = [v for v in value if isinstance(v, str)]
        elif isinstance(value, dict):
            texts = [str(v) for item in value.items() for v in item]
        multiline = info.field_name in _MULTILINE
        if not all(_plain(text, multiline=multiline) for text in texts):
            raise ValueError("text without control characters")
        return value


class EnvironmentSettings(_Frozen):
    """Which environment this deployment window is about."""

    name: Annotated[str, Field(min_length=1, max_length=40)] = "default"
    """Shown in the top bar, e.g. ``production`` or ``staging-eu``."""
    production: Bool = False
    """A production environment is shown in a warning colour and asks for more
    care before destructive actions."""
    read_only: Bool = False
    """Refuse every action in this environment, whatever the command line says."""
    bake: Duration = timedelta(0)
    """How long a completed deployment must stay HEALTHY to be signed off (``"30m"``);
    0: signed off as soon as it completes healthy. A service may set its own."""
    bake_on_failing: Literal["fail", "restart"] = "fail"
    """What a FAILING verdict does to a running bake: fail it, or start it again."""


class AwsSettings(_Frozen):
    """How to reach AWS. Credentials come from the standard chain, never from here."""

    region: Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")] = "us-east-1"
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


class AwsContext(AwsSettings):
    """One ``[[aws]]`` context: an account and region, how to reach it, how it looks."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")]
    """Short name, shown on the cards and the top bar; services name it as ``context``."""
    role_arn: Annotated[str | None, Field(pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$")] = (
        None
    )
    """A role to assume (with the profile's or the default chain's credentials);
    refreshed before it expires."""
    role_session_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9+=,.@_-]{2,64}$")] = "deploywatch"
    external_id: Annotated[str | None, Field(min_length=2, max_length=1224)] = None
    account_id: Annotated[str | None, Field(pattern=r"^[0-9]{12}$")] = None
    """The account, as the confirmation names it (default: the role's account, else
    the caller identity's once known)."""
    environment: Annotated[str | None, Field(min_length=1, max_length=40)] = None
    """Its environment label (default: the context's name)."""
    production: Bool = False
    """Production: shown in the warning colour, and actions ask to type the name."""

    @property
    def account(self) -> str | None:
        """The account id from the config or the role's ARN, when known."""
        if self.account_id is not None:
            return self.account_id
        if self.role_arn is not None:
            return self.role_arn.split(":")[4]
        return None

    @property
    def sso_hint(self) -> str:
        """What to do when its credentials expired, in words."""
        if self.profile is not None:
            return f"aws sso login --profile {self.profile}"
        if self.role_arn is not None:
            return f"renew the credentials that assume {self.role_arn}"
        return f"renew the credentials of context {self.name}"


class EcsSettings(_Frozen):
    """How the ECS source polls."""

    poll_interval: Annotated[Number, Field(ge=0.2, le=300)] = 5.0
    """Seconds between two polls of ``describe_services``."""
    connect_timeout: Annotated[Number, Field(gt=0, le=60)] = 2.0
    """botocore connect timeout, seconds."""
    read_timeout: Annotated[Number, Field(gt=0, le=120)] = 5.0
    """botocore read timeout, seconds."""
    max_concurrency: Annotated[Int, Field(ge=1, le=64)] = 8
    """How many AWS calls the ECS poller may have in flight at once (worker threads)."""
    discover_interval: Annotated[Number, Field(ge=5, le=3600)] = 60.0
    """Seconds between two listings of the services a discovery entry matches."""
    max_services: Annotated[Int, Field(ge=1, le=5000)] = 5000
    """Most services one context's discovery watches."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_EXAMPLE = 'a duration such as "30s", "5m" or "1h"'
MAX_DURATION_S = 7 * 24 * 3600.0
"""No duration in the config may be longer than a week (nor overflow a timedelta)."""


def _seconds(value: Any) -> float:
    """The seconds a config duration stands for; may be ``inf``, never NaN."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond any float
            seconds = math.inf
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(_DURATION_EXAMPLE)
    if math.isnan(seconds):
        raise ValueError(_DURATION_EXAMPLE)
    return seconds


def _show(seconds: float) -> str:
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms" if seconds else "0s"


def _within(low: float, high: float, *, low_open: bool = False) -> Callable[[Any], timedelta]:
    """A parser of durations in ``[low, high]`` seconds (``(low, high]`` if ``low_open``).

    The bounds are checked before a timedelta is built, so ``1e300`` is a clear error
    rather than an overflow.
    """

    def parse(value: Any) -> timedelta:
        seconds = _seconds(value)
        too_low = seconds <= low if low_open else seconds < low
        if too_low or seconds > high:
            if low_open:
                lower = f"longer than {_show(low)} and "
            else:
                lower = f"of at least {_show(low)} and " if low else "of "
            raise ValueError(f"a duration {lower}at most {_show(high)}")
        return timedelta(seconds=seconds)

    return parse


def parse_duration(value: Any) -> timedelta:
    """``"5m"``, ``"30s"``, ``"1.5h"``, ``"250ms"`` or a number of seconds → timedelta.

    Raises:
        ValueError: Not a duration, negative or longer than a week.
    """
    return _within(0, MAX_DURATION_S)(value)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A duration between 0 and a week."""
MAX_WINDOW_S = 3 * 24 * 3600.0
"""Longest rule ``for`` and Datadog ``window``: three days."""


class DatadogSettings(_Frozen):
    """Where Datadog is. Keys come from ``DD_API_KEY`` / ``DD_APP_KEY``, never from here."""

    site: str | None = None
    """``datadoghq.com``, ``datadoghq.eu`` ...; ``DD_SITE`` wins when set."""
    host: str | None = None
    """Full URL override, e.g. the sandbox's endpoint."""

    @field_validator("host")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL")
        return value

    poll_interval: Annotated[Number, Field(ge=1, le=600)] = 15.0
    """Seconds between two queries."""
    window: Annotated[timedelta, BeforeValidator(_within(0, MAX_WINDOW_S, low_open=True))] = (
        timedelta(minutes=15)
    )
    """How much history each query asks for (what the sparklines show)."""


class MetricSettings(_Frozen):
    """A named Datadog query, e.g. ``avg:trace.http.request.errors{service:web} by {version}``."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    """Short name, used by rules as ``metric:<name>``."""
    query: Annotated[str, Field(min_length=1, max_length=4000)]
    unit: str = ""
    """Shown after values: ``%``, ``ms``, ``req/s``."""
    service: str | None = None
    """The service (``cluster/service`` or its label) this metric belongs to."""

    @field_validator("query")
    @classmethod
    def _metric_query(cls, value: str) -> str:
        try:  # the same translation the Datadog source makes at start
            split_query(value, "q")
        except ValueError:
            raise ValueError(
                "a Datadog query naming a metric, such as avg:system.cpu.user{service:web}"
            ) from None
        return value


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
    poll_interval: Annotated[Number, Field(ge=1, le=600)] = 30.0

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL")
        return value

    @field_validator("projects")
    @classmethod
    def _ids_or_slugs(cls, projects: tuple[str, ...]) -> tuple[str, ...]:
        numeric = [p.strip().lstrip("-").isdigit() for p in projects if p.strip()]
        if any(numeric) and not all(numeric):  # the Sentry source refuses a mix at start
            raise ValueError("project ids or project slugs, not a mix of both")
        return projects


class ProbeSettings(_Frozen):
    """An HTTP health probe."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    url: str
    method: Literal["GET", "HEAD", "POST"] = "GET"
    headers: dict[str, str] = {}
    expect_status: Annotated[Int, Field(ge=100, le=599)] = 200
    body_contains: str | None = None
    json_path: str | None = None
    """Dotted path into a JSON body, e.g. ``status`` or ``checks.db``."""
    json_value: str | None = None
    timeout: Annotated[timedelta, BeforeValidator(_within(0, 60, low_open=True))] = timedelta(
        seconds=2
    )
    interval: Annotated[timedelta, BeforeValidator(_within(0.1, 3600))] = timedelta(seconds=5)
    window: Annotated[Int, Field(ge=1, le=1000)] = 20
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

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, ser_json_timedelta="float"
    )

    name: Annotated[str, Field(min_length=1, max_length=60)]
    subject: str
    """``metric:<name>``, ``probe:<name>[.availability|.latency]``, ``sentry:new_issues``,
    ``sentry:errors`` or ``ecs:failed_tasks``."""
    op: Literal[">", ">=", "<", "<="]
    threshold: Number
    window: Annotated[
        Annotated[timedelta, BeforeValidator(_within(0, MAX_WINDOW_S))], Field(alias="for")
    ]
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
        if SMOKE_SUBJECT.match(value):
            return value
        if not RULE_SUBJECT.match(value):
            raise ValueError(
                "metric:<name>, probe:<name>[.availability|.latency], sentry:new_issues, "
                "sentry:errors, ecs:failed_tasks or smoke:<name>"
            )
        return value


COMPARE_SUBJECT = re.compile(r"^metric:[A-Za-z0-9_.-]+$")


class CompareSettings(_Frozen):
    """One ``[[compare]]``: a grouped metric, the new version's series against the
    baseline's, judged by a Mann-Whitney U test (see ``engine/compare.py``)."""

    name: Annotated[str, Field(min_length=1, max_length=60)]
    subject: Annotated[str, Field(pattern=COMPARE_SUBJECT.pattern)]
    """``metric:<name>`` of a metric queried ``by {version}`` (or any tag)."""
    baseline: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    """The baseline group, e.g. ``version:v1``; default: the group whose points began first."""
    canary: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    """The canary group, e.g. ``version:v2``; default: the group whose points began last."""
    direction: Literal["increase", "decrease", "either"] = "increase"
    """Which change is bad."""
    confidence: Annotated[Number, Field(ge=0.5, lt=1)] = 0.95
    statistic: Literal["median", "mean"] = "median"
    """What the ratio compares (``mean`` suits sparse counts such as error rates)."""
    allowed_increase: Annotated[Number, Field(ge=1, le=1000)] = 1.1
    critical_increase: Annotated[Number, Field(ge=1, le=1000)] = 2.0
    allowed_decrease: Annotated[Number, Field(gt=0, le=1)] = 0.9
    critical_decrease: Annotated[Number, Field(ge=0, le=1)] = 0.5
    min_samples: Annotated[Int, Field(ge=3, le=2048)] = 10
    """Fewest points per side in the window."""
    window: Annotated[timedelta, BeforeValidator(_within(0, MAX_WINDOW_S, low_open=True))] = (
        timedelta(minutes=5)
    )
    no_data: Literal["no_data", "ok", "breach"] = "no_data"
    """Too few samples or one version only: NO DATA (left out of the score), a pass
    (``ok``) or a fail (``breach``)."""
    weight: Annotated[Number, Field(gt=0, le=1000)] = 1.0
    critical: Bool = False
    """A Fail of this comparison fails the canary score alone."""
    action: Literal["none", "pause", "rollback"] = "none"
    service: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> CompareSettings:
        if self.critical_increase < self.allowed_increase:
            raise ValueError("critical_increase of at least allowed_increase")
        if self.critical_decrease > self.allowed_decrease:
            raise ValueError("critical_decrease of at most allowed_decrease")
        if self.baseline is not None and self.baseline == self.canary:
            raise ValueError("a baseline and a canary that are two different groups")
        return self


class JudgeSettings(_Frozen):
    """The canary score over every ``[[compare]]`` (Kayenta's defaults)."""

    pass_score: Annotated[Number, Field(ge=0, le=100)] = 75.0
    """A score at least this passes."""
    marginal_score: Annotated[Number, Field(ge=0, le=100)] = 50.0
    """A score under this fails the canary (between the two: marginal, DEGRADED)."""

    @model_validator(mode="after")
    def _ordered(self) -> JudgeSettings:
        if self.marginal_score > self.pass_score:
            raise ValueError("marginal_score of at most pass_score")
        return self


def _file_path(value: Any) -> Any:
    if isinstance(value, str) and (not value.strip() or not value.isprintable()):
        raise ValueError("a file path (not empty, no control characters)")
    return value


SMOKE_SUBJECT = re.compile(r"^smoke:[A-Za-z0-9_-]+$")
"""A rule subject naming a ``[[smoke]]`` suite: 1 while it fails, 0 once it passes."""


class SmokeSettings(_Frozen):
    """One ``[[smoke]]`` suite: a command run after a deployment completes (and on a
    key), its JUnit XML report, a timeout."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=60)]
    command: str | tuple[str, ...]
    """An argv list, or a string split like a shell would (no expansion) — run through
    ``/bin/sh -c`` only with ``shell = true``."""
    shell: Bool = False
    junit: Annotated[Path, BeforeValidator(_file_path)] | None = None
    """Its JUnit XML report (relative to ``cwd``)."""
    timeout: Annotated[timedelta, BeforeValidator(_within(0, 3600, low_open=True))] = timedelta(
        minutes=5
    )
    """A command still running then is killed (its whole process group)."""
    on: tuple[Literal["completed", "key"], ...] = ("completed", "key")
    """When it runs: a deployment of its service completed, and/or on the smoke key."""
    cwd: Annotated[Path, BeforeValidator(_file_path)] | None = None
    """Working directory (default: where deploywatch was started)."""
    env: dict[str, str] = {}
    """Added to the environment the command inherits."""
    service: str | None = None
    """The service whose completion triggers it (default: any service's)."""

    @field_validator("command")
    @classmethod
    def _runnable(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(value, str) and not value.strip():
            raise ValueError("a command (not blank)")
        if isinstance(value, tuple) and (not value or not value[0].strip()):
            raise ValueError("an argv list whose first item names the program")
        return value


class HistorySettings(_Frozen):
    """The deployment history (``h``): how much of it is read, and the targets its
    figures are coloured against."""

    per_service: Annotated[Int, Field(ge=1, le=200)] = 50
    """Most recent deployments listed per service."""
    max_pages: Annotated[Int, Field(ge=1, le=20)] = 5
    """Most pages (``nextToken``) followed per service."""
    success_rate: Annotated[Number, Field(ge=0, le=100)] = 95
    """Target: more than this percent of deployments complete."""
    rollback_rate: Annotated[Number, Field(ge=0, le=100)] = 10
    """Target: fewer than this percent are rolled back."""
    deploy_time: Annotated[timedelta, BeforeValidator(_within(0, 24 * 3600, low_open=True))] = (
        timedelta(minutes=30)
    )
    """Target: the median and p90 time to deploy stay under this."""
    mttr: Annotated[timedelta, BeforeValidator(_within(0, 24 * 3600, low_open=True))] = timedelta(
        minutes=5
    )
    """Target: the mean time from first breach to recovery stays under this."""


class ActionSettings(_Frozen):
    """How actions are executed and recorded."""

    audit_log: Annotated[Path, BeforeValidator(_file_path)] | None = None
    """The JSONL audit log; default: the user state directory
    (``~/.local/state/deploywatch/audit.jsonl`` on Linux)."""
    countdown: Annotated[timedelta, BeforeValidator(_within(1, 600))] = timedelta(seconds=10)
    """How long an automatic pause or rollback waits, visibly, for a cancel."""


KEY_NAME = re.compile(r"^[A-Za-z0-9!@#$%^&*()_+=\-]$|^(ctrl|shift|alt)\+[a-z0-9]+$|^f[0-9]{1,2}$")


RESERVED_KEYS = {
    "q": "quit",
    "ctrl+q": "quit",
    "ctrl+c": "copy / quit",
    "ctrl+p": "the command palette",
    "question_mark": "help",
    "?": "help",
    "j": "next service",
    "k": "previous service",
    "tab": "next pane",
    "shift+tab": "previous pane",
    "o": "the deployments' order",
}
"""Keys the app, its screens or Textual bind already, with what they do (tui/app.py,
the dashboard and the deployments pane); ``[keys]`` may not take them."""


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
    evidence: str = "e"
    """Open the verdict's full evidence and every action line (the compact layout
    shows only their first lines)."""
    report: str = "w"
    """Write the deployment report now (it is written on quit too)."""
    history: str = "h"
    """Open the deployment history (recent deployments and their figures)."""
    smoke: str = "t"
    """Run the ``[[smoke]]`` suites that run on the key, and show their results."""
    takeover: str = "L"
    """Take over the selected service's operator lock (the bus, ``run --bus --operate``)."""
    release: str = "U"
    """Give the selected service's operator lock back (the bus, ``run --bus --operate``)."""

    @field_validator("*")
    @classmethod
    def _key(cls, value: str) -> str:
        if not KEY_NAME.match(value):
            raise ValueError('a key such as "R", "p", "ctrl+r" or "f5"')
        return value

    @field_validator("*")
    @classmethod
    def _free(cls, value: str) -> str:
        if value in RESERVED_KEYS:
            raise ValueError(
                f"a key the app does not use already ({value!r} is {RESERVED_KEYS[value]})"
            )
        return value

    @model_validator(mode="after")
    def _distinct(self) -> KeySettings:
        seen: dict[str, str] = {}
        for name, key in self.model_dump().items():
            if key in seen:
                raise ValueError(f"one key per action, but {key!r} is both {seen[key]} and {name}")
            seen[key] = name
        return self


class CodeDeploySettings(_Frozen):
    """The CodeDeploy application and deployment group of a ``CODE_DEPLOY`` service."""

    application: Annotated[str, Field(min_length=1)]
    deployment_group: Annotated[str, Field(min_length=1)]


class CanaryStep(_Frozen):
    """One step of an ALB weighted canary: a canary weight, then a wait or a pause."""

    weight: Annotated[Int, Field(ge=0, le=100)]
    """Percent of traffic to the canary target group."""
    wait: Annotated[timedelta, BeforeValidator(_within(0, 24 * 3600))] | None = None
    """Advance by itself after this long (only while no rule is FAILING)."""
    pause: Bool = False
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
    bake: Duration | None = None
    """This service's bake window (default: the environment's)."""
    context: str | None = None
    """The ``[[aws]]`` context (account and region) the service is in."""
    discover: Bool = False
    """Watch every service this entry matches (implied by a pattern: ``cluster =
    "*"``, ``service = "web-*"``), listed again every ``[ecs] discover_interval``."""
    only_active: Annotated[timedelta, BeforeValidator(_within(60, 7 * 24 * 3600))] | None = None
    """Of the services discovered, show only those with a deployment in flight or
    changed within this long."""

    @property
    def discovers(self) -> bool:
        """Whether this entry matches many services (discovery), not one."""
        return self.discover or is_pattern(self.cluster) or is_pattern(self.service)

    @model_validator(mode="after")
    def _discovery(self) -> ServiceRef:
        if self.discovers and (self.codedeploy is not None or self.canary is not None):
            raise ValueError("codedeploy and canary only on a [[service]] naming one service")
        if self.only_active is not None and not self.discovers:
            raise ValueError("only_active on a discovery entry (discover = true or a pattern)")
        return self

    @property
    def key(self) -> str:
        """The stable key of this service: ``cluster/service``, or
        ``context:cluster/service`` when it names its context."""
        return service_key(self.context, self.cluster, self.service)

    @property
    def display(self) -> str:
        """The name a person sees."""
        if self.discovers and not self.label:
            return f"{self.cluster}/{self.service} (discovery)"
        return self.label or self.service


class Settings(_Frozen):
    """Everything deploywatch needs, validated once at start-up."""

    environment: EnvironmentSettings = EnvironmentSettings()
    aws: AwsSettings = AwsSettings()
    ecs: EcsSettings = EcsSettings()
    aws_contexts: tuple[AwsContext, ...] = ()
    """The ``[[aws]]`` tables (when ``aws`` is an array of tables)."""
    services: Annotated[tuple[ServiceRef, ...], Field(alias="service", min_length=1)]
    """The ``[[service]]`` tables."""
    datadog: DatadogSettings | None = None
    metrics: Annotated[tuple[MetricSettings, ...], Field(alias="metric")] = ()
    sentry: SentrySettings | None = None
    probes: Annotated[tuple[ProbeSettings, ...], Field(alias="probe")] = ()
    rules: Annotated[tuple[RuleSettings, ...], Field(alias="rule")] = ()
    compares: Annotated[tuple[CompareSettings, ...], Field(alias="compare")] = ()
    """The ``[[compare]]`` tables: statistical comparisons of new against old."""
    judge: JudgeSettings = JudgeSettings()
    actions: ActionSettings = ActionSettings()
    keys: KeySettings = KeySettings()
    smoke: Annotated[tuple[SmokeSettings, ...], Field(alias="smoke")] = ()
    """The ``[[smoke]]`` suites."""
    history: HistorySettings = HistorySettings()

    @model_validator(mode="before")
    @classmethod
    def _fleet(cls, data: Any) -> Any:
        """``[[aws]]`` contexts and ``services = "*"`` templates (engine.fleet)."""
        return prepare(data)

    def context_of(self, ref: ServiceRef) -> AwsContext:
        """The context a service is in: the one it names, else the first ``[[aws]]``,
        else the ``[aws]`` table as an unnamed context."""
        for context in self.aws_contexts:
            if context.name == ref.context:
                return context
        if self.aws_contexts:
            return self.aws_contexts[0]
        return AwsContext(name="default", **self.aws.model_dump())

    def rule_service(self, rule: RuleSettings | CompareSettings) -> str | None:
        """The service key a rule is about: its own ``service``, else its metric's,
        probe's or Sentry's, else the only configured service."""
        key = self.service_key(rule.service)
        if key is not None:
            return key
        key = self.service_key(self._subject_owner(rule))
        if key is None and len(self.services) == 1:
            key = self.services[0].key
        return key

    def _subject_owner(self, rule: RuleSettings | CompareSettings) -> str | None:
        """The ``service`` of the metric, probe or Sentry table a rule's subject names."""
        kind, _, target = rule.subject.partition(":")
        target = target.split(".", 1)[0]
        if kind == "metric":
            return next((m.service for m in self.metrics if m.name == target), None)
        if kind == "probe":
            return next((p.service for p in self.probes if p.name == target), None)
        if kind == "sentry" and self.sentry is not None:
            return self.sentry.service
        if kind == "smoke":
            return next((s.service for s in self.smoke if s.name == target), None)
        return None

    def service_matches(self, name: str) -> list[ServiceRef]:
        """The services a reference names: the one whose key ``cluster/service`` it
        is, else every one whose service name or label it is."""
        by_key = [ref for ref in self.services if ref.key == name]
        return by_key or [ref for ref in self.services if name in (ref.service, ref.label)]

    def service_key(self, name: str | None) -> str | None:
        """Resolve a service reference (key, or a service name or label that names
        exactly one service) to its key; ``None`` when it names none or several."""
        if name is None:
            return None
        matches = self.service_matches(name)
        return matches[0].key if len(matches) == 1 else None

    def _check_service(self, key: str, name: str) -> None:
        """Raise unless ``name`` names exactly one configured service."""
        matches = self.service_matches(name)
        if len(matches) == 1:
            return
        if matches:
            found = f"{name!r} is {', '.join(m.key for m in matches)}"
            choices = ", ".join(m.key for m in matches)
        else:
            found = f"no [[service]] is {name!r}"
            names = {ref.key: None for ref in self.services}
            for ref in self.services:
                for alias in (ref.service, ref.label):
                    if alias is not None and len(self.service_matches(alias)) == 1:
                        names.setdefault(alias, None)
            choices = ", ".join(names)
        raise ValueError(
            f"{key}: expected exactly one configured [[service]], but {found} (choose: {choices})"
        )

    @model_validator(mode="after")
    def _references(self) -> Settings:
        def unique(kind: str, names: list[str]) -> None:
            seen: set[str] = set()
            for index, name in enumerate(names, 1):
                if name in seen:
                    raise ValueError(
                        f"{kind} #{index}.name: expected a unique name, but {name!r} appears twice"
                    )
                seen.add(name)

        unique("aws", [c.name for c in self.aws_contexts])
        self._check_contexts()
        unique("metric", [m.name for m in self.metrics])
        unique("probe", [p.name for p in self.probes])
        unique("rule", [r.name for r in self.rules])
        if self.metrics and self.datadog is None:
            raise ValueError(
                "datadog: expected a [datadog] table, since [[metric]] queries are configured"
            )
        owners = [(f"metric #{i}.service", m.service) for i, m in enumerate(self.metrics, 1)]
        owners += [(f"probe #{i}.service", p.service) for i, p in enumerate(self.probes, 1)]
        if self.sentry is not None:
            owners.append(("sentry.service", self.sentry.service))
        for key, owner in owners:
            if owner is not None:
                self._check_service(key, owner)
        metrics = {m.name for m in self.metrics}
        probes = {p.name for p in self.probes}
        unique("smoke", [s.name for s in self.smoke])
        for index, smoke in enumerate(self.smoke, 1):
            if smoke.service is not None:
                self._check_service(f"smoke #{index}.service", smoke.service)
        smokes = {s.name for s in self.smoke}
        for index, rule in enumerate(self.rules, 1):
            at = f"rule #{index}"
            kind, _, target = rule.subject.partition(":")
            target = target.split(".", 1)[0]
            if kind == "metric" and target not in metrics:
                raise ValueError(
                    f"{at}.subject: expected the name of a [[metric]] (have: {_some(metrics)}), got {rule.subject!r} in rule {rule.name!r}"
                )
            if kind == "probe" and target not in probes:
                raise ValueError(
                    f"{at}.subject: expected the name of a [[probe]] (have: {_some(probes)}), got {rule.subject!r} in rule {rule.name!r}"
                )
            if kind == "sentry" and self.sentry is None:
                raise ValueError(
                    f"{at}.subject: expected a [sentry] table for {rule.subject!r} in rule {rule.name!r}"
                )
            if kind == "smoke" and target not in smokes:
                raise ValueError(
                    f"{at}.subject: expected the name of a [[smoke]] suite (have: {', '.join(sorted(smokes)) or 'none'}), got {rule.subject!r} in rule {rule.name!r}"
                )
            if rule.service is not None:
                self._check_service(f"{at}.service", rule.service)
            if kind == "ecs" and rule.service is None:
                raise ValueError(
                    f"{at}.service: expected one of the [[service]] keys for ecs:failed_tasks in rule {rule.name!r}"
                )
            if rule.action != "none" and self.rule_service(rule) is None:
                raise ValueError(
                    f"{at}.service: expected the service rule {rule.name!r} acts on (action = {rule.action!r}): one of the [[service]] keys (or set it on its metric/probe)"
                )
        self._check_compares(metrics)
        return self

    def _check_compares(self, metrics: set[str]) -> None:
        rules = {r.name for r in self.rules}
        seen: set[str] = set()
        for index, compare in enumerate(self.compares, 1):
            at = f"compare #{index}"
            if compare.name in rules or compare.name in seen or compare.name == "canary score":
                raise ValueError(
                    f"{at}.name: expected a name no other [[rule]] or [[compare]] has, but {compare.name!r} appears twice"
                )
            seen.add(compare.name)
            target = compare.subject.removeprefix("metric:")
            if target not in metrics:
                raise ValueError(
                    f"{at}.subject: expected the name of a [[metric]] (have: {', '.join(sorted(metrics)) or 'none'}), got {compare.subject!r} in compare {compare.name!r}"
                )
            if compare.service is not None:
                self._check_service(f"{at}.service", compare.service)
            if compare.action != "none" and self.rule_service(compare) is None:
                raise ValueError(
                    f"{at}.service: expected the service compare {compare.name!r} acts on (action = {compare.action!r}): one of the [[service]] keys (or set it on its metric)"
                )

    def _check_contexts(self) -> None:
        names = [c.name for c in self.aws_contexts]
        for index, ref in enumerate(self.services, 1):
            at = f"service #{index}.context"
            if ref.context is not None and ref.context not in names:
                have = ", ".join(names) if names else "none: add [[aws]] tables with a name"
                raise ValueError(
                    f"{at}: expected the name of an [[aws]] context (have: {have}), "
                    f"got {ref.context!r}"
                )
            if ref.context is None and len(names) > 1:
                raise ValueError(
                    f"{at}: expected the name of its [[aws]] context (one of {', '.join(names)})"
                )

    @field_validator("services")
    @classmethod
    def _unique(cls, services: tuple[ServiceRef, ...]) -> tuple[ServiceRef, ...]:
        seen: set[str] = set()
        for ref in services:
            if ref.key in seen:
                raise ValueError(f"unique services, but {ref.key} appears twice")
            seen.add(ref.key)
        return services


def _some(names: set[str], most: int = 8) -> str:
    """``a, b, c`` — at most ``most`` names, then how many more (a fleet has hundreds)."""
    shown = sorted(names)
    more = f" and {len(shown) - most} more" if len(shown) > most else ""
    return (", ".join(shown[:most]) + more) or "none"


def _key_path(loc: tuple[int | str, ...]) -> str:
    """``("service", 1, "cluster")`` → ``service #2.cluster`` (tables counted from 1)."""
    text = ""
    for item in loc:
        if isinstance(item, int):
            text += f" #{item + 1}"
        else:
            text += f".{item}" if text else ("aws" if item == "aws_contexts" else item)
    return text or "(top level)"


MAX_SHOWN = 60
"""Longest value quoted back in an error (a huge string stays one short line)."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[: MAX_SHOWN - 1]}…"


_TYPE_WORDS = {
    "finite_number": "a finite number",
    "float_type": "a finite number",
    "int_type": "a whole number",
    "bool_type": "true or false",
}


def _expected(error: Any) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    if kind == "missing":
        return "a value (it is required)"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in _TYPE_WORDS:
        quoted = isinstance(error.get("input"), str)
        return _TYPE_WORDS[kind] + (" (written without quotes)" if quoted else "")
    return str(error["msg"]).lower()


def format_validation_error(path: Path, exc: ValidationError) -> str:
    """Turn pydantic's error into one line: ``file: key: expected ..., got ...``."""
    # An unknown key usually explains a "missing" one next to it (a typo): say it first.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    key = _key_path(tuple(first["loc"]))
    if not first["loc"]:  # a cross-reference check: its message starts with the key
        return f"{path}: {_expected(first)}"
    if first["type"] == "extra_forbidden":
        return f"{path}: {key}: unknown key (check the spelling against deploywatch.example.toml)"
    got = first.get("input")
    # A table-level check names what is wrong itself; quoting the whole table helps nobody.
    quiet = first["type"] == "missing" or isinstance(got, dict)
    got_text = "" if quiet else f", got {_shown(got)}"
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
    origins: dict[tuple[str, int], str] = {}
    try:
        data = prepare(data, origins)  # names expanded tables as written, in errors
        return Settings.model_validate(data)
    except ValueError as exc:
        message = (
            format_validation_error(path, exc)
            if isinstance(exc, ValidationError)
            else (f"{path}: {exc}")
        )
        raise ConfigError(written_as(message, origins)) from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_config_bytes(path: Path, *, missing_hint: str = "pass --config FILE") -> bytes:
    """The bytes of a config file: a regular file of at most :data:`MAX_CONFIG_BYTES`.

    Opened without blocking and checked on the open descriptor, so a FIFO, a device
    (``/dev/zero``) or a directory is refused at once instead of hanging or eating memory.

    Raises:
        ConfigError: Missing, not a regular file, unreadable or too large.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file ({missing_hint})") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot read: {reason}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{path}: expected a regular file, but it is {_kind(mode)}")
        with os.fdopen(fd, "rb", closefd=False) as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: expected a config file of at most 1 MiB")
    return raw


def load_config(path: Path, *, missing_hint: str = "pass --config FILE") -> Settings:
    """Read and validate a deploywatch TOML file.

    Args:
        path: The config file.
        missing_hint: What to tell the user when the file does not exist.

    Returns:
        The frozen settings.

    Raises:
        ConfigError: The file is missing, unreadable, not a regular file, too large,
            not TOML or not valid.
    """
    raw = read_config_bytes(path, missing_hint=missing_hint)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: expected UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: expected valid TOML: {exc}") from None
    except RecursionError:  # thousands of nested arrays
        raise ConfigError(f"{path}: expected valid TOML: nested too deeply") from None
    return parse_config(data, path)
