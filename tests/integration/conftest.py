"""Fixtures of the sandbox observability world: servers that always stop."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from sandbox.broker import Broker
from sandbox.faults import FaultControlServer, FaultRegistry
from sandbox.requestlog import RequestLog
from sandbox.sentry_api import SentryServer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy or ``timeout`` passes.

    Args:
        predicate: The condition.
        timeout: Seconds.
        interval: Seconds between polls.

    Returns:
        The last value of ``predicate``.
    """
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


@pytest.fixture
def request_log() -> RequestLog:
    """An empty request log."""
    return RequestLog()


@pytest.fixture
def fault_registry() -> Iterator[FaultRegistry]:
    """A fault registry, closed (held requests dropped) after the test."""
    registry = FaultRegistry()
    yield registry
    registry.close()


@pytest.fixture
def fault_control(fault_registry: FaultRegistry) -> Iterator[FaultControlServer]:
    """The fault control endpoint over :func:`fault_registry`."""
    with FaultControlServer(fault_registry) as server:
        yield server


@pytest.fixture(scope="module")
def sentry_server() -> Iterator[SentryServer]:
    """A local Sentry with projects ``web`` (1) and ``api`` (2)."""
    with SentryServer(projects={1: "web", 2: "api"}) as server:
        yield server


@pytest.fixture
def broker() -> Iterator[Broker]:
    """An MQTT broker of the test's own on a free port (mosquitto, else amqtt); stopped
    after it."""
    with Broker() as running:
        yield running
