"""Shared fixtures: sandboxes (as a child process or in-process) that always stop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import pytest

from sandbox.process import SandboxProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sandbox.runtime import Sandbox

SANDBOX_CREDENTIALS = {"aws_access_key_id": "sandbox", "aws_secret_access_key": "sandbox"}


class StartSandboxProcess(Protocol):
    """Start ``python -m sandbox`` for a scenario; the fixture stops it after the test."""

    def __call__(
        self, scenario: str = "demo", speed: float = 8.0, workdir: Path | None = None
    ) -> SandboxProcess: ...


class StartSandbox(Protocol):
    """Start an in-process :class:`~sandbox.runtime.Sandbox`; stopped after the test."""

    def __call__(self, scenario: str, speed: float = 8.0) -> Sandbox: ...


def ecs_client(endpoint: str, region: str = "us-east-1") -> Any:
    """Return a boto3 ECS client for a sandbox endpoint.

    Args:
        endpoint: The sandbox's AWS endpoint URL.
        region: AWS region.
    """
    import boto3

    return boto3.session.Session().client(
        "ecs", endpoint_url=endpoint, region_name=region, **SANDBOX_CREDENTIALS
    )


@pytest.fixture
def sandbox_process() -> Iterator[StartSandboxProcess]:
    """Factory fixture: start sandbox child processes, all stopped at teardown."""
    started: list[SandboxProcess] = []

    def start(
        scenario: str = "demo", speed: float = 8.0, workdir: Path | None = None
    ) -> SandboxProcess:
        process = SandboxProcess(scenario, speed=speed, workdir=workdir)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def sandbox_world() -> Iterator[StartSandbox]:
    """Factory fixture: start an in-process sandbox (one at a time), stopped at teardown."""
    from sandbox.runtime import Sandbox

    started: list[Sandbox] = []

    def start(scenario: str, speed: float = 8.0) -> Sandbox:
        world = Sandbox(scenario, speed=speed)
        started.append(world)
        return world.start()

    yield start
    for world in started:
        world.stop()
