"""The dashboard as a person sees it, driven by a scripted source through Pilot."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from textual.color import Color

from tests.fakes import (
    T0,
    FakeSource,
    FrozenClock,
    deployment,
    failure,
    mid_deploy_script,
    sample,
    service_deployment,
    settings,
    settle,
    wait_until,
)
from tui.app import DeployWatchApp
from tui.screens.dashboard import EVENTS_EVERY, DashboardScreen
from tui.screens.help import HelpScreen
from widgets.deployments import DeploymentsPane
from widgets.events import EventsLog
from widgets.topbar import TopBar

if TYPE_CHECKING:
    from collections.abc import Iterable

    from rich.text import Text

    from sources.model import Item

SIZE = (200, 50)


def card_text(app: DeployWatchApp, key: str) -> str:
    return app.screen.query_one(DeploymentsPane).card_text(key).plain


def screen_lines(app: DeployWatchApp) -> list[str]:
    """Every line of the screen as drawn (the compositor's own render)."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def screen_text(app: DeployWatchApp) -> str:
    return "\n".join(screen_lines(app))


def pane_lines(app: DeployWatchApp) -> list[str]:
    """The deployments pane's lines as drawn (the banner names services too)."""
    region = app.screen.query_one(DeploymentsPane).region
    return [line[region.x : region.right] for line in screen_lines(app)[region.y : region.bottom]]


def card_line(app: DeployWatchApp, needle: str) -> tuple[int, int]:
    """``(x, y)`` on screen of the first line of the deployments pane showing ``needle``."""
    region = app.screen.query_one(DeploymentsPane).region
    for y, line in enumerate(screen_lines(app)[region.y : region.bottom], region.y):
        x = line.find(needle, region.x, region.right)
        if x >= 0:
            return x, y
    raise AssertionError(f"{needle!r} is not on screen:\n" + "\n".join(screen_lines(app)))


def edge_colour(app: DeployWatchApp, needle: str) -> str:
    """The colour (``#rrggbb``) of the left edge of the card line showing ``needle``."""
    region = app.screen.query_one(DeploymentsPane).region
    _, y = card_line(app, needle)
    style = app.screen._compositor.get_style_at(region.x, y)
    assert style.color is not None and style.color.triplet is not None
    return style.color.triplet.hex


def background_at(app: DeployWatchApp, needle: str) -> str:
    """The background (``#rrggbb``) of the cell showing ``needle``'s first character."""
    x, y = card_line(app, needle)
    style = app.screen._compositor.get_style_at(x, y)
    assert style.bgcolor is not None and style.bgcolor.triplet is not None
    return style.bgcolor.triplet.hex


def theme(app: DeployWatchApp, variable: str) -> str:
    """A theme colour as ``#rrggbb``: ``error``, ``warning``, ``success``, ``accent``."""
    return Color.parse(app.get_css_variables()[variable]).hex.lower()


async def test_pane_shows_progress_failure_and_rollback() -> None:
    source = FakeSource(mid_deploy_script())
    app = DeployWatchApp(settings(), [source], clock=FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        web = card_text(app, "demo/web")
        assert "IN_PROGRESS" in web
        assert "web:2" in web and "web:1" in web
        assert "2/4" in web and "1 pending" in web
        assert "0:23" in web  # elapsed since the deployment was created
        api = card_text(app, "demo/api")
        assert "ROLLBACK_IN_PROGRESS" in api
        assert "FAILED" in api and "3 failed" in api
        assert "ECS deployment circuit breaker: tasks failed to start." in api
        assert "TRIGGERED 3/3" in api
        assert "api:8 → back to api:7" in api  # a rollback reads the way the operator thinks
        assert api.count("tasks failed to start") == 1  # the same reason is not repeated
        assert edge_colour(app, "demo/api") == theme(app, "warning")
        assert edge_colour(app, "demo/web") == theme(app, "accent")  # busy

        # The rollback finishes: the same card updates in place.
        pane = app.screen.query_one(DeploymentsPane)
        before = pane.keys
        source.push(
            sample(
                "demo/api",
                [deployment("api:7")],
                service_deployments=[
                    service_deployment(
                        "ROLLBACK_SUCCESSFUL", source="api:7", target="api:8", finished=T0
                    )
                ],
            )
        )
        await settle(pilot)
        assert app.screen.query_one(DeploymentsPane) is pane and pane.keys == before
        api = card_text(app, "demo/api")
        assert "ROLLBACK_SUCCESSFUL" in api
        assert "api:8" in api  # the revision that was rolled back is still named


async def test_completed_and_failed_states() -> None:
    done = sample(
        "demo/web",
        [deployment("web:2")],
        service_deployments=[
            service_deployment("SUCCESSFUL", source="web:1", target="web:2", finished=T0)
        ],
    )
    failed = sample(
        "demo/api",
        [
            deployment(
                "api:8",
                rollout="FAILED",
                failed=4,
                running=0,
                reason="ECS deployment circuit breaker: tasks failed to start.",
            ),
            deployment("api:7", status="ACTIVE"),
        ],
        service_deployments=[service_deployment("STOPPED", source="api:7", target="api:8")],
    )
    app = DeployWatchApp(settings(), [FakeSource([done, failed])], clock=FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "COMPLETED" in card_text(app, "demo/web")
        assert "  FAILED  " in card_text(app, "demo/api")
        summary = app.screen.query_one(TopBar).summary
        assert "1 FAILED" in summary and "1 COMPLETED" in summary


async def test_stale_shows_age_and_reason_and_recovers() -> None:
    clock = FrozenClock()
    web, api = mid_deploy_script()
    source = FakeSource([web, api])
    app = DeployWatchApp(settings(), [source], clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        clock.advance(30)
        source.push(failure("demo/web", "no answer within 14s", at=clock.now))
        await settle(pilot)
        text = card_text(app, "demo/web")
        assert "STALE 30s" in text and "timeout: no answer within 14s" in text
        assert "web:2" in text  # the last good data is still shown
        clock.advance(5)
        # The 1 s tick ages it.
        await wait_until(pilot, lambda: "STALE 35s" in card_text(app, "demo/web"))
        source.push(web)
        await settle(pilot)
        assert "STALE" not in card_text(app, "demo/web")


async def test_events_are_logged_once_with_service_label() -> None:
    web, api = mid_deploy_script()
    source = FakeSource([web, api])
    app = DeployWatchApp(settings(), [source], clock=FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        log = app.screen.query_one(EventsLog)
        lines = [strip.text for strip in log.lines]
        assert any("web" in line and "has started 2 tasks" in line for line in lines)
        assert any("api" in line and "rolling back to deployment" in line for line in lines)
        assert not any("(service web)" in line for line in lines)  # prefix folded into the label
        count = len(log.lines)
        source.push(web)  # same sample again: events are not repeated
        await settle(pilot)
        assert len(log.lines) == count


async def test_burst_of_samples_is_coalesced_into_few_repaints() -> None:
    web, api = mid_deploy_script()
    source = FakeSource([web, api])
    app = DeployWatchApp(settings(), [source], clock=FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = app.screen.query_one(DeploymentsPane)
        updates = 0
        original = pane.update_rows

        def counting(keys: Iterable[str]) -> None:
            nonlocal updates
            keys = list(keys)
            updates += "demo/web" in keys
            original(keys)

        pane.update_rows = counting  # type: ignore[method-assign]
        for running in range(100):
            source.push(
                sample(
                    "demo/web",
                    [deployment("web:2", running=running % 5, rollout="IN_PROGRESS")],
                    at=T0 + timedelta(milliseconds=running),
                )
            )
        await settle(pilot)
        await settle(pilot)
        assert 1 <= updates <= 5
        assert "4/4" in card_text(app, "demo/web")  # the last sample wins (99 % 5 == 4)


async def test_help_lists_keys_and_closes() -> None:
    app = DeployWatchApp(settings(), [FakeSource([])], clock=FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        rows = {(description, key) for key, description, _ in app.screen.keys}
        quits = [
            set(key.split(" / "))
            for key, description, _ in app.screen.keys
            if description == "Quit"
        ]
        assert quits == [{"q", "^q"}]  # one row per action, its keys together
        assert ("Roll back", "R") in rows and ("Cancel auto", "c") in rows
        assert ("Help", "?") in rows
        assert ("Next service", "j / ↓") in rows or ("Next service", "↓ / j") in rows
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_keys_move_between_services_and_q_quits() -> None:
    app = DeployWatchApp(settings(), [FakeSource(mid_deploy_script())], clock=FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        assert isinstance(app.focused, DeploymentsPane) and screen.selected == "demo/web"
        selected, plain = background_at(app, "demo/web"), background_at(app, "demo/api")
        assert selected != plain  # the selected card stands out
        await pilot.press("j")
        assert screen.selected == "demo/api"
        assert background_at(app, "demo/api") == selected
        assert background_at(app, "demo/web") == plain
        await pilot.press("j")  # the last service: stays there
        assert screen.selected == "demo/api"
        await pilot.press("k")
        assert screen.selected == "demo/web"
        await pilot.press("down", "up", "down")
        assert screen.selected == "demo/api"
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_production_environment_is_marked() -> None:
    app = DeployWatchApp(
        settings(name="prod-eu", production=True), [FakeSource([])], clock=FrozenClock()
    )
    async with app.run_test(size=SIZE):
        env = app.screen.query_one("#env")
        assert env.has_class("-production")
        assert "PRODUCTION" in str(env.render())


async def test_bad_release_turns_the_banner_failing_with_evidence() -> None:
    from tests.fakes import bad_release_signals
    from widgets.signals import ErrorsPane, MetricsPane, ProbesPane, VerdictBanner

    script = [*mid_deploy_script()[:1], *bad_release_signals()]
    app = DeployWatchApp(settings(signals=True), [FakeSource(script)], clock=FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(
            pilot,
            lambda: app.screen.query_one(VerdictBanner).render().plain.startswith(" FAILING "),
        )
        banner = app.screen.query_one(VerdictBanner).render().plain
        assert banner.startswith(" FAILING ")
        assert "error rate [version:v2] 14.8% > 5% for 1m" in banner
        assert "availability 95% < 99.5% for 30s · 4 samples" in banner  # 50 s below target
        metrics = app.screen.query_one(MetricsPane)
        rows = {name: metrics.rows.text_of(name).plain for name in metrics.rows.keys}
        assert (
            "CRITICAL" in rows["error_rate"]
            and "14.8%" in rows["error_rate"]
            and "0.2%" in rows["error_rate"]
        )
        v1 = next(line for line in rows["error_rate"].splitlines() if line.strip().startswith("v1"))
        assert set(v1.split("0.2%")[1].strip()) == {"▁"}  # a healthy flat line stays low
        assert "> 10% → rollback" in rows["error_rate"]
        assert "OK" in rows["p95_ms"]
        errors = app.screen.query_one(ErrorsPane).render().plain
        assert "1 new issue" in errors and "131 x CheckoutFailedError: payment declined" in errors
        probes = app.screen.query_one(ProbesPane).plain()
        assert "95.0%" in probes and "last failure 01:58:50: expected 200, got 503" in probes


def fleet(n: int) -> list[tuple[str, str]]:
    """``n`` services in one cluster: ``svc-000`` …"""
    return [("demo", f"svc-{i:03d}") for i in range(n)]


def rolling(key: str, running: int = 2) -> Item:
    """A rolling deployment of ``key`` halfway through."""
    return sample(
        key,
        [
            deployment("app:2", running=running, rollout="IN_PROGRESS", updated=T0),
            deployment("app:1", status="ACTIVE", running=4 - running),
        ],
        service_deployments=[service_deployment("IN_PROGRESS", source="app:1", target="app:2")],
    )


async def test_many_services_only_the_cards_in_view_are_built() -> None:
    """60 services: the pane builds the cards on screen, not the 60 (a card's text is
    built again only to measure it when it changes off screen)."""
    services = fleet(60)
    source = FakeSource([rolling(f"{c}/{s}") for c, s in services])
    app = DeployWatchApp(settings(services), [source], clock=FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = app.screen.query_one(DeploymentsPane)
        built: list[str] = []
        original = pane.row_text

        def counting(key: str, width: int) -> Text:
            built.append(key)
            return original(key, width)

        pane.row_text = counting  # type: ignore[method-assign]
        pane.tick(T0 + timedelta(seconds=1))  # every card's clock moves
        await pilot.pause()
        assert 0 < len(set(built)) < 10  # the cards in view, not the 60
        assert "svc-000" in screen_text(app) and "svc-059" not in screen_text(app)


async def test_selection_scrolls_into_view_and_a_click_selects() -> None:
    services = fleet(30)
    source = FakeSource([rolling(f"{c}/{s}") for c, s in services])
    app = DeployWatchApp(settings(services), [source], clock=FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        assert screen.selected == "demo/svc-000"
        await pilot.press(*["j"] * 20)
        assert screen.selected == "demo/svc-020"
        _, y = card_line(app, "demo/svc-020")  # scrolled into view, highlighted
        assert background_at(app, "demo/svc-020") != background_at(app, "demo/svc-019")
        pane = screen.query_one(DeploymentsPane)
        x, y = card_line(app, "demo/svc-019")
        await pilot.click(offset=(x, y))  # absolute screen offset: click that card
        assert screen.selected == "demo/svc-019"
        await pilot.press("R")  # the action names the selected service
        await pilot.pause()
        assert "svc-019" in str(app.screen.query_one("#confirm-target").render())
        assert pane.selected == "demo/svc-019"


async def test_a_card_scrolled_into_view_shows_its_stale_age_now() -> None:
    clock = FrozenClock()
    services = fleet(30)
    source = FakeSource([rolling(f"{c}/{s}") for c, s in services])
    app = DeployWatchApp(settings(services), [source], clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        source.push(failure("demo/svc-025", "no answer within 14s", at=clock.now))
        await settle(pilot)
        assert all("svc-025" not in line for line in pane_lines(app))  # off screen
        clock.advance(40)
        # A tick (the top bar's clock moved): off-screen cards are not rebuilt.
        await wait_until(pilot, lambda: app.screen.query_one(TopBar).now == clock.now)
        await pilot.press(*["j"] * 25)
        # On a loaded machine the scroll can land a frame later: wait until the card is
        # on screen, then read it as it was first drawn there.
        await wait_until(pilot, lambda: any("demo/svc-025" in li for li in pane_lines(app)))
        line = next(line for line in pane_lines(app) if "demo/svc-025" in line)
        assert "STALE 40s" in line and "timeout: no answer within 14s" in line
        assert (
            edge_colour(app, "demo/svc-025")
            == Color.parse(app.get_css_variables()["warning-darken-2"]).hex.lower()
        )


async def test_long_state_wraps_and_is_never_cut() -> None:
    reason = "ECS deployment circuit breaker: " + "tasks failed to start, " * 12 + "the end."
    failed = sample(
        "demo/api",
        [deployment("api:8", rollout="FAILED", failed=4, running=0, reason=reason)],
        service_deployments=[service_deployment("STOPPED", source="api:7", target="api:8")],
    )
    services = [("demo", "api"), ("demo", "web")]
    app = DeployWatchApp(settings(services), [FakeSource([failed])], clock=FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        _, first = card_line(app, "ECS deployment circuit breaker")
        _, end = card_line(app, "the end.")
        assert end > first  # wrapped over several lines ...
        region = app.screen.query_one(DeploymentsPane).region
        lines = screen_lines(app)[first : end + 1]
        text = " ".join(line[region.x + 2 : region.right] for line in lines)
        assert " ".join(reason.split()) in " ".join(text.split())  # ... and all there
        # The card's last line follows, then the gap, then the next card: heights are right.
        _, last = card_line(app, "deployment STOPPED")
        _, web = card_line(app, "demo/web")
        assert (last, web) == (end + 1, end + 3)


def logged(log: EventsLog, words: str) -> bool:
    return any(words in strip.text for strip in log.lines)


async def test_task_ids_are_shortened_only_in_a_narrow_events_pane() -> None:
    """At 120x35 (a 77-column events pane) a 32-hex task id would wrap the event onto a
    second line: it is cut to its first 8 (``1facfdec…``) and the event keeps one line;
    a wide pane keeps the id whole."""
    task = "1facfdece8d64628bf3539fbaba6affd"
    said = f"(service web) has stopped 1 running tasks: (task {task})."
    for size, shown in (((120, 35), "(task 1facfdec…)."), (SIZE, f"(task {task}).")):
        source = FakeSource([sample("demo/web", [deployment("web:2")], events=[("e-task", said)])])
        app = DeployWatchApp(settings(), [source], clock=FrozenClock())
        async with app.run_test(size=size) as pilot:
            log = app.screen.query_one(EventsLog)
            await wait_until(pilot, partial(logged, log, "has stopped"))
            lines = [strip.text.rstrip() for strip in log.lines if strip.text.strip()]
            assert len(lines) == 1, (size, lines)
            assert lines[0].endswith(f"web          has stopped 1 running tasks: {shown}")


async def test_events_due_while_a_dialog_is_open_are_logged_when_it_closes() -> None:
    """Events wait for the next batch; a batch that falls due behind a dialog is
    written when the dialog closes (no new data needed)."""
    web, api = mid_deploy_script()
    source = FakeSource([web, api])
    app = DeployWatchApp(settings(), [source], clock=FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)  # the first batch is written
        log = app.screen.query_one(EventsLog)
        source.push(
            sample(
                "demo/web",
                [deployment("web:2", rollout="IN_PROGRESS")],
                events=[("e-late", "(service web) has reached a steady state.")],
            )
        )
        await settle(pilot)  # taken by a flush; its batch is not due yet
        assert not any("steady state" in strip.text for strip in log.lines)
        await pilot.press("question_mark")
        await pilot.pause(EVENTS_EVERY + 0.2)  # the batch falls due behind the dialog
        await pilot.press("escape")
        await settle(pilot)
        assert any("has reached a steady state" in strip.text for strip in log.lines)


async def test_a_finished_rollback_settles_into_a_calm_banner() -> None:
    """After ECS rolled a deployment back the banner says ROLLED BACK with how and when,
    not FAILING for good (issue: the deployer must tell 'act now' from 'it is over')."""
    from sources.model import CircuitBreaker
    from widgets.signals import VerdictBanner

    done = sample(
        "demo/web",
        [deployment("web:1")],
        service_deployments=[
            service_deployment(
                "ROLLBACK_SUCCESSFUL",
                source="web:1",
                target="web:2",
                finished=T0,
                breaker=CircuitBreaker(True, True, "TRIGGERED", 3, 3),
            )
        ],
    )
    app = DeployWatchApp(
        settings(services=(("demo", "web"),)), [FakeSource([done])], clock=FrozenClock()
    )
    async with app.run_test(size=SIZE) as pilot:
        banner = app.screen.query_one(VerdictBanner)
        await wait_until(pilot, lambda: banner.render().plain.startswith(" ROLLED BACK "))
        text = banner.render().plain
        assert "rolled back to web:1 at 02:00:00 by the circuit breaker" in text
        assert "FAILING" not in text
