"""The ``/`` filter of the deployments pane: one input line over the cards.

Typing filters the cards at once (name, cluster, context, state); ``enter`` keeps the
filter and gives the keys back to the cards; ``escape`` clears it. What is typed is
the operator's own text, shown literally (an ``Input`` never reads markup).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from engine.config import AwsContext
    from engine.store import Store

MAX_FILTER = 80
"""Longest filter (a paste of a whole log line is cut)."""


class FilterInput(Input):
    """The filter line; hidden until ``/``."""

    DEFAULT_CSS = """
    FilterInput { display: none; height: 1; border: none; padding: 0 1; margin: 0; }
    FilterInput.-on { display: block; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    class Cleared(Message):
        """``escape``: the filter is cleared and the line hidden."""

    def __init__(self) -> None:
        super().__init__(
            placeholder="filter: name, cluster, context or state (esc clears)",
            max_length=MAX_FILTER,
            id="deployments-filter",
            compact=True,
        )

    def open(self) -> None:
        """Show the line and take the keys."""
        self.add_class("-on")
        self.focus()

    def action_clear_filter(self) -> None:
        self.value = ""
        self.remove_class("-on")
        self.post_message(self.Cleared())


def context_lines(
    contexts: Sequence[AwsContext],
    of: Mapping[str, AwsContext],
    store: Store,
    entries: Collection[str] = (),
) -> list[tuple[str, str, bool]]:
    """Per context: its name, its words (``120 svc`` or ``120 svc · 120 STALE``) and
    whether any of its services is stale (what the top bar shows side by side)."""
    total: dict[str, int] = {}
    stale: dict[str, int] = {}
    failed: set[str] = set()
    first = contexts[0].name if contexts else ""
    for key, state in store.services.items():
        if key in entries:  # a discovery entry: not a service; its listing failed
            if state.stale:
                failed.add(of[key].name if key in of else first)
            continue
        context = of.get(key)
        name = context.name if context is not None else first
        total[name] = total.get(name, 0) + 1
        if state.stale:
            stale[name] = stale.get(name, 0) + 1
    lines = []
    for context in contexts:
        words = f"{total.get(context.name, 0)} svc"
        if stale.get(context.name):
            words += f" · {stale[context.name]} STALE"
        elif context.name in failed:
            words += " · STALE"
        lines.append((context.name, words, bool(stale.get(context.name)) or context.name in failed))
    return lines
