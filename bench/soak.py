"""Soak: resident memory over N minutes at a high update rate, in a real 200x50 tmux.

``python -m bench.soak [--minutes 10] [--services 200] [--rate 2]`` runs the app with the
synthetic sources (every service, metric group and probe ``--rate`` times a second, a
new ECS event per service every ten rounds), samples ``VmRSS`` every 10 s and prints
the series and its growth from the first sample after the full view and warm-up.

``--trace`` also counts the entries of every buffer, cache and log the app keeps at each
RSS sample, and runs tracemalloc over the window: the source lines whose live memory grew
most from ``--trace-from`` seconds into the window to its end (tracemalloc slows the app:
its RSS figures are not the budget's).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bench._common import Figure, figures_json, print_json, print_table
from bench._tmux import HarnessRun

BUDGET_GROWTH_MB = 5.0


def main(argv: list[str] | None = None) -> int:
    """Run the soak bench; print a table and one JSON line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--rate", type=float, default=2.0, help="samples/s per service")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument(
        "--trace", action="store_true", help="structure counts and tracemalloc growth by line"
    )
    parser.add_argument("--trace-from", type=float, default=120.0, help="seconds into the window")
    args = parser.parse_args(argv)

    seconds = args.minutes * 60
    options = [
        "--services",
        str(args.services),
        "--rate",
        str(args.rate),
        "--warmup",
        str(args.warmup),
        "--duration",
        f"{seconds:g}",
        "--rss-every",
        str(args.every),
        "--keep-latencies",
        "0",  # the harness keeps nothing that grows: the RSS is the app's
        "--keep-frames",
        "100",  # not the default 20,000: they grew the RSS 0.3 MB over a 10-minute soak
        "--max-seconds",
        f"{seconds + args.warmup + 120:g}",
    ]
    if args.trace:
        options += ["--trace", "--trace-from", f"{args.trace_from:g}"]
    print(
        f"soaking {args.services} services at {args.rate:g}/s for {args.minutes:g} min …",
        file=sys.stderr,
    )
    with HarnessRun(options, name="dw-soak") as run:
        result = run.wait(seconds + args.warmup + 180)
    start = result.get("window_start")
    series = [(t, kb) for t, kb in result["rss"] if kb is not None]
    after = [(t, kb) for t, kb in series if start is not None and t >= start]
    print(f"\nRSS every {args.every:g} s (MB), from the start of the window:")
    for t, kb in after:
        print(f"  {t - (start or t):7.0f} s  {kb / 1024:8.1f}")
    growth = (after[-1][1] - after[0][1]) / 1024 if len(after) >= 2 else None
    half = len(after) // 2
    second_half = (after[-1][1] - after[half][1]) / 1024 if len(after) >= 4 else None
    window = result.get("window") or {}
    ingest = window.get("ingested", 0) / window["wall"] if window.get("wall") else None
    figures = [
        Figure(
            f"RSS growth over {args.minutes:g} min",
            growth,
            "MB",
            BUDGET_GROWTH_MB if args.minutes >= 10 else None,
        ),
        Figure("RSS growth, second half", second_half, "MB", note="a leak keeps growing here"),
        Figure("RSS at window start", after[0][1] / 1024 if after else None, "MB"),
        Figure("peak RSS", result["vmhwm_kb"] / 1024 if result.get("vmhwm_kb") else None, "MB"),
        Figure("samples ingested", ingest, "/s"),
    ]
    if args.trace:
        print_trace(result, start)
    print_table(f"bench.soak  ({args.services} services at {args.rate:g} sample/s each)", figures)
    print_json(
        "soak",
        {
            "figures": figures_json(figures),
            "rss_mb": [(round(t - (start or t)), kb / 1024) for t, kb in after],
        },
    )
    return 0


def print_trace(result: dict[str, Any], start: float | None) -> None:
    """The structure counts over the window, and the lines whose memory grew most."""
    rows = [(t, c) for t, c in result.get("census", []) if start is None or t >= start]
    if result.get("census_end"):
        rows.append((result.get("window", {}).get("end", 0.0), result["census_end"]))
    if rows:
        picks = sorted({0, len(rows) // 4, len(rows) // 2, len(rows) - 1})
        head = "".join(f"{rows[i][0] - (start or rows[i][0]):>10.0f}s" for i in picks)
        print(f"\nentries kept, over the window:\n  {'structure':<28}{head}")
        for name in rows[-1][1]:
            values = "".join(f"{rows[i][1].get(name, -1):>11}" for i in picks)
            print(f"  {name:<28}{values}")
    growth = result.get("growth") or []
    if growth:
        mark = result.get("trace_mark")
        since = f"{mark - start:.0f} s" if mark and start else "the mark"
        print(f"\ntracemalloc: live memory grown from {since} into the window to its end:")
        for row in growth:
            print(
                f"  {row['kb']:>9.1f} KB {row['count']:>+8} blocks"
                f"  (now {row['total_kb']:>8.1f} KB)  {row['where']}"
            )


if __name__ == "__main__":
    sys.exit(main())
