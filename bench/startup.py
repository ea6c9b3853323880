"""Startup: time to first paint of the real CLI in a 200x50 tmux, and what it imports.

``python -m bench.startup``:

1. starts a shell in a private tmux, pipes the pane's output to a file
   (``pipe-pane -O``), types ``deploywatch --config bench.toml`` + Enter through a
   control-mode client and polls the file every 2 ms until the dashboard's
   ``Deployments · ECS`` title arrives: send-keys → first frame, as tmux receives it.
   The config has 10 services with metrics, Sentry and probes at a dead address, so
   every real source is built and fails quietly;
2. runs the app once more, instrumented (``bench._harness --mode real``), and lists
   which of boto3, botocore, datadog_api_client and sentry_sdk are loaded at the first
   frame;
3. ``python -X importtime -c 'import tui.__main__, tui.app'``: the import cost, and
   whether any of those modules is imported by the import itself.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import ROOT, Figure, figures_json, print_json, print_table
from bench._harness import HEAVY
from bench._tmux import HarnessRun, Tmux, terminal_env
from bench._workload import write_config

BUDGET_FIRST_PAINT_S = 0.5
MARKER = b"Deployments"


def first_paint(config: Path, timeout: float = 20.0) -> float | None:
    """One send-keys → first-dashboard-frame measurement; seconds, or ``None``."""
    tmp = Path(tempfile.mkdtemp(prefix="dw-startup-"))
    log = tmp / "pane.out"
    log.touch()
    tmux = Tmux("dw-startup")
    deploywatch = Path(sys.executable).parent / "deploywatch"
    try:
        tmux.start("exec sh")
        tmux.run("set-option", "-t", tmux.session, "status", "off")
        time.sleep(0.3)
        tmux.run("pipe-pane", "-O", "-t", tmux.target, f"cat >> {log}")
        tmux.control()
        time.sleep(0.3)
        offset = log.stat().st_size
        command = f"cd {ROOT} && {deploywatch} --config {config}"
        t0 = tmux.command(f"send-keys -t {tmux.target} -l {_quote(command)}")
        tmux.command(f"send-keys -t {tmux.target} Enter")
        deadline = t0 + timeout
        with log.open("rb") as f:
            f.seek(offset)
            seen = b""
            while time.monotonic() < deadline:
                chunk = f.read()
                if chunk:
                    seen = seen[-64:] + chunk
                    if MARKER in seen:
                        return time.monotonic() - t0
                else:
                    time.sleep(0.002)
        return None
    finally:
        tmux.command(f"send-keys -t {tmux.target} q")
        time.sleep(0.3)
        tmux.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def import_check() -> dict[str, Any]:
    """``-X importtime`` of the app's modules: total ms and heavy modules imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import tui.__main__, tui.app"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=terminal_env(None),
        timeout=60,
        check=True,
    )
    total_us = 0
    heavy: set[str] = set()
    rows: list[tuple[int, str]] = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if not m:
            continue
        self_us, cumulative, indent, name = int(m[1]), int(m[2]), m[3], m[4]
        if len(indent) == 1:  # top level
            total_us += cumulative
            rows.append((cumulative, name))
        if name.split(".")[0] in HEAVY:
            heavy.add(name.split(".")[0])
        del self_us
    rows.sort(reverse=True)
    return {"total_ms": total_us / 1000, "heavy": sorted(heavy), "top": rows[:8]}


def instrumented_run() -> dict[str, Any]:
    """The app with real sources at a dead address: modules loaded at the first frame."""
    options = [
        "--services",
        "10",
        "--mode",
        "real",
        "--warmup",
        "0",
        "--duration",
        "1",
        "--max-seconds",
        "20",
    ]
    with HarnessRun(options, name="dw-startup-h") as run:
        result = run.wait(40)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the startup bench; print a table and one JSON line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.startup", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="dw-startup-cfg-"))
    try:
        config = write_config(tmp / "bench.toml", 10)
        times = [first_paint(config) for _ in range(args.runs)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    measured = [t for t in times if t is not None]
    imports = import_check()
    try:
        inst = instrumented_run()
        heavy_at_paint: list[str] | None = inst.get("modules_at_first_paint")
        in_app = inst["first_paint"] - inst["t_start"] if inst.get("first_paint") else None
    except RuntimeError as exc:
        print(f"instrumented run: {exc}", file=sys.stderr)
        heavy_at_paint, in_app = None, None
    figures = [
        Figure(
            "first paint, tmux (median)",
            statistics.median(measured) if measured else None,
            "s",
            BUDGET_FIRST_PAINT_S,
            note=f"{len(measured)}/{args.runs} runs: " + ", ".join(f"{t:.2f}" for t in measured),
        ),
        Figure("first paint, tmux (worst)", max(measured) if measured else None, "s"),
        Figure("first paint, in app", in_app, "s", note="from the harness's first line"),
        Figure("import tui.__main__ + tui.app", imports["total_ms"], "ms", note="-X importtime"),
        Figure(
            "heavy modules imported by the import",
            float(len(imports["heavy"])),
            "",
            0,
            note=", ".join(imports["heavy"]) or "none",
        ),
        Figure(
            "heavy modules loaded at first paint",
            None if heavy_at_paint is None else float(len(heavy_at_paint)),
            "",
            0,
            note=", ".join(heavy_at_paint or []) or "none",
        ),
    ]
    print_table(
        "bench.startup  (deploywatch run, 10 services, real sources at a dead address)", figures
    )
    print_json(
        "startup",
        {
            "figures": figures_json(figures),
            "runs_s": times,
            "imports_top_ms": [(n, us / 1000) for us, n in imports["top"]],
            "heavy_at_first_paint": heavy_at_paint,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
