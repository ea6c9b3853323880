"""Small formatting helpers shared by widgets. Pure functions, easy to test."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime

from engine.durations import elapsed_clock


def since(start: datetime | None, now: datetime) -> str:
    """Elapsed time from ``start`` to ``now``."""
    return elapsed_clock(None if start is None else (now - start).total_seconds())


def count(value: int | None) -> str:
    """A count, or ``?`` when the upstream did not send it (never a made-up zero)."""
    return "?" if value is None else str(value)


def bar_cells(done: int | None, total: int | None, width: int) -> tuple[int, int]:
    """How many of ``width`` cells are filled for ``done``/``total`` (filled, empty).

    Returns ``(0, width)`` when unknown; a non-zero ``done`` always shows one cell.
    """
    if not done or not total or total <= 0 or width <= 0:
        return 0, max(width, 0)
    filled = min(width, max(1, round(width * done / total)))
    return filled, width - filled


SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


def resample(values: list[float | None], width: int) -> list[float | None]:
    """Fit ``values`` into ``width`` cells, each cell the *mean* of the known points it
    covers (a cell of a 2 % baseline reads 2 %, whatever one point in it did), gaps as
    ``None``; short series are right-aligned (newest at the right), one cell a point.
    """
    if width <= 0:
        return []
    if len(values) <= width:
        return [None] * (width - len(values)) + list(values)
    out: list[float | None] = []
    for cell in range(width):
        lo = cell * len(values) // width
        hi = max(lo + 1, (cell + 1) * len(values) // width)
        bucket = [v for v in values[lo:hi] if v is not None]
        out.append(sum(bucket) / len(bucket) if bucket else None)
    return out


def threshold_ceiling(thresholds: list[tuple[str, float]]) -> float | None:
    """The top of a sparkline's scale that puts a rule's threshold at half height:
    twice the threshold a value first crosses (the lowest of ``>`` rules, else the
    highest of ``<`` rules). ``None`` when no positive threshold applies."""
    above = [t for op, t in thresholds if op.startswith(">") and t > 0]
    below = [t for op, t in thresholds if op.startswith("<") and t > 0]
    mark = min(above) if above else max(below) if below else None
    return None if mark is None else 2 * mark


def spark(
    values: list[float | None],
    width: int,
    *,
    breaches: Callable[[float], bool] | None = None,
    floor: float | None = None,
    ceiling: float | None = None,
) -> list[tuple[str, str]]:
    """A sparkline as ``(char, kind)`` cells; kind is ``ok``, ``bad`` (the cell's value
    breaches) or ``gap``. A cell is the mean of its points (:func:`resample`). The scale
    runs from ``floor`` (default: 0 or the minimum) to ``ceiling`` (default: the
    maximum); a value is drawn with the smallest block that holds it, so with
    :func:`threshold_ceiling` a value at or under the threshold never rises above half
    the cell (``▄``) and one over it always does; values past the ceiling are full.
    """
    cells = resample(values, width)
    pad = max(0, width - len(values))  # no history there yet: blank, not a gap
    known = [v for v in cells if v is not None]
    if not known:
        return [(" ", "gap")] * pad + [("·", "gap")] * (len(cells) - pad)
    lo = floor if floor is not None else min(0.0, min(known))
    hi = ceiling if ceiling is not None else max(known)
    span = hi - lo
    blocks = len(SPARK_BLOCKS)
    out: list[tuple[str, str]] = [(" ", "gap")] * pad
    started = False
    for value in cells[pad:]:
        if value is None:
            # Before the first point there is no history (blank); after it, a gap (·).
            out.append(("·" if started else " ", "gap"))
            continue
        started = True
        level = 0 if span <= 0 else math.ceil(round((value - lo) / span * blocks, 9)) - 1
        char = SPARK_BLOCKS[max(0, min(blocks - 1, level))]
        out.append((char, "bad" if breaches is not None and breaches(value) else "ok"))
    return out


def number(value: float | None, unit: str = "") -> str:
    """``14.8%``, ``1,204ms``, ``0.02``, ``—`` for no value; units stick to numbers."""
    if value is None:
        return "—"
    magnitude = abs(value)
    if magnitude >= 1000:
        text = f"{value:,.0f}"
    elif magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}".removesuffix(".0")
    else:
        text = f"{value:.2f}".rstrip("0").rstrip(".") if value else "0"
    return f"{text}{unit}"
