"""Screens as pictures. Review changes with ``pytest --snapshot-update`` and look at them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.fakes import FakeSource, FrozenClock, failure, mid_deploy_script, settings
from tui.app import DeployWatchApp

if TYPE_CHECKING:
    from collections.abc import Callable

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


async def _settle(pilot: Pilot[None]) -> None:
    await pilot.pause(0.2)
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
        await pilot.pause(1.1)

    assert snap_compare(app, terminal_size=(200, 50), run_before=judged)
