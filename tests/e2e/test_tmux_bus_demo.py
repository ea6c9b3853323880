"""``deploywatch demo --viewers 1`` in a real tmux: a relay, this dashboard and a viewer
pane beside it over the sandbox's broker; a lock taken in one pane refuses ``R`` in the
other with its holder's name; quitting closes the viewer's pane and stops the relay."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from bench._tmux import Tmux
from tests.e2e.test_tmux_demo import DEPLOYWATCH, RUN_MARK

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


def panes(tmux: Tmux) -> list[str]:
    return tmux.run("list-panes", "-t", tmux.target, "-F", "#{pane_id}").split()


def screen(tmux: Tmux, pane: str) -> str:
    return tmux.run("capture-pane", "-p", "-t", pane)


def wait_for(tmux: Tmux, pane: str, pattern: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = screen(tmux, pane)
        if re.search(pattern, text):
            return text
        time.sleep(0.5)
    raise AssertionError(f"not in pane {pane} within {timeout:g}s: {pattern}\n{text}")


def relay_pids() -> set[int]:
    """This test's relay processes (they inherit the demo's run mark)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True)
    found = set()
    for line in out.stdout.splitlines():
        if "-m tui relay" not in line:
            continue
        pid = int(line.split(None, 1)[0])
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if RUN_MARK.encode() in environ.split(b"\0"):
            found.add(pid)
    return found


def only_web(tmux: Tmux, pane: str) -> None:
    """Select web whatever the order: filter the deployments to it."""
    tmux.run("send-keys", "-t", pane, "/")
    wait_for(tmux, pane, r"[Ff]ilter", 10)
    tmux.run("send-keys", "-t", pane, "w", "e", "b", "Enter")
    wait_for(tmux, pane, r"Deployments · ECS · /web\s+1/2", 10)


def test_a_lock_taken_in_one_pane_refuses_r_in_the_other(tmp_path: Path) -> None:
    tmux = Tmux(f"dw-e2e-bus-{os.getpid()}")
    state = tmp_path / "state"
    tmux.start(
        f"{RUN_MARK} XDG_STATE_HOME={state} {DEPLOYWATCH} demo --viewers 1 --speed 2;"
        " echo EXITED=$?; sleep 30"
    )
    try:
        deadline = time.monotonic() + 60
        while len(panes(tmux)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        first, second = panes(tmux)
        for pane in (first, second):
            # ECS has answered (before that, R is rightly "not possible: no ECS data yet").
            wait_for(tmux, pane, r"web\s+demo/web\s+(?!NO DATA)[A-Z_]+\s", 60)
        assert relay_pids(), "the demo's relay is not running"
        only_web(tmux, first)
        only_web(tmux, second)
        # The first pane's R claims web's lock; n declines the rollback itself. (On a
        # loaded machine the deployment may have finished by now: then R rolls forward.)
        tmux.run("send-keys", "-t", first, "R")
        dialog = wait_for(
            tmux, first, r"Roll back web(.|\n)*ecs:(StopServiceDeployment|UpdateService)", 15
        )
        assert "Roll back web: refused" not in dialog
        tmux.run("send-keys", "-t", first, "n")  # (a plain key: a lone ESC can wait for more)
        wait_for(tmux, first, r"Roll back web: cancelled, nothing sent", 10)
        wait_for(tmux, first, r"yours since \d\d:\d\d", 20)
        wait_for(tmux, second, r"locked by \S+ \(pane 1\) since", 20)
        tmux.run("send-keys", "-t", second, "R")
        text = wait_for(tmux, second, r"Roll back web: refused", 15)
        assert re.search(r"demo/web: locked by \S+ \(pane 1\) since", text), text
        assert "API call" not in text  # no confirmation was opened
        # q in the first pane ends it all: the viewer's pane closes, the relay stops.
        tmux.run("send-keys", "-t", first, "q")
        wait_for(tmux, first, r"EXITED=0", 30)
        assert panes(tmux) == [first]
        deadline = time.monotonic() + 15
        while relay_pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not relay_pids(), "the demo's relay was left behind"
    finally:
        tmux.kill()


def test_viewers_outside_tmux_is_refused_before_anything_starts() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TMUX"}
    out = subprocess.run(
        [str(DEPLOYWATCH), "demo", "--viewers", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert out.returncode == 2
    assert "run it inside tmux" in out.stderr and out.stderr.count("\n") == 1
    assert "starting the sandbox" not in out.stderr
