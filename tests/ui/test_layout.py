"""A small terminal (80x24, a bastion pane): the compact layout, and a selection that
needs no colour to be seen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.segment import Segment

from engine.verdict import Verdict
from tests.fakes import (
    FakeSource,
    FrozenClock,
    bad_release_signals,
    deployment,
    healthy_script,
    mid_deploy_script,
    sample,
    service_deployment,
    settings,
    wait_until,
)
from tests.ui.test_dashboard import card_line, screen_lines
from tui.app import DeployWatchApp
from tui.screens.dashboard import DashboardScreen, fleet_summary
from tui.screens.evidence import EvidenceScreen
from widgets.actionbar import ActionBar
from widgets.deployments import DeploymentsPane
from widgets.rowlist import CURSOR
from widgets.signals import VerdictBanner
from widgets.topbar import TopBar

if TYPE_CHECKING:
    import pytest
    from textual.pilot import Pilot

SMALL = (80, 24)


def three_services() -> tuple[DeployWatchApp, FakeSource]:
    """web and api steady with tall cards, then worker (last in the config) FAILED."""
    web, api = healthy_script()
    worker = sample(
        "demo/worker",
        [
            deployment(
                "worker:5",
                running=0,
                failed=4,
                rollout="FAILED",
                reason="ECS deployment circuit breaker: tasks failed to start.",
            )
        ],
        service_deployments=[
            service_deployment(
                "FAILED",
                source="worker:4",
                target="worker:5",
                reason="rollback failed: worker:4 no longer exists",
            )
        ],
    )
    source = FakeSource([web, api, worker])
    app = DeployWatchApp(
        settings((("demo", "web"), ("demo", "api"), ("demo", "worker"))),
        [source],
        clock=FrozenClock(),
    )
    return app, source


def dashboard(app: DeployWatchApp) -> DashboardScreen:
    screen = app.screen
    assert isinstance(screen, DashboardScreen)
    return screen


async def test_a_failed_service_is_on_screen_and_selected_at_80x24_without_j() -> None:
    app, _ = three_services()
    async with app.run_test(size=SMALL) as pilot:
        pane = app.screen.query_one(DeploymentsPane)
        await wait_until(pilot, lambda: pane.keys[0] == "demo/worker")
        await pilot.pause()
        _, y = card_line(app, "demo/worker")  # on screen, inside the pane
        assert pane.region.y <= y < pane.region.bottom
        assert dashboard(app).selected == "demo/worker"  # R acts on it
        assert pane.keys == ["demo/worker", "demo/web", "demo/api"]  # then config order
        await pilot.press("j")  # the operator's choice is kept from then on
        assert dashboard(app).selected == "demo/web"


async def test_a_chosen_selection_stays_when_another_card_moves_up() -> None:
    source = FakeSource([*healthy_script()])
    app = DeployWatchApp(settings(), [source], clock=FrozenClock())
    async with app.run_test(size=SMALL) as pilot:
        pane = app.screen.query_one(DeploymentsPane)
        await wait_until(pilot, lambda: "COMPLETED" in pane.card_text("demo/web").plain)
        await pilot.press("j", "k")  # the operator chose web
        assert dashboard(app).selected == "demo/web"
        source.push(sample("demo/api", [deployment("api:8", running=0, rollout="FAILED")]))
        await wait_until(pilot, lambda: pane.keys[0] == "demo/api")  # api goes first ...
        assert dashboard(app).selected == "demo/web"  # ... the selection stays on web


def failing_with_countdown() -> DeployWatchApp:
    """web's bad release: FAILING with more reasons than a small banner holds, and the
    rollback rule's countdown in the action bar."""
    return DeployWatchApp(
        settings(signals=True),
        [FakeSource([*mid_deploy_script(), *bad_release_signals(minutes=6)])],
        clock=FrozenClock(),
        executor=lambda call: {},
    )


async def banner_and_bar(
    app: DeployWatchApp, pilot: Pilot[None]
) -> tuple[VerdictBanner, ActionBar]:
    """The banner and the action bar, once the banner is FAILING and the bar counts down."""
    banner = app.screen.query_one(VerdictBanner)
    bar = app.screen.query_one(ActionBar)
    await wait_until(
        pilot,
        lambda: (
            banner.report is not None
            and banner.report.verdict is Verdict.FAILING
            and bar.lines != ()
        ),
    )
    await pilot.pause()
    return banner, bar


