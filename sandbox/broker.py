"""A real MQTT broker on 127.0.0.1 for rehearsals and tests: mosquitto, else amqtt.

Without mosquitto (or with ``DEPLOYWATCH_BROKER=amqtt``) the broker is amqtt, a
Python broker, in a child process of its own (``sandbox/amqtt_broker.py``): plain
MQTT with anonymous clients and retained messages in memory; TLS and passwords need
mosquitto.

``Broker(port).start()`` writes a config into a folder of its own, starts mosquitto and
waits (bounded) until it accepts connections; ``stop()`` ends it, ``restart()`` starts
it again on the same port (retained messages are not persisted: a restarted broker has
forgotten them, as a broker without persistence does).

With ``tls`` (a :class:`TlsFiles`) it listens with TLS instead, asking clients for a
certificate when ``require_certificate``; with ``passwords`` only those users connect.
"""

from __future__ import annotations

import getpass
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 15.0
"""Seconds mosquitto may take to accept connections (a loaded 2-core machine)."""


class BrokerError(Exception):
    """The broker could not be started (said in one line)."""


def mosquitto_path() -> str | None:
    """The mosquitto executable, if installed (Debian puts it in /usr/sbin)."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


ENV_BROKER = "DEPLOYWATCH_BROKER"
"""``mosquitto`` or ``amqtt``: which broker to run (default: mosquitto when installed)."""


def amqtt_available() -> bool:
    """Whether amqtt is installed (the ``sandbox`` extra brings it)."""
    return importlib.util.find_spec("amqtt") is not None


def broker_kind() -> str | None:
    """The broker this machine runs: ``mosquitto``, else ``amqtt``; ``None``: neither
    is installed (``DEPLOYWATCH_BROKER`` picks one)."""
    wanted = os.environ.get(ENV_BROKER, "").strip().lower()
    if wanted == "amqtt" or (wanted != "mosquitto" and mosquitto_path() is None):
        return "amqtt" if amqtt_available() else None
    return "mosquitto" if mosquitto_path() is not None else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS listener."""

    cert: Path
    key: Path
    ca: Path | None = None
    """CA that client certificates must be signed by (with ``require_certificate``)."""
    require_certificate: bool = False


class Broker:
    """One mosquitto process on 127.0.0.1.

    Args:
        port: The port (a free one by default).
        tls: Listen with TLS.
        passwords: ``{user: password}``; when given, anonymous clients are refused.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        tls: TlsFiles | None = None,
        passwords: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.passwords = passwords
        self.folder = Path(tempfile.mkdtemp(prefix="deploywatch-broker-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.kind: str | None = None
        """``mosquitto`` or ``amqtt``, once started."""

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def _config(self, exe: str) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            # Started as root, mosquitto would drop to its own user and could not read
            # this folder's files: it stays the user who started it.
            f"user {getpass.getuser()}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            f"allow_anonymous {'false' if self.passwords else 'true'}",
        ]
        if self.passwords is not None:
            pw_file = self.folder / "passwords"
            pw_file.write_text("".join(f"{u}:{p}\n" for u, p in self.passwords.items()))
            pw_file.chmod(0o600)
            hasher = shutil.which("mosquitto_passwd") or str(Path(exe).parent / "mosquitto_passwd")
            if not Path(hasher).exists():
                hasher = shutil.which("mosquitto_passwd", path="/usr/bin:/usr/sbin") or hasher
            subprocess.run([hasher, "-U", str(pw_file)], check=True, capture_output=True)
            lines.append(f"password_file {pw_file}")
        if self.tls is not None:
            lines += [f"certfile {self.tls.cert}", f"keyfile {self.tls.key}"]
            if self.tls.ca is not None:
                lines.append(f"cafile {self.tls.ca}")
            if self.tls.require_certificate:
                lines.append("require_certificate true")
        conf = self.folder / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _command(self) -> list[str]:
        kind = broker_kind()
        exe = mosquitto_path()
        if kind == "amqtt":
            if self.tls is not None or self.passwords is not None:
                raise BrokerError("TLS and passwords need mosquitto (apt-get install mosquitto)")
            self.kind = kind
            # It ends itself when our end of its stdin closes (as the guard below).
            return [sys.executable, "-m", "sandbox.amqtt_broker", str(self.port)]
        if kind is None or exe is None:
            raise BrokerError(
                "no MQTT broker: install mosquitto (apt-get install mosquitto) or amqtt "
                "(pip install 'deploywatch[sandbox]')"
            )
        self.kind = kind
        conf = self._config(exe)
        # Through a guard that ends the broker when our end of its stdin closes: a
        # sandbox killed outright does not leave a broker behind.
        return [sys.executable, "-m", "sandbox.broker_guard", exe, "-c", str(conf)]

    def start(self) -> Broker:
        """Start it and wait until it accepts connections."""
        command = self._command()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise BrokerError(f"{self.kind} exited at once: {err.strip()[-300:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"{self.kind} did not listen on port {self.port} within {START_TIMEOUT}s")

    def stop(self) -> None:
        """End it (bounded) and wait for it."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()

    def restart(self) -> None:
        """Stop, then start on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop it and remove its folder."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
