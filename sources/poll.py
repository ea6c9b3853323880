"""One polling helper shared by every poller: deadline, back-off with jitter, Retry-After.

The next poll is scheduled only after the previous one finished, so a slow upstream
never piles up requests.

Every wait an upstream imposes (``Retry-After``, ``X-RateLimit-Reset``, a spent
rate-limit budget, ECS throttling) is capped here, at :data:`MAX_SERVER_WAIT_S`, and a
source that waits longer than its interval says so: a rate-limited failure whose text
reads ``waiting 300s (server asked 100000s)``, so that the pane is STALE with a reason
instead of silently running out of data.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sources.model import SourceError, SourceRateLimited, SourceTimeout

T = TypeVar("T")

MAX_SERVER_WAIT_S = 300.0
"""Longest wait any upstream may impose on a source, whatever it asks (a reset of
100000 s would otherwise silence a pane for a day). Five minutes outlasts every real
rate-limit window of ECS, Datadog and Sentry."""


def server_wait(asked: float | None) -> float | None:
    """A wait an upstream asked for, within ``[0, MAX_SERVER_WAIT_S]``.

    Args:
        asked: Seconds the upstream asked for (``Retry-After`` ...), or ``None``.

    Returns:
        The seconds to honour; ``None`` when nothing (or nonsense) was asked.
    """
    if asked is None or not math.isfinite(asked):
        return None
    return min(max(0.0, asked), MAX_SERVER_WAIT_S)


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 10 else f"{value:.0f}s"


def waiting(error: SourceRateLimited, wait: float, asked: float | None = None) -> SourceRateLimited:
    """``error`` saying how long the source waits, and what the server asked when that
    was more: ``waiting 300s (server asked 100000s) · HTTP 429: ...``.

    Args:
        error: The rate-limit failure.
        wait: Seconds until the next fetch.
        asked: Seconds the server asked for (``error.retry_after`` when ``None``).

    Returns:
        A new error whose ``retry_after`` is ``wait``.
    """
    asked = error.retry_after if asked is None else asked
    words = f"waiting {_seconds(wait)}"
    if asked is not None and asked > wait + 0.5:
        words += f" (server asked {_seconds(asked)})"
    detail = str(error)
    reworded = SourceRateLimited(f"{words} · {detail}" if detail else words, wait)
    reworded.reason = error.reason
    return reworded


@dataclass(slots=True)
class Backoff:
    """Exponential back-off with full jitter, reset by a success.

    Args:
        base: Delay after the first failure, seconds.
        cap: Longest delay, seconds.
        rng: Random source (tests pass a seeded one).
    """

    base: float = 1.0
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def reset(self) -> None:
        """Forget past failures."""
        self.failures = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        """Count one more failure and return how long to wait before retrying.

        Args:
            retry_after: The upstream's own ``Retry-After``; it is honoured as a floor.

        Returns:
            Seconds to wait.
        """
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** (self.failures - 1))
        # Full jitter, but never less than half the ceiling: spreads clients apart
        # without ever retrying in a hot loop.
        delay = self.rng.uniform(ceiling / 2, ceiling)
        retry_after = server_wait(retry_after)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay


@dataclass(frozen=True, slots=True)
class PollResult(Generic[T]):
    """One round of a poll: a value, or the error it failed with."""

    value: T | None
    error: SourceError | None
    started: float
    """``time.monotonic()`` when the fetch started."""
    retry_in: float
    """Seconds until the next fetch."""


async def poll(
    fetch: Callable[[], Awaitable[T]],
    interval: float,
    *,
    deadline: float,
    backoff: Backoff | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    hold: Callable[[], float | None] | None = None,
) -> AsyncIterator[PollResult[T]]:
    """Call ``fetch`` forever, one call at a time, yielding each outcome.

    Args:
        fetch: The coroutine function doing one round trip. It raises
            :class:`SourceError` for known failures.
        interval: Seconds between the end of one fetch and the start of the next.
        deadline: Hard bound for one fetch, seconds; a fetch that exceeds it is
            cancelled and reported as :class:`SourceTimeout`.
        backoff: Back-off policy after failures (a fresh default when ``None``).
        sleep: Injected for tests.
        hold: Called after each fetch: seconds the upstream asked us to stay away
            beyond any error's own ``retry_after`` (a spent rate-limit budget, e.g.
            ``X-RateLimit-Remaining: 0`` with its reset), or ``None``. It is capped at
            :data:`MAX_SERVER_WAIT_S`. After a success, a hold longer than ``interval``
            yields, once ``interval`` has passed, a :class:`SourceRateLimited` failure
            saying how long the source waits, then waits the rest.

    Yields:
        One :class:`PollResult` per fetch (and one per hold after a success).
    """
    backoff = backoff or Backoff(base=max(interval, 0.5))
    while True:
        started = time.monotonic()
        try:
            value = await asyncio.wait_for(fetch(), timeout=deadline)
        except TimeoutError:
            error: SourceError = SourceTimeout(f"no answer within {deadline:g}s")
        except SourceError as exc:
            error = exc
        else:
            backoff.reset()
            asked = hold() if hold is not None else None
            held = server_wait(asked) or 0.0
            yield PollResult(value, None, started, max(interval, held))
            await sleep(interval)
            if held > interval:
                # The data is as fresh as ever until the next poll falls due; from then
                # on the pane must say why none comes.
                rest = held - interval
                spent = waiting(SourceRateLimited("rate-limit budget spent"), held, asked)
                yield PollResult(None, spent, started, rest)
                await sleep(rest)
            continue
        retry_after = error.retry_after if isinstance(error, SourceRateLimited) else None
        asked = hold() if hold is not None else None
        if asked is not None and (retry_after is None or asked > retry_after):
            retry_after = asked
        delay = max(interval, backoff.next_delay(retry_after), server_wait(asked) or 0.0)
        if isinstance(error, SourceRateLimited):
            error = waiting(error, delay, retry_after)
        yield PollResult(None, error, started, delay)
        await sleep(delay)
