"""The deployment bus: versioned JSON over MQTT (aiomqtt), and a viewer's source.

One relay per environment polls the cloud and publishes what its watch ingests under
``deploywatch/<env>/``:

- ``state/<kind>/<key>`` (retained): the latest source item of each kind and key — an
  ECS sample per service, a metric series per metric and group, the Sentry sample, a
  probe sample per probe, a source failure per source and key (cleared when the source
  answers again) — so a newcomer gets the latest of everything at once;
- ``verdict`` (retained): the relay's verdict and its evidence, in words;
- ``events``: a stream of events (ECS events, verdict changes, actions), not retained;
- ``relay`` (retained): ``online``, or ``offline`` with a reason (also its MQTT last will);
- ``lock/<service>`` (retained) and ``lock/<service>/claim``: the operator lock;
- ``presence/<client>`` (retained, cleared by the client's last will);
- ``announce``: short human-readable announcements (a chat bridge forwards them);
- ``pipeline/<service>`` (retained): a service's latest pipeline event (``announce``),
  read by a gate or a viewer that starts after it was sent.

Every payload is JSON with ``"v": 1``; what arrives is validated (pydantic) and a
malformed or oversized one is counted and dropped, never fatal. aiomqtt is imported only
when a bus is used. The bus carries state and coordination, never commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from sources.model import (
    EcsServiceSample,
    Item,
    MetricSample,
    PipelineEvent,
    ProbeSample,
    SentrySample,
    SourceFailure,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence

    import aiomqtt

VERSION = 1
"""The payload version every message carries as ``"v"``."""

MAX_PAYLOAD = 256 * 1024
"""Bytes; a larger message is counted and dropped."""

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883

ENV_USERNAME = "DEPLOYWATCH_MQTT_USERNAME"
ENV_PASSWORD = "DEPLOYWATCH_MQTT_PASSWORD"

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0

KINDS: dict[str, type[Any]] = {
    "ecs": EcsServiceSample,
    "metric": MetricSample,
    "sentry": SentrySample,
    "probe": ProbeSample,
    "failure": SourceFailure,
}
"""The item kinds the bus carries, by their name on the wire."""

ADAPTERS: dict[str, TypeAdapter[Any]] = {kind: TypeAdapter(cls) for kind, cls in KINDS.items()}
"""One pydantic adapter per kind: items to JSON and back (the recordings use them too)."""


class BusError(Exception):
    """A bus URL or setting that cannot be used (said in one line)."""


class BadMessage(Exception):
    """A message that is not what the bus carries: counted and dropped."""

    def __init__(self, message: str, *, oversized: bool = False) -> None:
        super().__init__(message)
        self.oversized = oversized


# ---- payloads ----------------------------------------------------------------------


def kind_of(item: Item) -> str:
    """The wire name of an item's kind."""
    for kind, cls in KINDS.items():
        if isinstance(item, cls):
            return kind
    raise TypeError(f"not a bus item: {type(item).__name__}")


def encode_item(item: Item) -> bytes:
    """``{"v": 1, "kind": "ecs", "item": {...}}`` as UTF-8 JSON."""
    kind = kind_of(item)
    # pydantic's JSON: a value that is not a finite number becomes null (no data).
    body = ADAPTERS[kind].dump_json(item)
    return b'{"v":%d,"kind":"%s","item":%s}' % (VERSION, kind.encode(), body)


def encode_items(items: Sequence[Item]) -> bytes:
    """Recent items of one kind and key, oldest first: ``{"v": 1, "kind": .., "items": [..]}``.

    A retained state carries the recent history its rules read (probe rounds, Sentry
    polls, ECS polls), so a viewer that starts late judges the same windows.
    """
    if not items:
        raise ValueError("no items")
    kind = kind_of(items[0])
    adapter = ADAPTERS[kind]
    body = b",".join(adapter.dump_json(item) for item in items)
    return b'{"v":%d,"kind":"%s","items":[%s]}' % (VERSION, kind.encode(), body)


MAX_ITEMS = 10_000
"""Most items one message may carry."""


