"""Small formatting helpers shared by widgets. Pure functions, easy to test."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime


def duration(seconds: float | None) -> str:
    """Compact elapsed time: ``0:07``, ``12:03``, ``1h04m``, ``3d02h``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    total = max(0, int(seconds))
    if total < 3600:
        return f"{total // 60}:{total % 60:02d}"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def since(start: datetime | None, now: datetime) -> str:
    """Elapsed time from ``start`` to ``now``."""
    return duration(None if start is None else (now - start).total_seconds())


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


def age_text(age: float | None) -> str:
    """How old the last good data is: ``12s``, ``4m05s``, ``2h03m``; ``?`` when unknown."""
    if age is None:
        return "?"
    seconds = int(age)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


def resample(values: list[float | None], width: int) -> list[float | None]:
    """Fit ``values`` into ``width`` cells, keeping each bucket's maximum (spikes stay
    visible) and gaps as ``None``; short series are right-aligned (newest at the right).
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
        out.append(max(bucket) if bucket else None)
    return out


def spark(
    values: list[float | None],
    width: int,
    *,
    breaches: Callable[[float], bool] | None = None,
    floor: float | None = None,
    ceiling: float | None = None,
) -> list[tuple[str, str]]:
    """A sparkline as ``(char, kind)`` cells; kind is ``ok``, ``bad`` (breaching) or
    ``gap``. The scale runs from ``floor`` (default: 0 or the minimum) to ``ceiling``
    (default: the maximum), so a flat line stays low rather than filling the cell.
    """
    cells = resample(values, width)
    pad = max(0, width - len(values))  # no history there yet: blank, not a gap
    known = [v for v in cells if v is not None]
    if not known:
        return [(" ", "gap")] * pad + [("·", "gap")] * (len(cells) - pad)
    lo = floor if floor is not None else min(0.0, min(known))
    hi = ceiling if ceiling is not None else max(known)
    span = hi - lo
    out: list[tuple[str, str]] = [(" ", "gap")] * pad
    started = False
    for value in cells[pad:]:
        if value is None:
            # Before the first point there is no history (blank); after it, a gap (·).
            out.append(("·" if started else " ", "gap"))
            continue
        started = True
        level = 0 if span <= 0 else int((value - lo) / span * (len(SPARK_BLOCKS) - 1) + 0.5)
        char = SPARK_BLOCKS[max(0, min(len(SPARK_BLOCKS) - 1, level))]
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
