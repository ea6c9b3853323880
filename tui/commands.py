"""The command palette's deployment verbs: every verb for every service, with what it
would do now or why it cannot. Titles and help are built from outside text (service
names, AWS words), so they reach the palette escaped, never as markup."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Provider

from engine.actions import Verb
from widgets.safe import markup_literal as escape

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from engine.actions import Plan
    from tui.screens.dashboard import DashboardScreen

VERBS = (Verb.ROLLBACK, Verb.PROMOTE, Verb.PAUSE, Verb.RESUME)


def entry(planned: Plan, read_only: bool) -> tuple[str, str]:
    """``(title, help)`` of one verb: ``Roll back web (web:2 → web:1)``, and what it does."""
    title = planned.title
    if planned.from_revision and planned.to_revision:
        title = f"{title} ({planned.change})"
    if read_only:
        return title, f"refused: read-only mode ({planned.effect})"
    if not planned.enabled:
        return title, f"not possible: {planned.disabled_reason}"
    return title, planned.effect


class DeploymentCommands(Provider):
    """Pause, resume, promote and roll back, per service, on the dashboard."""

    def _dashboard(self) -> DashboardScreen | None:
        from tui.screens.dashboard import DashboardScreen

        screen = self.screen
        return screen if isinstance(screen, DashboardScreen) else None

    def _entries(self) -> Iterator[tuple[str, str, Verb, str]]:
        dashboard = self._dashboard()
        if dashboard is None:
            return
        controller = dashboard.controller
        for key in controller.store.services:
            for verb in VERBS:
                title, help_text = entry(controller.plan(verb, key), controller.read_only)
                yield title, help_text, verb, key

    async def discover(self) -> AsyncIterator[DiscoveryHit]:
        dashboard = self._dashboard()
        for title, help_text, verb, key in self._entries():
            assert dashboard is not None
            yield DiscoveryHit(
                escape(title), partial(dashboard.act_on, verb, key), title, escape(help_text)
            )

    async def search(self, query: str) -> AsyncIterator[Hit]:
        dashboard = self._dashboard()
        matcher = self.matcher(query)
        for title, help_text, verb, key in self._entries():
            assert dashboard is not None
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score,
                    escape(title),
                    partial(dashboard.act_on, verb, key),
                    title,
                    escape(help_text),
                )
