"""Outside text on screen: shown as text, never obeyed, never fatal; and a confirmation
that cannot be misread (exact name, never from a dialog cut by a small terminal).

Every value here reaches the app the way it does in production: ECS samples, Datadog
and Sentry answers, probe rounds and the config, through the scripted source. The
assertions read the screen as drawn (the compositor's lines).
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from textual.command import CommandPalette
from textual.widgets import Input

from engine.config import Settings, parse_config
from sources.model import (
    MetricPoint,
    MetricSample,
    ProbeSample,
    SentryIssue,
    SentrySample,
    SourceFailure,
)
from tests.fakes import (
    SIGNALS,
    T0,
    FakeSource,
    FrozenClock,
    deployment,
    sample,
    service_deployment,
    settle,
)
from tests.ui.test_panes import flowing, pane_lines, pane_text, screen_lines, wait_for
from tests.unit.test_text import outside, terminal_unsafe
from tui.app import DeployWatchApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.toosmall import MIN_HEIGHT, MIN_WIDTH, TooSmallScreen
from widgets.actionbar import ActionBar

if TYPE_CHECKING:
    from collections.abc import Mapping

    from engine.actions import ApiCall
    from sources.model import Item

SIZE = (200, 50)
ESCAPES = "invalid coupon code: \x1b[2J\x1b]2;PWNED\x1b\\"
SHOWN = "invalid coupon code: ␛[2J␛]2;PWNED␛\\"
AWS_ERROR = (
    "An error occurred (ClientException) when calling the StopServiceDeployment "
    "operation: Log group [/ecs/web] does not exist; check [taskDefinition]"
)


class Recorder:
    """Stands in for AWS: records each call; raises ``error`` when given one."""

    def __init__(self, error: str | None = None) -> None:
        self.calls: list[ApiCall] = []
        self.error = error

    def __call__(self, call: ApiCall) -> Mapping[str, Any]:
        self.calls.append(call)
        if self.error is not None:
            raise RuntimeError(self.error)
        return {"serviceDeploymentArn": call.params.get("serviceDeploymentArn")}


def config(*, env: str = "staging", label: str | None = None, production: bool = False) -> Settings:
    data: dict[str, object] = {
        "environment": {"name": env, "production": production},
        "aws": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
        "service": [{"cluster": "demo", "service": "web", "label": label}],
        **SIGNALS,
    }
    return parse_config(data, Path("test.toml"))


def hostile_script(text: str) -> list[Item]:
    """``text`` in every place outside words reach the screen: an ECS image, rollout
    reason and event; a Datadog group tag and error; a Sentry title, culprit, release
    and error detail; a probe's failure."""
    rolling = dataclasses.replace(
        deployment("web:2", running=2, pending=1, rollout="IN_PROGRESS", updated=T0),
        images=(f"registry.local/web:{text}",),
    )
    failed = dataclasses.replace(
        deployment("web:1", status="ACTIVE", running=0, failed=2, rollout="FAILED"),
        rollout_reason=f"tasks failed: {text}",
    )
    ecs = sample(
        "demo/web",
        [rolling, failed],
        service_deployments=[service_deployment("IN_PROGRESS", source="web:1", target="web:2")],
        events=[("e1", f"(service web) has started 1 tasks: {text}")],
    )
    points = tuple(MetricPoint(T0 - timedelta(seconds=10 * (5 - i)), 0.5) for i in range(6))
    issue = SentryIssue(
        id="1",
        short_id="WEB-1",
        title=f"CheckoutError: {text}",
        culprit=text,
        level="error",
        count=3,
        user_count=1,
        first_seen=T0,
        last_seen=T0,
        first_release=f"v2{text}",
    )
    return [
        ecs,
        MetricSample("error_rate", "demo/web", f"version:{text}", points, "%", T0),
        SentrySample("demo/web", T0, T0 - timedelta(minutes=3), (issue,), text, (issue,), points),
        ProbeSample(
            "web", "demo/web", "http://127.0.0.1:9/health", T0, False, 503, 20.0,
            text, 0.5, 20, T0, f"expected 200, got 503: {text}",
        ),
        SourceFailure(source="datadog", key=None, error=f"errors[]: {text}", reason="http 400", at=T0),
        SourceFailure(source="sentry", key=None, error=f"detail: {text}", reason="http 400", at=T0),
    ]  # fmt: skip


def screen_text(app: DeployWatchApp) -> str:
    return "\n".join(screen_lines(app))


def toasts(app: DeployWatchApp) -> list[str]:
    """The text of the notifications on screen."""
    return [str(toast.render()) for toast in app.screen.query("Toast")]


def words(text: str) -> str:
    """Text as words, wraps and card edges aside (a wrap is not a cut)."""
    return " ".join(text.replace("▎", " ").split())


