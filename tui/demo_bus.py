"""``deploywatch demo --viewers N``: the rehearsal over the deployment bus, side by side.

The sandbox runs its broker (mosquitto, else amqtt); a headless relay polls the sandbox
and publishes on the bus; this terminal becomes an operator's dashboard read from the
bus (``run --bus URL --operate``) and each viewer another one in a tmux pane beside it,
so a lock taken in one pane refuses the action keys in the other with its holder's
name. Leaving this dashboard (``q``) closes the viewers' panes and stops the relay and
the sandbox. It needs tmux (it runs inside one) and a broker.
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from engine.config import Settings
    from sandbox.process import SandboxProcess

MAX_VIEWERS = 3
"""Panes beside this one (more would not fit a terminal)."""

ENV_HOLDER = "DEPLOYWATCH_HOLDER"
"""The operator's name on the bus's lock (default ``user@host``)."""


class DemoBusError(Exception):
    """Why ``--viewers`` cannot run here (said in one line)."""


def check_viewers(
    viewers: int, env: Mapping[str, str], *, production: bool = False, record: bool = False
) -> None:
    """Refuse before anything starts: a count out of range, no tmux to split, or an
    option the viewers' panes would not honour (they read the sandbox's config as it is,
    and a dashboard on the bus takes in nothing of its own to record).

    Raises:
        DemoBusError: Why, and what to do instead.
    """
    if not 1 <= viewers <= MAX_VIEWERS:
        raise DemoBusError(f"--viewers takes 1 to {MAX_VIEWERS}")
    if production:
        raise DemoBusError(
            "--production does not combine with --viewers: the viewers' panes would not "
            "ask for the service name; rehearse production without --viewers"
        )
    if record:
        raise DemoBusError(
            "--record does not combine with --viewers: the dashboards on the bus poll "
            "nothing of their own; record without --viewers"
        )
    if shutil.which("tmux") is None:
        raise DemoBusError("--viewers opens tmux panes, and tmux is not installed")
    if not env.get("TMUX"):
        raise DemoBusError(
            "--viewers opens tmux panes beside this one: run it inside tmux, e.g. "
            "tmux new 'deploywatch demo --viewers 1'"
        )


def holder(pane: int) -> str:
    """``alice@bastion-1 (pane 2)``: whose lock it is, told apart per pane."""
    return f"{os.environ.get('USER') or getpass.getuser()}@{os.uname().nodename} (pane {pane})"


def viewer_command(url: str, config: str) -> list[str]:
    """The dashboard of one viewer pane (an operator's: it may take locks and act)."""
    return [sys.executable, "-m", "tui", "run", "--bus", url, "--config", config, "--operate"]


def split_command(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """``tmux split-window`` running ``argv`` beside this pane with ``env`` (a new pane
    gets the tmux server's environment, not ours); prints the new pane's id."""
    command = ["tmux", "split-window", "-h", "-d", "-P", "-F", "#{pane_id}"]
    for name, value in sorted(env.items()):
        command += ["-e", f"{name}={value}"]
    return [*command, shlex.join(argv)]


class Panes:
    """The relay and the viewer panes of one demo; :meth:`close` ends them all."""

    def __init__(self) -> None:
        self.relay: subprocess.Popen[bytes] | None = None
        self.panes: list[str] = []

    def start(self, url: str, config: str, viewers: int, env: Mapping[str, str]) -> None:
        """Start the relay, then the viewers' panes, each with ``env`` (the sandbox's
        credentials: never a real one) on top of ours. Raises ``OSError`` or
        ``subprocess.SubprocessError``; :meth:`close` cleans up either way."""
        self.relay = subprocess.Popen(
            [sys.executable, "-m", "tui", "relay", "--bus", url, "--config", config],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # this terminal is the dashboard's
        )
        for pane in range(2, viewers + 2):
            passed = {**env, ENV_HOLDER: holder(pane)}
            for name in PASSED:  # a new pane gets the tmux server's environment
                if name in os.environ:
                    passed.setdefault(name, os.environ[name])
            out = subprocess.run(
                split_command(viewer_command(url, config), passed),
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            )
            self.panes.append(out.stdout.strip())

    def close(self) -> None:
        for pane in self.panes:
            subprocess.run(
                ["tmux", "kill-pane", "-t", pane], capture_output=True, check=False, timeout=10
            )
        self.panes = []
        relay, self.relay = self.relay, None
        if relay is not None:
            relay.terminate()
            try:
                relay.wait(timeout=10)
            except subprocess.TimeoutExpired:
                relay.kill()
                relay.wait(timeout=5)


PASSED = ("PATH", "XDG_STATE_HOME", "DEPLOYWATCH_BROKER", "DEPLOYWATCH_E2E_RUN")
"""What a viewer pane takes from the demo's own environment besides the sandbox's
credentials: where programs and state are (and the tests' run mark)."""


def demo_over_the_bus(
    settings: Settings, sandbox: SandboxProcess, viewers: int, *, read_only: bool = False
) -> int:
    """Run the relay and the viewers' panes, and this terminal's dashboard from the bus,
    until it quits; then close the panes and stop the relay (the caller stops the
    sandbox)."""
    from tui.bus_cli import run_viewer

    url = sandbox.info.get("bus")
    if not url:
        print(
            "deploywatch: the sandbox has no MQTT broker: install mosquitto "
            "(apt-get install mosquitto) or amqtt (pip install 'deploywatch[sandbox]')",
            file=sys.stderr,
        )
        return 1
    env = {**sandbox.client_env, "AWS_EC2_METADATA_DISABLED": "true"}
    panes = Panes()
    try:
        try:
            panes.start(str(url), str(sandbox.config_path), viewers, env)
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"deploywatch: the viewers' panes did not start: {exc}", file=sys.stderr)
            return 1
        os.environ[ENV_HOLDER] = holder(1)
        return run_viewer(settings, str(url), operate=not read_only)
    finally:
        panes.close()


__all__ = [
    "DemoBusError",
    "Panes",
    "check_viewers",
    "demo_over_the_bus",
    "holder",
    "split_command",
    "viewer_command",
]
