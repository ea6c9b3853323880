"""The operator lock over a real broker: one arbiter (the relay), two claimants."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

import pytest

from engine.audit import AuditLog
from engine.controller import Controller
from engine.relay import Relay
from sandbox.broker import Broker, broker_kind
from sources.bus import LockClient, Topics, parse_bus_url
from tests.fakes import FakeSource, FrozenClock, mid_deploy_script, settings, wait_until
from tui.app import DeployWatchApp
from tui.screens.takeover import TakeoverScreen

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(broker_kind() is None, reason="no MQTT broker installed"),
]

WAIT = 20.0
TOPICS = Topics("sandbox-demo")


class Running:
    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []

    def start(self, coro: Any) -> None:
        self.tasks.append(asyncio.create_task(coro))


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    made = Running()
    yield made
    for task in made.tasks:
        task.cancel()
    _, pending = await asyncio.wait(made.tasks, timeout=WAIT)
    assert not pending


@pytest.fixture
async def relay(tmp_path: Path, broker: Broker, running: Running) -> Relay:
    clock = FrozenClock()
    controller = Controller(
        settings(),
        clock=clock,
        executor=lambda call: {},
        audit=AuditLog(tmp_path / "audit.jsonl"),
        operator=lambda: "relay",
        read_only=True,
    )
    made = Relay(controller, parse_bus_url(broker.url, {}), TOPICS, clock=clock)
    running.start(made.run([]))
    await asyncio.wait_for(made.connected.wait(), WAIT)
    return made


async def until(clients: list[LockClient], check: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not check():
                waits = [asyncio.create_task(c.changed.wait()) for c in clients]
                for c in clients:
                    c.changed.clear()
                if check():
                    for w in waits:
                        w.cancel()
                    break
                _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in pending:
                    w.cancel()
    except TimeoutError:
        raise AssertionError(f"not within {WAIT}s: {what}") from None


async def lock_client(broker: Broker, running: Running, holder: str) -> LockClient:
    made = LockClient(parse_bus_url(broker.url, {}), TOPICS, holder)
    running.start(made.run())
    await asyncio.wait_for(made.connected.wait(), WAIT)
    return made


async def test_two_claims_at_the_same_moment_exactly_one_wins(
    broker: Broker, running: Running, relay: Relay
) -> None:
    alice = await lock_client(broker, running, "alice@bastion-1")
    bob = await lock_client(broker, running, "bob@bastion-2")
    await asyncio.gather(alice.claim("demo/web"), bob.claim("demo/web"))
    both = [alice, bob]
    await until(both, lambda: all("demo/web" in c.locks for c in both), "both see a holder")
    assert alice.locks["demo/web"] == bob.locks["demo/web"]
    winners = [c for c in both if c.mine("demo/web")]
    assert len(winners) == 1
    loser = bob if winners[0] is alice else alice
    words = loser.refusal("demo/web")
    assert words is not None
    assert words.startswith(f"demo/web: locked by {winners[0].holder} since ")
    assert winners[0].refusal("demo/web") is None
    # A takeover (typed confirmation in the dashboard) moves it, and says so.
    await loser.claim("demo/web", takeover=True)
    await until(
        both, lambda: loser.mine("demo/web") and not winners[0].mine("demo/web"), "takeover"
    )
    assert (
        winners[0].refusal(
            "demo/web",
        )
        is not None
    )


async def test_a_release_frees_the_lock_for_the_next_claim(
    broker: Broker, running: Running, relay: Relay
) -> None:
    alice = await lock_client(broker, running, "alice@bastion-1")
    bob = await lock_client(broker, running, "bob@bastion-2")
    both = [alice, bob]
    await alice.claim("demo/web")
    await until(both, lambda: alice.mine("demo/web") and "demo/web" in bob.locks, "alice holds")
    await bob.claim("demo/web")  # refused: nothing changes
    await alice.release("demo/web")
    await until(both, lambda: "demo/web" not in bob.locks, "freed")
    await bob.claim("demo/web")
    await until(both, lambda: bob.mine("demo/web"), "bob holds")


HOLDER = """
import asyncio, sys
from sources.bus import LockClient, Topics, parse_bus_url

async def main():
    me = LockClient(parse_bus_url(sys.argv[1], {}), Topics("sandbox-demo"), "carol@bastion-3")
    task = asyncio.create_task(me.run())
    await me.connected.wait()
    await me.claim("demo/web")
    while not me.mine("demo/web"):
        me.changed.clear()
        await me.changed.wait()
    print("held", flush=True)
    await task

