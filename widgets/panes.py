"""Pane frames and the placeholder shown where a source is not configured yet."""

from __future__ import annotations

from textual.widgets import Static


class NotConfigured(Static):
    """Says plainly that a pane has no source, and how to add one."""

    DEFAULT_CSS = """
    NotConfigured { color: $text-muted; padding: 1 2; }
    """

    def __init__(self, what: str, hint: str) -> None:
        super().__init__(f"{what}: not configured\n{hint}", classes="not-configured", markup=False)
