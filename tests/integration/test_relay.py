"""A relay and a viewer over a real broker: the same verdict and panes, STALE when the
relay or the broker goes away, and back without duplicates."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from engine.audit import AuditLog
from engine.controller import Controller
from engine.relay import Relay
from engine.verdict import Verdict
from sandbox.broker import Broker, mosquitto_path
from sources.bus import BusSource, Topics, parse_bus_url
from tests.fakes import FakeSource, FrozenClock, bad_release_signals, mid_deploy_script, settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping
    from pathlib import Path

    from engine.actions import ApiCall

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed"),
]

WAIT = 20.0


def refuse(call: ApiCall) -> Mapping[str, Any]:
    raise AssertionError(f"no AWS call expected: {call.operation}")


def watch(tmp_path: Path, name: str, clock: FrozenClock) -> Controller:
    return Controller(
        settings(signals=True),
        clock=clock,
        executor=refuse,
        audit=AuditLog(tmp_path / f"{name}.jsonl"),
        operator=lambda: name,
        read_only=True,
    )


async def until(check: Callable[[], Any], what: str, poke: asyncio.Event) -> None:
    """Wait (bounded) until ``check()``; re-checked whenever a watch publishes."""
    try:
        async with asyncio.timeout(WAIT):
            while not check():
                poke.clear()
                await poke.wait()
    except TimeoutError:
        raise AssertionError(f"not within {WAIT}s: {what}") from None


class World:
    def __init__(self, tmp_path: Path, broker: Broker) -> None:
        self.clock = FrozenClock()
        self.bus = parse_bus_url(broker.url, {})
        self.topics = Topics("sandbox-demo")
        self.news = asyncio.Event()
        self.relay_watch = watch(tmp_path, "relay", self.clock)
        self.relay = Relay(self.relay_watch, self.bus, self.topics, clock=self.clock)
        self.viewer_watch = watch(tmp_path, "viewer", self.clock)
        self.source = FakeSource([*mid_deploy_script(), *bad_release_signals(minutes=6)])
        self.viewer_source = BusSource(
            self.bus, self.topics, list(self.viewer_watch.store.services), clock=self.clock
        )
        for controller in (self.relay_watch, self.viewer_watch):
            controller.listen(lambda _update: self.news.set())
        self.tasks: list[asyncio.Task[None]] = []

    def start_relay(self) -> None:
        self.tasks.append(asyncio.create_task(self.relay.run([self.source])))

    def start_viewer(self) -> None:
        self.tasks.append(asyncio.create_task(self.viewer_watch.run([self.viewer_source])))

    def same_view(self) -> bool:
        a, b = self.relay_watch, self.viewer_watch
        return (
            a.snapshot.verdict is Verdict.FAILING
            and a.snapshot.report == b.snapshot.report
            and a.snapshot.evidence == b.snapshot.evidence
            and a.store.metrics == b.store.metrics
            and a.store.sentry == b.store.sentry
            and a.store.probes == b.store.probes
            and {k: s.status for k, s in a.store.services.items()}
            == {k: s.status for k, s in b.store.services.items()}
        )

    def stale(self) -> list[str]:
        return [s.failure.error for s in self.viewer_watch.store.services.values() if s.failure]


@pytest.fixture
async def world(tmp_path: Path, broker: Broker) -> AsyncIterator[World]:
    made = World(tmp_path, broker)
    yield made
    for task in made.tasks:
        task.cancel()
    done, pending = await asyncio.wait(made.tasks, timeout=WAIT)
    assert not pending, f"did not stop when cancelled: {pending}"
    assert all(task.cancelled() for task in done)


async def test_a_late_viewer_shows_the_relays_verdict_and_panes(world: World) -> None:
    world.start_relay()
    await until(
        lambda: world.relay_watch.snapshot.verdict is Verdict.FAILING, "relay FAILING", world.news
    )
    await asyncio.wait_for(world.relay.connected.wait(), WAIT)
    world.start_viewer()
    await until(world.same_view, "the viewer sees what the relay sees", world.news)
    assert world.viewer_watch.snapshot.verdict is Verdict.FAILING
    relay_events = [(k, e.id) for k, e in world.relay_watch.store.take_events()]
    viewer_events = [(k, e.id) for k, e in world.viewer_watch.store.take_events()]
    assert sorted(viewer_events) == sorted(relay_events)
    assert world.viewer_source.stats.malformed == world.viewer_source.stats.oversized == 0


async def test_the_relay_stopping_makes_the_viewer_stale_with_the_reason(world: World) -> None:
    world.start_relay()
    world.start_viewer()
    await until(world.same_view, "same view", world.news)
    await until(lambda: world.viewer_watch.snapshot.judgements > 0, "judged", world.news)
    relay_task = world.tasks.pop(0)
    relay_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await relay_task
    await until(lambda: world.stale(), "STALE", world.news)
    assert set(world.stale()) == {"relay offline: relay stopped"}


async def test_a_broker_restart_mid_run_goes_stale_then_recovers_without_duplicates(
    world: World, broker: Broker
) -> None:
    world.start_relay()
    world.start_viewer()
    await until(world.same_view, "same view", world.news)
    shown = [(k, e.id) for k, e in world.viewer_watch.store.take_events()]
    assert shown
    await asyncio.to_thread(broker.stop)
    await until(lambda: world.stale(), "STALE while the broker is gone", world.news)
    # Unreachable, or the relay's last will if the broker sent it on its way out.
    assert all(
        "unreachable" in error or error == "relay offline: relay connection lost"
        for error in world.stale()
    ), world.stale()
    await asyncio.to_thread(broker.start)
    await until(
        lambda: not world.stale() and world.same_view(), "recovered after the restart", world.news
    )
    # The relay published everything again; nothing is shown twice.
    assert world.viewer_watch.store.take_events() == []
    assert world.relay.connections >= 2


async def test_the_relay_announces_a_failing_verdict_with_its_evidence(
    world: World, broker: Broker
) -> None:
    from sources.bus import client, decode

    async with client(world.bus) as mqtt:
        await mqtt.subscribe(world.topics.announce, qos=1)
        world.start_relay()
        texts: list[str] = []
        async with asyncio.timeout(WAIT):
            async for message in mqtt.messages:
                texts.append(decode(message.payload)["text"])
                if "FAILING" in texts[-1]:
                    break
    assert texts[-1].startswith("sandbox-demo: FAILING — ")
    assert (
        texts[-1].removeprefix("sandbox-demo: FAILING — ")
        == (world.relay_watch.snapshot.report.reasons[0])
    )
