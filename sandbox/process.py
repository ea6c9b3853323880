"""Run the sandbox as a child process: used by ``deploywatch demo`` and the tests.

The child is ``python -m sandbox --json``. It holds our end of a stdin pipe and exits when
that pipe reaches EOF, so even if this process dies without cleaning up, the child goes
(and its own children, the service processes, go with it the same way). Its JSON line
describes every endpoint; :attr:`SandboxProcess.client_env` holds the credentials a
client reads from the environment. This module imports neither moto nor boto3: starting
the product stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sandbox.scenario import list_scenarios

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["SandboxProcess", "SandboxStartError", "list_scenarios"]

_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SandboxStartError(RuntimeError):
    """The sandbox process exited or stayed silent before announcing its endpoints."""


class SandboxProcess:
    """A ``python -m sandbox --json`` child process, as a context manager.

    Args:
        scenario: Bundled scenario name or path to a scenario ``.toml``.
        speed: Sandbox seconds per real second.
        workdir: Where the child writes ``deploywatch.toml`` (a temporary directory of
            the child's when not given).
        startup_timeout: Real seconds to wait for the child's JSON line.
        log_path: File receiving the child's stderr (a temporary file when not given).
        env: Extra environment variables for the child.
    """

    def __init__(
        self,
        scenario: str = "demo",
        speed: float = 1.0,
        workdir: Path | None = None,
        startup_timeout: float = 60.0,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.scenario = scenario
        self.speed = speed
        self.workdir = workdir
        self.startup_timeout = startup_timeout
        self._log_path = log_path
        self._own_log = False
        self._extra_env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._info: dict[str, Any] | None = None

    # ------------------------------------------------------------------ fields

    def _field(self, key: str) -> str:
        if self._info is None:
            raise RuntimeError("the sandbox process is not running")
        return str(self._info[key])

    @property
    def aws_endpoint(self) -> str:
        """The AWS endpoint URL, e.g. ``http://127.0.0.1:54321``."""
        return self._field("aws")

    @property
    def config_path(self) -> Path:
        """Path of the ``deploywatch.toml`` the child wrote."""
        return Path(self._field("config"))

    @property
    def region(self) -> str:
        """AWS region of the sandbox."""
        return self._field("region")

    @property
    def datadog_url(self) -> str:
        """The Datadog API endpoint (the ``host`` of a datadog-api-client configuration)."""
        return self._field("datadog")

    @property
    def sentry_url(self) -> str:
        """The Sentry endpoint (web API under ``/api/0/``)."""
        return self._field("sentry")

    @property
    def fault_control_url(self) -> str:
        """The fault control endpoint (``.../faults``)."""
        return self._field("faults")

    @property
    def services(self) -> dict[str, Any]:
        """Service name -> ``{"proxy": url, "versions": {version: url}, ...}``."""
        return dict(self.info["services"])

    @property
    def client_env(self) -> dict[str, str]:
        """The environment variables a client needs (sandbox credentials, AWS region).

        ``DD_API_KEY``, ``DD_APP_KEY``, ``SENTRY_AUTH_TOKEN``, ``AWS_ACCESS_KEY_ID``,
        ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_DEFAULT_REGION``): none of them is in the
        config file.
        """
        return {str(k): str(v) for k, v in self.info["env"].items()}

    @property
    def info(self) -> dict[str, Any]:
        """The child's whole JSON announcement."""
        if self._info is None:
            raise RuntimeError("the sandbox process is not running")
        return dict(self._info)

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        """File holding the child's stderr."""
        return self._log_path

    def log_text(self, limit: int = 4000) -> str:
        """Return the last ``limit`` characters of the child's stderr."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(encoding="utf-8", errors="replace")[-limit:]

    def running(self) -> bool:
        """Return whether the child is alive."""
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------ lifecycle

    def command(self) -> list[str]:
        """Return the child's command line."""
        cmd = [sys.executable, "-m", "sandbox", "--json", "--scenario", self.scenario]
        cmd += ["--speed", repr(float(self.speed))]
        if self.workdir is not None:
            cmd += ["--workdir", str(self.workdir)]
        return cmd

    def start(self) -> SandboxProcess:
        """Spawn the child and wait (bounded) for its JSON line.

        Returns:
            self

        Raises:
            SandboxStartError: The child exited, or said nothing within the timeout.
        """
        if self._proc is not None:
            return self
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="deploywatch-sandbox-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
            self._own_log = True
        self._log = self._log_path.open("wb")
        env = {**os.environ, **self._extra_env}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        try:
            self._info = self._read_announcement()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_announcement(self) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        stdout = proc.stdout
        lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(
            target=lambda: lines.put(stdout.readline()), name="sandbox-stdout", daemon=True
        ).start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                line = lines.get(timeout=0.1)
                break
            except queue.Empty:
                if proc.poll() is not None and lines.empty():
                    time.sleep(0.1)  # let the reader deliver a last line, if any
                    if lines.empty():
                        raise SandboxStartError(
                            f"sandbox exited with code {proc.returncode}:\n{self.log_text()}"
                        ) from None
                if time.monotonic() > deadline:
                    raise SandboxStartError(
                        f"sandbox said nothing within {self.startup_timeout:g} s:\n{self.log_text()}"
                    ) from None
        try:
            info = json.loads(line)
        except ValueError:
            info = None
        if not isinstance(info, dict) or "aws" not in info:
            raise SandboxStartError(f"unexpected first line from sandbox: {line[:200]!r}")
        return info

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the child: close its stdin, SIGTERM, wait ``timeout`` s, then kill.

        The child stops its own children (and they exit anyway on EOF of their stdin
        once it is gone, even if it had to be killed).
        """
        proc = self._proc
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
            if proc.stdout is not None:
                proc.stdout.close()
            self._proc = None
        self._info = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None
            self._own_log = False

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