def unsafe_on_screen(app: DeployWatchApp) -> list[str]:
    """Characters drawn on screen that a terminal would obey rather than show."""
    return [c for line in screen_lines(app) for c in terminal_unsafe(line)]


# ------------------------------------------------------------------- the reported defects


async def test_escapes_from_every_source_are_shown_never_sent() -> None:
    app = DeployWatchApp(config(), [FakeSource(hostile_script(ESCAPES))], clock=FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        # Nine places: image, rollout reason, event, Datadog error, Sentry detail,
        # release, title, first release, probe failure (the tag's column is cut).
        await wait_for(pilot, lambda: screen_text(app).count("PWNED␛\\") >= 9)
        assert unsafe_on_screen(app) == []
        assert screen_text(app).count("PWNED␛\\") == 9
        for pane, where in (
            ("#deployments-pane", "registry.local/web:"),
            ("#deployments-pane", "tasks failed: "),
            ("#events-pane", "has started 1 tasks: "),
            ("#metrics-pane", "http 400: errors[]: "),
            ("#errors-pane", "http 400: detail: "),
            ("#errors-pane", "CheckoutError: "),
            ("#probes-pane", "got 503: "),
        ):
            assert words(where + SHOWN) in words(flowing(pane_lines(app, pane))), (pane, where)


async def test_a_bidi_override_is_named_not_obeyed() -> None:
    app = DeployWatchApp(
        config(), [FakeSource(hostile_script("evil\u202egnp.exe"))], clock=FrozenClock()
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_text(app).count("evil<U+202E>gnp.exe") >= 9)
        assert screen_text(app).count("evil<U+202E>gnp.exe") >= 9
        assert unsafe_on_screen(app) == []


async def test_a_huge_issue_title_does_not_push_the_others_out() -> None:
    points = (MetricPoint(T0, 1.0),)

    def issue(n: int, title: str) -> SentryIssue:
        return SentryIssue(
            str(n), f"WEB-{n}", title, "x", "error", 1, 1, T0, T0, "v2"
        )  # fmt: skip

    issues = (issue(1, "BigError: " + "x" * 5000), issue(2, "SecondError: still here"))
    sentry = SentrySample("demo/web", T0, T0 - timedelta(minutes=3), issues, "v2", issues, points)
    app = DeployWatchApp(config(), [FakeSource([sentry])], clock=FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "SecondError" in pane_text(app, "#errors-pane"))
        errors = pane_text(app, "#errors-pane")
        assert "SecondError: still here" in errors
        assert "BigError:" in errors and "x…" in errors  # cut, visibly


async def test_a_failed_rollback_with_brackets_in_the_aws_error_is_shown_literally(
    tmp_path: Path,
) -> None:
    rec = Recorder(error=AWS_ERROR)
    app = DeployWatchApp(
        config(),
        [FakeSource(hostile_script("ok"))],
        clock=FrozenClock(),
        executor=rec,
        audit_path=tmp_path / "audit.jsonl",
    )
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        bar = app.screen.query_one(ActionBar)
        await wait_for(pilot, lambda: "FAILED" in bar.render().plain)
        assert rec.calls, "the rollback was sent"
        assert "Log group [/ecs/web] does not exist; check [taskDefinition]" in bar.render().plain
        # The toast says it too, brackets and all (as markup it raised MarkupError).
        await wait_for(pilot, lambda: any("[taskDefinition]" in t for t in toasts(app)))
        assert any(
            "rollback of web: failed" in t and "Log group [/ecs/web] does not exist" in t
            for t in toasts(app)
        ), toasts(app)
        assert app.is_running and app.return_code is None
        assert isinstance(app.screen, DashboardScreen)


@pytest.mark.parametrize(
    ("env", "label"), [("x [/] y", "w[/]"), ("[bold red]prod[/]", "[@click=app.quit]web")]
)
async def test_markup_in_names_is_text_in_the_top_bar_dialog_and_palette(
    tmp_path: Path, env: str, label: str
) -> None:
    app = DeployWatchApp(
        config(env=env, label=label),
        [FakeSource(hostile_script("ok"))],
        clock=FrozenClock(),
        executor=Recorder(),
        audit_path=tmp_path / "audit.jsonl",
    )
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert env in screen_lines(app)[0]  # the top bar, literally
        assert label in screen_text(app)  # the card
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.pause()
        assert f"Roll back {label}" in screen_text(app)  # the dialog's title
        assert f"to roll back {label};" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"roll")
        await wait_for(pilot, lambda: f"Roll back {label} (" in screen_text(app))
        assert f"Roll back {label} (web:2 → web:1)" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running and app.return_code is None


