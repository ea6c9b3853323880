"""Runs a broker (mosquitto) and ends it with its owner.

``python -m sandbox.broker_guard EXE ARGS...`` starts ``EXE ARGS...`` and ends it
(SIGTERM, then SIGKILL after 5 s) when this process gets SIGTERM, SIGINT or SIGHUP, or
when its stdin reaches EOF: the owner holds the other end of that pipe, so a sandbox
killed outright (SIGKILL) still takes its broker with it, as its service processes do.
SIGHUP matters: a closed terminal (tmux's kill-server, a dropped SSH session) sends it
to the whole process group, and mosquitto takes it as "reload the config" and stays.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m sandbox.broker_guard EXE [ARGS...]", file=sys.stderr)
        return 2
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    ending = threading.Event()

    def end(*_args: object) -> None:
        ending.set()

    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGINT, end)
    signal.signal(signal.SIGHUP, end)

    def watch_stdin() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        ending.set()

    threading.Thread(target=watch_stdin, name="stdin-eof", daemon=True).start()
    while child.poll() is None and not ending.wait(0.2):
        pass
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