def decode_items(payload: bytes) -> list[Item]:
    """The items a message carries (one or a history), oldest first.

    Raises:
        BadMessage: It is oversized, not JSON, of another version or kind, or invalid.
    """
    message = decode(payload)
    kind = message.get("kind")
    adapter = ADAPTERS.get(kind) if isinstance(kind, str) else None
    if adapter is None:
        raise BadMessage(f"unknown kind {kind!r}")
    if "items" in message:
        bodies = message["items"]
        if not isinstance(bodies, list) or not 0 < len(bodies) <= MAX_ITEMS:
            raise BadMessage(f"items: expected a list of 1 to {MAX_ITEMS}")
    else:
        bodies = [message.get("item")]
    try:
        return [adapter.validate_python(body) for body in bodies]
    except ValidationError as exc:
        raise BadMessage(f"invalid {kind}: {exc.error_count()} error(s)") from None


def decode_item(payload: bytes) -> Item:
    """The one item a message carries (the newest of a history).

    Raises:
        BadMessage: It is oversized, not JSON, of another version or kind, or invalid.
    """
    return decode_items(payload)[-1]


def encode(message: dict[str, Any]) -> bytes:
    """A versioned JSON payload (``"v"`` first)."""
    return json.dumps({"v": VERSION, **message}, separators=(",", ":"), allow_nan=False).encode()


def decode(payload: bytes | bytearray | str) -> dict[str, Any]:
    """A versioned JSON object, checked for size and version.

    Raises:
        BadMessage: Oversized, not a JSON object, or not version 1.
    """
    if len(payload) > MAX_PAYLOAD:
        raise BadMessage(f"oversized: {len(payload)} bytes > {MAX_PAYLOAD}", oversized=True)
    try:
        message = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise BadMessage("not JSON") from None
    if not isinstance(message, dict):
        raise BadMessage("not a JSON object")
    if message.get("v") != VERSION:
        raise BadMessage(f"unsupported version {message.get('v')!r}")
    return message


PIPELINE_EVENTS = ("started", "finished", "failed", "rolled-back")
"""What ``deploywatch announce --event`` may say."""

PIPELINE_LIMITS = {"service": 200, "version": 200, "commit": 100, "url": 2000, "by": 200}
"""Most characters of each field of a pipeline event (``announce`` refuses longer ones;
on receipt a longer one makes the message malformed)."""


class _PipelineMessage(BaseModel):
    """A pipeline event as ``deploywatch announce`` publishes it on ``events``."""

    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=100)]
    service: Annotated[str, Field(min_length=1, max_length=PIPELINE_LIMITS["service"])]
    event: Literal["started", "finished", "failed", "rolled-back"]
    at: datetime
    version: Annotated[str, Field(max_length=PIPELINE_LIMITS["version"])] | None = None
    commit: Annotated[str, Field(max_length=PIPELINE_LIMITS["commit"])] | None = None
    url: Annotated[str, Field(max_length=PIPELINE_LIMITS["url"])] | None = None
    by: Annotated[str, Field(max_length=PIPELINE_LIMITS["by"])] | None = None


def decode_pipeline(payload: bytes | bytearray | str) -> PipelineEvent | None:
    """The pipeline event an ``events`` message carries; ``None`` for the relay's own
    events (ECS events, verdicts, actions, locks), which a viewer reads elsewhere.

    Raises:
        BadMessage: It is oversized, not JSON, of another version, or a pipeline event
            that is invalid (a field missing, too long, of the wrong type).
    """
    message = decode(payload)
    if message.get("type") != "pipeline":
        return None
    try:
        body = _PipelineMessage.model_validate(message)
    except ValidationError as exc:
        raise BadMessage(f"invalid pipeline event: {exc.error_count()} error(s)") from None
    at = body.at if body.at.tzinfo is not None else body.at.replace(tzinfo=UTC)
    return PipelineEvent(
        id=body.id,
        service=body.service,
        event=body.event,
        at=at,
        version=body.version,
        commit=body.commit,
        url=body.url,
        by=body.by,
    )


