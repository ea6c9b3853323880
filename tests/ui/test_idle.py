"""An idle dashboard: what its once-a-second clock tick may touch.

Nothing changes but the time: the tick must repaint the clock's own cells and walk no
widget tree, or a dashboard left open costs CPU (and terminal bytes) for nothing.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import parse_config
from sources.model import MetricPoint, MetricSample
from tests.fakes import (
    T0,
    FakeSource,
    FrozenClock,
    deployment,
    mid_deploy_script,
    sample,
    service_deployment,
    settings,
    settle,
    wait_until,
)
from tui.app import DeployWatchApp
from tui.screens.dashboard import DashboardScreen
from widgets.deployments import SORT_NAME, DeploymentsPane
from widgets.rowlist import RowList
from widgets.signals import MetricRows
from widgets.topbar import TopBar

if TYPE_CHECKING:
    from collections.abc import Callable

    from textual.widget import Widget

    from sources.model import Item

SIZE = (200, 50)


def idle_app(clock: FrozenClock) -> DeployWatchApp:
    """Two services with metrics, Sentry and probes configured (every pane there)."""
    return DeployWatchApp(
        settings(signals=True), [FakeSource(mid_deploy_script()[:1])], clock=clock
    )


async def test_the_clock_tick_repaints_the_clock_not_the_top_bar() -> None:
    """The time moves: the clock's cells are repainted, not the whole top line (the
    summary, the environment and the badges did not change)."""
    clock = FrozenClock()
    app = idle_app(clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        bar = screen.query_one(TopBar)
        repainted: list[Widget] = []
        original = type(bar).refresh

        def counting(widget: Widget, *args: Any, **kwargs: Any) -> Any:
            repainted.append(widget)
            return original(widget, *args, **kwargs)

        bar.refresh = counting.__get__(bar)  # type: ignore[method-assign]
        clock.advance(1)
        screen._tick()
        await pilot.pause()
        assert str(bar.query_one("#clock").render()).startswith("02:00:01")
        assert repainted == []  # the clock Static repainted itself, and only itself


async def test_the_clock_tick_walks_no_widget_tree() -> None:
    """Each second the tick hands the time to the panes it knows; it does not look
    them up again among every widget of the screen."""
    clock = FrozenClock()
    app = idle_app(clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        queries: list[object] = []
        original = screen.query

        def counting(*args: Any, **kwargs: Any) -> Any:
            queries.append(args)
            return original(*args, **kwargs)

        screen.query = counting  # type: ignore[method-assign]
        for second in range(1, 4):
            clock.now = T0 + timedelta(seconds=second)
            screen._tick()
        await pilot.pause()
        assert queries == []


async def test_a_card_growing_below_the_view_moves_nothing_in_it() -> None:
    """A service far below the view starts deploying: its card takes more lines.
    Nothing in view moves, so the screen is not laid out again nor the view repainted;
    the scrollbar alone takes the new length in."""
    services = [("demo", f"svc-{i:03d}") for i in range(60)]
    steady = [sample(f"{c}/{s}", [deployment("app:2")]) for c, s in services]
    source = FakeSource(steady)
    clock = FrozenClock()
    app = DeployWatchApp(settings(services), [source], clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        pane = screen.query_one(DeploymentsPane)
        pane.set_sort(SORT_NAME)  # svc-059 stays last when it starts deploying
        for second in range(1, RowList.SETTLE_EVERY + 1):
            pane.tick(T0 + timedelta(seconds=second))  # every card measured
        await pilot.pause()
        before = pane.virtual_size.height
        pane.SETTLE_EVERY = 10**6  # type: ignore[misc]  # the clock's ticks measure nothing now
        source.push(rolling("demo/svc-059"))
        bar = screen.query_one(TopBar)
        await wait_until(pilot, lambda: "1 IN_PROGRESS" in bar.summary)  # the flush ran
        await pilot.pause()  # its repaint and layout done (the banner changed)
        assert pane.virtual_size.height == before  # below the view: not measured yet
        layouts: list[object] = []
        repaints: list[tuple[object, ...]] = []
        layout, refresh = screen._refresh_layout, pane.refresh

        def counting_layout(*args: Any, **kwargs: Any) -> None:
            layouts.append(args)
            layout(*args, **kwargs)

        def counting_refresh(*regions: Any, **kwargs: Any) -> Any:
            repaints.append(regions)
            return refresh(*regions, **kwargs)

        screen._refresh_layout = counting_layout  # type: ignore[method-assign]
        pane.refresh = counting_refresh  # type: ignore[method-assign]
        pane.SETTLE_EVERY = 1  # type: ignore[misc]  # this tick measures the rows below
        pane.tick(T0 + timedelta(seconds=10))
        await pilot.pause()
        assert pane.virtual_size.height > before  # measured: the card grew
        assert pane.vertical_scrollbar.window_virtual_size == pane.virtual_size.height
        assert "svc-000" in pane.card_text("demo/svc-000").plain
        assert layouts == []
        assert () not in repaints  # no repaint of the whole view


def rolling(key: str) -> Item:
    """A rolling deployment of ``key`` halfway through (two deployments: a taller card)."""
    return sample(
        key,
        [
            deployment("app:3", running=2, rollout="IN_PROGRESS", updated=T0),
            deployment("app:2", status="ACTIVE", running=2),
        ],
        service_deployments=[service_deployment("IN_PROGRESS", source="app:2", target="app:3")],
    )


async def test_silent_metrics_age_in_view_and_no_row_is_handed_new_data() -> None:
    """30 metrics, every one silent (its last point older than its freshness): each
    second the ages in view move on screen, and no row is handed anything new (those
    off screen show their age as of when they scroll in)."""
    metrics = [f"m{i:02d}" for i in range(30)]
    config = parse_config(
        {
            "environment": {"name": "idle"},
            "aws": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
            "service": [{"cluster": "demo", "service": "web"}],
            "datadog": {"host": "http://127.0.0.1:9", "poll_interval": 5},
            "metric": [
                {"name": name, "query": f"avg:{name}{{service:web}}", "service": "web"}
                for name in metrics
            ],
        },
        Path("idle.toml"),
    )
    points = tuple(MetricPoint(T0 - (5 - i) * 10 * SEC, 1.0) for i in range(6))
    script = [MetricSample(name, "demo/web", None, points, "", T0) for name in metrics]
    clock = FrozenClock()
    app = DeployWatchApp(config, [FakeSource(script)], clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        rows = screen.query_one(MetricRows)
        clock.now = T0 + 200 * SEC  # 2 minutes of freshness long gone: all silent
        screen._tick()
        await wait_until(pilot, on_screen(app, "(last 3m20s ago)"))
        handed: list[list[str]] = []
        update_rows = rows.update_rows

        def counting(keys: Any) -> None:
            handed.append(list(keys))
            update_rows(keys)

        rows.update_rows = counting  # type: ignore[method-assign]
        for second, age in ((201, "3m21s"), (202, "3m22s")):
            clock.now = T0 + second * SEC
            screen._tick()
            await wait_until(pilot, on_screen(app, f"(last {age} ago)"))
        assert handed == []


SEC = timedelta(seconds=1)


def screen_text(app: DeployWatchApp) -> str:
    """The screen as drawn (the compositor's own render)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def on_screen(app: DeployWatchApp, words: str) -> Callable[[], bool]:
    """A check for :func:`wait_until`: are ``words`` on the screen?"""
    return lambda: words in screen_text(app)