async def test_production_confirmation_needs_the_exact_name(tmp_path: Path) -> None:
    rec = Recorder()
    app = DeployWatchApp(
        config(env="prod-eu", production=True),
        [FakeSource(hostile_script("ok"))],
        clock=FrozenClock(),
        executor=rec,
        audit_path=tmp_path / "audit.jsonl",
    )
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        for near_miss in ("web ", " web", "Web", "web\t"):
            app.screen.query_one("#confirm-input", Input).value = near_miss
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen) and rec.calls == [], near_miss
            assert "is not" in str(app.screen.query_one("#confirm-help").render())
        app.screen.query_one("#confirm-input", Input).value = "web"
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(rec.calls))
        assert [c.operation for c in rec.calls] == ["stop_service_deployment"]


# ------------------------------------------------------------------- small terminals


async def test_below_the_minimum_size_the_dashboard_says_so() -> None:
    app = DeployWatchApp(config(), [FakeSource(hostile_script("ok"))], clock=FrozenClock())
    async with app.run_test(size=(40, 12)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, TooSmallScreen)
        assert f"terminal too small (need {MIN_WIDTH}x{MIN_HEIGHT})" in screen_text(app)
        await pilot.resize_terminal(MIN_WIDTH, MIN_HEIGHT)
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        assert isinstance(app.screen, DashboardScreen)
        await settle(pilot)
        # At the minimum, the deployments pane has room for its first card.
        assert app.screen.query_one("#deployments").region.height >= 3
        assert "web" in screen_text(app)
        await pilot.resize_terminal(40, 12)
        await wait_for(pilot, lambda: isinstance(app.screen, TooSmallScreen))
        assert isinstance(app.screen, TooSmallScreen)


async def test_a_dialog_cut_by_a_small_terminal_refuses_to_confirm(tmp_path: Path) -> None:
    rec = Recorder()
    app = DeployWatchApp(
        config(),
        [FakeSource(hostile_script("ok"))],
        clock=FrozenClock(),
        executor=rec,
        audit_path=tmp_path / "audit.jsonl",
    )
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.resize_terminal(40, 12)
        await settle(pilot)
        await pilot.press("y")
        await pilot.pause(0.3)
        assert isinstance(app.screen, ConfirmScreen) and rec.calls == []
        assert "Terminal too small" in screen_text(app)
        assert "API call" not in screen_text(app)  # what could not be read is not shown
        # Large enough again: the whole dialog is back, and y confirms.
        await pilot.resize_terminal(*SIZE)
        await settle(pilot)
        assert "API call" in screen_text(app) and "Press y" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: bool(rec.calls))
        assert [c.operation for c in rec.calls] == ["stop_service_deployment"]


async def test_a_dialog_opened_on_a_small_terminal_refuses_to_confirm(tmp_path: Path) -> None:
    from engine.actions import Verb

    rec = Recorder()
    app = DeployWatchApp(
        config(),
        [FakeSource(hostile_script("ok"))],
        clock=FrozenClock(),
        executor=rec,
        audit_path=tmp_path / "audit.jsonl",
    )
    async with app.run_test(size=(40, 12)) as pilot:
        await settle(pilot)
        app.dashboard.act_on(Verb.ROLLBACK, "demo/web")  # as from the palette
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause(0.3)
        assert isinstance(app.screen, ConfirmScreen) and rec.calls == []
        assert "Terminal too small" in screen_text(app)


# ------------------------------------------------------------------- any outside text


async def _every_pane_shows(text: str, env: str, label: str) -> None:
    app = DeployWatchApp(
        config(env=env, label=label),
        [FakeSource(hostile_script(text))],
        clock=FrozenClock(),
        executor=Recorder(),
        audit_path=None,
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "first seen" in screen_text(app))
        await pilot.pause(0.2)
        assert unsafe_on_screen(app) == []
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert unsafe_on_screen(app) == []
        await pilot.press("escape", "ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.pause(0.2)
        assert unsafe_on_screen(app) == []
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running and app.return_code is None


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=outside, env=outside, label=outside)
def test_any_outside_text_renders_without_escapes_or_exceptions(
    tmp_path: Path, text: str, env: str, label: str
) -> None:
    # Names come from the config, which refuses what is not printable (control, bidi and
    # other format characters: tested in tests/unit/test_config.py) and lone surrogates;
    # never empty, the environment's at most 40 characters. Markup brackets and odd
    # printable Unicode still reach the screen from there.
    env, label = (printable(env)[:40] or "e"), (printable(label) or "l")
    asyncio.run(_every_pane_shows(text, env, label))


def printable(text: str) -> str:
    return "".join(c for c in utf8(text) if c.isprintable())


def utf8(text: str) -> str:
    return "".join(c for c in text if not "\ud800" <= c <= "\udfff")
