"""One polling helper shared by every poller: deadline, back-off with jitter, Retry-After.

The next poll is scheduled only after the previous one finished, so a slow upstream
never piles up requests.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sources.model import SourceError, SourceRateLimited, SourceTimeout

T = TypeVar("T")


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
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap * 4))
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

    Yields:
        One :class:`PollResult` per fetch.
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
            yield PollResult(value, None, started, interval)
            await sleep(interval)
            continue
        retry_after = error.retry_after if isinstance(error, SourceRateLimited) else None
        delay = max(interval, backoff.next_delay(retry_after))
        yield PollResult(None, error, started, delay)
        await sleep(delay)
