"""An ALB canary brought back to 0 % by a rollback — the rule's automatic one or the
operator's — says so in the action bar, and what promoting again would mean; never
``not started: P starts it``, which invites re-promoting the bad canary as if it were new
(issue 12, item 4)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from sources.model import AlbWeights
from tests.fakes import (
    FakeSource,
    FrozenClock,
    bad_release_signals,
    deployment,
    sample,
    settings,
    wait_until,
)
from tests.ui.test_actions_ui import SIZE, Recorder, bar, confirm_text
from tests.unit.test_canary import driver
from tui.app import DeployWatchApp
from tui.screens.confirm import ConfirmScreen

if TYPE_CHECKING:
    from pathlib import Path

ROLLED_BACK = "canary 0% · rolled back: all traffic on stable; P would start the canary again"


def canary_app(tmp_path: Path, clock: FrozenClock) -> tuple[DeployWatchApp, Recorder, FakeSource]:
    """web as an ALB canary at 10 %, its v2 failing 15 % of requests for minutes (the
    ``> 10 % for 2m`` rule rolls back, after its 10 s countdown)."""
    base = settings(services=(("demo", "web"),), signals=True)
    ref = base.services[0].model_copy(update={"canary": driver().settings})
    config = base.model_copy(update={"services": (ref,)})
    web = replace(sample("demo/web", [deployment("web:2")]), alb=AlbWeights(90, 10))
    source = FakeSource([web, *bad_release_signals(minutes=6)])
    rec = Recorder()
    app = DeployWatchApp(
        config, [source], clock=clock, executor=rec, audit_path=tmp_path / "audit.jsonl"
    )
    return app, rec, source


def weights_sent(rec: Recorder) -> list[int]:
    groups = rec.calls[-1].params["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    return [g["Weight"] for g in groups]


@pytest.mark.parametrize("who", ["automatic", "operator"])
async def test_a_rolled_back_canary_says_why_it_is_at_zero(tmp_path: Path, who: str) -> None:
    clock = FrozenClock()
    app, rec, source = canary_app(tmp_path, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "AUTO ROLLBACK in 10s" in bar(app))
        assert "canary 10% · step 1/4 · held: a rule is FAILING" in bar(app)
        if who == "automatic":
            clock.advance(10)
        else:
            await pilot.press("R")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
        await wait_until(pilot, lambda: "rollback DONE" in bar(app))
        await app.controller.settle()
        assert [c.operation for c in rec.calls] == ["modify_listener"]
        assert weights_sent(rec) == [100, 0]
        # The listener now says stable 100 / canary 0.
        source.push(replace(sample("demo/web", [deployment("web:2")]), alb=AlbWeights(100, 0)))
        await wait_until(pilot, lambda: "web: canary 0%" in bar(app))
        assert ROLLED_BACK in bar(app), bar(app)
        assert "not started" not in bar(app)
        assert "AUTO ROLLBACK" not in bar(app)  # no second rollback pending
        # Promoting again is a deliberate new start of the canary, and says so.
        await pilot.press("P")
        assert isinstance(app.screen, ConfirmScreen)
        assert "canary 0% → canary 10%" in confirm_text(app)
        await pilot.press("escape")
        await pilot.pause()
    assert len(rec.calls) == 1
