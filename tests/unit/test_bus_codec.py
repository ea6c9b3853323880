"""The bus's payloads: every source item survives a round trip; bad input is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sources.bus import (
    MAX_PAYLOAD,
    BadMessage,
    BusError,
    Topics,
    decode_item,
    encode_item,
    parse_bus_url,
    state_key,
)
from sources.model import (
    EcsServiceSample,
    MetricPoint,
    MetricSample,
    ProbeSample,
    SentrySample,
    ServiceDeployment,
    SourceFailure,
)

finite = st.floats(allow_nan=False, allow_infinity=False)
maybe = st.none() | finite
aware = st.datetimes(timezones=st.just(UTC))

# Numbers a source yields are finite (a gap is None): our own types only, never float.
st.register_type_strategy(MetricPoint, st.builds(MetricPoint, at=aware, value=maybe))
st.register_type_strategy(
    ServiceDeployment, st.builds(ServiceDeployment, traffic_weight=maybe, created_at=aware)
)

items = st.one_of(
    st.builds(EcsServiceSample, at=aware),
    st.builds(MetricSample, at=aware),
    st.builds(SentrySample, at=aware, errors_so_far=maybe),
    st.builds(ProbeSample, at=aware, latency_ms=maybe, success_ratio=finite),
    st.builds(SourceFailure, at=aware, retry_in=maybe),
)


@settings(max_examples=150, deadline=None)
@given(items)
def test_every_item_survives_a_round_trip(item: object) -> None:
    payload = encode_item(item)  # type: ignore[arg-type]
    assert json.loads(payload)["v"] == 1
    assert decode_item(payload) == item


def test_a_value_that_is_not_a_number_travels_as_no_data() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    sample = MetricSample("m", None, None, (MetricPoint(at, float("nan")),), None, at)
    assert decode_item(encode_item(sample)).points[0].value is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"v": 2, "kind": "ecs", "item": {}}', "version"),
        (b'{"v": 1, "kind": "rm -rf", "item": {}}', "unknown kind"),
        (b'{"v": 1, "kind": "probe", "item": {"probe": 3}}', "invalid probe"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_a_malformed_message_is_refused_in_words(payload: bytes, words: str) -> None:
    with pytest.raises(BadMessage, match=words) as caught:
        decode_item(payload)
    assert not caught.value.oversized


def test_an_oversized_message_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(BadMessage, match="oversized") as caught:
        decode_item(b" " * (MAX_PAYLOAD + 1))
    assert caught.value.oversized


def test_state_keys_name_kind_and_key_and_topics_quote_them() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    sample = MetricSample("error_rate", "c/web", "version:v2", (), "%", at)
    assert state_key(sample) == ("metric", "error_rate/version:v2")
    topic = Topics("prod/eu #1").state(*state_key(sample))
    assert topic == "deploywatch/prod%2Feu%20%231/state/metric/error_rate%2Fversion%3Av2"
    assert "+" not in topic and "#" not in topic


def test_bus_urls_and_credentials_from_the_environment() -> None:
    bus = parse_bus_url("mqtt://broker", {})
    assert (bus.host, bus.port, bus.tls, bus.username) == ("broker", 1883, False, None)
    env = {"DEPLOYWATCH_MQTT_USERNAME": "alice", "DEPLOYWATCH_MQTT_PASSWORD": "s3cret-pw"}
    bus = parse_bus_url("mqtts://broker", env)
    assert (bus.port, bus.tls, bus.username, bus.password) == (8883, True, "alice", "s3cret-pw")
    assert "s3cret-pw" not in repr(bus) and "s3cret-pw" not in bus.url


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://broker", "mqtt:// or mqtts://"),
        ("mqtt://alice:pw@broker", "not in the URL"),
        ("mqtt://broker:99999", "port"),
        ("mqtt://broker?ca=/x", "need mqtts"),
        ("mqtts://broker?cert=/x", "both cert= and key="),
        ("mqtts://broker?ca=/nonexistent/ca.pem", "names no readable file"),
        ("mqtts://broker?colour=red", "unknown bus URL option"),
        ("mqtt://", "names no host"),
    ],
)
def test_a_bad_bus_url_is_said_in_one_line(url: str, words: str) -> None:
    with pytest.raises(BusError, match=words) as caught:
        parse_bus_url(url, {})
    assert "pw" not in str(caught.value)
