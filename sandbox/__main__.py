"""``python -m sandbox``: run a rehearsal world on 127.0.0.1 until told to stop.

Stops on SIGTERM or SIGINT, and with ``--json`` also when stdin reaches EOF, so a parent
that dies (and so closes the pipe) never leaves the sandbox behind. With ``--json`` the
first and only stdout line is one JSON object describing the endpoints (and, under
``"env"``, the credentials clients read from the environment); logs go to stderr.
Without it, the endpoints, the config path and ``export`` lines are printed for a person.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.scenario import ScenarioError, list_scenarios

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description=(
            "Run deploywatch's local rehearsal world on 127.0.0.1: AWS (moto + ECS "
            "scheduler), the service (one process per version, weighted proxy, traffic), "
            "Datadog and Sentry endpoints, fault injection."
        ),
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


def describe(info: dict[str, Any]) -> list[str]:
    """The human-readable lines for a running sandbox's :meth:`Sandbox.info`.

    Args:
        info: What :meth:`sandbox.runtime.Sandbox.info` returns.
    """
    rows: list[tuple[str, str]] = [
        ("AWS", f"{info['aws']}  (region {info['region']})"),
        ("Datadog", f"{info['datadog']}  (DD_API_KEY, DD_APP_KEY)"),
        ("Sentry", f"{info['sentry']}  (org {info['sentry_org']}; SENTRY_AUTH_TOKEN)"),
        *(
            (f"  DSN {project}", dsn)  # for clients that send events (sentry-sdk)
            for project, dsn in info.get("sentry_projects", {}).items()
        ),
        ("fault control", f"{info['faults']}"),
    ]
    if info.get("bus"):
        kind = info.get("bus_broker") or "mosquitto"
        rows.append(("bus (MQTT)", f"{info['bus']}  ({kind}; deploywatch relay --bus / run --bus)"))
    for name, service in info["services"].items():
        rows.append(
            (
                f"service {name}",
                f"{service['proxy']}  (proxy, {service['rate']:g} req/s, "
                f"split by {service['split']})",
            )
        )
        for version, url in service["versions"].items():
            rows.append((f"  {name} {version}", url))
        for version in service["never_runs"]:
            rows.append((f"  {name} {version}", "(no process: its tasks never start)"))
        alb = service.get("alb")
        if alb:
            rows.append(
                (
                    f"  {name} ALB",
                    f"{alb['rule_arn'] or alb['listener_arn']}  (weights on the "
                    f"{alb['weights_on']}; canary ECS service {alb['canary_service']})",
                )
            )
    width = max(len(label) for label, _ in rows)
    ecs_services = [*info["services"]]
    albs = [s["alb"] for s in info["services"].values() if s.get("alb")]
    ecs_services += [alb["canary_service"] for alb in albs]
    lines = [
        f"deploywatch sandbox: scenario {info['scenario']!r} at speed {info['speed']:g}",
        f"  {info['description']}",
        "",
        *(f"  {label:<{width}}  {value}" for label, value in rows),
        "",
        f"  config  {info['config']}",
        f"  audit   {info['audit_log']}  (rehearsal audit log; the real one is never written)",
        "",
        "Credentials (clients read them from the environment, never from the config):",
        *(f"  export {key}={shlex.quote(value)}" for key, value in info["env"].items()),
        "",
        "Then, in another terminal:",
        f"  deploywatch --config {shlex.quote(info['config'])}",
        f"  aws --endpoint-url {info['aws']} ecs describe-services "
        f"--cluster {info['cluster']} --services {' '.join(ecs_services)}",
        *(
            f"  aws --endpoint-url {info['aws']} elbv2 describe-listeners "
            f"--listener-arns {alb['listener_arn']}"
            for alb in albs
        ),
        f"  curl -s -X POST {info['faults']} "
        """-d '{"endpoint": "datadog", "fault": "http429", "retry_after": 5}'""",
        f"  curl -s -X DELETE {info['faults']}/datadog",
        f"  fault endpoints: {', '.join(info['fault_endpoints'])}",
        "",
        "Ctrl-C to stop.",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox CLI.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    args = _parser().parse_args(argv)
    if args.list:
        scenarios = list_scenarios()
        width = max((len(name) for name, _ in scenarios), default=0)
        for name, description in scenarios:
            print(f"{name:<{width}}  {description}")
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

    from sandbox.runtime import Sandbox  # heavy: moto, boto3

    try:
        sandbox = Sandbox(args.scenario, speed=args.speed, workdir=args.workdir)
    except ScenarioError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    if args.json:
        # A parent that goes away closes our stdin: watch it from the start, so that a
        # parent dying while the world boots stops us too.
        def watch_stdin() -> None:
            while sys.stdin.buffer.read(4096):
                pass
            stop.set()

        threading.Thread(target=watch_stdin, name="stdin-eof", daemon=True).start()
    from sandbox.broker import Broker, BrokerError, broker_kind

    broker = Broker() if broker_kind() is not None else None  # mosquitto, else amqtt
    with sandbox, contextlib.ExitStack() as cleanup:
        info = sandbox.info()
        if broker is not None:  # the deployment bus: a relay and its viewers meet here
            try:
                info["bus"] = broker.start().url
                info["bus_broker"] = broker.kind
                cleanup.callback(broker.close)
            except BrokerError as exc:
                print(f"sandbox: no MQTT broker: {exc}", file=sys.stderr)
        if args.json:
            sys.stdout.write(json.dumps(info) + "\n")
            sys.stdout.flush()
            sys.stdout = sys.stderr  # nothing else may reach the parent's pipe
        else:
            print("\n".join(describe(info)), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
