"""Smoke tests after a deployment: run a ``[[smoke]]`` command, read its JUnit XML.

A run never blocks the event loop: the command is a child process
(:func:`asyncio.create_subprocess_exec`, in a session of its own), its output is read as
it comes and only the last :data:`OUTPUT_KEEP` bytes are kept, and a command still
running at its timeout is killed with its whole process group — the run then says so.
The JUnit XML report is read (bounded, in a worker thread) and parsed with
``junitparser``; each test case becomes a :class:`SmokeCase`.

A finished run is an item the deployment watch ingests like any sample: the rule
subject ``smoke:<name>`` gets the value 1.0 when the suite failed (a failing or erroring
case, a non-zero exit, a timeout, no report) and 0.0 when it passed, so a rule can fail
the verdict or trigger an action.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from engine.durations import span_words

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from engine.config import SmokeSettings

OUTPUT_KEEP = 64 * 1024
"""Bytes of a command's output (stdout and stderr together) kept: the last ones."""
JUNIT_MAX_BYTES = 8 * 1024 * 1024
"""A JUnit report larger than this is not read (the run says so)."""
CASES_MAX = 500
"""Test cases kept per run (a run with more says how many were left out)."""
KILL_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL for a command past its timeout."""
READ_CHUNK = 8192


class SmokeState(Enum):
    """Where a smoke run stands."""

    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    TIMED_OUT = "timed out"
    ERROR = "error"
    """The command could not be started, or its report could not be read."""

    @property
    def failing(self) -> bool:
        """A finished run that did not pass."""
        return self in (SmokeState.FAILED, SmokeState.TIMED_OUT, SmokeState.ERROR)


@dataclass(frozen=True, slots=True)
class SmokeCase:
    """One test case of a JUnit report."""

    name: str
    classname: str | None
    outcome: str
    """``passed``, ``failed``, ``error`` or ``skipped``."""
    message: str | None
    """The first line of the failure, error or skip message."""
    seconds: float | None


@dataclass(frozen=True, slots=True)
class SmokeRun:
    """One run of a ``[[smoke]]`` suite, live or finished (an item the watch ingests)."""

    name: str
    service: str | None
    """The service key it belongs to (its completion triggers it), if any."""
    trigger: str
    """``completed`` (a deployment completed) or ``key`` (an operator asked)."""
    state: SmokeState
    started: datetime
    finished: datetime | None = None
    cases: tuple[SmokeCase, ...] = ()
    exit_code: int | None = None
    error: str | None = None
    """Why it failed beyond its cases: ``killed at its timeout of 30s``, ``exit 2``..."""
    output_tail: str = ""
    """The last :data:`OUTPUT_KEEP` bytes of its output, decoded (never shown whole)."""
    cases_left_out: int = 0

    @property
    def failing(self) -> bool:
        """The run finished and did not pass."""
        return self.state.failing

    @property
    def counts(self) -> dict[str, int]:
        """Cases per outcome."""
        out = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for case in self.cases:
            out[case.outcome] = out.get(case.outcome, 0) + 1
        return out

    def elapsed(self, now: datetime) -> float:
        """Seconds it ran (so far, while running)."""
        end = self.finished or now
        return max(0.0, (end - self.started).total_seconds())

    def summary(self, now: datetime) -> str:
        """One line: ``checkout: FAILED 2 passed, 1 failed · test_checkout: assert 500 == 200``."""
        took = span_words(self.elapsed(now))
        if self.state is SmokeState.RUNNING:
            return f"{self.name}: running {took}"
        counts = self.counts
        parts = [f"{n} {word}" for word, n in counts.items() if n]
        words = f"{self.state.value.upper()} in {took}"
        if parts:
            words += f" · {', '.join(parts)}"
        first = next((c for c in self.cases if c.outcome in ("failed", "error")), None)
        if first is not None:
            words += f" · {first.name}: {first.message or first.outcome}"
        elif self.error:
            words += f" · {self.error}"
        return f"{self.name}: {words}"


def argv_of(settings: SmokeSettings) -> list[str]:
    """The argv a ``[[smoke]]`` entry runs: through ``/bin/sh -c`` only with ``shell =
    true``; a string command is otherwise split like a shell would (no expansion)."""
    command = settings.command
    if settings.shell:
        text = command if isinstance(command, str) else shlex.join(command)
        return ["/bin/sh", "-c", text]
    return shlex.split(command) if isinstance(command, str) else list(command)


def first_line(text: str | None) -> str | None:
    """The first non-empty line of ``text``, stripped."""
    if not text:
        return None
    return next((line.strip() for line in text.splitlines() if line.strip()), None)


def parse_junit(data: bytes) -> tuple[list[SmokeCase], int]:
    """The test cases of a JUnit XML report (``junitparser``), at most :data:`CASES_MAX`.

    Returns:
        The cases and how many were left out.

    Raises:
        ValueError: The report is not JUnit XML.
    """
    from xml.etree.ElementTree import ParseError

    from junitparser import Error, Failure, JUnitXml, JUnitXmlError, Skipped, TestSuite

    try:
        xml = JUnitXml.fromstring(data)
    except (ParseError, JUnitXmlError) as exc:
        raise ValueError(f"not JUnit XML: {exc}") from exc
    cases: list[SmokeCase] = []
    total = 0
    suites: list[TestSuite] = list(xml)
    for suite in suites:
        for case in suite:
            total += 1
            if len(cases) >= CASES_MAX:
                continue
            results = list(case.result)
            outcome, message = "passed", None
            for result in results:
                text = first_line(result.message) or first_line(result.text)
                if isinstance(result, Error):
                    outcome, message = "error", text
                    break
                if isinstance(result, Failure):
                    outcome, message = "failed", text
                    break
                if isinstance(result, Skipped):
                    outcome, message = "skipped", text
            seconds = case.time
            cases.append(
                SmokeCase(
                    name=str(case.name or "?"),
                    classname=case.classname or None,
                    outcome=outcome,
                    message=message,
                    seconds=float(seconds) if isinstance(seconds, int | float) else None,
                )
            )
    return cases, total - len(cases)


def _read_report(path: Path, started_wall: float) -> bytes | str:
    """The report's bytes, or why it cannot be used (runs in a worker thread)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"no JUnit report at {path}"
    except OSError as exc:
        return f"cannot read the JUnit report: {exc.strerror or exc}"
    if info.st_mtime < started_wall - 1.0:
        return f"no JUnit report from this run (the one at {path} is older)"
    if info.st_size > JUNIT_MAX_BYTES:
        return f"JUnit report too large ({info.st_size} bytes; at most {JUNIT_MAX_BYTES})"
    try:
        with path.open("rb") as handle:
            return handle.read(JUNIT_MAX_BYTES + 1)
    except OSError as exc:
        return f"cannot read the JUnit report: {exc.strerror or exc}"


