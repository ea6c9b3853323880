"""The real CLI in a real terminal: ``deploywatch demo`` in a 200x50 tmux.

Types keys with ``send-keys`` and reads the screen with ``capture-pane``, as a person
would. Skipped only where tmux is missing and ``DEPLOYWATCH_REQUIRE_TMUX`` is unset (CI
sets it, so there it fails instead).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench._tmux import Tmux

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

TMUX = shutil.which("tmux")
if TMUX is None and not os.environ.get("DEPLOYWATCH_REQUIRE_TMUX"):
    pytest.skip("tmux is not installed (make test installs it)", allow_module_level=True)

DEPLOYWATCH = Path(sys.executable).parent / "deploywatch"


RUN_MARK = f"DEPLOYWATCH_E2E_RUN=e2e-{os.getpid()}"
"""Set on the demo's command line: its sandbox inherits it, so this test counts its own
sandbox processes, never those of another test run on the same machine."""


def sandbox_pids() -> set[int]:
    """The sandbox processes started by this test's demo."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True)
    pids = set()
    for line in out.stdout.splitlines():
        if "-m sandbox --json" not in line:
            continue
        pid = int(line.split(None, 1)[0])
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if RUN_MARK.encode() in environ.split(b"\0"):
            pids.add(pid)
    return pids


def card_line(screen: str, service: str) -> str:
    for line in screen.splitlines():
        if re.search(rf"\b{service}\s+demo/{service}\b", line):
            return line
    return ""


def test_demo_shows_both_deployments_progress_and_quits_cleanly(tmp_path: Path) -> None:
    before = sandbox_pids()
    tmux = Tmux(f"dw-e2e-{os.getpid()}")
    # stderr goes to the terminal: Textual draws there. Speed 2 keeps CI quick; the
    # README's `make demo` runs at speed 1.
    tmux.start(f"{RUN_MARK} {DEPLOYWATCH} demo --speed 2; echo EXITED=$?; sleep 30")
    try:
        tmux.wait_for(re.compile(r"Deployments · ECS"), 30)
        width = tmux.run("display-message", "-p", "-t", tmux.target, "#{pane_width}x#{pane_height}")
        assert width.strip() == "200x50"
        assert len(max(tmux.screen().splitlines(), key=len)) > 150  # drawn at full width
        # Both services show up with live data from the sandbox through boto3.
        screen = tmux.wait_for(re.compile(r"web\s+demo/web.*running", re.S), 30)
        assert "sandbox-demo" in screen
        assert sandbox_pids() - before, "the demo's sandbox process is not found"
        # web's rollout moves: a second deployment appears, then completes.
        tmux.wait_for(re.compile(r"web:2"), 30)
        seen_progress = False
        deadline = time.monotonic() + 60
        web = api = ""
        while time.monotonic() < deadline:
            screen = tmux.screen()
            web, api = card_line(screen, "web"), card_line(screen, "api")
            seen_progress |= "IN_PROGRESS" in web
            if "COMPLETED" in web and re.search(r"ROLLBACK_(IN_PROGRESS|SUCCESSFUL)|FAILED", api):
                break
            time.sleep(0.5)
        assert seen_progress, "web's deployment was never seen in progress"
        assert "COMPLETED" in web, screen
        assert re.search(r"ROLLBACK_(IN_PROGRESS|SUCCESSFUL)|FAILED", api), screen
        assert "failed to start" in screen  # the breaker's reason, in full
        assert re.search(r"\d+ failed", screen)
        # Help opens and closes with the keyboard.
        tmux.keys("?")
        tmux.wait_for(re.compile(r"what STALE means|STALE means"), 10)
        tmux.keys("Escape")
        # Wait for the modal to close: a key sent right after ESC reads as alt+key.
        tmux.wait_gone(re.compile(r"STALE means"), 10)
        # q quits with status 0 and the sandbox goes with it.
        tmux.keys("q")
        tmux.wait_for(re.compile(r"EXITED=0"), 20)
        deadline = time.monotonic() + 10
        while sandbox_pids() - before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not (sandbox_pids() - before), "a sandbox process was left behind"
    finally:
        tmux.kill()


