"""The operator lock's arbiter: one per environment (the relay), so two claims made at
the same moment cannot both win.

Claims are granted in the order they arrive. A lock is held by one client (one
deploywatch process) in the name of ``user@host``; it is freed when its holder releases
it, when the holder's presence vanishes (its MQTT last will: an SSH connection that
dropped), or when it expires (a forgotten one); a claim by the holder renews it. A
takeover (a typed confirmation in the dashboard) is granted over another holder and
said as such, so it can be audited and announced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

LOCK_TTL = timedelta(minutes=15)
"""A lock no one renews is freed after this long."""


@dataclass(frozen=True, slots=True)
class Lock:
    """Who holds a service's lock."""

    service: str
    client: str
    """The holder's bus client id (one deploywatch process)."""
    holder: str
    """``user@host``."""
    since: datetime
    expires: datetime
    taken_over_from: str | None = None
    """The previous holder, when this lock was taken over."""

    def words(self) -> str:
        """``web: locked by alice@bastion-1 since 02:03``."""
        return f"{self.service}: locked by {self.holder} since {self.since.strftime('%H:%M')}"


class LockArbiter:
    """Grants, renews, frees and expires the locks of one environment."""

    def __init__(self, ttl: timedelta = LOCK_TTL) -> None:
        self.ttl = ttl
        self.locks: dict[str, Lock] = {}

    def claim(
        self,
        service: str,
        client: str,
        holder: str,
        now: datetime,
        *,
        takeover: bool = False,
    ) -> Lock | None:
        """Grant (or renew) ``service``'s lock to ``client``; ``None`` when refused."""
        current = self.locks.get(service)
        if current is not None and current.expires <= now:
            current = None
        if current is not None and current.client == client:
            lock = Lock(service, client, holder, current.since, now + self.ttl)
        elif current is None or takeover:
            lock = Lock(
                service,
                client,
                holder,
                now,
                now + self.ttl,
                taken_over_from=current.holder if current is not None else None,
            )
        else:
            return None
        self.locks[service] = lock
        return lock

    def renew(self, service: str, client: str, now: datetime) -> Lock | None:
        """Its holder's dashboard extends it (the operator is still at work); ``None``
        when ``client`` does not hold it now (never held, expired, freed or taken over:
        a renewal never grants a lock)."""
        current = self.locks.get(service)
        if current is None or current.client != client or current.expires <= now:
            return None
        lock = Lock(service, client, current.holder, current.since, now + self.ttl)
        self.locks[service] = lock
        return lock

    def release(self, service: str, client: str) -> bool:
        """The holder gives it back; returns whether it held it."""
        current = self.locks.get(service)
        if current is None or current.client != client:
            return False
        del self.locks[service]
        return True

    def gone(self, client: str) -> list[str]:
        """A client's presence vanished: free its locks; returns their services."""
        freed = [s for s, lock in self.locks.items() if lock.client == client]
        for service in freed:
            del self.locks[service]
        return freed

    def expire(self, now: datetime) -> list[str]:
        """Free the locks past their TTL; returns their services."""
        freed = [s for s, lock in self.locks.items() if lock.expires <= now]
        for service in freed:
            del self.locks[service]
        return freed

    def next_expiry(self) -> datetime | None:
        """When the next lock expires."""
        return min((lock.expires for lock in self.locks.values()), default=None)


__all__ = ["LOCK_TTL", "Lock", "LockArbiter"]
