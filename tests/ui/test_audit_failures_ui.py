"""An audit log that cannot be written, on every path an operator can take from the
dashboard: the action is refused or the decision holds, the screen says the log could
not be written, nothing is sent, and the dashboard keeps running.

The engine-level rules are in ``tests/unit/test_audit.py``; these are the same failures
as the operator meets them (issue 11, defect 3: an ``AuditError`` while recording a
refusal, a cancellation or a read-only automatic action's refusal killed the dashboard).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.fakes import FrozenClock, settle, wait_until
from tests.ui.test_actions_ui import SIZE, auto_script, bar, make_app
from tui.app import DeployWatchApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.dashboard import DashboardScreen

if TYPE_CHECKING:
    from pathlib import Path

UNWRITABLE = "cannot write the audit log"


@pytest.fixture
def broken_log(tmp_path: Path) -> Path:
    """An audit log path whose folder is a file: every write fails (as a full disk or a
    permission would), from the first entry on. Made before any loop runs."""
    (tmp_path / "blocked").write_text("a file where the log's folder should be")
    return tmp_path / "blocked" / "audit.jsonl"


def toasts(app: DeployWatchApp) -> list[tuple[str, str]]:
    """``(title, message)`` of every notification so far."""
    return [(n.title, n.message) for n in app._notifications]


def still_running(app: DeployWatchApp) -> bool:
    return app.is_running and app.return_code is None and isinstance(app.screen, DashboardScreen)


async def test_a_confirmed_rollback_is_refused_on_screen_and_not_sent(broken_log: Path) -> None:
    app, rec = make_app(broken_log.parent, audit=broken_log)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(pilot, lambda: "rollback REFUSED" in bar(app))
        await app.controller.settle()
        assert "not sent: the audit log could not be written" in bar(app), bar(app)
        assert rec.calls == []
        assert still_running(app)


async def test_a_declined_confirmation_that_cannot_be_audited_says_so(broken_log: Path) -> None:
    app, rec = make_app(broken_log.parent, audit=broken_log)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("R", "escape")
        await wait_until(pilot, lambda: any(t == "Audit log" for t, _ in toasts(app)))
        await app.controller.settle()
        assert any(t == "Audit log" and UNWRITABLE in m for t, m in toasts(app)), toasts(app)
        assert rec.calls == []
        assert still_running(app)


async def test_a_read_only_refusal_that_cannot_be_audited_says_so(broken_log: Path) -> None:
    app, rec = make_app(broken_log.parent, audit=broken_log, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("R")
        await wait_until(pilot, lambda: "rollback REFUSED" in bar(app))
        await app.controller.settle()
        assert "read-only" in bar(app) and "audit log could not be written" in bar(app)
        assert rec.calls == []
        assert still_running(app)


async def test_an_automatic_rollback_refused_in_read_only_with_a_broken_log(
    broken_log: Path,
) -> None:
    clock = FrozenClock()
    app, rec = make_app(
        broken_log.parent,
        audit=broken_log,
        read_only=True,
        signals=True,
        script=auto_script(),
        clock=clock,
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "AUTO ROLLBACK in 10s" in bar(app))
        clock.advance(10)
        await wait_until(pilot, lambda: "auto rollback REFUSED" in bar(app))
        await app.controller.settle()
        assert "read-only" in bar(app) and "audit log could not be written" in bar(app)
        assert rec.calls == []
        assert still_running(app)


async def test_a_cancelled_countdown_that_cannot_be_audited_still_holds(
    broken_log: Path,
) -> None:
    clock = FrozenClock()
    app, rec = make_app(
        broken_log.parent, audit=broken_log, signals=True, script=auto_script(), clock=clock
    )
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: "AUTO ROLLBACK in 10s" in bar(app))
        await pilot.press("c")
        await wait_until(pilot, lambda: any(t == "Audit log" for t, _ in toasts(app)))
        assert any(t == "Audit log" and UNWRITABLE in m for t, m in toasts(app)), toasts(app)
        assert "AUTO ROLLBACK" not in bar(app)
        # The cancellation holds although it could not be written: nothing fires later.
        judged = app.controller.snapshot.judgements
        clock.advance(30)
        await wait_until(pilot, lambda: app.controller.snapshot.judgements > judged)
        await app.controller.settle()
        assert rec.calls == []
        assert still_running(app)
