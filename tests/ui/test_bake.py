"""The bake window on screen: a countdown while the finished deployment stays healthy,
then the sign-off with its time."""

from __future__ import annotations

from pathlib import Path

from engine.config import parse_config
from tests.fakes import FakeSource, FrozenClock, deployment, sample, wait_until
from tests.ui.test_dashboard import screen_text
from tui.app import DeployWatchApp


async def test_the_action_bar_counts_the_bake_down_then_says_signed_off() -> None:
    config = parse_config(
        {
            "environment": {"name": "t", "bake": "15m"},
            "aws": {"endpoint_url": "http://127.0.0.1:9"},
            "service": [{"cluster": "demo", "service": "web"}],
        },
        Path("t.toml"),
    )
    moving = deployment("web:3", rollout="IN_PROGRESS", running=2, pending=2)
    source = FakeSource([sample("demo/web", [moving, deployment("web:2", status="ACTIVE")])])
    clock = FrozenClock()
    app = DeployWatchApp(config, [source], clock=clock)
    async with app.run_test(size=(120, 35)) as pilot:
        await wait_until(pilot, lambda: "IN_PROGRESS" in screen_text(app))
        assert "BAKING" not in screen_text(app)  # nothing bakes while in flight
        clock.advance(60)
        source.push(sample("demo/web", [deployment("web:3")], at=clock()))
        await wait_until(pilot, lambda: "BAKING web 15:00 left" in screen_text(app))
        clock.advance(9 * 60 + 29)
        await wait_until(pilot, lambda: "BAKING web 5:31 left" in screen_text(app))
        assert "HEALTHY 9:29 of 15:00" in screen_text(app)
        clock.advance(5 * 60 + 31)
        await wait_until(pilot, lambda: "SIGNED OFF web" in screen_text(app))
        assert f"SIGNED OFF web {clock.now.strftime('%H:%M')} UTC" in screen_text(app)
