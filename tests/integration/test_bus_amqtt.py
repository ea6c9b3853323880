"""Without mosquitto the sandbox's broker is amqtt (a Python broker, in a child process):
the bus works through it as through mosquitto, through the real aiomqtt."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

import sandbox.broker
from sandbox.broker import Broker, BrokerError, amqtt_available, broker_kind
from sources.bus import BusSource, Topics, client, encode_items, parse_bus_url
from sources.model import EcsServiceSample
from tests.fakes import mid_deploy_script

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not amqtt_available(), reason="amqtt is not installed"),
]

WAIT = 20.0


@pytest.fixture
def no_mosquitto(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine where mosquitto is not installed (neither on PATH nor in sbin)."""
    monkeypatch.delenv("DEPLOYWATCH_BROKER", raising=False)
    monkeypatch.setattr(sandbox.broker, "mosquitto_path", lambda: None)


@pytest.fixture
def broker(no_mosquitto: None) -> Iterator[Broker]:
    with Broker() as running:
        yield running


def test_without_mosquitto_the_broker_is_amqtt_and_says_what_it_cannot_do(
    no_mosquitto: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert broker_kind() == "amqtt"
    refuses(Broker(passwords={"ci": "x"}), "need mosquitto")
    monkeypatch.setattr(sandbox.broker, "amqtt_available", lambda: False)
    assert broker_kind() is None
    refuses(Broker(), "install mosquitto .* or amqtt")


def refuses(made: Broker, why: str) -> None:
    try:
        with pytest.raises(BrokerError, match=why):
            made.start()
    finally:
        made.close()


async def test_amqtt_takes_a_publish_and_keeps_the_retained_state_for_a_late_viewer(
    broker: Broker,
) -> None:
    assert broker.kind == "amqtt" and broker.url.startswith("mqtt://127.0.0.1:")
    bus = parse_bus_url(broker.url, {})
    topics = Topics("sandbox-demo")
    sample = mid_deploy_script()[0]
    assert isinstance(sample, EcsServiceSample)
    async with client(bus) as mqtt:
        await mqtt.subscribe(topics.announce, qos=1)
        await mqtt.publish(topics.announce, b'{"v":1,"text":"hi"}', qos=1)
        async with asyncio.timeout(WAIT):
            message = await anext(aiter(mqtt.messages))
        assert message.payload == b'{"v":1,"text":"hi"}'
        topic = topics.state("ecs", sample.key)
        await mqtt.publish(topic, encode_items([sample]), qos=1, retain=True)
    # A viewer that starts after the publisher left gets the retained state at once.
    source = BusSource(bus, topics, [sample.key])
    async with asyncio.timeout(WAIT):
        async for item in source.stream():
            assert item == sample
            break


def test_the_bus_tests_broker_fixture_runs_on_amqtt_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``DEPLOYWATCH_BROKER=amqtt pytest tests/integration/test_bus*.py`` runs the bus
    suite on amqtt even where mosquitto is installed."""
    monkeypatch.setenv("DEPLOYWATCH_BROKER", "amqtt")
    assert broker_kind() == "amqtt"
    with Broker() as running:
        assert running.kind == "amqtt"
