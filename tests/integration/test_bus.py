"""The bus against a real broker (mosquitto on 127.0.0.1) through the real aiomqtt."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from sandbox.broker import Broker, broker_kind
from sources.bus import (
    MAX_PAYLOAD,
    BusSource,
    Topics,
    client,
    encode,
    encode_item,
    parse_bus_url,
    state_key,
)
from sources.model import EcsEvent, EcsServiceSample, Item, SourceFailure

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(broker_kind() is None, reason="no MQTT broker installed"),
]

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
WAIT = 20.0
"""Bound on every wait for the broker (a loaded 2-core machine)."""


def ecs(key: str, n: int, events: tuple[EcsEvent, ...] = ()) -> EcsServiceSample:
    return EcsServiceSample(
        key=key,
        at=T0,
        status="ACTIVE",
        desired=2,
        running=n,
        pending=0,
        task_definition="arn:aws:ecs:us-east-1:1:task-definition/web:2",
        deployments=(),
        service_deployments=(),
        new_events=events,
    )


class Reader:
    """A BusSource read in the background into a list."""

    def __init__(self, source: BusSource) -> None:
        self.source = source
        self.items: list[Item] = []
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for item in self.source.stream():
            self.items.append(item)
            self.changed.set()

    async def until(self, check: Any, what: str) -> None:
        async with asyncio.timeout(WAIT):
            while not check():
                self.changed.clear()
                await self.changed.wait()
        assert check(), what

    async def close(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def readers() -> AsyncIterator[list[Reader]]:
    made: list[Reader] = []
    yield made
    for reader in made:
        await reader.close()


def viewer(broker: Broker, readers: list[Reader], services: tuple[str, ...] = ("web",)) -> Reader:
    reader = Reader(BusSource(parse_bus_url(broker.url, {}), Topics("test"), services))
    readers.append(reader)
    return reader


async def publish(broker: Broker, topic: str, payload: bytes, *, retain: bool = True) -> None:
    async with client(parse_bus_url(broker.url, {})) as mqtt:
        await mqtt.publish(topic, payload, qos=1, retain=retain)


async def test_a_late_viewer_gets_the_latest_of_everything_at_once(
    broker: Broker, readers: list[Reader]
) -> None:
    topics = Topics("test")
    first, latest = ecs("web", 1), ecs("web", 2)
    failure = SourceFailure("datadog", "error_rate", "http 503: busy", "http 503", T0)
    for item in (first, latest, failure):
        await publish(broker, topics.state(*state_key(item)), encode_item(item))
    reader = viewer(broker, readers)
    await reader.until(lambda: len(reader.items) >= 2, "both retained states")
    assert sorted(reader.items, key=repr) == sorted([latest, failure], key=repr)


async def test_a_live_viewer_gets_each_new_item_once(broker: Broker, readers: list[Reader]) -> None:
    topics = Topics("test")
    reader = viewer(broker, readers)
    await asyncio.wait_for(reader.source.connected.wait(), WAIT)
    sample = ecs("web", 1, (EcsEvent("e1", T0, "has started 1 tasks"),))
    for _ in range(3):  # the same state again is not news
        await publish(broker, topics.state(*state_key(sample)), encode_item(sample))
    newer = ecs("web", 2)
    await publish(broker, topics.state(*state_key(newer)), encode_item(newer))
    await reader.until(lambda: newer in reader.items, "the newer sample")
    assert reader.items == [sample, newer]


async def test_malformed_and_oversized_messages_are_counted_and_dropped(
    broker: Broker, readers: list[Reader]
) -> None:
    topics = Topics("test")
    reader = viewer(broker, readers)
    await asyncio.wait_for(reader.source.connected.wait(), WAIT)
    await publish(broker, topics.state("ecs", "web"), b"{not json", retain=False)
    await publish(
        broker, topics.state("ecs", "web"), encode({"kind": "ecs", "item": {}}), retain=False
    )
    await publish(broker, topics.state("ecs", "web"), b"[" * (MAX_PAYLOAD + 10), retain=False)
    good = ecs("web", 1)
    await publish(broker, topics.state("ecs", "web"), encode_item(good), retain=False)
    await reader.until(lambda: reader.items, "the good sample after the bad ones")
    assert reader.items == [good]
    assert (reader.source.stats.malformed, reader.source.stats.oversized) == (2, 1)
    assert not reader.task.done()


async def test_the_relay_offline_makes_the_viewer_stale_with_its_reason(
    broker: Broker, readers: list[Reader]
) -> None:
    topics = Topics("test")
    await publish(broker, topics.state("ecs", "web"), encode_item(ecs("web", 1)))
    await publish(broker, topics.relay, encode({"state": "offline", "reason": "connection lost"}))
    reader = viewer(broker, readers, ("web", "api"))
    await reader.until(lambda: any(isinstance(i, SourceFailure) for i in reader.items), "a failure")
    # The retained state comes first, then what makes it STALE.
    assert reader.items[0] == ecs("web", 1)
    failures = [i for i in reader.items if isinstance(i, SourceFailure)]
    assert {(f.source, f.key) for f in failures} == {
        ("ecs", "web"),
        ("ecs", "api"),
        ("datadog", None),
        ("sentry", None),
    }
    assert all(f.error == "relay offline: connection lost" for f in failures)


async def test_a_broker_gone_makes_the_viewer_stale_then_it_reconnects(
    broker: Broker, readers: list[Reader]
) -> None:
    topics = Topics("test")
    reader = viewer(broker, readers)
    await asyncio.wait_for(reader.source.connected.wait(), WAIT)
    await asyncio.to_thread(broker.stop)
    await reader.until(lambda: any(isinstance(i, SourceFailure) for i in reader.items), "STALE")
    failure = next(i for i in reader.items if isinstance(i, SourceFailure))
    assert "unreachable" in failure.error and broker.url in failure.error
    await asyncio.to_thread(broker.start)
    await asyncio.wait_for(reader.source.connected.wait(), WAIT)
    sample = ecs("web", 3)
    await publish(broker, topics.state(*state_key(sample)), encode_item(sample))
    await reader.until(lambda: sample in reader.items, "data again after the restart")
    assert reader.source.reconnects >= 1
