"""An idle dashboard: what its once-a-second clock tick may touch.

Nothing changes but the time: the tick must repaint the clock's own cells and walk no
widget tree, or a dashboard left open costs CPU (and terminal bytes) for nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tests.fakes import T0, FakeSource, FrozenClock, mid_deploy_script, settings, settle
from tui.app import DeployWatchApp
from tui.screens.dashboard import DashboardScreen
from widgets.topbar import TopBar

if TYPE_CHECKING:
    from textual.widget import Widget

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
