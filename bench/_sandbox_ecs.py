"""``python -m bench.scale --sandbox-ecs``: the real ECS source, 2000 services, +100 ms/call.

This process serves moto (with the sandbox's ECS extensions: service deployments and
revisions) on two loopback servers: one plain, used to create the services with boto3,
and one that holds every request ``--aws-latency`` seconds before answering and counts
the calls per operation. The app runs in a 200x50 tmux (``bench._harness --mode real``)
against the slow one; the figure is the time from the app's process start to the first
frame showing every service's card with data.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from bench._common import Figure, figures_json, print_json, print_table
from bench._tmux import HarnessRun
from bench._workload import CLUSTER, service_name

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "sandbox",
    "AWS_SECRET_ACCESS_KEY": "sandbox",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


class Latency:
    """WSGI middleware: sleep, then answer; counts calls and the time spent in moto."""

    def __init__(self, app: WSGIApplication, seconds: float) -> None:
        self.app = app
        self.seconds = seconds
        self.calls: Counter[str] = Counter()
        self.server_time = 0.0
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        time.sleep(self.seconds)
        op = str(environ.get("HTTP_X_AMZ_TARGET", "?")).rsplit(".", 1)[-1]
        t = time.monotonic()
        body = list(self.app(environ, start_response))
        with self._lock:
            self.calls[op] += 1
            self.server_time += time.monotonic() - t
        return body


def run(n: int, latency: float, budget_s: float, *, discover: bool = False) -> int:
    """Set the sandbox up, run the app against it, print the figures."""
    os.environ.update(CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)
    import boto3
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from sandbox.aws import MotoServer, install_ecs_extensions, quiet_logs, reset_ecs_backend
    from sandbox.ecs_sim import DEFAULT_ACCOUNT, SandboxClock, Scheduler
    from sandbox.httpserver import WsgiServer

    quiet_logs()
    scheduler = Scheduler(SandboxClock(1.0), account_id=DEFAULT_ACCOUNT, region=REGION)
    install_ecs_extensions(scheduler)
    reset_ecs_backend(DEFAULT_ACCOUNT, REGION)
    setup = MotoServer(name="moto-setup")
    slow = Latency(DomainDispatcherApplication(create_backend_app), latency)
    server = WsgiServer(slow, name="moto-slow")
    setup_url = setup.start()
    server.start()
    try:
        print(f"creating {n} services …", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        ecs = boto3.client("ecs", endpoint_url=setup_url, region_name=REGION)
        ecs.create_cluster(clusterName=CLUSTER)
        ecs.register_task_definition(
            family="web",
            containerDefinitions=[{"name": "web", "image": "registry.local/web:v1", "memory": 128}],
        )

        def create(i: int) -> None:
            ecs.create_service(
                cluster=CLUSTER, serviceName=service_name(i), taskDefinition="web:1", desiredCount=2
            )
            scheduler.settle(CLUSTER, service_name(i))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(n)))
        created = time.monotonic() - t0
        print(f"created in {created:.1f} s; running the app …", file=sys.stderr, flush=True)
        slow.calls.clear()
        slow.server_time = 0.0
        options = [
            "--services",
            str(n),
            "--mode",
            "real",
            "--no-signals",
            "--endpoint",
            server.url,
            "--poll-interval",
            "30",
            "--warmup",
            "0",
            "--duration",
            "1",
            "--max-seconds",
            "150",
        ]
        if discover:  # one [[service]] entry: the cluster's services, listed by the app
            options.append("--discover")
        with HarnessRun(options, name="dw-ecs2000", env=CREDENTIALS) as harness:
            result: dict[str, Any] = harness.wait(200)
        calls = dict(slow.calls)
        server_time = slow.server_time
    finally:
        server.stop()
        setup.stop()
    t_start = result["t_start"]
    full = result["full_view"] - t_start if result.get("full_view") else None
    total_calls = sum(calls.values())
    figures = [
        Figure(
            f"{n} svc{' discovered' if discover else ''}, +{latency * 1000:.0f} ms/call: "
            "first full view",
            full,
            "s",
            budget_s,
            note="from process start" if full is not None else "not reached within 150 s",
            none_is_miss=True,
        ),
        Figure(
            "first paint",
            result["first_paint"] - t_start if result.get("first_paint") else None,
            "s",
        ),
        Figure(
            "AWS calls during the run",
            float(total_calls),
            "",
            note=", ".join(f"{k} {v}" for k, v in sorted(calls.items())),
        ),
        Figure("time inside moto (serialized)", server_time, "s", note="the sandbox's own cost"),
        Figure("peak RSS", result["vmhwm_kb"] / 1024 if result.get("vmhwm_kb") else None, "MB"),
        Figure("services created in", created, "s", note="set-up, not measured"),
    ]
    print_table(
        f"bench.scale --sandbox-ecs  (real ECS source, boto3, moto + {latency * 1000:.0f} ms per call)",
        figures,
    )
    print_json("scale-sandbox-ecs", {"figures": figures_json(figures), "calls": calls})
    return 0
