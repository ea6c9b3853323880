"""Screens as pictures. Review changes with ``pytest --snapshot-update`` and look at them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.fakes import FakeSource, FrozenClock, failure, mid_deploy_script, settings, wait_until
from tui.app import DeployWatchApp
from widgets.actionbar import ActionBar
from widgets.rowlist import RowList
from widgets.signals import VerdictBanner

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from textual.pilot import Pilot


def _app(*, production: bool = False, stale: bool = False) -> DeployWatchApp:
    script = mid_deploy_script()
    if stale:
        script.append(failure("demo/web", "no answer within 14s"))
    return DeployWatchApp(
        settings(name="prod-eu" if production else "sandbox-demo", production=production),
        [FakeSource(script)],
        clock=FrozenClock(),
    )


def _judged_and_shown(app: DeployWatchApp) -> bool:
    """The watch has judged everything the store holds, and the screen shows it."""
    controller = app.controller
    snapshot = controller.snapshot
    store = controller.store
    return (
        snapshot.signal_version == store.signal_version
        and all(snapshot.statuses.get(k) is s.status for k, s in store.services.items())
        and app.dashboard._shown_judgement == snapshot.version
    )


async def _settle(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, DeployWatchApp)
    # Every scripted item is in the store (a fixed pause was not enough under load)...
    scripted = [s for s in app.sources if isinstance(s, FakeSource)]
    await wait_until(pilot, lambda: all(s.drained for s in scripted))
    # ...and judged and shown.
    await wait_until(pilot, lambda: _judged_and_shown(app))
    await pilot.pause()


def test_dashboard_mid_deploy(snap_compare: Callable[..., bool]) -> None:
    """You should see two service cards: web IN_PROGRESS (web:2 at 2/4 with 1 pending,
    web:1 ACTIVE 2/4), api ROLLBACK_IN_PROGRESS with its FAILED api:8 deployment, the
    breaker TRIGGERED 3/3 and the reason in full; four event lines; placeholder metrics,
    errors and probes panes; the clock at 02:00:00 UTC; q / ? in the footer."""
    assert snap_compare(_app(), terminal_size=(200, 50), run_before=_settle)


def test_dashboard_production_stale(snap_compare: Callable[..., bool]) -> None:
    """You should see the environment badge "prod-eu · PRODUCTION" in the error colour
    and the web card marked STALE 0s with "timeout: no answer within 14s", its last good
    data still shown."""
    assert snap_compare(
        _app(production=True, stale=True), terminal_size=(200, 50), run_before=_settle
    )


def test_help_screen(snap_compare: Callable[..., bool]) -> None:
    """You should see the help modal over the dashboard listing q (Quit) and ? (Help)
    with their details, and the note on what STALE means."""

    async def open_help(pilot: Pilot[None]) -> None:
        await _settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=(200, 50), run_before=open_help)


def test_dashboard_bad_release_signals(snap_compare: Callable[..., bool]) -> None:
    """You should see the FAILING banner naming "error rate [version:v2] 14.8% > 5% for
    1m" with its sample count and start, then availability and new issues; the metrics
    pane with error_rate CRITICAL, v1 flat and low, v2's breaching half in the error
    colour; p95_ms OK; Sentry's CheckoutFailedError with 131 events; the web probe at
    95% with its last failure in words."""
    from tests.fakes import bad_release_signals

    app = DeployWatchApp(
        settings(signals=True),
        [FakeSource([*mid_deploy_script(), *bad_release_signals()])],
        clock=FrozenClock(),
    )

    async def judged(pilot: Pilot[None]) -> None:
        await _settle(pilot)
        await wait_until(
            pilot,
            lambda: app.screen.query_one(VerdictBanner).render().plain.startswith(" FAILING "),
        )

    assert snap_compare(app, terminal_size=(200, 50), run_before=judged)


def test_confirm_rollback_in_production(snap_compare: Callable[..., bool]) -> None:
    """You should see, over the dashboard, a modal titled "Roll back web" in the error
    colour naming action, environment "prod-eu  PRODUCTION", cluster demo, service web,
    revision "web:2 → web:1", kind ECS rolling, what it does and the API call
    (ecs:StopServiceDeployment stopType=ROLLBACK), and a field asking to type "web"."""

    async def open_confirm(pilot: Pilot[None]) -> None:
        await _settle(pilot)
        await pilot.press("R")
        await pilot.pause()

    assert snap_compare(_app(production=True), terminal_size=(200, 50), run_before=open_confirm)


def test_dashboard_auto_rollback_countdown(snap_compare: Callable[..., bool]) -> None:
    """You should see the FAILING banner and, under it, the action bar: "AUTO ROLLBACK
    in 10s" for web with the rollback rule's evidence (14.8% > 10% for 2m) and "press c
    to cancel"."""
    from tests.fakes import bad_release_signals

    app = DeployWatchApp(
        settings(signals=True),
        [FakeSource([*mid_deploy_script(), *bad_release_signals(minutes=6)])],
        clock=FrozenClock(),
        executor=lambda call: {},
    )

    async def judged(pilot: Pilot[None]) -> None:
        await _settle(pilot)
        await wait_until(
            pilot,
            lambda: app.screen.query_one(VerdictBanner).render().plain.startswith(" FAILING "),
        )

    assert snap_compare(app, terminal_size=(200, 50), run_before=judged)


