"""The broker's guard ends mosquitto with its owner, a closed terminal included."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from sandbox.broker import Broker, mosquitto_path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed"),
]


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_a_hangup_ends_the_broker_not_only_its_guard() -> None:
    """A closed terminal sends SIGHUP to the whole process group: mosquitto takes it as
    "reload the config" and would outlive its guard, listening on forever."""
    broker = Broker()
    broker.start()
    guard = broker.process
    assert guard is not None and broker.kind == "mosquitto"
    # The guard's child, so that a failure here does not leave it behind.
    children = Path(f"/proc/{guard.pid}/task/{guard.pid}/children").read_text().split()
    try:
        guard.send_signal(signal.SIGHUP)
        guard.wait(timeout=15)
        deadline = time.monotonic() + 15
        while listening(broker.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not listening(broker.port), "mosquitto outlived its guard"
    finally:
        broker.close()
        for pid in children:  # only if it is still this broker (never a reused pid)
            with contextlib.suppress(OSError):
                if str(broker.folder) in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(int(pid), signal.SIGKILL)