def state_key(item: Item) -> tuple[str, str]:
    """``(kind, key)``: what a retained state message is the latest of."""
    if isinstance(item, EcsServiceSample):
        return "ecs", item.key
    if isinstance(item, MetricSample):
        return "metric", f"{item.metric}/{item.group or '-'}"
    if isinstance(item, SentrySample):
        return "sentry", item.service or "-"
    if isinstance(item, ProbeSample):
        return "probe", item.probe
    if isinstance(item, PipelineEvent):
        raise TypeError("a pipeline event is a stream message, not a retained state")
    return "failure", f"{item.source}/{item.key or '-'}"


def recovered_failures(item: Item) -> list[tuple[str, str]]:
    """The failure states a sample clears (as the store clears them on ingest)."""
    if isinstance(item, EcsServiceSample):
        return [("failure", f"ecs/{item.key}"), ("failure", "ecs/-")]
    if isinstance(item, MetricSample):
        return [("failure", f"datadog/{item.metric}"), ("failure", "datadog/-")]
    if isinstance(item, SentrySample):
        return [("failure", "sentry/-")]
    return []


# ---- where: URL, credentials, topics -----------------------------------------------


@dataclass(frozen=True)
class BusSettings:
    """How to reach the broker. The password never appears in ``repr``."""

    host: str
    port: int
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive: int = 10

    @property
    def url(self) -> str:
        """The URL without credentials (fit for a screen or a log)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_bus_url(url: str, env: dict[str, str] | None = None) -> BusSettings:
    """``mqtt://host[:port]`` or ``mqtts://host[:port][?ca=FILE&cert=FILE&key=FILE]``.

    Credentials come from ``DEPLOYWATCH_MQTT_USERNAME`` / ``DEPLOYWATCH_MQTT_PASSWORD``,
    never from the URL (a URL ends up in shell history and process lists).

    Raises:
        BusError: What is wrong with it, in one line (never the password).
    """
    env = dict(os.environ) if env is None else env
    parts = urlsplit(url.strip())
    if parts.scheme not in ("mqtt", "mqtts"):
        raise BusError("a bus URL starts with mqtt:// or mqtts://")
    if parts.password is not None or parts.username is not None:
        raise BusError(f"put credentials in {ENV_USERNAME} and {ENV_PASSWORD}, not in the URL")
    if not parts.hostname:
        raise BusError("the bus URL names no host")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
    except ValueError:
        raise BusError("the bus URL's port is not a number from 1 to 65535") from None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - {"ca", "cert", "key"})
    if unknown:
        raise BusError(f"unknown bus URL option(s): {', '.join(unknown)} (ca, cert, key)")
    if query and not tls:
        raise BusError("ca, cert and key need mqtts://")
    if ("cert" in query) != ("key" in query):
        raise BusError("a client certificate needs both cert= and key=")
    for name in ("ca", "cert", "key"):
        if name in query and not os.path.isfile(query[name]):  # noqa: PTH113 (str paths)
            raise BusError(f"{name}= names no readable file")
    username = env.get(ENV_USERNAME) or None
    password = env.get(ENV_PASSWORD) or None
    if password is not None and username is None:
        raise BusError(f"{ENV_PASSWORD} is set without {ENV_USERNAME}")
    return BusSettings(
        host=parts.hostname,
        port=port,
        tls=tls,
        ca_file=query.get("ca"),
        cert_file=query.get("cert"),
        key_file=query.get("key"),
        username=username,
        password=password,
    )


@dataclass(frozen=True)
class Topics:
    """Every topic of one environment (``deploywatch/<env>/...``)."""

    env: str

    @property
    def prefix(self) -> str:
        return f"deploywatch/{quote(self.env, safe='')}"

    def state(self, kind: str, key: str) -> str:
        return f"{self.prefix}/state/{kind}/{quote(key, safe='')}"

    @property
    def state_filter(self) -> str:
        return f"{self.prefix}/state/#"

    @property
    def verdict(self) -> str:
        return f"{self.prefix}/verdict"

    @property
    def events(self) -> str:
        return f"{self.prefix}/events"

    @property
    def relay(self) -> str:
        return f"{self.prefix}/relay"

    @property
    def announce(self) -> str:
        return f"{self.prefix}/announce"

    def lock(self, service: str) -> str:
        return f"{self.prefix}/lock/{quote(service, safe='')}"

    def lock_claim(self, service: str) -> str:
        return f"{self.lock(service)}/claim"

    @property
    def lock_filter(self) -> str:
        return f"{self.prefix}/lock/+"

    @property
    def claim_filter(self) -> str:
        return f"{self.prefix}/lock/+/claim"

    def presence(self, client: str) -> str:
        return f"{self.prefix}/presence/{quote(client, safe='')}"

    @property
    def presence_filter(self) -> str:
        return f"{self.prefix}/presence/+"

    def pipeline(self, service: str) -> str:
        """A service's latest pipeline event (retained: a gate started after the
        pipeline's ``announce --event started`` still hears it)."""
        return f"{self.prefix}/pipeline/{quote(service, safe='')}"

    @property
    def pipeline_filter(self) -> str:
        return f"{self.prefix}/pipeline/+"

    def is_pipeline(self, topic: str) -> bool:
        return topic.startswith(f"{self.prefix}/pipeline/")

    def last_segment(self, topic: str, *, strip: str = "") -> str:
        """The unquoted last segment of a topic (``strip``: a suffix removed first)."""
        if strip and topic.endswith(strip):
            topic = topic[: -len(strip)]
        return unquote(topic.rsplit("/", 1)[-1])


