"""A traffic generator: requests at a steady rate against a URL, bounded and stoppable.

A pacer thread hands requests to at most ``concurrency`` worker threads; when they are
all busy the request is skipped (and counted), so the generator never queues without
bound. Each request carries an ``X-User-Id`` from a pool of ``users`` so that Sentry
sees distinct users.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

__all__ = ["MAX_RATE", "TrafficGenerator", "TrafficStats"]

# Highest rate accepted (requests per second).
MAX_RATE = 1000.0
# After a stall longer than this, the pacer does not burst to catch up.
_MAX_CATCH_UP_S = 1.0


@dataclass(frozen=True)
class TrafficStats:
    """Counters of a traffic generator.

    Attributes:
        sent: Requests started.
        completed: Requests answered (any status).
        ok: Answers below 500.
        errors: Answers 5xx.
        failed: Requests without an answer (connection error, timeout).
        skipped: Requests not sent because every worker was busy.
    """

    sent: int
    completed: int
    ok: int
    errors: int
    failed: int
    skipped: int

    @property
    def attempts(self) -> int:
        """Ticks of the pacer: requests sent plus requests skipped (every worker busy).

        This is what keeps the rate; how many attempts are sent and completed depends
        on how fast the upstream answers with ``concurrency`` workers.
        """
        return self.sent + self.skipped


class TrafficGenerator:
    """Send ``rate`` requests per second to ``url`` until stopped.

    Args:
        url: Base URL, or a callable returning it (read per request).
        rate: Requests per second (0 pauses).
        paths: Paths requested in turn.
        concurrency: Most requests in flight.
        timeout_s: Per-request timeout.
        users: Size of the ``X-User-Id`` pool.
        max_requests: Stop after sending this many requests (``None``: no bound).
        seed: Seed of the user choice.
    """

    def __init__(
        self,
        url: str | Callable[[], str],
        rate: float,
        *,
        paths: Sequence[str] = ("/",),
        concurrency: int = 8,
        timeout_s: float = 5.0,
        users: int = 50,
        max_requests: int | None = None,
        seed: int | None = None,
    ) -> None:
        if not paths:
            raise ValueError("paths must not be empty")
        if concurrency < 1 or users < 1:
            raise ValueError("concurrency and users must be >= 1")
        self._url = url
        self._rate = self._check_rate(rate)
        self.paths = tuple(paths)
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.users = users
        self.max_requests = max_requests
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rate_changed = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._client: httpx.Client | None = None
        self._in_flight = 0
        self._sent = self._completed = self._ok = self._errors = 0
        self._failed = self._skipped = 0

    @staticmethod
    def _check_rate(rate: float) -> float:
        if not 0 <= rate <= MAX_RATE:
            raise ValueError(f"rate must be within [0, {MAX_RATE:g}] requests per second")
        return float(rate)

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self._rate

    def set_rate(self, rate: float) -> None:
        """Change the rate (takes effect at once).

        Args:
            rate: Requests per second (0 pauses).
        """
        self._rate = self._check_rate(rate)
        self._rate_changed.set()

    def stats(self) -> TrafficStats:
        """The counters so far."""
        with self._lock:
            return TrafficStats(
                self._sent, self._completed, self._ok, self._errors, self._failed, self._skipped
            )

    def start(self) -> TrafficGenerator:
        """Start sending.

        Returns:
            This generator.
        """
        if self._thread is not None:
            raise RuntimeError("already started")
        self._client = httpx.Client(
            timeout=self.timeout_s,
            trust_env=False,
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=0),
        )
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="traffic")
        self._thread = threading.Thread(target=self._pace, name="traffic-pacer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> TrafficStats:
        """Stop sending and wait for requests in flight (bounded by their timeout).

        Args:
            timeout: Seconds to wait for the pacer thread.

        Returns:
            The final counters.
        """
        self._stop.set()
        self._rate_changed.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._client is not None:
            self._client.close()
        return self.stats()

    @property
    def running(self) -> bool:
        """Whether the pacer runs."""
        return self._thread is not None and self._thread.is_alive()

    def wait_for(self, completed: int, timeout: float) -> bool:
        """Wait until ``completed`` requests have an outcome (answer or failure).

        Args:
            completed: Number of requests.
            timeout: Seconds.

        Returns:
            Whether the number was reached.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.stats()
            if s.completed + s.failed >= completed:
                return True
            time.sleep(0.02)
        return False

    def _pace(self) -> None:
        next_at = time.monotonic()
        index = 0
        while not self._stop.is_set():
            rate = self._rate
            if rate <= 0:
                self._rate_changed.wait(0.1)
                self._rate_changed.clear()
                next_at = time.monotonic()
                continue
            now = time.monotonic()
            if now < next_at:
                if self._rate_changed.wait(next_at - now):
                    self._rate_changed.clear()
                    next_at = min(next_at, time.monotonic() + 1.0 / max(self._rate, 1e-9))
                continue
            if self.max_requests is not None and self.stats().sent >= self.max_requests:
                break
            self._dispatch(self.paths[index % len(self.paths)])
            index += 1
            next_at += 1.0 / rate
            if next_at < now - _MAX_CATCH_UP_S:
                next_at = now

    def _dispatch(self, path: str) -> None:
        with self._lock:
            if self._in_flight >= self.concurrency:
                self._skipped += 1
                return
            self._in_flight += 1
            self._sent += 1
            user = f"user-{self._rng.randrange(self.users)}"
        assert self._pool is not None
        try:
            self._pool.submit(self._one, path, user)
        except RuntimeError:  # pool shut down while stopping
            with self._lock:
                self._in_flight -= 1

    def _one(self, path: str, user: str) -> None:
        status: int | None = None
        try:
            base = self._url() if callable(self._url) else self._url
            assert self._client is not None
            resp = self._client.get(base.rstrip("/") + path, headers={"X-User-Id": user})
            status = resp.status_code
        except httpx.HTTPError:
            status = None
        finally:
            with self._lock:
                self._in_flight -= 1
                if status is None:
                    self._failed += 1
                else:
                    self._completed += 1
                    if status >= 500:
                        self._errors += 1
                    else:
                        self._ok += 1

    def __enter__(self) -> TrafficGenerator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
