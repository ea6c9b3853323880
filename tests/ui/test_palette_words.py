"""The palette's entries name a change only when both ends are known: a steady service
has nothing to pause, promote or roll back to, and an entry never reads
``Pause api (api:1 → ?)`` (issue 12, item 4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.fakes import deployment, sample, settle
from tests.ui.test_actions_ui import SIZE, make_app, palette_entries

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("query", "verb"),
    [("pause", "Pause"), ("resume", "Resume"), ("promote", "Promote"), ("roll back", "Roll back")],
)
async def test_an_entry_never_shows_an_unknown_revision(
    tmp_path: Path, query: str, verb: str
) -> None:
    steady = [sample("demo/web", [deployment("web:1")]), sample("demo/api", [deployment("api:1")])]
    app, rec = make_app(tmp_path, script=steady)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        entries = await palette_entries(pilot, app, query, f"{verb} web", f"{verb} api")
        mine = [e for e in entries if e.startswith(verb)]
        assert len(mine) == 2, entries
        for e in mine:
            title = e.splitlines()[0]
            assert "?" not in title and "→" not in title, e
            assert "not possible:" in e  # and why, in words
        await pilot.press("escape")
    assert rec.calls == []


async def test_textual_stock_entries_are_not_among_the_verbs(tmp_path: Path) -> None:
    """Maximize, Screenshot, Keys "for the focused widget", Theme... are left out; ours
    (Help, Quit, the verbs) are there. An empty query lists everything the palette has."""
    app, rec = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        entries = await palette_entries(pilot, app, "", "Quit", "Help", "Roll back web")
        titles = [e.splitlines()[0] for e in entries]
        for stock in ("Maximize", "Screenshot", "Keys", "Theme", "Minimize"):
            assert not any(stock in t for t in titles), titles
        await pilot.press("escape")
    assert rec.calls == []
