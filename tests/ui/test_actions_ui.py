"""Acting from the dashboard, as a person does it: keys, the confirmation, read-only,
automatic rollback with its countdown, the palette, freezing the display."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.widgets import Input

from engine.actions import Verb
from engine.audit import AuditLog
from tests.fakes import (
    FakeSource,
    FrozenClock,
    bad_release_signals,
    mid_deploy_script,
    settings,
    settle,
    wait_until,
)
from tui.app import DeployWatchApp
from tui.screens.confirm import ConfirmScreen
from widgets.actionbar import ActionBar
from widgets.topbar import TopBar

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from textual.pilot import Pilot

    from engine.actions import ApiCall

SIZE = (200, 50)


class Recorder:
    """Stands in for AWS: records each call, answers like ECS."""

    def __init__(self) -> None:
        self.calls: list[ApiCall] = []

    def __call__(self, call: ApiCall) -> Mapping[str, Any]:
        self.calls.append(call)
        return {"serviceDeploymentArn": call.params.get("serviceDeploymentArn")}


def make_app(
    tmp_path: Path,
    *,
    production: bool = False,
    read_only: bool = False,
    signals: bool = False,
    script: list[Any] | None = None,
    clock: FrozenClock | None = None,
    audit: Path | None = None,
) -> tuple[DeployWatchApp, Recorder]:
    """The app with a recording executor; its audit log ``audit`` or one in ``tmp_path``."""
    rec = Recorder()
    app = DeployWatchApp(
        settings(
            name="prod-eu" if production else "staging", production=production, signals=signals
        ),
        [FakeSource(script if script is not None else mid_deploy_script())],
        clock=clock or FrozenClock(),
        read_only=read_only,
        executor=rec,
        audit_path=audit or tmp_path / "audit.jsonl",
    )
    return app, rec


async def advance(
    pilot: Pilot[None], app: DeployWatchApp, clock: FrozenClock, seconds: float
) -> None:
    """Move the clock, wait for the watch to judge at the new time and send what is due."""
    judged = app.controller.snapshot.judgements
    clock.advance(seconds)
    await wait_until(pilot, lambda: app.controller.snapshot.judgements > judged)
    await app.controller.settle()


def bar(app: DeployWatchApp) -> str:
    return app.screen.query_one(ActionBar).render().plain


def confirm_text(app: DeployWatchApp) -> str:
    return str(app.screen.query_one("#confirm-target").render())


async def test_shift_r_names_the_target_and_y_rolls_back(tmp_path: Path) -> None:
    app, rec = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        text = confirm_text(app)
        for part in (
            "staging",
            "demo",
            "web",
            "web:2 → web:1",
            "ECS rolling",
            "StopServiceDeployment",
        ):
            assert part in text, part
        await pilot.press("enter")  # Enter alone never confirms
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and rec.calls == []
        await pilot.press("y")
        await wait_until(pilot, lambda: "rollback DONE" in bar(app))
        assert not isinstance(app.screen, ConfirmScreen)
        assert [c.operation for c in rec.calls] == ["stop_service_deployment"]
        assert rec.calls[0].params["stopType"] == "ROLLBACK"
        assert "rollback DONE" in bar(app) and "web web:2 → web:1" in bar(app)
    phases = [e["phase"] for e in AuditLog(tmp_path / "audit.jsonl").read()]
    assert phases == ["intent", "result"]


async def test_production_needs_the_service_name_typed(tmp_path: Path) -> None:
    app, rec = make_app(tmp_path, production=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        assert "prod-eu  PRODUCTION" in confirm_text(app)
        await pilot.press("enter")  # empty field
        await pilot.press("y", "enter")  # 'y' is not the name here
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and rec.calls == []
        assert "is not" in str(app.screen.query_one("#confirm-help").render())
        field = app.screen.query_one("#confirm-input", Input)
        field.value = ""
        await pilot.press("w", "e", "b", "enter")
        await wait_until(pilot, lambda: len(rec.calls) == 1)
        assert [c.operation for c in rec.calls] == ["stop_service_deployment"]


async def test_escape_cancels_and_nothing_is_sent(tmp_path: Path) -> None:
    app, rec = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("R", "escape")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen) and rec.calls == []
        await app.controller.settle()
        await pilot.pause()
    # Declining is an operator decision like any other: audited, nothing sent.
    entries = AuditLog(tmp_path / "audit.jsonl").read()
    assert [(e["phase"], e["action"], e["target"]["service"]) for e in entries] == [
        ("declined", "rollback", "web")
    ]


async def test_read_only_refuses_in_the_engine_and_audits(tmp_path: Path) -> None:
    app, rec = make_app(tmp_path, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("R")
        await wait_until(pilot, lambda: "rollback REFUSED" in bar(app))
        assert not isinstance(app.screen, ConfirmScreen)
        assert "read-only" in bar(app)
        # The palette path goes through the same engine.
        app.dashboard.act_on(Verb.ROLLBACK, "demo/api")
        await wait_until(
            pilot, lambda: len(AuditLog(tmp_path / "audit.jsonl").read()) == 2, timeout=10
        )
    assert rec.calls == []
    entries = AuditLog(tmp_path / "audit.jsonl").read()
    assert [e["phase"] for e in entries] == ["refused", "refused"]
    assert {e["target"]["service"] for e in entries} == {"web", "api"}


async def test_a_verb_the_kind_cannot_do_says_why(tmp_path: Path) -> None:
    app, rec = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("P")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        messages = [n.message for n in app._notifications]
        assert any("ECS rolling has no promote" in m for m in messages)
    assert rec.calls == []


def auto_script() -> list[Any]:
    # web mid-rollout, and 3 minutes of v2 at 14.8 %: the rollback rule (> 10 % for 2m)
    # is critical at the start.
    return [*mid_deploy_script()[:1], *bad_release_signals(minutes=6)]


async def test_automatic_rollback_counts_down_then_fires_once(tmp_path: Path) -> None:
    clock = FrozenClock()
    app, rec = make_app(tmp_path, signals=True, script=auto_script(), clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "AUTO ROLLBACK in 10s" in bar(app))
        assert "error rate: roll back" in bar(app) and "press c to cancel" in bar(app)
        assert rec.calls == []
        clock.advance(10)
        await wait_until(pilot, lambda: "auto rollback DONE" in bar(app))
        for _ in range(3):  # later judgements must not fire it again
            await advance(pilot, app, clock, 5)
        assert [c.operation for c in rec.calls] == ["stop_service_deployment"]
        assert "auto rollback DONE" in bar(app)
        assert "MTTR" in bar(app)
    entries = AuditLog(tmp_path / "audit.jsonl").read()
    intent = next(e for e in entries if e["phase"] == "intent")
    assert intent["automatic"] is True
    assert any("error rate: roll back" in line for line in intent["evidence"])


async def test_cancelled_automatic_rollback_never_fires(tmp_path: Path) -> None:
    clock = FrozenClock()
    app, rec = make_app(tmp_path, signals=True, script=auto_script(), clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "AUTO ROLLBACK" in bar(app))
        await pilot.press("c")
        await wait_until(pilot, lambda: "AUTO ROLLBACK" not in bar(app))
        for _ in range(3):
            await advance(pilot, app, clock, 10)
    assert rec.calls == []
    phases = [e["phase"] for e in AuditLog(tmp_path / "audit.jsonl").read()]
    assert phases == ["cancelled"]


async def test_freeze_holds_the_display_but_not_the_rules(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f")
        await pilot.pause()
        assert app.screen.query_one(TopBar).frozen
        assert "FROZEN" in str(app.screen.query_one("#frozen").render())
        await pilot.press("f")
        await pilot.pause()
        assert not app.screen.query_one(TopBar).frozen


async def test_keymap_from_config_rebinds_rollback(tmp_path: Path) -> None:
    from tests.fakes import settings as make_settings

    base = make_settings()
    remapped = base.model_copy(update={"keys": base.keys.model_copy(update={"rollback": "ctrl+r"})})
    rec = Recorder()
    app = DeployWatchApp(
        remapped,
        [FakeSource(mid_deploy_script())],
        clock=FrozenClock(),
        executor=rec,
        audit_path=tmp_path / "a.jsonl",
    )
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("R")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)


async def test_alb_canary_advances_holds_and_rolls_back(tmp_path: Path) -> None:
    from dataclasses import replace

    from sources.model import AlbWeights
    from tests.fakes import deployment, sample
    from tests.unit.test_canary import driver

    base = settings(services=(("demo", "web"),))
    ref = base.services[0].model_copy(update={"canary": driver().settings})
    canary_settings = base.model_copy(update={"services": (ref,)})
    clock = FrozenClock()
    web = replace(sample("demo/web", [deployment("web:2")]), alb=AlbWeights(90, 10))
    source = FakeSource([web])
    rec = Recorder()
    app = DeployWatchApp(
        canary_settings, [source], clock=clock, executor=rec, audit_path=tmp_path / "a.jsonl"
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "canary 10% · step 1/4 · next 25% in 30s" in bar(app))
        clock.advance(30)
        await wait_until(pilot, lambda: len(rec.calls) == 1)
        await app.controller.settle()
        assert [c.operation for c in rec.calls] == ["modify_listener"]
        sent = rec.calls[0].params["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
        assert [g["Weight"] for g in sent] == [75, 25]
        # The listener now says 25 (a pause step): nothing moves by itself.
        source.push(replace(web, alb=AlbWeights(75, 25)))
        await wait_until(pilot, lambda: "paused: P promotes" in bar(app))
        await advance(pilot, app, clock, 600)
        assert len(rec.calls) == 1 and "paused: P promotes" in bar(app)
        await pilot.press("p")  # hold our automation: no dialog, no AWS call
        await wait_until(pilot, lambda: "held by the operator" in bar(app))
        assert "held by the operator: r resumes" in bar(app) and len(rec.calls) == 1
        # The result names where the traffic stays, never an unknown "? → ?".
        await wait_until(pilot, lambda: "web canary 25% at " in bar(app))
        assert "pause DONE" in bar(app) and "?" not in bar(app)
        await pilot.press("r")
        await wait_until(pilot, lambda: "paused: P promotes" in bar(app))
        await wait_until(pilot, lambda: "resume DONE" in bar(app))
        assert "web canary 25% at " in bar(app) and "?" not in bar(app)
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        assert "canary 25% → canary 0%" in confirm_text(app)
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: (
                rec.calls[-1].params["DefaultActions"][0]["ForwardConfig"]["TargetGroups"][0][
                    "Weight"
                ]
                == 100
            ),
        )
        assert [
            g["Weight"]
            for g in rec.calls[-1].params["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
        ] == [100, 0]
    phases = [(e["phase"], e.get("automatic")) for e in AuditLog(tmp_path / "a.jsonl").read()]
    assert (
        phases == [("intent", True), ("result", None)] + [("intent", False), ("result", None)] * 3
    )
    operations = [
        e["call"]["operation"]
        for e in AuditLog(tmp_path / "a.jsonl").read()
        if e["phase"] == "intent"
    ]
    assert operations == ["modify_listener", "hold_canary", "release_canary", "modify_listener"]


async def palette_entries(
    pilot: Pilot[None], app: DeployWatchApp, query: str, *needles: str
) -> list[str]:
    """Open the command palette, type ``query``, wait for options holding every needle,
    and read them all (prompt and help)."""
    from textual.command import CommandList, CommandPalette

    await pilot.press("ctrl+p")
    await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
    await pilot.press(*query)
    options = app.screen.query_one(CommandList)

    def entries() -> list[str]:
        return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]

    await wait_until(pilot, lambda: all(n in "\n".join(entries()) for n in needles))
    return entries()


async def test_palette_offers_every_verb_with_its_effect_or_its_reason(tmp_path: Path) -> None:
    app, rec = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        entries = await palette_entries(pilot, app, "roll back", "Roll back web", "Roll back api")
        web = next(e for e in entries if "Roll back web (web:2 → web:1)" in e)
        assert "stop the deployment" in web
        api = next(e for e in entries if "Roll back api" in e)
        assert "not possible: ECS is already rolling back" in api
        joined = "\n".join(entries)
        assert "Maximize" not in joined and "Screenshot" not in joined
        assert "→ ?" not in joined  # an unknown revision is left out, not shown as '?'
        await pilot.press("escape")
    assert rec.calls == []


async def test_palette_in_read_only_mode_shows_verbs_as_refused(tmp_path: Path) -> None:
    app, _rec = make_app(tmp_path, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        entries = await palette_entries(pilot, app, "roll back web", "Roll back web")
        web = next(e for e in entries if "Roll back web" in e)
        assert "refused: read-only mode" in web


async def test_a_waiting_hook_on_the_card_names_the_remapped_keys(tmp_path: Path) -> None:
    """Hints follow the live keymap: with promote and rollback remapped in ``[keys]``,
    the card's waiting hook names the keys that work, never ``P`` and ``R``."""
    from tests.fakes import canary_at_its_hook, deployment, sample
    from tests.fakes import settings as make_settings
    from widgets.deployments import DeploymentsPane

    base = make_settings(services=(("demo", "web"),))
    keys = base.keys.model_copy(update={"promote": "ctrl+o", "rollback": "ctrl+r"})
    remapped = base.model_copy(update={"keys": keys})
    web = sample(
        "demo/web",
        [deployment("web:2", rollout="IN_PROGRESS"), deployment("web:1", status="ACTIVE")],
        service_deployments=[canary_at_its_hook()],
    )
    app = DeployWatchApp(
        remapped,
        [FakeSource([web])],
        clock=FrozenClock(),
        executor=Recorder(),
        audit_path=tmp_path / "a.jsonl",
    )
    async with app.run_test(size=SIZE) as pilot:
        pane = app.screen.query_one(DeploymentsPane)
        await wait_until(pilot, lambda: "hook waiting" in pane.card_text("demo/web").plain)
        card = pane.card_text("demo/web").plain
        assert "hook waiting: ^o promotes, ^r rolls back" in card, card