async def test_compact_banner_and_bar_take_a_line_each_and_e_shows_everything() -> None:
    app = failing_with_countdown()
    async with app.run_test(size=SMALL) as pilot:
        banner, bar = await banner_and_bar(app, pilot)
        assert dashboard(app).compact
        assert banner.region.height == 1
        assert bar.region.height <= 2
        assert "e evidence" in banner.render().plain
        pane = app.screen.query_one(DeploymentsPane)
        assert pane.region.height >= 8  # the deployments keep their room
        reasons = banner.report.reasons if banner.report is not None else ()
        assert len(reasons) >= 5  # more than a small banner can hold
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, EvidenceScreen))
        await pilot.pause()
        shown = " ".join(" ".join(screen_lines(app)).split())
        for reason in reasons:  # every one, in full (wrapped)
            words = reason.split()
            assert " ".join(words[:6]) in shown, reason
        assert "press c to cancel" in shown  # and the whole countdown line
        await pilot.press("e")  # the same key closes it
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))


async def test_a_resize_to_80x24_leaves_no_blank_rows_in_the_banner_or_the_bar() -> None:
    """A tmux pane split while the countdown runs: the banner and the action bar are
    cut for the new width, and their heights follow (they kept the rows of the text
    cut for the old width, wrapped: blank rows at 80x24). Back to wide, in full again."""
    app = failing_with_countdown()
    async with app.run_test(size=(200, 50)) as pilot:
        banner, bar = await banner_and_bar(app, pilot)
        wide = banner.region.height
        assert wide > 1
        await pilot.resize_terminal(*SMALL)
        await wait_until(pilot, lambda: dashboard(app).compact and banner.region.height == 1)
        bar_rows = bar.render().plain.count("\n") + 1
        await wait_until(pilot, lambda: bar.region.height == bar_rows)
        lines = screen_lines(app)
        rows = lines[banner.region.y : bar.region.bottom]
        assert all(row.strip() for row in rows), "\n".join(lines)
        await pilot.resize_terminal(200, 50)
        await wait_until(pilot, lambda: banner.region.height == wide)


async def test_footer_keeps_quit_and_help_at_80x24() -> None:
    app = DeployWatchApp(settings(), [FakeSource(mid_deploy_script())], clock=FrozenClock())
    async with app.run_test(size=SMALL) as pilot:
        await wait_until(pilot, lambda: "Quit" in screen_lines(app)[-1])
        footer = screen_lines(app)[-1]
        assert footer.startswith(" q Quit") or footer.startswith("q Quit"), footer
        assert "? Help" in footer
        assert "R Roll back" in footer


async def test_summary_shortens_instead_of_being_cut() -> None:
    app = DeployWatchApp(settings(), [FakeSource(mid_deploy_script())], clock=FrozenClock())
    async with app.run_test(size=SMALL) as pilot:
        topbar = app.screen.query_one(TopBar)
        await wait_until(pilot, lambda: "ROLLING BACK" in topbar.summary)
        await pilot.pause()
        assert "2 svc · 1 ROLLING BACK · 1 IN FLIGHT" in screen_lines(app)[0]
        await pilot.resize_terminal(200, 50)
        await wait_until(pilot, lambda: "ROLLBACK_IN_PROGRESS" in topbar.summary)
        screen = dashboard(app)
        full = fleet_summary(screen.store, screen._statuses())
        assert full == "2 services · 1 ROLLBACK_IN_PROGRESS · 1 IN_PROGRESS"


async def test_the_selection_shows_without_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    """With NO_COLOR the selected card still has its ▶ and its name in reverse; the
    other card has neither."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = DeployWatchApp(settings(), [FakeSource(mid_deploy_script())], clock=FrozenClock())
    async with app.run_test(size=SMALL) as pilot:
        assert app.no_color
        pane = app.screen.query_one(DeploymentsPane)
        await wait_until(pilot, lambda: "demo/api" in " ".join(screen_lines(app)))
        await pilot.pause()
        background = app.screen.styles.background
        strips = app.screen._compositor.render_strips()

        def line(needle: str) -> list[Segment]:
            _, y = card_line(app, needle)
            segments = list(strips[y])
            for line_filter in app._filters:
                segments = line_filter.apply(segments, background)
            return segments

        def edge_and_label(segments: list[Segment], label: str) -> tuple[str, bool]:
            x = pane.region.x
            text = "".join(s.text for s in segments)
            edge = text[x]
            cell = 0
            reverse = False
            for segment in segments:
                if cell <= text.index(label, x) < cell + len(segment.text):
                    reverse = bool(segment.style and segment.style.reverse)
                cell += len(segment.text)
            return edge, reverse

        assert dashboard(app).selected == "demo/web"
        assert edge_and_label(line("demo/web"), "web") == (CURSOR, True)
        assert edge_and_label(line("demo/api"), "api") != (CURSOR, True)
        await pilot.press("j")
        strips = app.screen._compositor.render_strips()
        assert edge_and_label(line("demo/api"), "api") == (CURSOR, True)
