"""``deploywatch gate`` against the sandbox's scenarios: the real CLI in a child process,
the real sources, and the exit code a pipeline would read.

A gate must never exit 0 on a deployment that ECS rolled back, that its rules failed,
or whose rules had no data; it says so in its lines and its last line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sandbox.process import SandboxProcess
    from tests.conftest import StartSandboxProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
GATE = (sys.executable, "-m", "tui", "gate")
FORGET_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "DD_SITE")


def gate(
    sandbox: SandboxProcess, tmp_path: Path, *args: str, limit: float = 240
) -> tuple[int, list[str]]:
    """Run ``deploywatch gate`` on the sandbox's config; its exit code and stdout lines."""
    env = {k: v for k, v in os.environ.items() if k not in FORGET_ENV}
    env.update(sandbox.client_env)
    done = subprocess.run(
        [sys.executable, "-m", "tui", "gate", "--config", str(sandbox.config_path), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=limit,
        check=False,
    )
    lines = done.stdout.splitlines()
    print(f"\n$ deploywatch gate {' '.join(args)}  → exit {done.returncode}")
    print("\n".join(lines[-25:]))
    if done.stderr.strip():
        print("stderr:", done.stderr[-2000:])
    return done.returncode, lines


def test_clean_rollout_is_signed_off_after_its_bake(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    sandbox = sandbox_process("clean-rollout", speed=2.0)
    report = tmp_path / "report"
    code, lines = gate(
        sandbox, tmp_path, "--bake", "5s", "--timeout", "3m", "--report", str(report)
    )
    assert code == 0
    assert any("COMPLETED" in line for line in lines)
    assert any("BAKING" in line for line in lines)
    assert "SIGNED OFF (exit 0)" in lines[-1] and lines[-2].endswith("report.md")
    markdown = (tmp_path / "report.md").read_text()
    assert "- Status: **SIGNED OFF** (exit 0)" in markdown
    assert "**Strategy**: ECS rolling" in markdown and "web:1 → web:2" in markdown
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["status"] == "SIGNED OFF" and data["breached_rules"] == []
    assert data["actions"] == []  # nothing was sent
    # The deployment history, from ECS's service-deployments API, with its figures.
    assert "## Deployment history" in markdown and "- success 100%" in markdown
    newest = data["history"]["deployments"][0]
    assert (newest["service"], newest["from"], newest["to"]) == ("web", "web:1", "web:2")
    assert newest["outcome"] == "completed" and newest["who"] == []


def test_bad_release_without_act_fails_and_sends_nothing(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    sandbox = sandbox_process("bad-release", speed=4.0)
    code, lines = gate(sandbox, tmp_path, "--timeout", "3m", "--json")
    assert code == 1
    records = [json.loads(line) for line in lines]
    last = records[-1]
    assert last["event"] == "summary" and last["code"] == 1 and last["outcome"] == "FAILED"
    # The first rule to fail it: the error rate, or the smoke suite (checkout fails on v2).
    assert "error rate" in last["text"] or "web smoke tests" in last["text"], last["text"]
    assert not any(r["event"] == "action" for r in records)  # read-only: nothing sent
    assert any(r["event"] == "verdict" and r["verdict"] == "FAILING" for r in records)


def test_bad_release_with_act_rolls_back_automatically(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from engine.config import load_config

    began = datetime.now(UTC).isoformat(timespec="milliseconds")
    sandbox = sandbox_process("bad-release", speed=4.0)
    recording = tmp_path / "bad-release.jsonl.gz"
    code, lines = gate(
        sandbox,
        tmp_path,
        "--act",
        "--timeout",
        "4m",
        "--report",
        str(tmp_path / "bad.md"),
        "--record",
        str(recording),
    )
    assert code == 3
    text = "\n".join(lines)
    assert "AUTO ROLLBACK of web in" in text
    assert "automatic rollback of web DONE" in text
    assert "ROLLED BACK (exit 3)" in lines[-1]
    # The report names the rule, the automatic rollback and the MTTR.
    markdown = (tmp_path / "bad.md").read_text()
    assert "- Status: **ROLLED BACK** (exit 3)" in markdown
    assert "web error rate" in markdown and "CRITICAL" in markdown
    # stop_service_deployment while in flight, update_service once ECS had finished it.
    assert re.search(
        r"automatic rollback \| .* \| ecs:(stop_service_deployment|update_service)", markdown
    )
    assert "web:1 → web:2" in markdown  # the deployment the gate was for
    assert "## MTTR" in markdown and "decided 20" in markdown
    assert "PaymentGatewayError" in markdown
    # The history names who acted on the deployment: the rule, from the audit log.
    assert "## Deployment history" in markdown and "rule rollback (" in markdown
    # Audited like any action, in the rehearsal log the sandbox's config names.
    log = load_config(sandbox.config_path).actions.audit_log
    assert log is not None and log.name == "rehearsal-audit.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    intents = [
        e
        for e in entries
        if e["phase"] == "intent" and e["time"] >= began and e["target"]["cluster"] == "rehearsal"
    ]
    assert [(e["automatic"], e["action"]) for e in intents] == [(True, "rollback")]
    # The recording replays to the verdict timeline the gate saw, and regenerates the
    # report's findings (read-only: the replay sends nothing).
    assert lines[-3] == f"{lines[-3][:10]}recording: {recording}"
    replayed = subprocess.run(
        [
            *(sys.executable, "-m", "tui", "replay", str(recording)),
            *("--timeline", "--report", str(tmp_path / "replayed")),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    print(replayed.stdout, replayed.stderr[-2000:])
    assert replayed.returncode == 0, "the replayed verdict timeline differs from the recorded one"
    assert "FAILING" in replayed.stdout and "the timelines agree" in replayed.stdout
    again = (tmp_path / "replayed.md").read_text()
    assert "web error rate" in again and "PaymentGatewayError" in again


def test_a_circuit_breaker_rollback_is_never_a_success(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    sandbox = sandbox_process("demo", speed=4.0)
    code, lines = gate(sandbox, tmp_path, "--service", "api", "--timeout", "3m")
    assert code == 3
    assert "rolled back (by ECS)" in lines[-1]


def test_a_deadline_before_completion_times_out(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    sandbox = sandbox_process("clean-rollout", speed=1.0)
    code, lines = gate(sandbox, tmp_path, "--timeout", "3s")
    assert code == 4
    assert "TIMED OUT (exit 4)" in lines[-1]


def test_a_crash_loop_ecs_calls_completed_is_never_signed_off(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    """v2's tasks reach RUNNING then crash, again and again: ECS's breaker never trips
    and the deployment may read COMPLETED; the gate must not exit 0."""
    # Speed 4: the tasks crash every 2 s; the availability rule's 20 s window is real time.
    sandbox = sandbox_process("crash-loop", speed=4.0)
    code, lines = gate(sandbox, tmp_path, "--bake", "30s", "--timeout", "100s", "--json")
    records = [json.loads(line) for line in lines]
    # The gate saw the deployment in flight (else it would only wait for the deadline).
    assert any(r["event"] == "state" and r["status"] == "IN_PROGRESS" for r in records)
    assert code in (1, 4), records[-1]
    assert records[-1]["event"] == "summary" and records[-1]["code"] == code
    assert not any(r["event"] == "bake" and r["state"] == "signed off" for r in records)


def test_flaky_sources_pause_the_bake_and_never_sign_off_missing_data(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    """Datadog answers 429 then hangs, Sentry 500s, AWS resets, all while web bakes: time
    without fresh data is not healthy time, so a 30 s bake cannot fill before the
    deadline."""
    # Speed 2 (the faults' hang and Retry-After are real seconds, as at speed 1): web
    # completes ~10 s in, then its sources fail for ~12 s of the 34 s left, so it bakes
    # ~20 s of 30 by the deadline; a bake that counted stale time would sign off at ~40 s.
    sandbox = sandbox_process("flaky-sources", speed=2.0)
    code, lines = gate(sandbox, tmp_path, "--bake", "30s", "--timeout", "44s", "--json")
    records = [json.loads(line) for line in lines]
    assert code == 4, records[-1]
    bakes = [r for r in records if r["event"] == "bake"]
    assert any(r["state"] == "paused" for r in bakes), bakes
    assert not any(r["state"] == "signed off" for r in bakes)
    assert "baked" in records[-1]["text"] and "of 30s" in records[-1]["text"]


def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    config = ROOT / "deploywatch.example.toml"
    done = subprocess.run(
        [sys.executable, "-m", "tui", "gate", "--config", str(config), "--service", "nope"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--service 'nope'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(120)
def test_sigterm_again_and_again_ends_the_gate_with_its_summary_and_143_never_a_traceback(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    """A pipeline's runner cancels a job with SIGTERM, and often sends it again: the
    gate says where it stood and exits 128+15, and a further signal does not cut its
    closing (the recording, the report) into a traceback."""
    import signal
    import time

    sandbox = sandbox_process("clean-rollout", speed=1.0)
    env = {k: v for k, v in os.environ.items() if k not in FORGET_ENV}
    env.update(sandbox.client_env)
    report = tmp_path / "report"
    proc = subprocess.Popen(
        [
            *GATE,
            *("--config", str(sandbox.config_path), "--bake", "10m"),
            *("--report", str(report), "--record", str(tmp_path / "rec.gz")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        seen = []
        while time.monotonic() < deadline:  # the watch is up once it has judged
            line = proc.stdout.readline()
            seen.append(line)
            if re.search(r"HEALTHY|DEGRADED|FAILING|NO DATA", line):
                break
        # Again and again until it exits: some land while it closes.
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.01)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lines = "".join(seen).splitlines() + out.splitlines()
    print("\n".join(lines[-10:]), "\nstderr:", err[-2000:])
    assert "Traceback" not in err
    # 143, or killed by a signal that came after the gate had let go of them.
    assert proc.returncode in (128 + signal.SIGTERM, -signal.SIGTERM)
    assert any("interrupted by SIGTERM" in line for line in lines[-4:])
    assert (tmp_path / "report.md").exists() and (tmp_path / "rec.gz").exists()
