"""Rollback: how long a roll back takes from the request to ECS's answer, audited.

``python -m bench.rollback`` serves moto with the sandbox's ECS extensions in this
process, every AWS call delayed by ``--aws-latency`` (100 ms by default), and repeats
``--rounds`` times: start a rolling deployment (``update_service``), read it through the
real ECS source into the real Store, plan ``Verb.ROLLBACK`` and send it through the real
:class:`~engine.actions.ActionEngine` (audit intent with fsync, boto3
``stop_service_deployment(ROLLBACK)`` in a thread, audit result). It prints the request
time (p50/p90/max) and the audit write time; there is no budget for it yet.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._common import Figure, figures_json, percentile, print_json, print_table
from bench._sandbox_ecs import CREDENTIALS, REGION, Latency

if TYPE_CHECKING:
    from collections.abc import Callable


async def rounds(
    endpoint: str, setup_url: str, n: int, audit_dir: Path, settle: Callable[[str, str], None]
) -> dict[str, Any]:
    """Run ``n`` deploy → rollback rounds; timings in ms."""
    import boto3

    from engine.actions import ActionEngine, Outcome, Verb, plan
    from engine.audit import AuditLog
    from engine.store import Store
    from sources.aws_actions import AwsActions
    from sources.ecs import EcsSource, EcsTarget

    ecs = boto3.client("ecs", endpoint_url=setup_url, region_name=REGION)
    ecs.create_cluster(clusterName="bench")
    for rev in range(2):
        ecs.register_task_definition(
            family="web",
            containerDefinitions=[
                {"name": "web", "image": f"registry.local/web:v{rev + 1}", "memory": 128}
            ],
        )
    audit = AuditLog(audit_dir / "audit.jsonl")
    actions = AwsActions(region=REGION, endpoint_url=endpoint)
    engine = ActionEngine(
        audit=audit,
        executor=actions,
        read_only=False,
        operator=lambda: actions.operator,
        clock=lambda: datetime.now(UTC),
    )
    request_ms: list[float] = []
    outcomes: list[str] = []
    for i in range(n):
        # A fresh service per round: steady on web:1, then a rolling deployment to web:2.
        name = f"web-{i}"
        ecs.create_service(
            cluster="bench", serviceName=name, taskDefinition="web:1", desiredCount=2
        )
        settle("bench", name)
        ecs.update_service(cluster="bench", service=name, taskDefinition="web:2")
        source = EcsSource(
            [EcsTarget(f"bench/{name}", "bench", name)], region=REGION, endpoint_url=endpoint
        )
        store = Store([(f"bench/{name}", name)])
        for item in await source.poll_once():
            store.ingest(item)
        state = store.services[f"bench/{name}"]
        rollback = plan(Verb.ROLLBACK, state, environment="bench", production=False)
        t = time.monotonic()
        result = await engine.request(rollback)
        request_ms.append(1000 * (time.monotonic() - t))
        outcomes.append(result.outcome.value if result.outcome is not Outcome.DONE else "done")
        if result.outcome is not Outcome.DONE:
            print(f"round {i}: {result.outcome.value}: {result.message}", file=sys.stderr)
    audit_ms: list[float] = []
    for _ in range(20):
        t = time.monotonic()
        await asyncio.to_thread(audit.write, {"phase": "bench", "id": "x"})
        audit_ms.append(1000 * (time.monotonic() - t))
    return {"request_ms": request_ms, "audit_ms": audit_ms, "outcomes": outcomes}


def main(argv: list[str] | None = None) -> int:
    """Run the rollback bench; print a table and one JSON line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.rollback", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--aws-latency", type=float, default=0.1)
    args = parser.parse_args(argv)

    os.environ.update(CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from sandbox.aws import MotoServer, install_ecs_extensions, quiet_logs, reset_ecs_backend
    from sandbox.ecs_sim import DEFAULT_ACCOUNT, SandboxClock, Scheduler
    from sandbox.httpserver import WsgiServer

    quiet_logs()
    scheduler = Scheduler(SandboxClock(1.0), account_id=DEFAULT_ACCOUNT, region=REGION)
    install_ecs_extensions(scheduler)
    reset_ecs_backend(DEFAULT_ACCOUNT, REGION)
    setup = MotoServer(name="moto-setup")
    slow = Latency(DomainDispatcherApplication(create_backend_app), args.aws_latency)
    server = WsgiServer(slow, name="moto-slow")
    setup_url = setup.start()
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="dw-rollback-") as tmp:
            r = asyncio.run(rounds(server.url, setup_url, args.rounds, Path(tmp), scheduler.settle))
    finally:
        server.stop()
        setup.stop()
    done = r["outcomes"].count("done")
    figures = [
        Figure(
            "rollback request p50",
            percentile(r["request_ms"], 50),
            "ms",
            note=f"{done}/{len(r['outcomes'])} done",
        ),
        Figure("rollback request p90", percentile(r["request_ms"], 90), "ms"),
        Figure("rollback request max", max(r["request_ms"], default=None), "ms"),
        Figure("audit write (fsync) median", statistics.median(r["audit_ms"]), "ms"),
        Figure("AWS latency per call", args.aws_latency * 1000, "ms", note="added by the bench"),
    ]
    print_table(
        "bench.rollback  (ActionEngine.request → stop_service_deployment, sandbox)", figures
    )
    print_json("rollback", {"figures": figures_json(figures), "calls": dict(slow.calls), **r})
    return 0


if __name__ == "__main__":
    sys.exit(main())
