"""How long, in words: every duration format the product shows, in one place.

- :func:`span_words` — how long something took or has lasted: ``7s``, ``4m05s``,
  ``1h02m`` (STALE ages, MTTR, history durations, smoke runs, the report).
- :func:`window_words` — a configured window as it was written: ``5m``, ``1h``, ``90s`` is
  ``1m30s`` (rule and comparison evidence, the Sentry pane's bucket size).
- :func:`clock_words` — a countdown's time left: ``12:31``, ``1:02:03``.
- :func:`elapsed_clock` — a card's elapsed time: ``0:07``, ``12:03``, ``1h04m``, ``3d02h``.
- :func:`ago_words` — how long ago, to the minute past the first one: ``40s``, ``12m``.
"""

from __future__ import annotations

from datetime import timedelta


def _whole_seconds(span: timedelta | float) -> int:
    seconds = span.total_seconds() if isinstance(span, timedelta) else span
    return max(0, int(seconds))


def span_words(span: timedelta | float | None, unknown: str = "?") -> str:
    """``7s``, ``4m05s``, ``1h02m`` (never negative); ``unknown`` when not known.

    Args:
        span: How long, as a timedelta or in seconds.
        unknown: The words for ``None``.
    """
    if span is None:
        return unknown
    seconds = _whole_seconds(span)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def window_words(span: timedelta | float | None) -> str:
    """A window (or a bucket size) in its simplest words: ``5m``, ``1h``, ``45s``,
    ``1m30s``; ``?`` when unknown.

    Args:
        span: The window, as a timedelta or in seconds.
    """
    if span is None:
        return "?"
    seconds = int(span.total_seconds() if isinstance(span, timedelta) else span)
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60}m"
    if seconds < 60:
        return f"{seconds}s"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def clock_words(span: timedelta) -> str:
    """``12:31`` (minutes:seconds) or ``1:02:03`` — a countdown's time left."""
    seconds = _whole_seconds(span)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def elapsed_clock(seconds: float | None) -> str:
    """Compact elapsed time: ``0:07``, ``12:03``, ``1h04m``, ``3d02h``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    total = _whole_seconds(seconds)
    if total < 3600:
        return f"{total // 60}:{total % 60:02d}"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def ago_words(seconds: float) -> str:
    """How long ago, to the minute past the first one: ``40s``, ``12m``, ``1h05m``."""
    seconds = _whole_seconds(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