class _Tail:
    """The last ``keep`` bytes written to it."""

    def __init__(self, keep: int = OUTPUT_KEEP) -> None:
        self.keep = keep
        self.data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        extra = len(self.data) - self.keep
        if extra > 0:
            del self.data[:extra]
            self.dropped += extra

    def text(self) -> str:
        return bytes(self.data).decode("utf-8", errors="replace")


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def run_smoke(
    settings: SmokeSettings,
    *,
    service: str | None,
    trigger: str,
    clock: Callable[[], datetime],
    on_start: Callable[[SmokeRun], object] | None = None,
    base_dir: Path | None = None,
) -> SmokeRun:
    """Run one smoke suite to its end (or its timeout) and read its report.

    Args:
        settings: The ``[[smoke]]`` entry.
        service: Its service key, if any.
        trigger: ``completed`` or ``key``.
        clock: UTC now (for the run's times).
        on_start: Told of the running run as soon as the command started.
        base_dir: Where a relative ``cwd`` and ``junit`` are taken from (default: the
            current directory).

    Returns:
        The finished run; never raises for the command's own failures.
    """
    started = clock()
    started_wall = time.time()
    running = SmokeRun(settings.name, service, trigger, SmokeState.RUNNING, started)
    cwd = base_dir
    if settings.cwd is not None:
        cwd = base_dir / settings.cwd if base_dir is not None else settings.cwd
    env: Mapping[str, str] = {**os.environ, **settings.env}
    argv = argv_of(settings)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,  # its own process group: killed whole at the timeout
        )
    except OSError as exc:
        what = exc.strerror or type(exc).__name__
        return replace(
            running,
            state=SmokeState.ERROR,
            finished=clock(),
            error=f"cannot start {argv[0]!r}: {what}",
        )
    if on_start is not None:
        on_start(running)
    tail = _Tail()

    async def pump() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(READ_CHUNK):
            tail.add(chunk)

    reader = asyncio.ensure_future(pump())
    timeout = settings.timeout.total_seconds()
    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            await proc.wait()
    except TimeoutError:
        timed_out = True
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(KILL_GRACE):
                await proc.wait()
        except TimeoutError:
            _kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    except asyncio.CancelledError:
        _kill_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        reader.cancel()
        # Reap it (briefly): no zombie, and its pipes are closed while the loop still
        # runs (left to the garbage collector, they close on a loop already closed).
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(KILL_GRACE):
                await proc.wait()
        raise
    # A grandchild that keeps the pipe open must not hold the run: it is in the group.
    _kill_group(proc.pid, signal.SIGKILL)
    try:
        async with asyncio.timeout(KILL_GRACE):
            await reader
    except TimeoutError:
        reader.cancel()
    finished = clock()
    output = tail.text()
    code = proc.returncode
    if timed_out:
        took = span_words(timeout)
        return replace(
            running,
            state=SmokeState.TIMED_OUT,
            finished=finished,
            exit_code=code,
            error=f"killed at its timeout of {took} (still running)",
            output_tail=output,
        )
    cases: list[SmokeCase] = []
    left_out = 0
    problem: str | None = None
    if settings.junit is not None:
        report_path = (cwd or Path()) / settings.junit  # relative: to our own directory
        report = await asyncio.to_thread(_read_report, report_path, started_wall)
        if isinstance(report, str):
            problem = report
        else:
            try:
                cases, left_out = await asyncio.to_thread(parse_junit, report)
            except ValueError as exc:
                problem = str(exc)
    bad_case = any(c.outcome in ("failed", "error") for c in cases)
    state: SmokeState
    error: str | None
    if problem is not None:
        state, error = SmokeState.ERROR, problem
    elif bad_case:
        state, error = SmokeState.FAILED, None  # the cases say why; the exit code adds nothing
    elif code != 0:
        state, error = SmokeState.FAILED, f"exit {code}: {_last_line(output)}"
    else:
        state, error = SmokeState.PASSED, None
    return replace(
        running,
        state=state,
        finished=finished,
        cases=tuple(cases),
        exit_code=code,
        error=error,
        output_tail=output,
        cases_left_out=left_out,
    )


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def wanted(entries: Sequence[SmokeSettings], trigger: str) -> list[SmokeSettings]:
    """The entries that run on ``trigger`` (``completed`` or ``key``)."""
    return [entry for entry in entries if trigger in entry.on]


__all__ = [
    "OUTPUT_KEEP",
    "SmokeCase",
    "SmokeRun",
    "SmokeState",
    "argv_of",
    "parse_junit",
    "run_smoke",
    "wanted",
]
