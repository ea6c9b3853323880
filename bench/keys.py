"""Keys: keystroke → screen latency in a real 200x50 tmux, idle and under load.

``python -m bench.keys`` runs the app twice in tmux: 200 services idle (one round of
data, then silence) and 200 services at 1 sample/s per service (synthetic sources into
the real Store). In each it types ``--keys`` keys at random gaps through a tmux
control-mode client — ``j``/``k`` (move the selection) and ``?`` (open, then close, the
help screen) — and pairs each key with the first frame the app wrote to the terminal
after the screen or the focus changed. Latency = frame written - key handed to tmux.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

from bench._common import Figure, figures_json, percentile, print_json, print_table
from bench._tmux import HarnessRun

BUDGET_P90_MS = 50.0
PATTERN = ("j", "k", "?", "?")
"""Each key changes the screen: down, up, help open, help closed."""


def run(n: int, idle: bool, keys: int, seed: int, gap: tuple[float, float]) -> dict[str, Any]:
    """One harness run with keys typed into it; latencies in ms and the in-app part."""
    rng = random.Random(seed)
    duration = keys * gap[1] + 5
    options = [
        "--services",
        str(n),
        "--mode",
        "idle" if idle else "synthetic",
        "--warmup",
        "2",
        "--duration",
        f"{duration:g}",
        "--max-seconds",
        f"{duration + 60:g}",
    ]
    sent: list[tuple[float, str]] = []
    with HarnessRun(options, name="dw-keys") as harness:
        ready = harness.out.with_suffix(".ready")
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not ready.exists():
            raise RuntimeError(f"the app never reached its full view:\n{harness.screen()}")
        harness.tmux.control()
        time.sleep(0.5)
        for i in range(keys):
            time.sleep(rng.uniform(*gap))
            key = PATTERN[i % len(PATTERN)]
            sent.append((harness.tmux.send_key(key), key))
        result = harness.wait(duration + 60)
    # tmux delivers keys in order: the i-th key event received is the i-th key sent.
    records = result["keys"]
    total: list[float] = []
    in_app: list[float] = []
    for (t_send, _key), rec in zip(sent, records, strict=False):
        if rec["frame"] is None:
            continue
        total.append(1000 * (rec["frame"] - t_send))
        in_app.append(1000 * (rec["frame"] - rec["received"]))
    return {"total": total, "in_app": in_app, "received": len(records), "sent": len(sent)}


def main(argv: list[str] | None = None) -> int:
    """Run the keys bench; print a table and one JSON line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.keys", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--keys", type=int, default=40, help="keys per run (≥ 30)")
    parser.add_argument("--min-gap", type=float, default=0.15)
    parser.add_argument("--max-gap", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    figures: list[Figure] = []
    runs: dict[str, Any] = {}
    for label, idle in (("idle", True), (f"{args.services} svc at 1 Hz", False)):
        print(f"running keys, {label} …", file=sys.stderr, flush=True)
        try:
            r = run(args.services, idle, args.keys, args.seed, (args.min_gap, args.max_gap))
        except RuntimeError as exc:
            print(f"{label}: {exc}", file=sys.stderr)
            continue
        runs[label] = {
            "p50_ms": percentile(r["total"], 50),
            "p90_ms": percentile(r["total"], 90),
            "in_app_p90_ms": percentile(r["in_app"], 90),
            "max_ms": max(r["total"], default=None),
            "matched": len(r["total"]),
            "sent": r["sent"],
        }
        note = f"{len(r['total'])}/{r['sent']} keys shown ({r['received']} received)"
        figures += [
            Figure(f"{label}: key→screen p50", percentile(r["total"], 50), "ms"),
            Figure(
                f"{label}: key→screen p90",
                percentile(r["total"], 90),
                "ms",
                BUDGET_P90_MS if not idle else None,
                note=note,
            ),
            Figure(
                f"{label}: in-app p90", percentile(r["in_app"], 90), "ms", note="key event → frame"
            ),
        ]
    print_table("bench.keys  (tmux send-keys → first frame written after the change)", figures)
    print_json("keys", {"figures": figures_json(figures), "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
