"""An MQTT broker in Python (amqtt) for a machine without mosquitto.

``python -m sandbox.amqtt_broker PORT`` serves MQTT on ``127.0.0.1:PORT`` (anonymous,
retained messages in memory only: a restarted broker has forgotten them, as the
sandbox's mosquitto without persistence does) until it gets SIGTERM or SIGINT or its
stdin reaches EOF: its owner holds the other end of that pipe, so a sandbox killed
outright takes this broker with it (as ``sandbox.broker_guard`` does for mosquitto).
It runs in a process of its own so that the sandbox's and the tests' event loops stay
theirs. ``sandbox.broker.Broker`` starts it when mosquitto is not installed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from typing import Any


def config(port: int) -> dict[str, Any]:
    """amqtt's configuration: one TCP listener on 127.0.0.1, anyone may connect."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


async def serve(port: int, stop: asyncio.Event) -> None:
    """Serve on ``port`` until ``stop`` is set."""
    from amqtt.broker import Broker

    broker = Broker(config(port))
    await broker.start()
    try:
        await stop.wait()
    finally:
        await broker.shutdown()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m sandbox.amqtt_broker PORT", file=sys.stderr)
        return 2
    # amqtt logs every connection at INFO: only its warnings and errors are kept.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def watch_stdin() -> None:
            while sys.stdin.buffer.read(4096):
                pass
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, name="stdin-eof", daemon=True).start()
        await serve(int(argv[0]), stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
