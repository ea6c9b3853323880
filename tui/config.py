"""One frozen settings model, loaded once from a TOML file and passed in.

A broken config must never end in a traceback: :func:`load_config` raises
:class:`ConfigError`, whose message is one line naming the file, the key and what
was expected, and the CLI turns it into exit code 2.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
    """How many ``describe_services`` batches may be in flight at once."""


class ServiceRef(_Frozen):
    """One ECS service to watch."""

    cluster: Annotated[str, Field(min_length=1)]
    """Cluster name or ARN."""
    service: Annotated[str, Field(min_length=1)]
    """Service name or ARN."""
    label: str | None = None
    """Short name shown on screen; defaults to the service name."""

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