_QUIET = logging.getLogger("deploywatch.bus")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
"""aiomqtt's own log lines (pending calls, reconnects) never reach a terminal: a bus
client's state is shown as STALE and counted, not printed over the dashboard."""


def tls_context(settings: BusSettings) -> ssl.SSLContext | None:
    """The TLS context of an ``mqtts://`` bus (system CAs unless ``ca=`` names a file)."""
    if not settings.tls:
        return None
    context = ssl.create_default_context(cafile=settings.ca_file)
    if settings.cert_file and settings.key_file:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    return context


def client(
    settings: BusSettings,
    *,
    identifier: str | None = None,
    will: tuple[str, bytes] | None = None,
    timeout: float = 10.0,
) -> aiomqtt.Client:
    """An aiomqtt client (imported here: only a bus user pays for it).

    Args:
        settings: The broker.
        identifier: The MQTT client id (random when ``None``).
        will: ``(topic, payload)`` published retained by the broker when this client
            vanishes without saying goodbye.
        timeout: Seconds for each broker round trip.
    """
    import aiomqtt

    return aiomqtt.Client(
        settings.host,
        settings.port,
        identifier=identifier,
        username=settings.username,
        password=settings.password,
        keepalive=settings.keepalive,
        timeout=timeout,
        tls_context=tls_context(settings),
        will=aiomqtt.Will(will[0], will[1], qos=1, retain=True) if will else None,
        logger=_QUIET,
    )


def mqtt_error() -> type[Exception]:
    """aiomqtt's error class (imported lazily)."""
    import aiomqtt

    return aiomqtt.MqttError


async def first_to_end(*coros: Coroutine[Any, Any, None]) -> None:
    """Run these together until one ends (raising its error), then cancel the others.

    A connection's reader and writer: reading is what notices a lost connection. Not a
    TaskGroup: in Python 3.11 it can turn our own cancellation into the children's
    errors, and a caller would reconnect instead of stopping.
    """
    tasks = {asyncio.create_task(coro) for coro in coros}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def backoff(attempt: int) -> float:
    """Seconds before reconnect ``attempt`` (0 first): exponential with jitter."""
    ceiling = min(BACKOFF_MAX, BACKOFF_FIRST * 2.0**attempt)
    return ceiling * random.uniform(0.5, 1.0)  # jitter, not a secret


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class BusStats:
    """What a bus client received and what it dropped (and why)."""

    received: int = 0
    malformed: int = 0
    oversized: int = 0
    last_dropped: str | None = None
    """Why the last message was dropped, and its topic (never logged to the terminal)."""

    def count(self, error: BadMessage, topic: str) -> None:
        self.last_dropped = f"{topic}: {error}"
        if error.oversized:
            self.oversized += 1
        else:
            self.malformed += 1


