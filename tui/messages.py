"""Messages from source workers to screens. Small, documented, and coalescing."""

from __future__ import annotations

from textual.message import Message


class StoreChanged(Message):
    """The store has news; the screen reads what changed from the store itself.

    The message carries nothing, so a backlog of them collapses into one
    (``can_replace``): however fast samples arrive, the screen does one pass.
    """

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StoreChanged)


class SourceCrashed(Message):
    """A source's stream ended with an unexpected error (a bug, not an outage)."""

    def __init__(self, source: str, error: str) -> None:
        super().__init__()
        self.source = source
        self.error = error
