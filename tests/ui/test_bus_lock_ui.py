"""The dashboard under the bus's operator lock: someone else's lock refuses the action
keys with its holder's name; a free one is claimed with the first action; every card
shows its lock before a key is pressed; a takeover takes the service's name typed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from engine.actions import Verb
from engine.audit import AuditLog
from sources.bus import LockView
from tests.fakes import FakeSource, FrozenClock, mid_deploy_script, settings, wait_until
from tui.app import DeployWatchApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.takeover import TakeoverScreen

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Any

    from engine.actions import ApiCall

SIZE = (200, 50)
SINCE = datetime(2026, 1, 5, 2, 3, tzinfo=UTC)


class FakeLock:
    """The relay's arbiter and a LockClient in one: grants a free lock at once."""

    def __init__(self, others: dict[str, str] | None = None) -> None:
        self.others = dict(others or {})
        self.held: set[str] = set()
        self.claims: list[str] = []
        self.takeovers: list[str] = []
        self.released: list[str] = []
        self.touched: list[datetime] = []
        self.changed = asyncio.Event()

    @property
    def locks(self) -> dict[str, LockView]:
        mine = {s: LockView(s, "me", "me@here", SINCE) for s in self.held}
        return mine | {s: LockView(s, f"client-of-{h}", h, SINCE) for s, h in self.others.items()}

    def refusal(self, service: str) -> str | None:
        holder = self.others.get(service)
        return None if holder is None else f"{service}: locked by {holder} since 02:03"

    def mine(self, service: str) -> bool:
        return service in self.held

    async def claim(self, service: str, *, takeover: bool = False) -> None:
        self.claims.append(service)
        if takeover:
            self.takeovers.append(service)
            self.others.pop(service, None)
        if service not in self.others:
            self.held.add(service)
            self.changed.set()

    async def release(self, service: str) -> None:
        self.released.append(service)
        self.held.discard(service)
        self.changed.set()

    def touch(self, now: datetime) -> None:
        self.touched.append(now)


def make_app(tmp_path: Path, lock: FakeLock) -> tuple[DeployWatchApp, list[ApiCall]]:
    calls: list[ApiCall] = []

    def executor(call: ApiCall) -> Mapping[str, Any]:
        calls.append(call)
        return {}

    app = DeployWatchApp(
        settings(),
        [FakeSource(mid_deploy_script())],
        clock=FrozenClock(),
        executor=executor,
        audit_path=tmp_path / "audit.jsonl",
    )
    app.dashboard.operator_lock = lock
    return app, calls


def toasts(app: DeployWatchApp) -> str:
    return " | ".join(str(n.message) for n in app._notifications)


async def test_someone_elses_lock_refuses_r_with_the_holder(tmp_path: Path) -> None:
    lock = FakeLock({"demo/web": "alice@bastion-1"})
    app, calls = make_app(tmp_path, lock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.store.services["demo/web"].sample is not None)
        await pilot.press("R")
        await wait_until(pilot, lambda: "locked by" in toasts(app))
        assert not isinstance(app.screen, ConfirmScreen)
        assert "demo/web: locked by alice@bastion-1 since 02:03" in toasts(app)
    assert calls == [] and lock.claims == []


async def test_a_free_lock_is_claimed_with_the_first_action(tmp_path: Path) -> None:
    lock = FakeLock()
    app, calls = make_app(tmp_path, lock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.store.services["demo/web"].sample is not None)
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await wait_until(pilot, lambda: lock.mine("demo/web"))
        await pilot.press("y")
        await wait_until(pilot, lambda: bool(calls))
        await app.controller.settle()
    assert lock.claims == ["demo/web"]
    assert [c.operation for c in calls] == ["stop_service_deployment"]


async def test_a_lock_not_granted_by_the_confirmation_sends_nothing(tmp_path: Path) -> None:
    lock = FakeLock()

    async def lost(service: str, *, takeover: bool = False) -> None:
        lock.claims.append(service)
        lock.others[service] = "bob@bastion-2"  # bob's claim arrived first

    lock.claim = lost  # type: ignore[method-assign]
    app, calls = make_app(tmp_path, lock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.store.services["demo/web"].sample is not None)
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await wait_until(pilot, lambda: bool(lock.claims))
        await pilot.press("y")
        await wait_until(pilot, lambda: "not sent" in " ".join(n.title for n in app._notifications))
        assert "locked by bob@bastion-2" in toasts(app)
        await app.controller.settle()
    assert calls == []


