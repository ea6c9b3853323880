"""The operator lock's renewal and release through a real relay and a real broker
(mosquitto): an operator at work keeps the lock, one who left loses it after the TTL,
and a release frees it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from engine.audit import AuditLog
from engine.controller import Controller
from engine.lock import LOCK_TTL
from engine.relay import Relay
from sandbox.broker import Broker, broker_kind
from sources.bus import LockClient, Topics, parse_bus_url
from tests.fakes import FrozenClock, settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(broker_kind() is None, reason="no MQTT broker installed"),
]

WAIT = 30.0
TOPICS = Topics("sandbox-demo")


@pytest.fixture
async def tasks() -> AsyncIterator[list[asyncio.Task[Any]]]:
    made: list[asyncio.Task[Any]] = []
    yield made
    for task in made:
        task.cancel()
    _, pending = await asyncio.wait(made, timeout=WAIT)
    assert not pending


async def until(client: LockClient, check: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not check():
                client.changed.clear()
                if check():
                    break
                await client.changed.wait()
    except TimeoutError:
        raise AssertionError(f"not within {WAIT}s: {what}") from None


async def test_an_active_operator_keeps_the_lock_and_an_absent_one_loses_it(
    tmp_path: Path, broker: Broker, tasks: list[asyncio.Task[Any]]
) -> None:
    clock = FrozenClock()
    controller = Controller(
        settings(),
        clock=clock,
        executor=lambda call: {},
        audit=AuditLog(tmp_path / "audit.jsonl"),
        operator=lambda: "relay",
        read_only=True,
    )
    relay = Relay(controller, parse_bus_url(broker.url, {}), TOPICS, clock=clock)
    tasks.append(asyncio.create_task(relay.run([])))
    await asyncio.wait_for(relay.connected.wait(), WAIT)
    bob = LockClient(parse_bus_url(broker.url, {}), TOPICS, "bob@bastion-2")
    tasks.append(asyncio.create_task(bob.run()))
    tasks.append(asyncio.create_task(bob.keep(clock, every=0.05)))
    await asyncio.wait_for(bob.connected.wait(), WAIT)

    await bob.claim("demo/web")
    await until(bob, lambda: bob.mine("demo/web"), "bob holds web")
    granted = bob.locks["demo/web"]
    assert granted.expires == clock() + LOCK_TTL and granted.ttl == LOCK_TTL

    # At work: a key 6 minutes later; past a third of the TTL the lock is renewed.
    clock.advance(6 * 60)
    bob.touch(clock())
    await until(
        bob,
        lambda: bob.locks["demo/web"].expires == clock() + LOCK_TTL,
        "renewed by the relay",
    )
    assert bob.locks["demo/web"].since == granted.since and bob.mine("demo/web")

    # Gone for lunch: no key since; the lock runs out at its TTL and is freed.
    clock.advance(LOCK_TTL.total_seconds() - 1)
    assert "demo/web" in bob.locks
    clock.advance(1)
    await until(bob, lambda: "demo/web" not in bob.locks, "expired")

    # Claimed again, then given back: free for anyone at once.
    await bob.claim("demo/web")
    await until(bob, lambda: bob.mine("demo/web"), "bob holds web again")
    await bob.release("demo/web")
    await until(bob, lambda: "demo/web" not in bob.locks, "released")
    assert relay.arbiter.locks == {}
    assert clock() - granted.since > timedelta(minutes=20)