# ---- the viewer's source -----------------------------------------------------------


class BusSource:
    """A viewer's only source: the relay's items, read from the bus.

    It yields what the relay's watch ingested (so a viewer's watch with the same config
    shows the same verdict and panes). When the broker cannot be reached or the relay
    says it is offline, it yields a failure for every service and signal source (the
    panes say STALE with its age and reason) and reconnects by itself with back-off.

    Args:
        settings: The broker.
        topics: The environment's topics.
        services: The configured service keys (each card says STALE on its own).
        clock: Current UTC time.
    """

    name = "bus"

    def __init__(
        self,
        settings: BusSettings,
        topics: Topics,
        services: Sequence[str],
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.services = tuple(services)
        self.clock = clock
        self.stats = BusStats()
        self.connected = asyncio.Event()
        self.relay_online: bool | None = None
        self.reconnects = 0
        self._last: dict[str, bytes] = {}
        """The payload last yielded per state topic (a re-delivery is not yielded twice)."""
        self._seen: dict[str, datetime] = {}
        """The newest item's time yielded per state topic (a history yields the rest)."""

    def failures(self, error: str, reason: str = "bus") -> list[SourceFailure]:
        """The failures that mark everything this viewer shows STALE."""
        now = self.clock()
        out = [SourceFailure("ecs", key, error, reason, now) for key in self.services]
        out += [SourceFailure(s, None, error, reason, now) for s in ("datadog", "sentry")]
        return out

    async def stream(self) -> AsyncIterator[Item]:
        """Yield the relay's items until cancelled; failures while the bus is away."""
        error_class = mqtt_error()
        attempt = 0
        while True:
            try:
                async with client(self.settings) as mqtt:
                    # State first: a late viewer then reads the relay's retained "offline"
                    # after the retained state it makes STALE.
                    await mqtt.subscribe(self.topics.state_filter, qos=1)
                    await mqtt.subscribe(self.topics.relay, qos=1)
                    await mqtt.subscribe(self.topics.events, qos=1)  # pipeline events
                    # Each service's latest, retained: a viewer started after the
                    # pipeline's ``announce --event started`` still shows it.
                    await mqtt.subscribe(self.topics.pipeline_filter, qos=1)
                    if attempt:
                        self.reconnects += 1
                    attempt = 0
                    self.connected.set()
                    async for message in mqtt.messages:
                        topic, retained = str(message.topic), bool(message.retain)
                        for item in self._read(topic, message.payload, retained=retained):
                            yield item
            except error_class as exc:
                self.connected.clear()
                self._forget()  # after a gap every state is news again
                yield_error = f"broker {self.settings.url} unreachable: {exc}"
                for failure in self.failures(yield_error):
                    yield failure
            await asyncio.sleep(backoff(attempt))
            attempt += 1

    def _forget(self) -> None:
        self._last.clear()
        self._seen.clear()

    def _read(self, topic: str, payload: Any, *, retained: bool = False) -> Iterable[Item]:
        if not isinstance(payload, bytes | bytearray):
            payload = b"" if payload is None else str(payload).encode()
        self.stats.received += 1
        if topic == self.topics.relay:
            return self._relay_status(topic, bytes(payload))
        if topic == self.topics.events:
            return self._pipeline(topic, bytes(payload))
        if self.topics.is_pipeline(topic):
            # Only the retained one is news: a live one came on ``events`` too (and
            # the store takes each pipeline event once, by its id).
            return self._pipeline(topic, bytes(payload)) if retained and payload else ()
        if not payload:
            self._last.pop(topic, None)
            self._seen.pop(topic, None)
            return ()  # a cleared retained state
        if self._last.get(topic) == payload:
            return ()
        try:
            items = decode_items(bytes(payload))
        except BadMessage as exc:
            self.stats.count(exc, topic)
            return ()
        self._last[topic] = bytes(payload)
        # A history: only what is newer than what this topic gave already.
        seen = self._seen.get(topic)
        fresh = [i for i in items if seen is None or i.at > seen] or items[-1:]
        if fresh:
            self._seen[topic] = max(i.at for i in fresh)
        return fresh

    def _pipeline(self, topic: str, payload: bytes) -> Iterable[Item]:
        """A pipeline event (``deploywatch announce``) from the events stream; the
        relay's own events are not items (a viewer judges from the retained state)."""
        try:
            event = decode_pipeline(payload)
        except BadMessage as exc:
            self.stats.count(exc, topic)
            return ()
        return () if event is None else (event,)

    def _relay_status(self, topic: str, payload: bytes) -> Iterable[Item]:
        if not payload:
            return ()
        try:
            status = decode(payload)
        except BadMessage as exc:
            self.stats.count(exc, topic)
            return ()
        online = status.get("state") == "online"
        was, self.relay_online = self.relay_online, online
        if online or was is False:
            return ()
        self._forget()
        reason = str(status.get("reason") or "no reason given")
        return self.failures(f"relay offline: {reason}")


@dataclass(frozen=True)
class LockView:
    """A service's lock as the arbiter published it."""

    service: str
    client: str
    holder: str
    since: datetime
    expires: datetime | None = None
    """When the arbiter frees it unless renewed (``None``: it did not say)."""
    ttl: timedelta | None = None
    """The arbiter's TTL: ``expires`` is this long after its last grant or renewal."""

    @property
    def renewed(self) -> datetime | None:
        """When the arbiter last granted or renewed it."""
        if self.expires is None or self.ttl is None:
            return None
        return self.expires - self.ttl

    def words(self) -> str:
        """``web: locked by alice@bastion-1 since 02:03``."""
        return f"{self.service}: locked by {self.holder} since {self.since.strftime('%H:%M')}"


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("a time without its zone")
    return when


def _positive(ttl: timedelta) -> timedelta:
    if ttl <= timedelta(0):
        raise ValueError("a TTL that is not positive")
    return ttl


RENEW_EVERY = 5.0
"""Seconds between two looks at whether a lock of ours is due for renewal."""


class LockClient:
    """One deploywatch process's side of the operator lock.

    It keeps a retained presence (cleared by its MQTT last will when its connection
    drops, so the arbiter frees its locks), follows every service's lock, and claims,
    renews or releases. The bus carries who may act, never what to do.

    Renewal: a lock of ours is renewed once a third of its TTL has passed since the
    arbiter last granted or renewed it, but only when the operator was active
    (:meth:`touch`: a key, an action) since then. A dashboard left open with nobody at
    it therefore loses its locks a TTL (at most 4/3 of one) after the operator's last
    key, as a forgotten lock should; one in use never does.

    Args:
        settings: The broker.
        topics: The environment's topics.
        holder: ``user@host``.
        identifier: This process's client id (unique; random by default).
    """

    def __init__(
        self, settings: BusSettings, topics: Topics, holder: str, identifier: str | None = None
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.holder = holder
        self.identifier = identifier or f"dw-{os.getpid()}-{random.getrandbits(32):08x}"
        self.locks: dict[str, LockView] = {}
        self.changed = asyncio.Event()
        self.connected = asyncio.Event()
        self.stats = BusStats()
        self.active_at: datetime | None = None
        """When the operator last did something here (see :meth:`touch`)."""
        self._renew_sent: dict[str, datetime] = {}
        self._mqtt: aiomqtt.Client | None = None

    def refusal(self, service: str) -> str | None:
        """Why this process may not act on ``service`` now (``None``: it may)."""
        lock = self.locks.get(service)
        if lock is None or lock.client == self.identifier:
            return None
        return lock.words()

    def mine(self, service: str) -> bool:
        lock = self.locks.get(service)
        return lock is not None and lock.client == self.identifier

    async def claim(self, service: str, *, takeover: bool = False) -> None:
        """Ask the arbiter for ``service``'s lock (its answer arrives as the lock)."""
        await self._publish(
            self.topics.lock_claim(service),
            {"client": self.identifier, "holder": self.holder, "takeover": takeover},
        )

    async def release(self, service: str) -> None:
        """Give ``service``'s lock back (the arbiter honours it only from its holder)."""
        await self._publish(
            self.topics.lock_claim(service),
            {"client": self.identifier, "holder": self.holder, "release": True},
        )

    async def renew(self, service: str) -> None:
        """Extend ``service``'s lock by a TTL (only its holder's, only while held)."""
        await self._publish(
            self.topics.lock_claim(service),
            {"client": self.identifier, "holder": self.holder, "renew": True},
        )

    def touch(self, now: datetime) -> None:
        """The operator did something: the locks they hold stay theirs."""
        self.active_at = now

    def renewals(self, now: datetime) -> list[str]:
        """The services whose lock (ours) to renew now (see the class's doc)."""
        due = []
        for service, lock in self.locks.items():
            renewed = lock.renewed
            if lock.client != self.identifier or renewed is None or lock.ttl is None:
                continue
            if self.active_at is None or self.active_at <= renewed:
                continue  # nobody at the keyboard since: let it run out
            third = lock.ttl / 3
            sent = self._renew_sent.get(service)
            if now - renewed >= third and (sent is None or now - sent >= third):
                due.append(service)
        return due

    async def keep(
        self, clock: Callable[[], datetime] = utc_now, every: float = RENEW_EVERY
    ) -> None:
        """Renew our locks while the operator is active (until cancelled); a renewal
        that cannot be sent now is tried again on the next look."""
        error_class = mqtt_error()
        while True:
            await asyncio.sleep(every)
            now = clock()
            for service in self.renewals(now):
                try:
                    await self.renew(service)
                except error_class:
                    continue
                self._renew_sent[service] = now

    async def _publish(self, topic: str, body: dict[str, Any]) -> None:
        if self._mqtt is None:
            raise mqtt_error()("not connected to the bus")
        await self._mqtt.publish(topic, encode(body), qos=1)

    async def run(self) -> None:
        """Stay connected (reconnecting with back-off) and follow the locks."""
        error_class = mqtt_error()
        attempt = 0
        presence = self.topics.presence(self.identifier)
        while True:
            try:
                async with client(
                    self.settings, identifier=self.identifier, will=(presence, b"")
                ) as mqtt:
                    await mqtt.publish(
                        presence, encode({"holder": self.holder}), qos=1, retain=True
                    )
                    await mqtt.subscribe(self.topics.lock_filter, qos=1)
                    self._mqtt = mqtt
                    attempt = 0
                    self.connected.set()
                    try:
                        async for message in mqtt.messages:
                            self._read(str(message.topic), message.payload)
                    finally:
                        self._mqtt = None
                        self.connected.clear()
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(
                                mqtt.publish(presence, b"", qos=1, retain=True), 2.0
                            )
            except error_class:
                pass
            await asyncio.sleep(backoff(attempt))
            attempt += 1

    def _read(self, topic: str, payload: Any) -> None:
        service = self.topics.last_segment(topic)
        if not payload:
            self.locks.pop(service, None)
        else:
            try:
                body = decode(bytes(payload))
                expires, ttl = body.get("expires"), body.get("ttl_s")
                self.locks[service] = LockView(
                    service, str(body["client"]), str(body["holder"]),
                    datetime.fromisoformat(str(body["since"])),
                    _aware(datetime.fromisoformat(str(expires))) if expires is not None else None,
                    _positive(timedelta(seconds=float(ttl))) if ttl is not None else None,
                )  # fmt: skip
            except (BadMessage, KeyError, ValueError, TypeError, OverflowError) as exc:
                error = exc if isinstance(exc, BadMessage) else BadMessage(f"bad lock: {exc!r}")
                self.stats.count(error, topic)
                return
        self.changed.set()


__all__ = [
    "KINDS",
    "MAX_PAYLOAD",
    "PIPELINE_EVENTS",
    "PIPELINE_LIMITS",
    "VERSION",
    "BadMessage",
    "BusError",
    "BusSettings",
    "BusSource",
    "BusStats",
    "LockClient",
    "LockView",
    "Topics",
    "backoff",
    "client",
    "decode",
    "decode_item",
    "decode_items",
    "decode_pipeline",
    "encode",
    "encode_item",
    "encode_items",
    "kind_of",
    "parse_bus_url",
    "recovered_failures",
    "state_key",
]
