"""Smoke suites: the runner (a real child process), its JUnit report, its timeout, and
the watch that starts it when a deployment completes and judges ``smoke:<name>``."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.audit import AuditLog
from engine.config import ConfigError, SmokeSettings, parse_config
from engine.controller import Controller
from engine.rules import RuleState
from engine.smoke import OUTPUT_KEEP, SmokeRun, SmokeState, argv_of, parse_junit, run_smoke
from engine.verdict import Verdict
from tests.fakes import T0, FrozenClock, deployment, sample, service_deployment

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="smoke" tests="4">
  <testcase classname="smoke.test_app" name="test_health" time="0.01"/>
  <testcase classname="smoke.test_app" name="test_checkout" time="0.20">
    <failure message="AssertionError: 500 != 200&#10;more detail">trace</failure>
  </testcase>
  <testcase classname="smoke.test_app" name="test_cart" time="0.02">
    <skipped message="cart is off in this region"/>
  </testcase>
  <testcase classname="smoke.test_app" name="test_login"><error>boom
second line</error></testcase>
</testsuite></testsuites>
"""


def smoke(**fields: Any) -> SmokeSettings:
    return SmokeSettings.model_validate({"name": "checkout", **fields})


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_junit_cases_with_outcome_and_first_line() -> None:
    cases, left_out = parse_junit(JUNIT.encode())
    assert left_out == 0
    assert [(c.name, c.outcome, c.message) for c in cases] == [
        ("test_health", "passed", None),
        ("test_checkout", "failed", "AssertionError: 500 != 200"),
        ("test_cart", "skipped", "cart is off in this region"),
        ("test_login", "error", "boom"),
    ]
    with pytest.raises(ValueError, match="not JUnit XML"):
        parse_junit(b"<html>nope</html>")
    with pytest.raises(ValueError, match="not JUnit XML"):
        parse_junit(b"not xml at all")


def test_a_string_command_runs_without_a_shell_unless_asked() -> None:
    assert argv_of(smoke(command="pytest smoke/ --junitxml='a b.xml'")) == [
        "pytest",
        "smoke/",
        "--junitxml=a b.xml",
    ]
    assert argv_of(smoke(command="echo $HOME", shell=True)) == ["/bin/sh", "-c", "echo $HOME"]


async def test_a_failing_case_fails_the_run_with_its_first_line(tmp_path: Path) -> None:
    code = f"import pathlib; pathlib.Path('report.xml').write_text({JUNIT!r}); raise SystemExit(1)"
    started: list[SmokeRun] = []
    run = await run_smoke(
        smoke(command=python(code), junit="report.xml"),
        service="demo/web",
        trigger="key",
        clock=FrozenClock(),
        on_start=started.append,
        base_dir=tmp_path,
    )
    assert [r.state for r in started] == [SmokeState.RUNNING]
    assert run.state is SmokeState.FAILED and run.failing
    assert run.counts == {"passed": 1, "failed": 1, "error": 1, "skipped": 1}
    assert "test_checkout: AssertionError: 500 != 200" in run.summary(T0)


async def test_a_passing_suite_passes(tmp_path: Path) -> None:
    passing = JUNIT.split("<testcase", 2)
    xml = passing[0] + "<testcase" + passing[1] + "</testsuite></testsuites>"
    code = f"import pathlib; pathlib.Path('r.xml').write_text({xml!r})"
    run = await run_smoke(
        smoke(command=python(code), junit="r.xml", env={"X": "1"}),
        service=None,
        trigger="key",
        clock=FrozenClock(),
        base_dir=tmp_path,
    )
    assert run.state is SmokeState.PASSED, run
    assert run.counts["passed"] == 1 and not run.failing


async def test_a_report_from_an_earlier_run_is_not_taken_for_this_one(tmp_path: Path) -> None:
    old = tmp_path / "r.xml"

    def write_old() -> None:
        old.write_text(JUNIT.replace("<failure", "<skipped").replace("</failure>", "</skipped>"))
        os.utime(old, (0, 0))

    await asyncio.to_thread(write_old)
    run = await run_smoke(
        smoke(command=python("pass"), junit="r.xml"),
        service=None,
        trigger="key",
        clock=FrozenClock(),
        base_dir=tmp_path,
    )
    assert run.state is SmokeState.ERROR and run.error is not None
    assert "older" in run.error


