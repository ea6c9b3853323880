"""What grows in a long run: the sizes of the app's bounded structures, and tracemalloc.

Used by the harness with ``--trace`` (``python -m bench.soak --trace``): at every RSS
sample :func:`census` counts the entries of every buffer, cache and log the app keeps
(each with its bound where it has one), and :class:`Tracer` compares two tracemalloc
snapshots (one ``--trace-from`` seconds into the window, one at its end) by source line,
so that growth no census names still shows where it was allocated.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tui.app import DeployWatchApp

TOP = 30
"""Source lines shown in the growth table."""


def _len(obj: Any) -> int:
    try:
        return len(obj)
    except TypeError:
        return -1


def census(app: DeployWatchApp, extra: dict[str, Any] | None = None) -> dict[str, int]:
    """The number of entries of each structure the app keeps that could grow.

    Args:
        app: The running app.
        extra: More structures to count (the harness's own), by name.

    Returns:
        ``{name: entries}``; ``-1`` for one that is missing.
    """
    store = app.store
    rules = store.rules
    controller = app.controller
    counts: dict[str, int] = {
        "store._seen_events": _len(store._seen_events),
        "store._pending_events": _len(store._pending_events),
        "store.pipeline": _len(store.pipeline),
        "store.metrics (groups)": sum(len(g) for g in store.metrics.values()),
        "store.probes": _len(store.probes),
        "store.signal_last_ok": _len(store.signal_last_ok),
        "rules.series": _len(rules.series),
        "rules.series points": sum(len(s.points) for s in rules.series.values()),
        "rules.trackers": _len(rules.trackers),
        "controller._tasks": _len(controller._tasks),
        "controller._listeners": _len(controller._listeners),
    }
    book = getattr(app, "report_book", None)
    if book is not None:
        for name in ("metrics", "breaches", "issues", "gated", "_seen_points", "_folded"):
            counts[f"report.{name}"] = _len(getattr(book, name, None))
    dashboard = app.dashboard
    counts["dashboard._events"] = _len(getattr(dashboard, "_events", None))
    try:
        from widgets.events import EventsLog

        log = dashboard.query_one(EventsLog)
        counts["events log lines"] = _len(log.lines)
        counts["events log _line_cache"] = _len(log._line_cache)
    except Exception:  # a census must not end the run
        counts["events log lines"] = -1
    for name, value in (extra or {}).items():
        counts[name] = _len(value)
    counts["gc objects"] = len(gc.get_objects())
    return counts


class Tracer:
    """tracemalloc from the window's start; growth by source line between two snapshots."""

    def __init__(self, frames: int = 1) -> None:
        tracemalloc.start(frames)
        self.first: tracemalloc.Snapshot | None = None

    def mark(self) -> None:
        """Take the snapshot growth is measured from."""
        self.first = self._snapshot()

    @staticmethod
    def _snapshot() -> tracemalloc.Snapshot:
        return tracemalloc.take_snapshot().filter_traces(
            (
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
            )
        )

    def growth(self) -> list[dict[str, Any]]:
        """The lines whose live allocations grew most since :meth:`mark`."""
        if self.first is None:
            return []
        last = self._snapshot()
        stats = last.compare_to(self.first, "lineno")
        traced, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows = [
            {
                "where": f"{s.traceback[0].filename}:{s.traceback[0].lineno}",
                "kb": s.size_diff / 1024,
                "count": s.count_diff,
                "total_kb": s.size / 1024,
            }
            for s in stats[:TOP]
        ]
        rows.append(
            {
                "where": "(traced now, peak)",
                "kb": traced / 1024,
                "count": 0,
                "total_kb": peak / 1024,
            }
        )
        return rows
