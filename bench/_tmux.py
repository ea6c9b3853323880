"""A private 200x50 tmux server (own socket) for the benches and the end-to-end tests,
and the benches' harness runner.

Keys go through a tmux *control-mode* client (``tmux -C``): a ``send-keys`` is one line
written to its stdin, so no process is spawned per key and the sender's timestamp is
within microseconds of tmux receiving the command.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from bench._common import ROOT, TERMINAL


def tmux_path() -> str:
    """The tmux binary, or exit with a one-line reason."""
    path = shutil.which("tmux")
    if path is None:
        sys.exit("bench: tmux is required (apt-get install tmux, or `make test` installs it)")
    return path


def terminal_env(colorterm: str | None = "truecolor") -> dict[str, str]:
    """The environment of the pane: no inherited size, a modern terminal's colours."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}
    if colorterm:
        env["COLORTERM"] = colorterm
    return env


_SERVERS = itertools.count()


class Tmux:
    """One private tmux server and one session of :data:`TERMINAL` size."""

    def __init__(self, name: str, colorterm: str | None = "truecolor") -> None:
        # One server per instance: a server being killed can still hold its socket name.
        self.base = [tmux_path(), "-L", f"{name}-{os.getpid()}-{next(_SERVERS)}", "-f", "/dev/null"]
        self.session = name
        self.target = f"{name}:0"
        self.env = terminal_env(colorterm)
        self._control: subprocess.Popen[bytes] | None = None

    def run(self, *args: str, check: bool = True) -> str:
        """Run one tmux command against this server; its stdout."""
        return subprocess.run(
            [*self.base, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=check,
            env=self.env,
        ).stdout

    def start(self, command: str) -> None:
        """Start the session running ``command`` (kept on screen after it exits)."""
        w, h = TERMINAL
        self.run("new-session", "-d", "-s", self.session, "-x", str(w), "-y", str(h), command)
        self.run("set-option", "-t", self.session, "remain-on-exit", "on")

    def screen(self) -> str:
        """The pane's text, as a person sees it."""
        return self.run("capture-pane", "-p", "-t", self.target)

    def pane_dead(self) -> bool:
        """Whether the pane's command has exited."""
        out = self.run("display-message", "-p", "-t", self.target, "#{pane_dead}", check=False)
        return out.strip() == "1"

    def keys(self, *keys: str) -> None:
        """Type keys (tmux key names) with one ``send-keys`` process."""
        self.run("send-keys", "-t", self.target, *keys)

    def wait_for(self, predicate: re.Pattern[str], timeout: float) -> str:
        """The screen once ``predicate`` is on it; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate.search(screen):
                return screen
            time.sleep(0.5)
        raise AssertionError(f"not on screen within {timeout:g}s: {predicate.pattern}\n{screen}")

    def wait_gone(self, pattern: re.Pattern[str], timeout: float) -> None:
        """Return once ``pattern`` is off the screen; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pattern.search(self.screen()):
                return
            time.sleep(0.2)
        raise AssertionError(f"still on screen after {timeout:g}s: {pattern.pattern}")

    def control(self) -> None:
        """Attach a control-mode client (its output is drained and thrown away)."""
        self._control = subprocess.Popen(
            [*self.base, "-C", "attach-session", "-t", self.session],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.env,
        )
        out = self._control.stdout
        assert out is not None

        def drain(stream: IO[bytes]) -> None:
            with contextlib.suppress(OSError, ValueError):
                while stream.read1(65536):  # type: ignore[attr-defined]
                    pass

        threading.Thread(target=drain, args=(out,), daemon=True).start()
        # Pane output is not needed on this client: ask tmux not to send it.
        self.command("refresh-client -f no-output")

    def command(self, line: str) -> float:
        """Send one command line to the control client; returns when it was written."""
        assert self._control is not None and self._control.stdin is not None
        t = time.monotonic()
        self._control.stdin.write(line.encode() + b"\n")
        self._control.stdin.flush()
        return t

    def send_key(self, key: str) -> float:
        """Type one key (tmux key name); the monotonic time it was handed to tmux."""
        return self.command(f"send-keys -t {self.target} {shlex.quote(key)}")

    def kill(self) -> None:
        """Stop the control client and the whole private server."""
        if self._control is not None:
            with contextlib.suppress(OSError, ValueError):
                assert self._control.stdin is not None
                self._control.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._control.wait(timeout=2)
            if self._control.poll() is None:
                self._control.kill()
            self._control = None
        self.run("kill-server", check=False)


def harness_command(out: Path, options: list[str], env: dict[str, str] | None = None) -> str:
    """The shell command running the harness in the project root."""
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    argv = [sys.executable, "-m", "bench._harness", "--out", str(out), *options]
    return f"cd {shlex.quote(str(ROOT))} && exec env {exports} {shlex.join(argv)}"


class HarnessRun:
    """One harness process in its own tmux; ``wait()`` returns its results."""

    def __init__(
        self, options: list[str], name: str = "dw-bench", env: dict[str, str] | None = None
    ) -> None:
        self.tmpdir = Path(tempfile.mkdtemp(prefix="dw-bench-"))
        self.out = self.tmpdir / "result.json"
        self.tmux = Tmux(name)
        self.command = harness_command(self.out, options, env)

    def __enter__(self) -> HarnessRun:
        # stderr stays on the terminal: Textual draws there.
        self.tmux.start(self.command)
        return self

    def __exit__(self, *exc: object) -> None:
        self.tmux.kill()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def wait(self, timeout: float) -> dict[str, Any]:
        """Wait for the results file (or the pane's death); raise with its screen on failure."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.out.exists():
                result: dict[str, Any] = json.loads(self.out.read_text())
                return result
            if self.tmux.pane_dead():
                time.sleep(0.2)
                if self.out.exists():
                    continue
                break
            time.sleep(0.2)
        raise RuntimeError(f"harness gave no result within {timeout:g}s:\n{self.tmux.screen()}")

    def screen(self) -> str:
        """The pane's text now."""
        return self.tmux.screen()
