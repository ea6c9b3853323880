"""The front proxy's request log: the ground truth the sandbox's Datadog computes from.

A bounded, thread-safe ring of :class:`RequestRecord` (one per proxied request). The
oldest records fall off once :data:`MAX_RECORDS` (or the bound given) is reached; the
number evicted is kept so that a reader can tell a quiet period from a truncated one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["HEALTH_PATH", "MAX_RECORDS", "RequestLog", "RequestRecord"]

# Default bound of the log: at 200 req/s, about 8 minutes of traffic.
MAX_RECORDS = 100_000
HEALTH_PATH = "/health"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the proxy saw it.

    Attributes:
        time: When the answer was complete, seconds since the epoch.
        service: Service name (the proxy's).
        version: Version that served it (``"none"`` when no upstream could).
        status: HTTP status sent to the client.
        latency_ms: Time from receiving the request to the complete upstream answer.
        path: Request path.
        method: HTTP method.
    """

    time: float
    service: str
    version: str
    status: int
    latency_ms: float
    path: str = "/"
    method: str = "GET"

    @property
    def is_error(self) -> bool:
        """Whether the request failed server-side (5xx)."""
        return self.status >= 500


class RequestLog:
    """A bounded, thread-safe log of proxied requests.

    Args:
        maxlen: Most records kept; older ones are evicted first.
        clock: Wall clock in epoch seconds, used when a record has no explicit time.
    """

    def __init__(self, maxlen: int = MAX_RECORDS, clock: Callable[[], float] = time.time) -> None:
        if maxlen <= 0:
            raise ValueError("maxlen must be positive")
        self.maxlen = maxlen
        self.clock = clock
        self._records: deque[RequestRecord] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._total = 0

    def record(
        self,
        service: str,
        version: str,
        status: int,
        latency_ms: float,
        *,
        path: str = "/",
        method: str = "GET",
        at: float | None = None,
    ) -> RequestRecord:
        """Append one request.

        Args:
            service: Service name.
            version: Version that served the request.
            status: HTTP status answered.
            latency_ms: Latency in milliseconds.
            path: Request path.
            method: HTTP method.
            at: Completion time in epoch seconds (now when omitted).

        Returns:
            The stored record.
        """
        rec = RequestRecord(
            time=self.clock() if at is None else at,
            service=service,
            version=version,
            status=status,
            latency_ms=latency_ms,
            path=path,
            method=method,
        )
        self.append(rec)
        return rec

    def append(self, rec: RequestRecord) -> None:
        """Append a ready-made record.

        Args:
            rec: The record.
        """
        with self._lock:
            self._records.append(rec)
            self._total += 1

    def query(
        self,
        start: float | None = None,
        end: float | None = None,
        *,
        service: str | None = None,
        version: str | None = None,
        include_health: bool = True,
    ) -> list[RequestRecord]:
        """Records with ``start <= time < end`` matching the filters, oldest first.

        Args:
            start: Inclusive lower bound, epoch seconds.
            end: Exclusive upper bound, epoch seconds.
            service: Only this service.
            version: Only this version.
            include_health: Whether to include requests to :data:`HEALTH_PATH`.

        Returns:
            The matching records.
        """
        with self._lock:
            snapshot = list(self._records)
        return [
            r
            for r in snapshot
            if (start is None or r.time >= start)
            and (end is None or r.time < end)
            and (service is None or r.service == service)
            and (version is None or r.version == version)
            and (include_health or r.path != HEALTH_PATH)
        ]

    def services(self) -> list[str]:
        """Service names present in the log, sorted."""
        return sorted({r.service for r in self.snapshot()})

    def versions(self, service: str | None = None) -> list[str]:
        """Versions present in the log (optionally for one service), sorted.

        Args:
            service: Only versions of this service.
        """
        return sorted({r.version for r in self.snapshot() if service in (None, r.service)})

    def snapshot(self) -> list[RequestRecord]:
        """A copy of every record held, oldest first."""
        with self._lock:
            return list(self._records)

    def extend(self, records: Iterable[RequestRecord]) -> None:
        """Append several records.

        Args:
            records: Records, oldest first.
        """
        with self._lock:
            for rec in records:
                self._records.append(rec)
                self._total += 1

    def clear(self) -> None:
        """Drop every record (the counters restart too)."""
        with self._lock:
            self._records.clear()
            self._total = 0

    @property
    def total(self) -> int:
        """Records ever appended (including evicted ones)."""
        with self._lock:
            return self._total

    @property
    def evicted(self) -> int:
        """Records dropped because the bound was reached."""
        with self._lock:
            return self._total - len(self._records)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)
