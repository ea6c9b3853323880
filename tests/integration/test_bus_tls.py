"""The bus over TLS with a client certificate and a password (mosquitto, a CA made here)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from sandbox.broker import Broker, TlsFiles, mosquitto_path
from sources.bus import Topics, client, decode, encode, mqtt_error, parse_bus_url

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

trustme = pytest.importorskip("trustme")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed"),
]

WAIT = 20.0
CREDENTIALS = {"DEPLOYWATCH_MQTT_USERNAME": "relay", "DEPLOYWATCH_MQTT_PASSWORD": "pw-Qx7-secret"}


class Pki:
    def __init__(self, folder: Path) -> None:
        ca = trustme.CA()
        self.ca = folder / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca))
        server = ca.issue_cert("127.0.0.1", "localhost")
        self.server_cert, self.server_key = folder / "server.pem", folder / "server.key"
        server.cert_chain_pems[0].write_to_path(str(self.server_cert))
        server.private_key_pem.write_to_path(str(self.server_key))
        me = ca.issue_cert("deploywatch-relay")
        self.cert, self.key = folder / "client.pem", folder / "client.key"
        me.cert_chain_pems[0].write_to_path(str(self.cert))
        me.private_key_pem.write_to_path(str(self.key))
        other = trustme.CA()  # a CA the broker does not trust
        stranger = other.issue_cert("stranger")
        self.stranger_cert, self.stranger_key = folder / "s.pem", folder / "s.key"
        stranger.cert_chain_pems[0].write_to_path(str(self.stranger_cert))
        stranger.private_key_pem.write_to_path(str(self.stranger_key))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
def tls_broker(pki: Pki) -> Iterator[Broker]:
    tls = TlsFiles(pki.server_cert, pki.server_key, ca=pki.ca, require_certificate=True)
    with Broker(tls=tls, passwords={"relay": CREDENTIALS["DEPLOYWATCH_MQTT_PASSWORD"]}) as b:
        yield b


async def test_mutual_tls_and_a_password_round_trip(tls_broker: Broker, pki: Pki) -> None:
    url = f"{tls_broker.url}?ca={pki.ca}&cert={pki.cert}&key={pki.key}"
    bus = await asyncio.to_thread(parse_bus_url, url, CREDENTIALS)
    topics = Topics("prod")
    async with asyncio.timeout(WAIT), client(bus) as mqtt:
        await mqtt.subscribe(topics.announce, qos=1)
        await mqtt.publish(topics.announce, encode({"text": "hello over TLS"}), qos=1)
        message = await anext(aiter(mqtt.messages))
    assert decode(message.payload)["text"] == "hello over TLS"


@pytest.mark.parametrize("case", ["wrong password", "untrusted client certificate", "no CA"])
async def test_the_broker_refuses_what_it_should(tls_broker: Broker, pki: Pki, case: str) -> None:
    env = dict(CREDENTIALS)
    cert, key, ca = pki.cert, pki.key, f"ca={pki.ca}&"
    if case == "wrong password":
        env["DEPLOYWATCH_MQTT_PASSWORD"] = "nope"
    elif case == "untrusted client certificate":
        cert, key = pki.stranger_cert, pki.stranger_key
    else:
        ca = ""  # the system's CAs do not know ours
    bus = await asyncio.to_thread(parse_bus_url, f"{tls_broker.url}?{ca}cert={cert}&key={key}", env)
    with pytest.raises(mqtt_error()) as caught:
        async with asyncio.timeout(WAIT), client(bus) as mqtt:
            await mqtt.publish("deploywatch/prod/announce", b"{}", qos=1)
    assert CREDENTIALS["DEPLOYWATCH_MQTT_PASSWORD"] not in str(caught.value)
