"""Sends the AWS calls behind pause, promote and rollback (blocking; run in a thread).

Clients come from the standard credential chain (profile, environment, IMDS), with
their own timeouts and no hidden retry storm: a mutating call is tried at most twice.
Responses are trimmed to what an audit log needs; nothing credential-like is kept.
"""

from __future__ import annotations

import getpass
import os
import threading
from typing import TYPE_CHECKING, Any, Protocol

from sources.aws_session import AwsContextSpec
from sources.aws_session import client_factory as boto_client_factory

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


class ApiCall(Protocol):
    """One AWS call (``engine.actions.ApiCall`` has this shape)."""

    @property
    def client(self) -> str: ...
    @property
    def operation(self) -> str: ...
    @property
    def params(self) -> Mapping[str, Any]: ...


_KEEP_METADATA = ("RequestId", "HTTPStatusCode")


def trim_response(response: Mapping[str, Any]) -> dict[str, Any]:
    """The response without transport details (headers, retry counts)."""
    out = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    meta = response.get("ResponseMetadata")
    if isinstance(meta, dict):
        out["ResponseMetadata"] = {k: meta[k] for k in _KEEP_METADATA if k in meta}
    service = out.get("service")
    if isinstance(service, dict):  # update_service answers the whole service: keep a summary
        out["service"] = {
            k: service.get(k)
            for k in ("serviceArn", "status", "taskDefinition", "desiredCount", "runningCount")
        }
    return out


def local_operator() -> str:
    """``$USER`` (or the login name) — the fallback operator identity."""
    try:
        return getpass.getuser()
    except Exception:
        return os.environ.get("USER") or "unknown"


class AwsActions:
    """Executes :class:`ApiCall` objects with boto3.

    Args:
        region: AWS region.
        profile: Named profile, or ``None`` for the default chain.
        endpoint_url: Endpoint override (the sandbox), or ``None``.
        client_factory: Builds a client by name; injected by tests.
    """

    def __init__(
        self,
        *,
        region: str,
        profile: str | None = None,
        endpoint_url: str | None = None,
        client_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self.region = region
        self.profile = profile
        self.endpoint_url = endpoint_url
        self._factory = client_factory or boto_client_factory(
            AwsContextSpec(region, profile, endpoint_url),
            connect_timeout=3,
            read_timeout=10,
            retries={"total_max_attempts": 2, "mode": "standard"},
        )
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._identity: str | None = None

    def client(self, name: str) -> Any:
        """A cached client per AWS service."""
        with self._lock:
            if name not in self._clients:
                self._clients[name] = self._factory(name)
            return self._clients[name]

    def __call__(self, call: ApiCall) -> dict[str, Any]:
        """Send one call; its trimmed response, or the botocore exception."""
        method = getattr(self.client(call.client), call.operation)
        return trim_response(method(**dict(call.params)))

    def resolve_operator(self) -> str:
        """The AWS caller identity ARN (looked up once), else ``$USER``."""
        if self._identity is None:
            try:
                arn = self.client("sts").get_caller_identity().get("Arn")
                self._identity = f"{arn} ({local_operator()})" if arn else local_operator()
            except Exception:
                self._identity = local_operator()
        return self._identity

    @property
    def operator(self) -> str:
        """The identity known so far (never blocks)."""
        return self._identity or local_operator()
