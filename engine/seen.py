"""A bounded memory of ids already taken, for de-duplication, the oldest forgotten first.

The store remembers every event id it has shown so that a re-delivered event (a poll
that overlaps the last one, a bus viewer's retained copy) is not shown twice. At 40
events a second that memory reaches its bound within minutes, so each id is kept as the
64-bit hash of its parts rather than as the strings themselves: about 110 bytes an id
(2.2 MB for 20,000) instead of about 240 (a tuple, the id's string and an ordered-dict
node: 4.8 MB). Two different ids whose hashes collide (about one chance in 10^15 per
event with 20,000 remembered) would cost one event line, never a wrong state.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Hashable


class SeenIds:
    """Ids seen, at most ``bound`` of them; the oldest are forgotten first.

    Args:
        bound: How many ids are remembered (at least 1).
    """

    __slots__ = ("_order", "_seen", "bound")

    def __init__(self, bound: int) -> None:
        self.bound = max(1, bound)
        self._order: deque[int] = deque()
        """The remembered hashes, oldest first."""
        self._seen: dict[int, None] = {}
        """The same hashes, for look-ups (a dict: at this size, smaller than a set)."""

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, ident: Hashable) -> bool:
        return hash(ident) in self._seen

    def add(self, ident: Hashable) -> bool:
        """Remember ``ident``; returns whether it was new (not remembered already)."""
        digest = hash(ident)
        if digest in self._seen:
            return False
        self._seen[digest] = None
        self._order.append(digest)
        if len(self._order) > self.bound:
            del self._seen[self._order.popleft()]
        return True
