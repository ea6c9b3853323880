"""``deploywatch relay`` over the sandbox and ``deploywatch announce``, as processes,
against a real broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

import pytest

from engine.config import load_config
from sandbox.broker import Broker, broker_kind
from sources.bus import BusSource, Topics, client, decode, parse_bus_url
from sources.model import EcsServiceSample

if TYPE_CHECKING:
    from tests.conftest import StartSandboxProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(broker_kind() is None, reason="no MQTT broker installed"),
]

WAIT = 60.0


async def cli(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def test_announce_publishes_one_message_and_exits_0(broker: Broker) -> None:
    bus = parse_bus_url(broker.url, {})
    topics = Topics("prod")
    async with client(bus) as mqtt:
        await mqtt.subscribe(topics.announce, qos=1)
        proc = await cli(
            "announce", "--bus", broker.url, "--env", "prod", "--service", "web",
            "--event", "started", "--version", "v2", "--commit", "0123456789abcdef",
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), WAIT)
        assert proc.returncode == 0, err
        async with asyncio.timeout(WAIT):
            message = await anext(aiter(mqtt.messages))
    body = decode(message.payload)
    assert body["text"] == "web: deploy started (v2 @ 0123456789ab)"
    assert (body["service"], body["event"], body["version"]) == ("web", "started", "v2")
    assert out.decode().strip() == body["text"]


async def test_announce_says_a_broker_error_in_one_line_with_exit_1() -> None:
    proc = await cli(
        "announce", "--bus", "mqtt://127.0.0.1:1", "--env", "prod", "--service", "web",
        "--event", "started",
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 1
    assert err.decode().count("\n") == 1 and "did not take the announcement" in err.decode()


async def test_announce_never_prints_the_password(broker: Broker) -> None:
    env = {"DEPLOYWATCH_MQTT_USERNAME": "ci", "DEPLOYWATCH_MQTT_PASSWORD": "hunter2-secret"}
    proc = await cli(
        "announce", "--bus", "mqtt://127.0.0.1:1", "--env", "prod", "--service", "web",
        "--event", "started", env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 1
    assert b"hunter2" not in out + err


async def test_the_relay_publishes_the_sandbox_and_says_goodbye(
    broker: Broker, sandbox_process: StartSandboxProcess
) -> None:
    sandbox = await asyncio.to_thread(sandbox_process, "demo", 8.0)
    # The sandbox runs a broker of its own and says where (this test uses its own).
    assert str(sandbox.info.get("bus", "")).startswith("mqtt://127.0.0.1:")
    settings = await asyncio.to_thread(load_config, sandbox.config_path)
    env_name = settings.environment.name
    relay = await cli(
        "relay", "--bus", broker.url, "--config", str(sandbox.config_path),
        env={**sandbox.client_env, "AWS_ACCESS_KEY_ID": "sandbox",
             "AWS_SECRET_ACCESS_KEY": "sandbox", "AWS_EC2_METADATA_DISABLED": "true"},
    )  # fmt: skip
    try:
        source = BusSource(parse_bus_url(broker.url, {}), Topics(env_name), [])
        keys: set[str] = set()
        async with asyncio.timeout(WAIT):
            async for item in source.stream():
                if isinstance(item, EcsServiceSample):
                    keys.add(item.key)
                if len(keys) == len(sandbox.services):
                    break
        relay.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(relay.communicate(), WAIT)
        assert relay.returncode == 128 + signal.SIGTERM, err
        async with client(parse_bus_url(broker.url, {})) as mqtt:
            await mqtt.subscribe(Topics(env_name).relay, qos=1)
            async with asyncio.timeout(WAIT):
                message = await anext(aiter(mqtt.messages))
        status = json.loads(message.payload)
        assert (status["state"], status["reason"]) == ("offline", "relay stopped")
    finally:
        if relay.returncode is None:
            relay.kill()
            await relay.wait()