def card(app: DeployWatchApp, key: str = "demo/web") -> str:
    return app.dashboard._deployments.card_text(key).plain


async def test_the_card_shows_the_lock_before_any_key(tmp_path: Path) -> None:
    # A holder's name is outside text: shown literally, never as markup or escapes.
    lock = FakeLock({"demo/web": "alice@bastion-1 [b]x[/b]\x1b[2J"})
    app, _ = make_app(tmp_path, lock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "locked by alice@bastion-1" in card(app))
        assert "locked by alice@bastion-1 [b]x[/b]" in card(app)
        assert "\x1b" not in card(app)
        assert "locked by" not in card(app, "demo/api")
        # Freed (its holder left): the card says nothing more.
        lock.others.clear()
        lock.changed.set()
        await wait_until(pilot, lambda: "locked by" not in card(app))
        # Ours, once the relay granted it.
        lock.held.add("demo/api")
        lock.changed.set()
        await wait_until(pilot, lambda: "yours since 02:03" in card(app, "demo/api"))


async def test_a_takeover_takes_the_typed_name_and_is_audited(tmp_path: Path) -> None:
    lock = FakeLock({"demo/web": "alice@bastion-1"})
    app, calls = make_app(tmp_path, lock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "locked by alice@bastion-1" in card(app))
        await pilot.press("R")
        await wait_until(pilot, lambda: "L takes it over" in toasts(app))
        await pilot.press("L")
        await wait_until(pilot, lambda: isinstance(app.screen, TakeoverScreen))
        dialog = app.screen.query_one("#confirm-target").render()
        assert "alice@bastion-1" in str(dialog) and "web" in str(dialog)
        # Neither y nor Enter nor a wrong name takes it; only "web", exactly.
        await pilot.press("y", "enter")
        assert isinstance(app.screen, TakeoverScreen)
        await pilot.press("backspace", "enter", "w", "e", "b", "space", "enter")
        assert isinstance(app.screen, TakeoverScreen) and lock.takeovers == []
        await pilot.press("backspace", "enter")
        await wait_until(pilot, lambda: lock.takeovers == ["demo/web"])
        await wait_until(pilot, lambda: "yours since 02:03" in card(app))
        await wait_until(pilot, lambda: "taken over from alice@bastion-1" in toasts(app))
    assert calls == []  # a takeover sends nothing to AWS
    entries = AuditLog(tmp_path / "audit.jsonl").read()
    takeover = [e for e in entries if e["phase"] == "takeover"]
    assert len(takeover) == 1
    assert takeover[0]["previous"] == "alice@bastion-1"
    assert takeover[0]["service"] == "demo/web"
    assert takeover[0]["target"]["service"] == "web"
    # The relay's answer, audited apart: granted, tied to the claim.
    (granted,) = [e for e in entries if e["phase"] == "takeover granted"]
    assert granted["claim"] == takeover[0]["claim"] and granted["since"] == SINCE.isoformat()
    assert (granted["service"], granted["previous"]) == ("demo/web", "alice@bastion-1")


async def test_a_declined_takeover_is_audited_and_takes_nothing(tmp_path: Path) -> None:
    lock = FakeLock({"demo/web": "alice@bastion-1"})
    app, _ = make_app(tmp_path, lock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "locked by alice@bastion-1" in card(app))
        await pilot.press("L")
        await wait_until(pilot, lambda: isinstance(app.screen, TakeoverScreen))
        await pilot.press("escape")
        await wait_until(pilot, lambda: "cancelled" in toasts(app))
        entries = AuditLog(tmp_path / "audit.jsonl").read()
        assert "locked by alice@bastion-1" in card(app)
    assert lock.claims == []
    declined = [e for e in entries if e["phase"] == "declined"]
    assert [(e["action"], e["service"], e["holder"]) for e in declined] == [
        ("takeover", "demo/web", "alice@bastion-1")
    ]


