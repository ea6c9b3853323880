"""A recording played back in the dashboard: read-only, the recorded verdicts in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.recording import read_recording, recorded_settings
from tests.fakes import wait_until
from tui.replay import replay_app
from widgets.signals import VerdictBanner

FIXTURE = Path(__file__).parents[1] / "fixtures" / "bad-release.jsonl.gz"


async def test_the_dashboard_replays_the_bad_release_read_only() -> None:
    recording = await asyncio.to_thread(read_recording, FIXTURE)
    app = replay_app(recording, recorded_settings(recording), speed=20.0)
    seen: list[str] = []

    def banner() -> str:
        word = app.screen.query_one(VerdictBanner).render().plain.split()[0]
        if not seen or seen[-1] != word:
            seen.append(word)
        return word

    async with app.run_test(size=(120, 35)) as pilot:
        assert app.read_only
        assert app.settings.environment.name.startswith("replay ")
        await wait_until(pilot, lambda: banner() == "FAILING", timeout=30)
        await wait_until(pilot, lambda: banner() == "HEALTHY" and "FAILING" in seen, timeout=30)
        # The automatic rollback's countdown ran as recorded, and a replay refuses it.
        result = app.controller.last_result
        assert result is not None and result.outcome.value == "refused"
    assert seen[-2:] == ["FAILING", "HEALTHY"]
