"""``python -m sandbox``: run a rehearsal world on 127.0.0.1 until told to stop.

Stops on SIGTERM or SIGINT, and with ``--json`` also when stdin reaches EOF, so a parent
that dies (and so closes the pipe) never leaves the sandbox behind. With ``--json`` the
first and only stdout line is one JSON object describing the endpoints; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.scenario import ScenarioError, list_scenarios

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Run deploywatch's local rehearsal world (moto + ECS scheduler) on 127.0.0.1.",
    )
    parser.add_argument("--scenario", default="demo", help="scenario name or .toml path")
    parser.add_argument("--speed", type=float, default=1.0, help="sandbox seconds per real second")
    parser.add_argument("--workdir", type=Path, help="where to write deploywatch.toml")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON line with the endpoints, then run until stdin reaches EOF",
    )
    parser.add_argument("--list", action="store_true", help="list the bundled scenarios")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox CLI.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    args = _parser().parse_args(argv)
    if args.list:
        for name, description in list_scenarios():
            print(f"{name}  {description}")
        return 0
    if not args.speed > 0:
        print("sandbox: --speed must be > 0", file=sys.stderr)
        return 2

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="sandbox %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    from sandbox.runtime import CREDENTIALS_ENV, Sandbox  # heavy: moto, boto3

    try:
        sandbox = Sandbox(args.scenario, speed=args.speed, workdir=args.workdir)
    except ScenarioError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    with sandbox:
        if args.json:
            info = {
                "aws": sandbox.aws_endpoint,
                "config": str(sandbox.config_path),
                "region": sandbox.region,
                "scenario": sandbox.scenario.name,
            }
            sys.stdout.write(json.dumps(info) + "\n")
            sys.stdout.flush()
            sys.stdout = sys.stderr  # nothing else may reach the parent's pipe

            def watch_stdin() -> None:
                sys.stdin.buffer.read()
                stop.set()

            threading.Thread(target=watch_stdin, name="stdin-eof", daemon=True).start()
        else:
            env = " ".join(f"{k}={v}" for k, v in CREDENTIALS_ENV.items())
            print(
                f"deploywatch sandbox: scenario {sandbox.scenario.name!r} at speed {args.speed:g}"
            )
            print(f"  AWS endpoint  {sandbox.aws_endpoint}  (region {sandbox.region})")
            print(f"  config        {sandbox.config_path}")
            print(f"  credentials   export {env}")
            print("Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