def test_bad_release_roll_back_with_shift_r_in_production(tmp_path: Path) -> None:
    """bad-release → FAILING → shift-R → type the name → ROLLBACK_SUCCESSFUL, with MTTR."""
    tmux = Tmux(f"dw-e2e-rb-{os.getpid()}")
    state = tmp_path / "state"
    # Real time (speed 1), as a deployer sees it; the audit logs go to a private state dir.
    tmux.start(
        f"XDG_STATE_HOME={state} {DEPLOYWATCH} demo --scenario bad-release --production;"
        " echo EXITED=$?; sleep 30"
    )
    try:
        tmux.wait_for(re.compile(r"Deployments · ECS"), 30)
        screen = tmux.wait_for(re.compile(r"FAILING\s+web error rate"), 90)
        assert re.search(r"IN_PROGRESS", screen), "the rollout should still be in flight"
        started = time.monotonic()
        tmux.keys("R")
        screen = tmux.wait_for(re.compile(r"Type web and press Enter"), 10)
        for part in (
            "Roll back web",
            "PRODUCTION",
            "rehearsal",
            "web:2 → web:1",
            "StopServiceDeployment",
        ):
            assert part in screen, part
        tmux.keys("Enter")  # Enter alone does nothing
        tmux.wait_for(re.compile(r"is not web"), 5)
        tmux.keys("w", "e", "b", "Enter")
        screen = tmux.wait_for(re.compile(r"rollback DONE"), 10)
        sent_after = time.monotonic() - started
        tmux.wait_for(re.compile(r"ROLLBACK_SUCCESSFUL"), 90)
        # The MTTR clock closes when the service is well again, not when ECS says the
        # rollback succeeded: v2's breaching points must first age out of the rules'
        # windows (20 s and 40 s here), so the rolled-back service's rules are OK.
        tmux.wait_for(
            re.compile(r"MTTR\s+web: breach \d\d:\d\d:\d\d · decided \+\S+ · recovered \+\S+"), 90
        )
        print(
            f"keys→sent {sent_after:.1f}s (incl. typing); rollback complete {time.monotonic() - started:.1f}s after R"
        )
        # A rehearsal is audited in its own log; the real one is never written.
        entries = [
            json.loads(line)
            for line in (state / "deploywatch" / "rehearsal-audit.jsonl").read_text().splitlines()
        ]
        assert not (state / "deploywatch" / "audit.jsonl").exists()
        assert [e["phase"] for e in entries] == ["intent", "result"]
        assert entries[0]["call"]["operation"] == "stop_service_deployment"
        assert entries[0]["automatic"] is False and entries[1]["ok"] is True
        tmux.keys("q")
        tmux.wait_for(re.compile(r"EXITED=0"), 20)
    finally:
        tmux.kill()


def demo_pid(tmux: Tmux) -> int:
    """The ``deploywatch demo`` process: the child of the pane's shell."""
    shell = int(tmux.run("display-message", "-p", "-t", tmux.target, "#{pane_pid}").strip())
    out = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(shell)], capture_output=True, text=True
    ).stdout
    pids = [int(line.split(None, 1)[0]) for line in out.splitlines() if "deploywatch" in line]
    assert len(pids) == 1, out
    return pids[0]


def terminal_flags(tmux: Tmux) -> dict[str, str]:
    """What the pane's terminal is in: alternate screen, cursor shown, mouse tracking."""
    names = ("alternate_on", "cursor_flag", "mouse_any_flag", "mouse_sgr_flag")
    out = tmux.run("display-message", "-p", "-t", tmux.target, " ".join(f"#{{{n}}}" for n in names))
    return dict(zip(names, out.split(), strict=True))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_quits_like_q_restores_the_terminal_and_stops_the_sandbox(
    sig: signal.Signals, tmp_path: Path
) -> None:
    """A supervisor's SIGTERM (or `timeout`), or a hang-up: the same clean exit as `q`."""
    before = sandbox_pids()
    tmux = Tmux(f"dw-e2e-{sig.name}-{os.getpid()}")
    tmux.start(
        f"{RUN_MARK} XDG_STATE_HOME={tmp_path / 'state'} {DEPLOYWATCH} demo --speed 2;"
        " echo EXITED=$?; sleep 30"
    )
    try:
        tmux.wait_for(re.compile(r"web\s+demo/web.*running", re.S), 60)
        # The app owns the terminal: alternate screen, mouse tracking, no cursor.
        assert terminal_flags(tmux) == {
            "alternate_on": "1",
            "cursor_flag": "0",
            "mouse_any_flag": "1",
            "mouse_sgr_flag": "1",
        }
        ours = sandbox_pids() - before
        assert ours, "the demo's sandbox process is not found"
        os.kill(demo_pid(tmux), sig)
        # Promptly: the sandbox stops within its own bounded stop; generous for a loaded box.
        tmux.wait_for(re.compile(rf"EXITED={128 + sig.value}\b"), 30)
        assert terminal_flags(tmux) == {
            "alternate_on": "0",
            "cursor_flag": "1",
            "mouse_any_flag": "0",
            "mouse_sgr_flag": "0",
        }
        assert not (sandbox_pids() & ours), "a sandbox process was left behind"
        assert "Traceback" not in tmux.screen()
    finally:
        tmux.kill()


def test_closing_the_terminal_ends_the_demo_and_its_sandbox(tmp_path: Path) -> None:
    """A real hang-up (the tmux server goes, as when an ssh session drops): SIGHUP comes
    with SIGCONT and a dead terminal; the demo must still end and stop its sandbox."""
    before = sandbox_pids()
    tmux = Tmux(f"dw-e2e-hangup-{os.getpid()}")
    tmux.start(
        f"{RUN_MARK} XDG_STATE_HOME={tmp_path / 'state'} {DEPLOYWATCH} demo --speed 2; sleep 30"
    )
    try:
        tmux.wait_for(re.compile(r"web\s+demo/web.*running", re.S), 60)
        ours = sandbox_pids() - before
        assert ours, "the demo's sandbox process is not found"
        demo = demo_pid(tmux)
    finally:
        tmux.kill()
    deadline = time.monotonic() + 30
    while (Path(f"/proc/{demo}").exists() or sandbox_pids() & ours) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert not Path(f"/proc/{demo}").exists(), "deploywatch is still running after a hang-up"
    assert not (sandbox_pids() & ours), "a sandbox process was left behind"