async def test_a_hung_command_is_killed_with_its_group_at_its_timeout(tmp_path: Path) -> None:
    # The child starts a grandchild that would hold the pipe open; both must die.
    code = """
        import subprocess, sys, time, pathlib
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        pathlib.Path("grandchild.pid").write_text(str(child.pid))
        print("started", flush=True)
        time.sleep(600)
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    run = await run_smoke(
        smoke(command=python(code), timeout="1s"),
        service=None,
        trigger="key",
        clock=FrozenClock(),
        base_dir=tmp_path,
    )
    assert loop.time() - began < 30  # not the 600 s sleep
    assert run.state is SmokeState.TIMED_OUT and run.failing
    assert run.error == "killed at its timeout of 1s (still running)"
    assert "started" in run.output_tail
    pid = int(await asyncio.to_thread((tmp_path / "grandchild.pid").read_text))

    def gone() -> bool:
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (ProcessLookupError, FileNotFoundError):
            return True
        return stat.split(") ", 1)[1].startswith("Z")  # a zombie awaiting its reaper

    for _ in range(200):
        if await asyncio.to_thread(gone):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the grandchild outlived the timeout")


def test_a_cancelled_run_is_reaped_before_its_loop_closes(tmp_path: Path) -> None:
    """Quitting while a suite runs cancels it: the command is killed and reaped while
    the loop still runs. (Left to the garbage collector, its pipe closed on a loop
    already closed: "Exception ignored in BaseSubprocessTransport.__del__".)"""
    started = asyncio.Event()
    ignored: list[Any] = []

    async def main() -> None:
        task = asyncio.create_task(
            run_smoke(
                smoke(command=python("import time; print('up', flush=True); time.sleep(600)")),
                service=None,
                trigger="key",
                clock=FrozenClock(),
                on_start=lambda run: started.set(),
                base_dir=tmp_path,
            )
        )
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        await asyncio.wait([task])
        assert task.cancelled()
        del task  # nothing keeps the run's frames (and its process) alive

    hook = sys.unraisablehook
    sys.unraisablehook = ignored.append
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
        loop.close()  # at once, as an app that quits
        gc.collect()
        gc.collect()
    finally:
        sys.unraisablehook = hook
        loop.close()
    assert [str(u.exc_value) for u in ignored] == []


async def test_output_is_bounded_to_its_last_bytes(tmp_path: Path) -> None:
    code = "import sys; sys.stdout.write('x' * 300_000 + 'THE END'); sys.exit(3)"
    run = await run_smoke(
        smoke(command=python(code)),
        service=None,
        trigger="key",
        clock=FrozenClock(),
        base_dir=tmp_path,
    )
    assert len(run.output_tail) == OUTPUT_KEEP
    assert run.output_tail.endswith("THE END")
    assert run.state is SmokeState.FAILED and run.error is not None
    assert run.error.startswith("exit 3")


async def test_a_command_that_cannot_start_says_why(tmp_path: Path) -> None:
    run = await run_smoke(
        smoke(command=["/nonexistent/smoke-runner"]),
        service=None,
        trigger="key",
        clock=FrozenClock(),
        base_dir=tmp_path,
    )
    assert run.state is SmokeState.ERROR
    assert run.error == "cannot start '/nonexistent/smoke-runner': No such file or directory"


def smoke_config(tmp_path: Path, command: list[str], **rule: Any) -> Any:
    return parse_config(
        {
            "aws": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
            "service": [{"cluster": "demo", "service": "web"}],
            "smoke": [{"name": "checkout", "command": command, "service": "web"}],
            "rule": [
                {
                    "name": "smoke checkout",
                    "subject": "smoke:checkout",
                    "op": ">=",
                    "threshold": 1,
                    "for": "0s",
                    **rule,
                }
            ],
        },
        tmp_path / "c.toml",
    )


def test_a_smoke_rule_must_name_a_suite(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected the name of a \[\[smoke\]\] suite"):
        parse_config(
            {
                "service": [{"cluster": "demo", "service": "web"}],
                "rule": [
                    {"name": "s", "subject": "smoke:nope", "op": ">=", "threshold": 1, "for": "0s"}
                ],
            },
            tmp_path / "c.toml",
        )


async def test_a_completed_deployment_runs_its_suite_and_a_failure_fails_the_verdict(
    tmp_path: Path,
) -> None:
    clock = FrozenClock()
    config = smoke_config(tmp_path, python("raise SystemExit(1)"))
    controller = Controller(
        config,
        clock=clock,
        executor=lambda call: {},
        audit=AuditLog(tmp_path / "audit.jsonl"),
        operator=lambda: "tester",
    )
    controller.smoke_dir = tmp_path
    web_v2 = deployment("web:2", rollout="IN_PROGRESS", running=2)
    in_flight = sample(
        "demo/web",
        [web_v2, deployment("web:1", status="ACTIVE")],
        service_deployments=[service_deployment("IN_PROGRESS", source="web:1", target="web:2")],
    )
    controller.ingest(in_flight)
    controller.step()
    assert controller.smoke_running() == []  # in flight: nothing yet
    done = sample(
        "demo/web",
        [deployment("web:2")],
        service_deployments=[
            service_deployment(
                "SUCCESSFUL", source="web:1", target="web:2", finished=T0 - timedelta(seconds=5)
            )
        ],
    )
    controller.ingest(done)
    controller.step()
    assert controller.smoke_running() == ["checkout"]
    task = controller._smoke_tasks["checkout"]
    await asyncio.wait_for(asyncio.shield(task), 30)
    await asyncio.sleep(0)  # the done callback ingests the finished run
    snapshot = controller.step()
    assert [r.state for r in snapshot.smoke] == [SmokeState.FAILED]
    assert snapshot.smoke[0].trigger == "completed"
    (evidence,) = snapshot.evidence
    assert evidence.subject == "smoke:checkout" and evidence.state is RuleState.CRITICAL
    assert snapshot.verdict is Verdict.FAILING
    # Seen settled again: no second run.
    controller.ingest(done)
    controller.step()
    assert controller.smoke_running() == []


async def test_the_key_runs_a_suite_once_and_a_pass_clears_the_rule(tmp_path: Path) -> None:
    clock = FrozenClock()
    controller = Controller(
        smoke_config(tmp_path, python("pass")),
        clock=clock,
        executor=lambda call: {},
        audit=AuditLog(tmp_path / "audit.jsonl"),
        operator=lambda: "tester",
    )
    assert controller.run_smoke("key") == ["checkout"]
    assert controller.run_smoke("key") == []  # already running
    await asyncio.wait_for(asyncio.shield(controller._smoke_tasks["checkout"]), 30)
    await asyncio.sleep(0)
    snapshot = controller.step()
    assert snapshot.smoke[0].state is SmokeState.PASSED
    assert snapshot.evidence[0].state is RuleState.OK
