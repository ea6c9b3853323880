"""Small formatting helpers shared by widgets. Pure functions, easy to test."""

from __future__ import annotations

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
