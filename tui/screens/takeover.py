"""The bus's operator lock in the dashboard: who holds each service, and the takeover.

Each card says ``locked by alice@bastion-1 since 02:03`` (or ``yours since 02:03``) as
soon as the relay's retained lock arrives, and nothing once it is freed. A service
locked by someone else refuses the action keys; the takeover key opens a confirmation
that names the holder and the service and takes nothing but the service's name typed
exactly (in every environment: taking a colleague's lock mid-incident is never one
key). A confirmed takeover claims the lock over the holder (the relay grants it and
announces it, naming the previous holder) and is written to this machine's audit log;
a declined one is audited as declined.

Holder names come from the bus, so they are outside text: cleaned, shown literally.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from widgets.safe import clean

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Mapping
    from datetime import datetime


class HeldLock(Protocol):
    """A service's lock as the bus says it (``sources.bus.LockView``)."""

    @property
    def holder(self) -> str: ...

    @property
    def since(self) -> datetime: ...


class LockState(Protocol):
    """What the dashboard reads of the operator lock (``sources.bus.LockClient``)."""

    @property
    def locks(self) -> Mapping[str, HeldLock]: ...

    @property
    def changed(self) -> asyncio.Event: ...

    def refusal(self, service: str) -> str | None: ...

    def mine(self, service: str) -> bool: ...

    async def claim(self, service: str, *, takeover: bool = False) -> None: ...


def lock_words(holder: str, since: datetime, *, mine: bool) -> str:
    """``locked by alice@bastion-1 since 02:03``, or ``yours since 02:03``."""
    when = since.strftime("%H:%M")
    return f"yours since {when}" if mine else f"locked by {clean(holder, 80)} since {when}"


def card_locks(lock: LockState) -> dict[str, tuple[str, bool]]:
    """Each locked service's words for its card and whether the lock is ours."""
    shown = {}
    for key, held in lock.locks.items():
        mine = lock.mine(key)
        shown[key] = (lock_words(held.holder, held.since, mine=mine), mine)
    return shown


__all__ = ["HeldLock", "LockState", "card_locks", "lock_words"]
