"""The call gate of one ECS poll: at most ``max_concurrency`` boto3 calls in worker
threads, served by priority, each with its own deadline, and ECS taken as down for the
rest of the poll once enough calls in a row found it unreachable."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from sources.ecs.errors import _not_asked, classify
from sources.model import (
    SourceAuthError,
    SourceError,
    SourceTimeout,
    SourceUnavailable,
)

_DESCRIBE_FIRST = 0
"""Gate priority of ``describe_services``; detail group ``n`` has priority ``n``."""
_T = TypeVar("_T")


class _Calls:
    """The boto3 calls of one poll, made in worker threads.

    At most ``limit`` calls are in flight; the others wait, lowest priority first, then in
    order of arrival. Each call must answer within ``deadline`` seconds, counted from when
    it gets its slot.

    When ``limit`` calls in a row found ECS unreachable (no answer, connection refused,
    5xx, credentials refused), ECS is taken as down for the rest of the poll: the calls
    still waiting fail at once with that error instead of each waiting out its own
    deadline in turn, so that a large fleet goes STALE as fast as a small one.

    Args:
        executor: The worker threads.
        limit: Calls in flight at once.
        deadline: Seconds one call may take.
    """

    def __init__(self, executor: ThreadPoolExecutor, limit: int, deadline: float) -> None:
        self._executor = executor
        self._limit = max(1, limit)
        self._free = self._limit
        self._deadline = deadline
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrival = itertools.count()
        self._unreachable = 0
        """Calls in a row that found ECS unreachable."""
        self.down: SourceError | None = None
        """Why ECS is taken as down for the rest of the poll, once it is."""

    async def run(self, priority: int, call: Callable[..., _T], *args: Any) -> _T:
        """Run ``call(*args)`` in a worker thread once a slot is free.

        Raises:
            SourceTimeout: No answer within the deadline.
            SourceError: ECS is down for this poll; ``call`` was not made.
            Exception: Whatever ``call`` raised.
        """
        await self._acquire(priority)
        try:
            if self.down is not None:
                raise _not_asked(self.down)
            future = asyncio.get_running_loop().run_in_executor(self._executor, call, *args)
            try:
                answer = await asyncio.wait_for(future, timeout=self._deadline)
            except TimeoutError as exc:
                if not future.cancelled():
                    self._failed(classify(exc))
                    raise  # the call itself timed out: classify() says how
                error = SourceTimeout(f"no answer within {self._deadline:g}s")
                self._failed(error)
                raise error from exc
            except Exception as exc:
                self._failed(classify(exc))
                raise
            self._unreachable = 0
            return answer
        finally:
            self._release()

    def _failed(self, error: SourceError) -> None:
        if not isinstance(error, SourceTimeout | SourceUnavailable | SourceAuthError):
            self._unreachable = 0
            return
        self._unreachable += 1
        if self._unreachable >= self._limit and self.down is None:
            self.down = error

    async def _acquire(self, priority: int) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrival), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # handed the slot while being cancelled: pass it on
            raise

    def _release(self) -> None:
        while self._waiting:
            turn = heapq.heappop(self._waiting)[2]
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def _settle(calls: Iterable[Awaitable[_T]]) -> list[_T | Exception]:
    """Await every call at once; a call's exception stands in for its answer."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # cancellation and the like are not answers
    return cast("list[_T | Exception]", results)
