"""Shared fixtures: sandboxes (as a child process or in-process) that always stop."""

from __future__ import annotations

import traceback
from pathlib import Path as _Path
from typing import TYPE_CHECKING, Any, Protocol

import blockbuster.blockbuster as _bb
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


@pytest.fixture(autouse=True)
def _private_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test (and every process it starts) keeps its audit logs, rehearsal log and
    reports under its own folder: never in the user's state dir, never shared with a
    test running beside it."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


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


# ------------------------------------------------------------------ blocking calls

_ROOT = _Path(__file__).resolve().parent.parent
BLOCKBUSTER_SCANNED = ["tui", "engine", "sources", "widgets", "tests"]
"""A blocking call is an error when one of these packages is on the stack (the product,
and the tests that drive it on the event loop). The sandbox and third-party code are
only reported when the product or a test called into them from the loop."""

BLOCKBUSTER_ALLOWED: list[tuple[str, set[str]]] = [
    # Textual resolves CSS_PATH against the App's module when the App is built
    # (``Path.resolve``: ``getcwd`` / ``lstat``, no file read), once, before any frame.
    ("textual/_path.py", {"_make_path_object_relative"}),
    # Textual reads the app's stylesheet (tui/app.tcss) once in ``app_prelude``, before
    # the first frame is drawn; it has no async way to load CSS_PATH. Seen only where a
    # test runs the App synchronously (snapshots), since run_test() runs it in its own task.
    ("textual/css/stylesheet.py", {"read"}),
    # Test harness lifecycle: starting and stopping sandbox servers and child processes
    # from an async test, before the code under test runs or after it ended. The sandbox
    # is not the product, and nothing of the product runs on the loop at that point.
    ("sandbox/httpserver.py", {"start", "stop"}),
    ("sandbox/process.py", {"start", "stop"}),
    # The config file is read once at start-up, before any loop in the product (CLI);
    # tests that build an app from a sandbox config read it on the loop.
    ("engine/config.py", {"load_config"}),
    # Test set-up and checks that touch a file or a sync client from an async test, named
    # one by one: only the test's own stack is let through, the app's tasks and the
    # sources stay checked. ``AuditLog.read`` has no product caller; tests read it back.
    ("engine/audit.py", {"read"}),
    (
        "tests/unit/test_actions.py",
        {
            "test_unwritable_audit_log_means_nothing_is_sent",  # write_text on the loop
            "test_intent_is_on_disk_before_the_call_and_result_after",  # Path.stat
        },
    ),
    (
        "tests/integration/test_scenario_verdicts.py",
        {
            "start",  # reads the scenario TOML on the loop
            "test_flaky_sources_go_stale_and_recover_without_feeding_a_rule",  # read_text
        },
    ),
]
"""Known-safe blocking calls: ``(file suffix, function names)`` on the stack."""


class _Caught(_bb.BlockingError):
    """A BlockingError that remembers where it was raised, even if someone swallows it
    (the sources turn any exception into a SourceFailure, on purpose)."""

    seen: list[str] = []

    def __init__(self, func: str) -> None:
        super().__init__(func)
        frames = [
            f"{_where(f.filename)}:{f.lineno} {f.name}"
            for f in traceback.extract_stack()[:-2]  # not this frame, not blockbuster's
            if f.filename.startswith(str(_ROOT))
        ]
        _Caught.seen.append(f"{func} via " + " <- ".join(reversed(frames[-6:])))


def _where(filename: str) -> str:
    """A project path, or a package path for installed code."""
    return _Path(filename).resolve().relative_to(_ROOT).as_posix().split("site-packages/")[-1]


@pytest.fixture(autouse=True)
def no_blocking_calls(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that makes a blocking call on a running event loop.

    Uses ``blockbuster`` (time.sleep, blocking socket and file I/O, lock waits ... on the
    loop's thread). Calls from worker threads are fine. Opt out with
    ``@pytest.mark.allow_blocking("why")``.
    """
    if request.node.get_closest_marker("allow_blocking") is not None:
        yield
        return
    buster = _bb.BlockBuster(BLOCKBUSTER_SCANNED)
    for function in buster.functions.values():
        for suffix, names in BLOCKBUSTER_ALLOWED:
            function.can_block_in(suffix, names)
    original = _bb.BlockingError
    _bb.BlockingError = _Caught  # type: ignore[misc]
    _Caught.seen = []
    buster.activate()
    try:
        yield
    finally:
        buster.deactivate()
        _bb.BlockingError = original  # type: ignore[misc]
    if _Caught.seen:
        unique = list(dict.fromkeys(_Caught.seen))
        pytest.fail(
            f"{len(_Caught.seen)} blocking call(s) on the event loop:\n  " + "\n  ".join(unique),
            pytrace=False,
        )