asyncio.run(main())
"""


async def test_a_holder_whose_connection_dies_frees_the_lock(
    broker: Broker, running: Running, relay: Relay
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, broker.url, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), WAIT)
        assert line.strip() == b"held"
        watcher = await lock_client(broker, running, "dave@bastion-4")
        await until([watcher], lambda: "demo/web" in watcher.locks, "dave sees carol's lock")
        assert (
            watcher.refusal(
                "demo/web",
            )
            is not None
        )
        assert "carol@bastion-3" in (watcher.refusal("demo/web") or "")
        proc.kill()  # like an SSH connection that drops: no goodbye, the last will speaks
        await proc.wait()
        await until([watcher], lambda: "demo/web" not in watcher.locks, "freed by the last will")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_restarted_relay_keeps_the_locks_it_granted(
    tmp_path: Path, broker: Broker, running: Running, relay: Relay
) -> None:
    alice = await lock_client(broker, running, "alice@bastion-1")
    bob = await lock_client(broker, running, "bob@bastion-2")
    both = [alice, bob]
    await alice.claim("demo/web")
    await until(both, lambda: alice.mine("demo/web") and "demo/web" in bob.locks, "alice holds")
    first = running.tasks.pop(0)  # the relay
    first.cancel()
    await asyncio.wait([first], timeout=WAIT)
    clock = FrozenClock()
    second = Relay(
        Controller(
            settings(),
            clock=clock,
            executor=lambda call: {},
            audit=AuditLog(tmp_path / "audit2.jsonl"),
            operator=lambda: "relay",
            read_only=True,
        ),
        parse_bus_url(broker.url, {}),
        TOPICS,
        clock=clock,
    )
    running.start(second.run([]))
    await asyncio.wait_for(second.connected.wait(), WAIT)
    # (The broker sends the retained lock right after the new relay's subscription,
    # before any claim published from here on.)
    await bob.claim("demo/web")  # refused: alice still holds it
    await alice.release("demo/web")  # honoured: the new relay knows she holds it
    await until(both, lambda: "demo/web" not in bob.locks, "freed by alice's release")
    assert not bob.mine("demo/web") and second.arbiter.locks == {}


async def test_the_dashboard_shows_a_lock_and_takes_it_over_through_the_relay(
    tmp_path: Path, broker: Broker, running: Running, relay: Relay
) -> None:
    alice = await lock_client(broker, running, "alice@bastion-1")
    await alice.claim("demo/web")
    await until([alice], lambda: alice.mine("demo/web"), "alice holds web")
    bob = await lock_client(broker, running, "bob@bastion-2")
    app = DeployWatchApp(
        settings(),
        [FakeSource(mid_deploy_script())],
        clock=FrozenClock(),
        executor=lambda call: {},
        audit_path=tmp_path / "operator-audit.jsonl",
    )
    app.dashboard.operator_lock = bob

    def card() -> str:
        return app.dashboard._deployments.card_text("demo/web").plain

    async with app.run_test(size=(200, 50)) as pilot:
        await wait_until(pilot, lambda: "locked by alice@bastion-1 since" in card(), WAIT)
        await pilot.press("L")
        await wait_until(pilot, lambda: isinstance(app.screen, TakeoverScreen), WAIT)
        await pilot.press("w", "e", "b", "enter")
        await wait_until(pilot, lambda: "yours since" in card(), WAIT)
        assert bob.mine("demo/web")
        await wait_until(pilot, lambda: not alice.mine("demo/web"), WAIT)
        audit = AuditLog(tmp_path / "operator-audit.jsonl")
        await wait_until(pilot, lambda: len(audit.read()) == 2, WAIT)
    words = alice.refusal("demo/web")
    assert words is not None and "locked by bob@bastion-2" in words
    entries = audit.read()
    assert [(e["phase"], e["previous"], e["service"]) for e in entries] == [
        ("takeover", "alice@bastion-1", "demo/web"),
        ("takeover granted", "alice@bastion-1", "demo/web"),  # the relay's answer
    ]
    granted = relay.arbiter.locks["demo/web"]
    assert entries[1]["since"] == granted.since.isoformat()
    assert entries[1]["expires"] == granted.expires.isoformat()