async def test_a_lock_that_changed_hands_during_the_takeover_is_not_taken(
    tmp_path: Path,
) -> None:
    lock = FakeLock({"demo/web": "alice@bastion-1"})
    app, _ = make_app(tmp_path, lock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "locked by alice@bastion-1" in card(app))
        await pilot.press("L")
        await wait_until(pilot, lambda: isinstance(app.screen, TakeoverScreen))
        lock.others["demo/web"] = "bob@bastion-2"  # bob took it meanwhile
        await pilot.press("w", "e", "b", "enter")
        await wait_until(pilot, lambda: "the lock changed" in toasts(app))
        assert "bob@bastion-2" in toasts(app)
    assert lock.takeovers == []


async def test_u_releases_ones_own_lock_and_not_someone_elses(tmp_path: Path) -> None:
    lock = FakeLock({"demo/api": "alice@bastion-1"})
    lock.held.add("demo/web")
    app, _ = make_app(tmp_path, lock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "yours since 02:03" in card(app))
        assert "U" in app.screen.active_bindings  # in the help, under --operate
        await pilot.press("U")
        await wait_until(pilot, lambda: lock.released == ["demo/web"])
        await wait_until(pilot, lambda: "yours" not in card(app))
        await wait_until(pilot, lambda: "released" in toasts(app))
        await pilot.press("j")  # demo/api: alice's
        await wait_until(pilot, lambda: app.dashboard.selected == "demo/api")
        await pilot.press("U")
        await wait_until(pilot, lambda: "locked by alice@bastion-1" in toasts(app))
        assert "Nothing to release" in " ".join(n.title for n in app._notifications)
    assert lock.released == ["demo/web"]


async def test_the_operators_keys_keep_their_locks_alive(tmp_path: Path) -> None:
    """Every key on the dashboard (and every action) says the operator is there: the
    lock client renews their locks then (``LockClient.keep``), and only then."""
    lock = FakeLock()
    app, _ = make_app(tmp_path, lock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.store.services["demo/web"].sample is not None)
        assert lock.touched == []  # nothing pressed yet: nobody is known to be there
        await pilot.press("j")
        await wait_until(pilot, lambda: len(lock.touched) == 1)
        app.dashboard.act_on(Verb.PAUSE, "demo/web")  # from the command palette
        await wait_until(pilot, lambda: len(lock.touched) == 2)
    assert set(lock.touched) == {app.clock()}


async def takeover_audited(tmp_path: Path, lock: FakeLock, phase: str) -> dict[str, Any]:
    app, _ = make_app(tmp_path, lock)
    audit = AuditLog(tmp_path / "audit.jsonl")

    def entry() -> dict[str, Any] | None:
        return next((e for e in audit.read() if e["phase"] == phase), None)

    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "locked by alice@bastion-1" in card(app))
        await pilot.press("L")
        await wait_until(pilot, lambda: isinstance(app.screen, TakeoverScreen))
        await pilot.press("w", "e", "b", "enter")
        await wait_until(pilot, lambda: entry() is not None, 20.0)
    found = entry()
    assert found is not None
    claims = [e["claim"] for e in audit.read() if e["phase"] == "takeover"]
    assert claims == [found["claim"]]
    return found


async def test_a_takeover_the_relay_never_answers_is_audited_as_unanswered(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr("tui.screens.takeover.ANSWER_WAIT", 0.5)
    lock = FakeLock({"demo/web": "alice@bastion-1"})

    async def unheard(service: str, *, takeover: bool = False) -> None:
        lock.claims.append(service)  # sent; the relay is down

    lock.claim = unheard  # type: ignore[method-assign]
    found = await takeover_audited(tmp_path, lock, "takeover unanswered")
    assert (found["service"], found["previous"], found["waited_s"]) == (
        "demo/web", "alice@bastion-1", 0.5,
    )  # fmt: skip


async def test_a_takeover_the_relay_gave_to_someone_else_is_audited_as_refused(
    tmp_path: Path,
) -> None:
    lock = FakeLock({"demo/web": "alice@bastion-1"})

    async def beaten(service: str, *, takeover: bool = False) -> None:
        lock.claims.append(service)
        lock.others[service] = "carol@bastion-3"  # carol's takeover won
        lock.changed.set()

    lock.claim = beaten  # type: ignore[method-assign]
    found = await takeover_audited(tmp_path, lock, "takeover refused")
    assert (found["holder"], found["previous"]) == ("carol@bastion-3", "alice@bastion-1")
