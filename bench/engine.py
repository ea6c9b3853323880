"""Engine: the watch's own CPU per round of data and per judgement, without a screen.

``python -m bench.engine`` builds the deployment watch (controller and report, as the
app follows it) for the synthetic fleet, feeds it whole rounds of the synthetic
sources' items (200 services: 801 items, as ``bench.scale`` offers each second) and
judges twice per round, as the watch does at that rate. It prints the median CPU time
(``time.process_time``) of ingesting a round and of one judgement. CPU time, not wall
time: the figure holds on a shared machine far better than a latency does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._common import Figure, figures_json, print_json, print_table
from bench._workload import (
    Pace,
    SyntheticDatadog,
    SyntheticEcs,
    SyntheticProbes,
    bench_settings,
    synthetic_sources,
)
from engine.audit import AuditLog
from engine.controller import Controller
from engine.report import ReportBook

if TYPE_CHECKING:
    from collections.abc import Mapping

    from engine.actions import ApiCall
    from sources.model import Item


def never_called(call: ApiCall) -> Mapping[str, Any]:
    """The synthetic fleet never breaches: no action is ever sent."""
    raise AssertionError(f"no AWS call expected, got {call}")


def main(argv: list[str] | None = None) -> int:
    """Run the engine bench; print a table and one JSON line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="rounds not counted")
    args = parser.parse_args(argv)

    settings = bench_settings(args.services)
    controller = Controller(
        settings,
        clock=lambda: datetime.now(UTC),
        executor=never_called,
        audit=AuditLog(Path(tempfile.mkdtemp(prefix="dw-engine-")) / "audit.jsonl"),
        operator=lambda: "bench",
    )
    ReportBook(controller, tuple(r.key for r in settings.services), datetime.now(UTC)).follow()
    sources = synthetic_sources(settings, Pace())

    def one_round(rnd: int) -> list[Item]:
        items: list[Item] = []
        for source in sources:
            if isinstance(source, SyntheticEcs):
                keys = list(source.keys)
            elif isinstance(source, SyntheticDatadog):
                keys = [name for name, _ in source.metrics]
            elif isinstance(source, SyntheticProbes):
                keys = [name for name, _, _ in source.probes]
            else:
                keys = ["sentry"]
            for i, key in enumerate(keys):
                items += source._sample(i, key, rnd)
        return items

    ingest: list[float] = []
    judge: list[float] = []
    count = 0
    for rnd in range(args.warmup + args.rounds):
        items = one_round(rnd)
        count = len(items)
        t = time.process_time()
        for item in items:
            controller.ingest(item)
        spent = time.process_time() - t
        t = time.process_time()
        controller.step()
        controller.step()
        judged = (time.process_time() - t) / 2
        if rnd >= args.warmup:
            ingest.append(spent)
            judge.append(judged)
    figures = [
        Figure(
            "ingest one round, CPU",
            1000 * statistics.median(ingest),
            "ms",
            note=f"{count} items, median of {args.rounds} rounds",
        ),
        Figure(
            "one judgement, CPU",
            1000 * statistics.median(judge),
            "ms",
            note=f"{len(controller.store.rules.rules)} rules, with the report's fold",
        ),
    ]
    print_table(f"bench.engine  ({args.services} services, no screen)", figures)
    print_json("engine", {"figures": figures_json(figures)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
