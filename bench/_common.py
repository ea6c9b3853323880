"""Shared helpers of the benches: percentiles, RSS, budgets, the table and the JSON line."""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The project root (benches run from here so that ``bench``, ``tui``... import)."""

TERMINAL = (200, 50)
"""The terminal every budget is stated for."""


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def proc_status_kb(pid: int | str = "self", field: str = "VmRSS") -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``), or ``None``."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def load_average() -> str:
    """The 1-minute load average and the core count, as a caveat for every figure."""
    try:
        one = os.getloadavg()[0]
    except OSError:
        return "?"
    return f"load {one:.2f} on {os.cpu_count()} cores"


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure, with its budget when it has one."""

    name: str
    value: float | None
    unit: str
    budget: float | None = None
    """The bound the figure must stay within (``<=``, or ``<`` when ``strict``)."""
    strict: bool = False
    note: str = ""
    none_is_miss: bool = False
    """A missing value means the run never got there (a MISS, not ``n/a``)."""

    @property
    def verdict(self) -> str:
        """``PASS``, ``MISS``, ``n/a`` (no value) or ``""`` (no budget)."""
        if self.budget is None:
            return ""
        if self.value is None:
            return "MISS" if self.none_is_miss else "n/a"
        ok = self.value < self.budget if self.strict else self.value <= self.budget
        return "PASS" if ok else "MISS"


def fmt(value: float | None, unit: str) -> str:
    """A figure for the table: ``12.3 ms``, ``1.9 %``, ``?``."""
    if value is None:
        return "?"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def print_table(title: str, figures: list[Figure]) -> None:
    """Print the figures as an aligned table, with their budget and verdict."""
    print(f"\n{title}  ({load_average()}; terminal {TERMINAL[0]}x{TERMINAL[1]})")
    rows = [("figure", "value", "budget", "")]
    for f in figures:
        op = "<" if f.strict else "≤"
        budget = f"{op} {fmt(f.budget, f.unit)}" if f.budget is not None else ""
        rows.append(
            (f.name, fmt(f.value, f.unit), budget, f.verdict + (f"  {f.note}" if f.note else ""))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip())
    sys.stdout.flush()


def figures_json(figures: list[Figure]) -> dict[str, Any]:
    """The figures as a JSON-able mapping: ``{name: {value, unit, budget, verdict}}``."""
    return {
        f.name: {"value": f.value, "unit": f.unit, "budget": f.budget, "verdict": f.verdict or None}
        for f in figures
    }


def print_json(bench: str, payload: dict[str, Any]) -> None:
    """The one JSON line that ends every bench's output."""
    print(json.dumps({"bench": bench, "load": load_average(), **payload}, default=str))
