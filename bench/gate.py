"""The gate's own cost: CPU and wall clock of ``deploywatch gate`` on clean-rollout.

``python -m bench.gate`` starts the rehearsal sandbox (clean-rollout, real time unless
``--speed``), runs the real ``deploywatch gate --bake`` as a child process against it
``--rounds`` times, and prints, per run, the wall-clock time from start to the exit
code, the gate's own CPU time (user + system, from the kernel's accounting of the
child), its CPU share of the wall time, and its peak RSS. The sandbox's own CPU is not
counted. There is no budget: the figures go into the README's performance section.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._common import Figure, print_table

ROOT = Path(__file__).resolve().parents[1]


def one_run(config: Path, env: dict[str, str], bake: str) -> dict[str, float]:
    """Run the gate once; its wall time, CPU seconds, CPU share and peak RSS."""
    started = time.monotonic()
    child = subprocess.Popen(
        [
            *(sys.executable, "-m", "tui", "gate", "--config", str(config)),
            *("--bake", bake, "--timeout", "5m", "--json"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _pid, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"the gate ended {code}, expected 0 (signed off)")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall": wall, "cpu": cpu, "share": 100 * cpu / wall, "rss": usage.ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--speed", type=float, default=1.0, help="sandbox clock speed")
    parser.add_argument("--bake", default="30s", help="the gate's bake window")
    args = parser.parse_args(argv)

    from sandbox.process import SandboxProcess

    runs = []
    for _ in range(args.rounds):
        with SandboxProcess("clean-rollout", speed=args.speed) as sandbox:
            env = {**os.environ, **sandbox.client_env}
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "DD_SITE"):
                env.pop(name, None)
            runs.append(one_run(Path(sandbox.config_path), env, args.bake))
        print(
            f"  run {len(runs)}: wall {runs[-1]['wall']:.1f} s, CPU {runs[-1]['cpu']:.2f} s "
            f"({runs[-1]['share']:.1f} %), peak RSS {runs[-1]['rss']:.0f} MB",
            flush=True,
        )
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print_table(
        f"deploywatch gate on clean-rollout, bake {args.bake}, median of {len(runs)}",
        [
            Figure("wall clock to exit 0", median["wall"], "s"),
            Figure("gate CPU (user+sys)", median["cpu"], "s"),
            Figure("gate CPU share of wall", median["share"], "%"),
            Figure("gate peak RSS", median["rss"], "MB"),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
