"""The deployment report from the dashboard: on a key (path shown) and at exit."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from tests.fakes import (
    FakeSource,
    FrozenClock,
    bad_release_signals,
    mid_deploy_script,
    settings,
    wait_until,
)
from tui.app import DeployWatchApp

if TYPE_CHECKING:
    from pathlib import Path


def _read(folder: Path) -> tuple[Path, str, dict[str, Any]]:
    """The one report in ``folder``: its Markdown path and text, and its JSON."""
    (md,) = folder.glob("*.md")
    return md, md.read_text(), json.loads(md.with_suffix(".json").read_text())


async def test_w_writes_the_report_into_the_state_dir_and_says_where(tmp_path: Path) -> None:
    app = DeployWatchApp(
        settings(signals=True),
        [FakeSource([*mid_deploy_script(), *bad_release_signals()])],
        clock=FrozenClock(),
        executor=lambda call: {},
    )
    async with app.run_test(size=(120, 35)) as pilot:
        await wait_until(pilot, lambda: app.controller.snapshot.verdict.value == "FAILING")
        await pilot.press("w")
        await wait_until(
            pilot, lambda: any(n.title == "Report written" for n in app._notifications)
        )
        shown = next(n.message for n in app._notifications if n.title == "Report written")
    md, text, data = await asyncio.to_thread(_read, tmp_path / "state" / "deploywatch" / "reports")
    assert str(md) in shown
    assert md.name.startswith("sandbox-demo-")
    # What the watch saw, never invented: web is still moving, api rolling back (not
    # rolled back yet), the verdict FAILING.
    assert data["status"] == "FAILING"
    assert data["exit_code"] is None
    assert any(b["rule"] == "error rate" for b in data["breached_rules"])
    assert "**FAILING**" in text and "(exit" not in text
    assert "## Lessons Learned" in text


async def test_the_final_report_is_written_when_the_app_has_stopped(tmp_path: Path) -> None:
    app = DeployWatchApp(
        settings(), [FakeSource(mid_deploy_script())], clock=FrozenClock(), audit_path=None
    )
    async with app.run_test(size=(120, 35)) as pilot:
        await wait_until(pilot, lambda: app.controller.snapshot.judgements > 1)
        await pilot.press("R")  # a confirmation opened and declined: audited, reported
        await pilot.press("escape")
        await pilot.pause()
    # As the command does once the app has stopped (here a test's loop still runs).
    paths = await asyncio.to_thread(app.write_final_report)
    assert [p.suffix for p in paths] == [".json", ".md"]
    _md, text, data = await asyncio.to_thread(_read, paths[1].parent)
    assert [a["phase"] for a in data["actions"]] == ["declined"]
    assert data["downtime_s"] is None  # no probe: not measured, never 0
    assert "not measured (no probe configured)" in text
