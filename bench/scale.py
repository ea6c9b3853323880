"""Scale: N services with metrics, errors and probes, in a real 200x50 terminal (tmux).

``python -m bench.scale`` runs the app with synthetic sources (1 sample/s per service,
per series, into the real Store) for 10, 200 and 2000 services, plus 200 idle services,
and prints per run: time to first full view, CPU share of one core, data→screen
latency p50/p95, frames/s, terminal output bytes/s and peak RSS.

``python -m bench.scale --sandbox-ecs`` measures the first full view of 2000 services
through the real ECS source (boto3) against the sandbox's moto server, every AWS call
delayed by 100 ms (``--aws-latency``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench._common import Figure, figures_json, percentile, print_json, print_table
from bench._tmux import HarnessRun

BUDGET_CPU_200 = 25.0
BUDGET_IDLE_CPU = 1.0
BUDGET_P95_MS = 250.0
BUDGET_KBPS = 30.0
BUDGET_FULL_VIEW_2000_S = 15.0


def summarize(result: dict[str, Any]) -> dict[str, float | None]:
    """The figures of one harness run."""
    t0 = result["t_start"]
    window = result.get("window")
    out: dict[str, float | None] = {
        "first_paint_s": result["first_paint"] - t0 if result.get("first_paint") else None,
        "full_view_s": result["full_view"] - t0 if result.get("full_view") else None,
        "peak_rss_mb": result["vmhwm_kb"] / 1024 if result.get("vmhwm_kb") else None,
        "cpu_pct": None,
        "p50_ms": None,
        "p95_ms": None,
        "fps": None,
        "kbps": None,
        "samples": None,
        "ingest_rate": None,
    }
    if window:
        wall = window["wall"]
        lat = [1000 * s for t, s in result["latencies"] if window["start"] <= t <= window["end"]]
        out.update(
            cpu_pct=100 * window["cpu"] / wall,
            p50_ms=percentile(lat, 50),
            p95_ms=percentile(lat, 95),
            fps=window["frames"] / wall,
            kbps=window["bytes"] / wall / 1000,
            samples=float(len(lat)),
            ingest_rate=window.get("ingested", 0) / wall,
        )
    return out


def run_synthetic(n: int, args: argparse.Namespace, *, idle: bool = False) -> dict[str, Any]:
    """One harness run of ``n`` services; its raw result."""
    options = [
        "--services",
        str(n),
        "--mode",
        "idle" if idle else "synthetic",
        "--rate",
        str(args.rate),
        "--warmup",
        str(args.warmup),
        "--duration",
        str(args.duration),
        "--max-seconds",
        str(args.max_seconds),
    ]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        name = f"scale-{n}{'-idle' if idle else ''}.prof"
        options += ["--profile", str(args.profile.resolve() / name)]
    with HarnessRun(options, name=f"dw-scale-{n}") as run:
        return run.wait(args.max_seconds + 30)


def offered(n: int, rate: float) -> float:
    """Samples per second the synthetic sources offer: ECS + 2 metric groups + probe per
    service, and one Sentry sample."""
    return rate * (4 * n + 1)


def synthetic_figures(
    label: str, n: int, s: dict[str, float | None], *, idle: bool, rate: float = 1.0
) -> list[Figure]:
    """The table rows of one run, with the budgets that apply to it."""
    at200 = n == 200 and not idle
    figs = [
        Figure(
            f"{label}: first full view",
            s["full_view_s"],
            "s",
            note="from process start" if s["full_view_s"] is not None else "not reached",
        ),
        Figure(
            f"{label}: CPU",
            s["cpu_pct"],
            "%",
            BUDGET_IDLE_CPU if idle else (BUDGET_CPU_200 if at200 else None),
            strict=idle,
            note="of one core",
        ),
    ]
    if not idle:
        figs += [
            Figure(
                f"{label}: samples ingested",
                s["ingest_rate"],
                "/s",
                note=f"offered {offered(n, rate):,.0f}/s",
            ),
            Figure(f"{label}: data→screen p50", s["p50_ms"], "ms"),
            Figure(
                f"{label}: data→screen p95", s["p95_ms"], "ms", BUDGET_P95_MS if at200 else None
            ),
        ]
    figs += [
        Figure(f"{label}: frames/s", s["fps"], "/s"),
        Figure(f"{label}: terminal output", s["kbps"], "KB/s", BUDGET_KBPS if at200 else None),
        Figure(f"{label}: peak RSS", s["peak_rss_mb"], "MB"),
    ]
    return figs


def main(argv: list[str] | None = None) -> int:
    """Run the scale bench; print a table and one JSON line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--services", default="10,200,2000", help="comma-separated counts")
    parser.add_argument("--no-idle", action="store_true", help="skip the 200-idle run")
    parser.add_argument("--rate", type=float, default=1.0, help="samples/s per service")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds after the full view")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="bound on one run")
    parser.add_argument(
        "--sandbox-ecs", action="store_true", help="the 2000-service sandbox run instead"
    )
    parser.add_argument("--ecs-services", type=int, default=2000)
    parser.add_argument(
        "--discover", action="store_true", help="--sandbox-ecs: discover the services instead"
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="write DIR/scale-N.prof (cProfile, window)"
    )
    parser.add_argument("--aws-latency", type=float, default=0.1, help="seconds added per AWS call")
    args = parser.parse_args(argv)

    if args.sandbox_ecs:
        from bench._sandbox_ecs import run as run_sandbox

        return run_sandbox(
            args.ecs_services, args.aws_latency, BUDGET_FULL_VIEW_2000_S, discover=args.discover
        )

    figures: list[Figure] = []
    runs: dict[str, Any] = {}
    plan = [(int(n), False) for n in args.services.split(",") if n.strip()]
    if not args.no_idle:
        plan.append((200, True))
    for n, idle in plan:
        label = f"{n} idle" if idle else f"{n} svc"
        print(f"running {label} …", file=sys.stderr, flush=True)
        try:
            result = run_synthetic(n, args, idle=idle)
        except RuntimeError as exc:
            print(f"{label}: {exc}", file=sys.stderr)
            continue
        summary = summarize(result)
        runs[label] = {**summary, "modules_at_first_paint": result.get("modules_at_first_paint")}
        figures += synthetic_figures(label, n, summary, idle=idle, rate=args.rate)
    print_table(f"bench.scale  (synthetic sources, {args.rate:g} sample/s per service)", figures)
    print_json("scale", {"figures": figures_json(figures), "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
