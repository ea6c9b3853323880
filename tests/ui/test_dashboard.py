"""The dashboard as a person sees it, driven by a scripted source through Pilot."""

from __future__ import annotations

from datetime import timedelta

from textual.pilot import Pilot

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
)
from tui.app import DeployWatchApp
from tui.screens.help import HelpScreen
from widgets.deployments import ServiceCard
from widgets.events import EventsLog
from widgets.topbar import TopBar

SIZE = (200, 50)


def card_text(app: DeployWatchApp, key: str) -> str:
    card = next(c for c in app.screen.query(ServiceCard) if c.key == key)
    return card.render().plain


async def settle(pilot: Pilot[None]) -> None:
    """Let the coalesced flush run (it waits FLUSH_DELAY)."""
    await pilot.pause(0.15)
    await pilot.pause()


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
        api_card = next(c for c in app.screen.query(ServiceCard) if c.key == "demo/api")
        assert api_card.has_class("-tone-warn")

        # The rollback finishes: the same card updates in place.
        before = list(app.screen.query(ServiceCard))
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
        assert list(app.screen.query(ServiceCard)) == before
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
        await pilot.pause(1.1)  # the 1 s tick ages it
        assert "STALE 35s" in card_text(app, "demo/web")
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
        card = next(c for c in app.screen.query(ServiceCard) if c.key == "demo/web")
        updates = 0
        original = card.update_state

        def counting(*args: object, **kwargs: object) -> None:
            nonlocal updates
            updates += 1
            original(*args, **kwargs)  # type: ignore[arg-type]

        card.update_state = counting  # type: ignore[method-assign]
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
        assert isinstance(app.focused, ServiceCard) and app.focused.key == "demo/web"
        await pilot.press("j")
        assert isinstance(app.focused, ServiceCard) and app.focused.key == "demo/api"
        await pilot.press("k")
        assert isinstance(app.focused, ServiceCard) and app.focused.key == "demo/web"
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
        await settle(pilot)
        await pilot.pause(1.1)  # the 1 s judgement tick
        banner = app.screen.query_one(VerdictBanner).render().plain
        assert banner.startswith(" FAILING ")
        assert "error rate [version:v2] 14.8% > 5% for 1m" in banner
        assert "availability 95% < 99.5% for 30s · 4 samples" in banner  # 50 s below target
        metrics = app.screen.query_one(MetricsPane)
        rows = {row.view.name: row.render().plain for row in metrics.rows.values()}
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
        probes = app.screen.query_one(ProbesPane).render().plain
        assert "95.0%" in probes and "last failure 01:58:50: expected 200, got 503" in probes
