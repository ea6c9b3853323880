"""The deployment bus at scale: one relay, N services at 1 Hz, V viewers, one mosquitto.

Figures (not tests; run on a quiet machine, `python -m bench.bus`):

- the relay's CPU (process time / wall time) with no viewer, then with V viewers: the
  relay publishes once whatever the number of viewers, so it must not grow;
- relay → viewer: from the moment the relay's source yields a sample (its ``at``) to the
  moment a viewer's :class:`~sources.bus.BusSource` yields it (p50 / p95 over every
  viewer; what the viewer's watch then ingests and its screen paints is measured by
  ``bench.keys`` / ``bench.scale`` for a local watch);
- a new viewer's first full view: from its start to the retained state of every service.

The viewers run in a child process of their own, so the relay's CPU is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sources.model import Item


def now() -> datetime:
    return datetime.now(UTC)


class Ticker:
    """N services' ECS samples, every ``interval`` seconds, each a little different."""

    name = "ecs"

    def __init__(self, keys: list[str], interval: float) -> None:
        self.keys = keys
        self.interval = interval

    async def stream(self) -> AsyncIterator[Item]:
        from sources.model import EcsDeployment, EcsServiceSample

        tick = 0
        while True:
            started = time.monotonic()
            at = now()
            for key in self.keys:
                yield EcsServiceSample(
                    key=key,
                    at=at,
                    status="ACTIVE",
                    desired=4,
                    running=tick % 5,
                    pending=0,
                    task_definition=f"arn:aws:ecs:us-east-1:1:task-definition/{key}:2",
                    deployments=(
                        EcsDeployment(
                            "ecs-svc/1",
                            "PRIMARY",
                            "td",
                            f"{key}:2",
                            4,
                            tick % 5,
                            0,
                            0,
                            "IN_PROGRESS",
                            None,
                            at,
                            at,
                            (f"registry.local/{key}:v2",),
                        ),
                    ),
                    service_deployments=(),
                    new_events=(),
                )
            tick += 1
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))


def settings_for(count: int) -> Any:
    from engine.config import parse_config

    data = {
        "environment": {"name": "bench"},
        "aws": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
        "service": [{"cluster": "bench", "service": f"svc{i:04d}"} for i in range(count)],
    }
    return parse_config(data, Path("bench.toml"))


async def relay_main(args: argparse.Namespace) -> dict[str, Any]:
    from engine.audit import AuditLog
    from engine.controller import Controller
    from engine.relay import Relay
    from sandbox.broker import Broker
    from sources.bus import Topics, parse_bus_url

    broker = Broker().start()
    try:
        settings = settings_for(args.services)
        keys = [ref.key for ref in settings.services]
        audit = Path(f"/tmp/deploywatch-bench-bus-{time.time_ns()}.jsonl")
        controller = Controller(
            settings,
            clock=now,
            executor=lambda call: {},
            audit=AuditLog(audit),
            operator=lambda: "bench",
            read_only=True,
        )
        relay = Relay(controller, parse_bus_url(broker.url, {}), Topics("bench"), clock=now)
        task = asyncio.create_task(relay.run([Ticker(keys, 1.0 / args.rate)]))
        await asyncio.wait_for(relay.connected.wait(), 30)
        await asyncio.sleep(args.warmup)
        alone = await cpu_over(args.seconds)
        per = max(1, args.viewers // args.viewer_processes)
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.bus",
                "--child",
                broker.url,
                "--services",
                str(args.services),
                "--viewers",
                str(per),
                "--seconds",
                str(args.seconds + args.warmup),
                "--warmup",
                str(args.warmup),
                *(["--late"] if i == 0 else []),
                stdout=subprocess.PIPE,
            )
            for i in range(args.viewer_processes)
        ]
        await asyncio.sleep(args.warmup)
        with_viewers = await cpu_over(args.seconds)
        outs = await asyncio.gather(*(c.communicate() for c in children))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        latencies: list[float] = []
        first_full: list[float] = []
        viewer_cpu: list[float] = []
        for out, _ in outs:
            got = json.loads(out.decode().strip().splitlines()[-1])
            latencies += got["latencies"]
            first_full += got["first_full"]
            viewer_cpu.append(got["cpu"])
        latencies.sort()

        def pct(q: float) -> float | None:
            if not latencies:
                return None
            return round(1000 * latencies[int(q * (len(latencies) - 1))], 1)

        viewers = {
            "viewer_processes": args.viewer_processes,
            "relay_to_viewer_p50_ms": pct(0.5),
            "relay_to_viewer_p95_ms": pct(0.95),
            "relay_to_viewer_samples": len(latencies),
            # What one viewer process costs (its bus client and decoding): the sum over
            # every viewer is what the machines running them pay, here one 2-core box.
            "viewer_process_cpu_pct_mean": round(100 * sum(viewer_cpu) / len(viewer_cpu), 1),
            "viewer_processes_cpu_pct_total": round(100 * sum(viewer_cpu), 1),
            "late_viewer_first_full_view_ms": round(1000 * first_full[0], 1)
            if first_full
            else None,
        }
        return {
            "services": args.services,
            "rate_hz": args.rate,
            "viewers": args.viewers,
            "relay_cpu_no_viewer_pct": round(100 * alone, 1),
            "relay_cpu_with_viewers_pct": round(100 * with_viewers, 1),
            "relay_published": relay.published,
            **viewers,
        }
    finally:
        broker.close()


async def cpu_over(seconds: float) -> float:
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    return (time.process_time() - cpu) / (time.monotonic() - wall)


async def child_main(args: argparse.Namespace) -> dict[str, Any]:
    from sources.bus import BusSource, Topics, parse_bus_url
    from sources.model import EcsServiceSample

    bus = parse_bus_url(args.child, {})
    keys = [f"bench/svc{i:04d}" for i in range(args.services)]
    latencies: list[float] = []
    first_full: list[float] = []

    # Twenty viewers start at once on a small machine: their own imports and the
    # retained state's burst must not be counted as the bus's latency.
    measuring = asyncio.Event()

    async def view(measure: bool) -> None:
        source = BusSource(bus, Topics("bench"), keys)
        seen: set[str] = set()
        started = time.monotonic()
        async for item in source.stream():
            if not isinstance(item, EcsServiceSample):
                continue
            if len(seen) < len(keys):
                seen.add(item.key)
                if len(seen) == len(keys):
                    first_full.append(time.monotonic() - started)
            elif measure and measuring.is_set():
                latencies.append((now() - item.at).total_seconds())

    tasks = [asyncio.create_task(view(True)) for _ in range(args.viewers)]
    await asyncio.sleep(args.warmup)
    measuring.set()
    cpu = await cpu_over(max(1.0, args.seconds - args.warmup))
    late = []
    first_full.clear()
    if args.late:
        late.append(asyncio.create_task(view(False)))  # a newcomer: its first full view
        await asyncio.sleep(3)
    for task in [*tasks, *late]:
        task.cancel()
    await asyncio.gather(*tasks, *late, return_exceptions=True)
    return {"latencies": latencies, "first_full": first_full, "cpu": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bus", description=__doc__)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1.0, help="samples per service per second")
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0, help="each measuring window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--viewer-processes", type=int, default=20, help="viewers run in this many processes"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--late", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child_main(args))), flush=True)
        return 0
    figures = asyncio.run(relay_main(args))
    for name, value in figures.items():
        print(f"{name:<34} {value}")
    print(json.dumps({"bench": "bus", "figures": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
