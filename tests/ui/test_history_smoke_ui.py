"""The history screen (``h``) and the smoke tests (``t``) in the app, driven with Pilot:
a scripted history feed, a real smoke command, a frozen clock."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.audit import AuditLog
from engine.config import parse_config
from sources.history import HistoryEntry, HistorySample
from sources.model import SourceFailure
from tests.fakes import T0, FakeSource, FrozenClock, mid_deploy_script, wait_until
from tui.app import DeployWatchApp
from tui.screens.history import HistoryScreen
from tui.screens.smoke import SmokeScreen
from widgets.actionbar import ActionBar

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from textual.pilot import Pilot


def entry(
    service: str, status: str, minutes_ago: float, took: float | None, **kw: Any
) -> HistoryEntry:
    begun = T0 - timedelta(minutes=minutes_ago)
    family = service.rsplit("/", 1)[-1]
    return HistoryEntry(
        service=service,
        id=f"arn:{service}:{minutes_ago}",
        kind=kw.pop("kind", "ROLLING"),
        status=status,
        from_revision=f"{family}:{kw.pop('old', 1)}",
        to_revision=f"{family}:{kw.pop('new', 2)}",
        created_at=begun,
        started_at=begun,
        finished_at=begun + timedelta(seconds=took) if took is not None else None,
        **kw,
    )


HISTORY = HistorySample(
    T0 - timedelta(seconds=5),
    {
        "demo/web": (
            entry("demo/web", "IN_PROGRESS", 0.4, None, old=1, new=2),
            entry("demo/web", "SUCCESSFUL", 60 * 24, 312, old=7, new=1),
            entry("demo/web", "ROLLBACK_SUCCESSFUL", 60 * 26, 401, old=6, new=7),
            entry("demo/web", "SUCCESSFUL", 60 * 48, 1260, old=5, new=6, kind="BLUE_GREEN"),
        ),
        "demo/api": (
            entry(
                "demo/api",
                "ROLLBACK_SUCCESSFUL",
                0.2,
                70,
                old=7,
                new=8,
                breaker_triggered=True,
                rollback_started=T0 - timedelta(seconds=5),
            ),
            entry("demo/api", "SUCCESSFUL", 60 * 30, 145, old=6, new=7),
            entry("demo/api", "STOPPED", 60 * 31, 90, old=6, new=7),
        ),
    },
)


class Feed:
    """A scripted history source: these items, then silence."""

    def __init__(self, items: list[HistorySample | SourceFailure]) -> None:
        self.items = list(items)
        self.more = asyncio.Event()

    async def stream(self) -> AsyncIterator[HistorySample | SourceFailure]:
        while True:
            while self.items:
                yield self.items.pop(0)
            self.more.clear()
            await self.more.wait()

    def push(self, item: HistorySample | SourceFailure) -> None:
        self.items.append(item)
        self.more.set()


def audit_with_an_operator_rollback(path: Path) -> None:
    log = AuditLog(path)
    at = T0 - timedelta(minutes=60 * 26) + timedelta(seconds=90)
    log.write(
        {
            "time": at.isoformat(),
            "phase": "intent",
            "id": "r1",
            "operator": "alice",
            "action": "rollback",
            "automatic": False,
            "target": {"cluster": "demo", "service": "web"},
        }
    )
    log.write({"time": at.isoformat(), "phase": "result", "id": "r1", "ok": True})


def history_app(tmp_path: Path, feed: Feed) -> DeployWatchApp:
    """The app, its history feed scripted (the audit log written before, off the loop)."""
    audit = tmp_path / "audit.jsonl"
    app = DeployWatchApp(
        parse_config(
            {
                "environment": {"name": "sandbox-demo"},
                "aws": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
                "service": [
                    {"cluster": "demo", "service": "web"},
                    {"cluster": "demo", "service": "api"},
                ],
            },
            Path("test.toml"),
        ),
        [FakeSource(mid_deploy_script())],
        clock=FrozenClock(),
        audit_path=audit,
    )
    app.dashboard.history_feed = lambda: feed
    return app


def screen_text(app: DeployWatchApp) -> str:
    screen = app.screen
    assert isinstance(screen, HistoryScreen)
    return "\n".join(
        str(screen.query_one(f"#history-{part}").render()) for part in ("head", "figures", "table")
    )


async def test_h_shows_history_and_figures_then_stale_above_the_last_good(
    tmp_path: Path,
) -> None:
    feed = Feed([HISTORY])
    await asyncio.to_thread(audit_with_an_operator_rollback, tmp_path / "audit.jsonl")
    app = history_app(tmp_path, feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("h")
        await wait_until(pilot, lambda: "fetched" in screen_text(app))
        text = screen_text(app)
        assert "7 deployments of 2 services · fetched 01:59:55 UTC" in text
        # 6 finished: 3 completed, 2 rolled back, 1 stopped.
        assert "✗ success 50% (> 95%)   ✗ rollback 33.3% (< 10%)" in text
        assert "✓ MTTR" in text
        lines = text.splitlines()
        web_rollback = next(line for line in lines if "web:6 → web:7" in line)
        assert "↩ by operator" in web_rollback and "alice rollback" in web_rollback
        api = next(line for line in lines if "api:7 → api:8" in line)
        assert "↩ by breaker" in api
        # Readable at 80x24: no table line wider than the screen.
        assert max(len(line) for line in lines) <= 78, max(lines, key=len)
        feed.push(SourceFailure("history", None, "no answer within 60s", "timeout", T0))
        await wait_until(pilot, lambda: "STALE" in screen_text(app))
        text = screen_text(app)
        assert "STALE 5s  timeout: no answer within 60s" in text
        assert "alice rollback" in text  # the last good history stays
        await pilot.press("h")
        await wait_until(pilot, lambda: not isinstance(app.screen, HistoryScreen))


def smoke_app(tmp_path: Path, code: str) -> DeployWatchApp:
    report = tmp_path / "smoke.xml"
    writer = (
        "import pathlib, sys;"
        f"pathlib.Path({str(report)!r}).write_text({JUNIT!r});"
        "print('ran', flush=True); sys.exit(1)"
    )
    return DeployWatchApp(
        parse_config(
            {
                "aws": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
                "service": [{"cluster": "demo", "service": "web"}],
                "smoke": [
                    {
                        "name": "checkout",
                        "command": [sys.executable, "-c", code or writer],
                        "junit": str(report),
                        "on": ["key"],
                    }
                ],
                "rule": [
                    {
                        "name": "smoke checkout",
                        "subject": "smoke:checkout",
                        "op": ">=",
                        "threshold": 1,
                        "for": "0s",
                        "no_data": "ok",
                    }
                ],
            },
            tmp_path / "c.toml",
        ),
        [FakeSource(mid_deploy_script()[:1])],
        clock=FrozenClock(),
        audit_path=tmp_path / "audit.jsonl",
    )


JUNIT = (
    '<testsuite name="smoke"><testcase name="test_health"/>'
    '<testcase name="test_checkout"><failure message="checkout 1/20 answered 500 '
    'PaymentGatewayError&#10;assert 500 == 200"/></testcase>'
    '<testcase name="test_cart"><skipped message="cart off"/></testcase></testsuite>'
)


async def test_t_runs_the_suite_live_then_shows_each_case_and_fails_the_verdict(
    tmp_path: Path,
) -> None:
    app = smoke_app(tmp_path, "")
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, SmokeScreen))

        def body() -> str:
            return str(app.screen.query_one("#smoke-text").render())

        await wait_until(pilot, lambda: "FAILED" in body(), timeout=30)
        text = body()
        assert "checkout  FAILED" in text
        assert "✓ pass  test_health" in text
        assert "✗ FAIL  test_checkout: checkout 1/20 answered 500 PaymentGatewayError" in text
        assert "- skip  test_cart: cart off" in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is app.dashboard)
        await wait_until(pilot, lambda: "SMOKE" in app.screen.query_one(ActionBar).render().plain)
        line = app.screen.query_one(ActionBar).render().plain
        assert "checkout: FAILED" in line and "t shows each case" in line
        await wait_until(pilot, lambda: app.controller.snapshot.verdict.value == "FAILING")


async def test_a_hung_suite_shows_running_then_is_killed_at_its_timeout(tmp_path: Path) -> None:
    app = smoke_app(tmp_path, "import time; time.sleep(600)")
    app.settings.smoke[0].__dict__["timeout"] = timedelta(seconds=1)  # frozen model
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, SmokeScreen))

        def body() -> str:
            return str(app.screen.query_one("#smoke-text").render())

        await wait_until(pilot, lambda: "RUNNING" in body())
        await wait_until(pilot, lambda: "TIMED OUT" in body(), timeout=30)
        assert "killed at its timeout of 1s (still running)" in body()


def test_history_screen_snapshot(snap_compare: Callable[..., bool], tmp_path: Path) -> None:
    """You should see "Deployment history · 7 deployments of 2 services · fetched
    01:59:55 UTC"; two lines of figures — success 50% and rollback 33.3% in red with ✗,
    deploy median 5m12s, deploy p90 and MTTR in green with ✓; then a table with started,
    service, from → to, took, outcome and who: web's rollback "rolled back: operator" by
    "alice rollback", api's "rolled back: breaker", a STOPPED api deployment, the in-flight
    web:1 → web:2 "in progress"; the footer "escape / q / h closes · j/k scroll"."""

    async def open_history(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, DeployWatchApp)
        await pilot.press("h")
        await wait_until(pilot, lambda: "fetched" in screen_text(app))
        await pilot.pause()

    audit_with_an_operator_rollback(tmp_path / "audit.jsonl")
    app = history_app(tmp_path, Feed([HISTORY]))
    assert snap_compare(app, terminal_size=(120, 35), run_before=open_history)