def _state_app(state: str) -> DeployWatchApp:
    """The dashboard with signals in one of three states: ``healthy`` (web's rollout
    done, every rule OK), ``failing`` (a bad release: FAILING, the rollback rule counting
    down) or ``rolled-back`` (ECS's circuit breaker rolled web back to web:1)."""
    from tests.fakes import (
        bad_release_signals,
        healthy_script,
        healthy_signals,
        rolled_back_script,
    )

    script = {
        "healthy": [*healthy_script(), *healthy_signals()],
        "failing": [*mid_deploy_script(), *bad_release_signals(minutes=6)],
        "rolled-back": [*rolled_back_script(), *healthy_signals()],
    }[state]
    return DeployWatchApp(
        settings(signals=True),
        [FakeSource(script)],
        clock=FrozenClock(),
        executor=lambda call: {},
    )


def _judged(app: DeployWatchApp, word: str) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run_before(pilot: Pilot[None]) -> None:
        await _settle(pilot)

        def final() -> bool:
            banner = app.screen.query_one(VerdictBanner).render().plain
            bar = app.screen.query_one(ActionBar).render().plain
            countdown = word != "FAILING" or "AUTO ROLLBACK" in bar
            return banner.startswith(f" {word} ") and countdown and _judged_and_shown(app)

        await wait_until(pilot, final)
        await pilot.pause()
        # Lay the screen out afresh for what it now holds: a pane whose content grew
        # while it was being laid out can otherwise keep a scrollbar from that moment.
        width, height = app.size
        await pilot.resize_terminal(width + 1, height)
        await pilot.pause()
        await pilot.resize_terminal(width, height)
        await pilot.pause()
        # Rows below a pane's view are measured lazily (when it scrolls): measure them
        # now, so the scrollbars do not depend on when the data came in; then wait
        # until two frames in a row are the same (bounded), so the picture is the
        # settled screen and not a moment of a relayout.
        before = ""
        for _ in range(20):
            for rows in app.screen.query(RowList):
                rows._settle()
            await pilot.pause()
            await pilot.pause()
            frame = app.export_screenshot()
            if frame == before:
                break
            before = frame

    return run_before


def test_small_healthy(snap_compare: Callable[..., bool]) -> None:
    """80x24, compact: You should see the top bar without "deploywatch", "2 svc · 1 DONE ·
    1 STEADY"; a one-line HEALTHY banner ending "e evidence"; web COMPLETED (selected: ▶
    and its name in reverse) above api STEADY, with short bars and no images; a 4-line
    events pane; the footer starting "q Quit ? Help"."""
    app = _state_app("healthy")
    assert snap_compare(app, terminal_size=(80, 24), run_before=_judged(app, "HEALTHY"))


def test_small_failing_with_countdown(snap_compare: Callable[..., bool]) -> None:
    """80x24, compact: You should see a one-line FAILING banner, the error-rate evidence cut
    with "…" and "+4 · e evidence"; one line "AUTO ROLLBACK in 10s web · …"; the web card
    first and selected (▶), then the api card ROLLBACK_IN_PROGRESS; the footer starting
    "q Quit ? Help R Roll back c Cancel auto e Evidence"."""
    app = _state_app("failing")
    assert snap_compare(app, terminal_size=(80, 24), run_before=_judged(app, "FAILING"))


def test_small_rolled_back(snap_compare: Callable[..., bool]) -> None:
    """80x24, compact: You should see "2 svc · 1 ROLLED BACK · 1 STEADY", a one-line ROLLED
    BACK banner ("ECS demo/web: rolled back to web:1 at 01:59:40 by …  e evidence"); the
    web card ROLLBACK_SUCCESSFUL (web:2 → back to web:1, breaker TRIGGERED 3/3, the
    reason in full) selected above api STEADY."""
    app = _state_app("rolled-back")
    assert snap_compare(app, terminal_size=(80, 24), run_before=_judged(app, "ROLLED BACK"))


def test_medium_healthy(snap_compare: Callable[..., bool]) -> None:
    """120x35, full layout: You should see "deploywatch", "2 services · 1 COMPLETED · 1
    STEADY", the HEALTHY banner "every rule has fresh data and is OK", web COMPLETED (▶)
    and api STEADY with 20-cell bars and images, metrics all OK, 0 new issues, the probe
    at 100%; every key in the footer, q and ? first."""
    app = _state_app("healthy")
    assert snap_compare(app, terminal_size=(120, 35), run_before=_judged(app, "HEALTHY"))


def test_medium_failing_with_countdown(snap_compare: Callable[..., bool]) -> None:
    """120x35, full layout: You should see the FAILING banner with four reasons and "and 1
    more (see the panes)", the action bar "AUTO ROLLBACK in 10s" with its evidence and
    "press c to cancel", web (▶) IN_PROGRESS above api ROLLBACK_IN_PROGRESS, error_rate
    CRITICAL with v2's breaching half in the error colour, CheckoutFailedError, the probe
    at 95%."""
    app = _state_app("failing")
    assert snap_compare(app, terminal_size=(120, 35), run_before=_judged(app, "FAILING"))


def test_medium_rolled_back(snap_compare: Callable[..., bool]) -> None:
    """120x35, full layout: You should see the ROLLED BACK banner in its calm colour
    ("ECS demo/web: rolled back to web:1 at 01:59:40 by the circuit breaker …"), web
    ROLLBACK_SUCCESSFUL (▶) with the breaker TRIGGERED 3/3 and its reason, api STEADY,
    metrics OK."""
    app = _state_app("rolled-back")
    assert snap_compare(app, terminal_size=(120, 35), run_before=_judged(app, "ROLLED BACK"))