def test_native_canary_hook_promote_then_the_rule_rolls_it_back(tmp_path: Path) -> None:
    """canary → the PAUSE hook waits on the card → P, y → 20 % on v2 → FAILING → the
    rollback rule's countdown answers the hook that waits again → ROLLBACK_SUCCESSFUL."""
    tmux = Tmux(f"dw-e2e-canary-{os.getpid()}")
    state = tmp_path / "state"
    # Real time (speed 1): the scenario's bakes are 10 s, its rules 15 s and 20 s.
    tmux.start(
        f"XDG_STATE_HOME={state} {DEPLOYWATCH} demo --scenario canary; echo EXITED=$?; sleep 30"
    )
    try:
        tmux.wait_for(re.compile(r"Deployments · ECS"), 30)
        # The card: in flight, its stage, the split (nothing on v2 yet) and the hook.
        screen = tmux.wait_for(re.compile(r"hook waiting: P promotes, R rolls back"), 60)
        assert re.search(r"web\s+canary/web\s+IN_PROGRESS", screen), screen
        assert "deployment IN_PROGRESS  web:1 → web:2" in screen
        assert "stage PRODUCTION_TRAFFIC_SHIFT · traffic web:1 100% / web:2 0%" in screen
        assert re.search(r"rolls back \(else ROLLBACK at \d\d:\d\d:\d\d\)", screen), screen
        # P: the dialog says forward (old → new), what it does and the exact call.
        tmux.keys("P")
        screen = tmux.wait_for(re.compile(r"Press y to promote web"), 10)
        for part in (
            "Promote web",
            "web:1 → web:2",
            "ECS canary",
            "continue past PRODUCTION_TRAFFIC_SHIFT towards web:2",
            "ecs:ContinueServiceDeployment action=CONTINUE",
        ):
            assert part in screen, part
        tmux.keys("y")
        screen = tmux.wait_for(re.compile(r"promote DONE\s+web web:1 → web:2 at "), 15)
        promoted = time.monotonic()
        tmux.wait_for(re.compile(r"traffic web:1 80% / web:2 20%"), 20)
        # v2 fails a fifth of its requests: FAILING on its error rate, then the
        # rollback rule's countdown (no good point in between restarts the streaks).
        screen = tmux.wait_for(re.compile(r"FAILING\s+web error rate \[version:v2\]"), 60)
        assert "web_error_rate  > 2% CRITICAL" in screen, screen
        screen = tmux.wait_for(
            re.compile(r"AUTO ROLLBACK in \d+s\s+web · web error rate: roll back"), 30
        )
        assert "press c to cancel" in screen
        # The deployment waits at its hook again: the rollback answers it.
        screen = tmux.wait_for(
            re.compile(
                r"auto rollback DONE\s+web web:2 → web:1 at .* lifecycle hook with ROLLBACK"
            ),
            30,
        )
        screen = tmux.wait_for(re.compile(r"web\s+canary/web\s+ROLLBACK_SUCCESSFUL"), 45)
        rolled_back = time.monotonic() - promoted
        assert "deployment ROLLBACK_SUCCESSFUL  web:2 → back to web:1" in screen, screen
        assert "hook waiting" not in screen and "stage PRODUCTION" not in screen
        # The banner says how and when ECS rolled it back; once v2's breaching points
        # have aged out of the rules' windows the MTTR clock closes.
        tmux.wait_for(re.compile(r"ECS canary/web: rolled back to web:1 at \d\d:\d\d:\d\d"), 30)
        tmux.wait_for(
            re.compile(r"MTTR\s+web: breach \d\d:\d\d:\d\d · decided \+\S+ · recovered \+\S+"), 90
        )
        print(f"promote → ROLLBACK_SUCCESSFUL in {rolled_back:.1f}s")
        entries = [
            json.loads(line)
            for line in (state / "deploywatch" / "rehearsal-audit.jsonl").read_text().splitlines()
        ]
        intents = [e for e in entries if e["phase"] == "intent"]
        assert [(e["action"], e["automatic"]) for e in intents] == [
            ("promote", False),
            ("rollback", True),
        ]
        assert [(e["target"]["from"], e["target"]["to"]) for e in intents] == [
            ("web:1", "web:2"),
            ("web:2", "web:1"),
        ]
        assert [e["call"]["params"]["action"] for e in intents] == ["CONTINUE", "ROLLBACK"]
        assert all(e["ok"] for e in entries if e["phase"] == "result")
        tmux.keys("q")
        tmux.wait_for(re.compile(r"EXITED=0"), 20)
    finally:
        tmux.kill()
