"""The relay: one watch polls the cloud and publishes what it sees on the bus.

It runs the same :class:`~engine.controller.Controller` as the dashboard and the gate,
and tees every item its sources yield onto the bus (``sources/bus.py``): retained per
kind and key, so a viewer that starts late gets the latest of everything at once and,
feeding the same items to a watch with the same config, shows the same verdict and
panes. Besides it publishes the verdict with its evidence (retained), a stream of events
(ECS events, verdict changes, actions and their results) and its own presence: ``online``
while connected, ``offline`` with a reason when it stops or — through its MQTT last will
— when its connection is lost.

Publishing never holds the watch back: items are queued (the latest per topic wins) and
a publisher task sends them, reconnecting with back-off; after a reconnect it publishes
everything current again (a restarted broker has forgotten its retained messages).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from engine.announce import action_text, verdict_text
from engine.lock import Lock, LockArbiter
from engine.verdict import Verdict
from sources.bus import (
    KINDS,
    MAX_PAYLOAD,
    BadMessage,
    backoff,
    client,
    decode,
    encode,
    encode_item,
    encode_items,
    first_to_end,
    mqtt_error,
    recovered_failures,
    state_key,
)
from sources.model import EcsServiceSample, MetricSample, SourceFailure

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from engine.controller import Controller, Update
    from sources.bus import BusSettings, Topics
    from sources.model import EcsEvent, Item, Source

EVENTS_KEPT = 100
"""ECS events kept per service in its retained state (ECS itself lists the newest 100):
a late viewer sees the recent history, and a re-delivery is de-duplicated by id."""

HISTORY_MAX = 500
"""Most samples a retained history holds (it also stays under the payload limit)."""

STREAM_MAX = 2000
"""Bound on stream messages waiting for the broker; beyond it the oldest are dropped."""


class TeeSource:
    """A source whose items also go to the relay."""

    def __init__(self, source: Source, relay: Relay) -> None:
        self.source = source
        self.relay = relay
        self.name = source.name

    async def stream(self) -> AsyncIterator[Item]:
        async for item in self.source.stream():
            self.relay.offer(item)
            yield item


class Relay:
    """Publishes a watch on the bus.

    Args:
        controller: The watch (its config names the environment).
        bus: The broker.
        topics: The environment's topics.
        clock: Current UTC time.
    """

    def __init__(
        self,
        controller: Controller,
        bus: BusSettings,
        topics: Topics,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.controller = controller
        self.bus = bus
        self.topics = topics
        self.clock = clock
        self.current: dict[str, bytes] = {}
        """Every retained topic's current payload (published again after a reconnect)."""
        self._dirty: OrderedDict[str, bytes] = OrderedDict()
        self._stream: deque[tuple[str, bytes]] = deque(maxlen=STREAM_MAX)
        self._events: dict[str, deque[EcsEvent]] = {}
        self._history: dict[str, deque[Item]] = {}
        self.horizon: timedelta = max(
            (rule.window + rule.fresh_for for rule in controller.store.rules.rules),
            default=timedelta(0),
        )
        """How far back the rules read: a retained history covers it."""
        self._verdict: tuple[Verdict, tuple[str, ...]] | None = None
        self._wake = asyncio.Event()
        self.connected = asyncio.Event()
        self.arbiter = LockArbiter()
        self.dropped = 0
        """Claims and presences that were malformed (counted, dropped)."""
        self.published = 0
        self.connections = 0
        controller.listen(self._on_update)

    # ---- what goes out ---------------------------------------------------------------

    def offer(self, item: Item) -> None:
        """Publish one source item (retained, the latest per kind and key). Items the
        bus does not carry (a discovery's fleet changes) stay local."""
        if not isinstance(item, tuple(KINDS.values())):
            return
        if isinstance(item, EcsServiceSample):
            kept = self._events.setdefault(item.key, deque(maxlen=EVENTS_KEPT))
            known = {e.id for e in kept}
            fresh = [e for e in item.new_events if e.id not in known]
            kept.extend(fresh)
            for event in fresh:
                self._send(
                    self.topics.events,
                    encode(
                        {
                            "type": "ecs_event",
                            "service": item.key,
                            "id": event.id,
                            "at": event.at.isoformat() if event.at else None,
                            "text": event.message,
                        }
                    ),
                )
            item = replace(item, new_events=tuple(kept))
        if not isinstance(item, SourceFailure):
            for cleared in recovered_failures(item):
                topic = self.topics.state(*cleared)
                if self.current.get(topic):
                    self._retain(topic, b"")
        topic = self.topics.state(*state_key(item))
        if isinstance(item, SourceFailure | MetricSample):
            # A failure is current or nothing; a metric sample holds its whole window.
            self._retain(topic, encode_item(item))
            return
        history = self._history.setdefault(topic, deque(maxlen=HISTORY_MAX))
        if history and isinstance(item, EcsServiceSample):
            # The events travel once, with the newest sample.
            last = history[-1]
            if isinstance(last, EcsServiceSample):
                history[-1] = replace(last, new_events=())
        history.append(item)
        while len(history) > 1 and history[0].at < item.at - self.horizon:
            history.popleft()
        payload = encode_items(list(history))
        while len(payload) > MAX_PAYLOAD and len(history) > 1:
            history.popleft()
            payload = encode_items(list(history))
        self._retain(topic, payload)

    def _on_update(self, update: Update) -> None:
        snapshot = update.snapshot
        if snapshot is not None:
            report = snapshot.report
            verdict = (report.verdict, report.reasons)
            if verdict != self._verdict:
                first = self._verdict is None
                changed = self._verdict is None or self._verdict[0] is not report.verdict
                self._verdict = verdict
                body = {
                    "verdict": report.verdict.value,
                    "reasons": list(report.reasons),
                    "rules": [
                        {"rule": e.rule, "state": e.state.value, "summary": e.summary()}
                        for e in snapshot.evidence
                    ],
                    "at": snapshot.at.isoformat(),
                }
                self._retain(self.topics.verdict, encode(body))
                if changed:
                    self._send(self.topics.events, encode({"type": "verdict", **body}))
                    # A chat hears verdicts, not the watch starting up ("nothing to
                    # judge yet"); the events stream and the retained verdict have it.
                    if not (first and report.verdict is Verdict.NO_DATA):
                        env = self.controller.settings.environment.name
                        self._announce("verdict", verdict_text(env, report.verdict, report.reasons))
        result = update.result
        if result is not None:
            self._announce("action", action_text(result))
            self._send(
                self.topics.events,
                encode(
                    {
                        "type": "action",
                        "service": result.plan.key,
                        "verb": result.plan.verb.value,
                        "outcome": result.outcome.value,
                        "message": result.message,
                        "at": result.at.isoformat(),
                    }
                ),
            )

    def _announce(self, kind: str, text: str) -> None:
        """One short human-readable line for the team's chat (``announce``)."""
        body = {"type": kind, "text": text, "at": self.clock().isoformat()}
        self._send(self.topics.announce, encode(body))

    def _retain(self, topic: str, payload: bytes) -> None:
        if self.current.get(topic) == payload:
            return
        if payload:
            self.current[topic] = payload
        else:
            self.current.pop(topic, None)
        self._dirty[topic] = payload
        self._dirty.move_to_end(topic)
        self._wake.set()

    def _send(self, topic: str, payload: bytes) -> None:
        self._stream.append((topic, payload))
        self._wake.set()

    def status(self, state: str, reason: str) -> bytes:
        """The relay's presence payload."""
        return encode({"state": state, "reason": reason, "at": self.clock().isoformat()})

    # ---- running ---------------------------------------------------------------------

    async def run(self, sources: Sequence[Source]) -> None:
        """Run the watch over ``sources`` and publish it, until cancelled."""
        helpers = [
            asyncio.create_task(self._publish_forever(), name="relay-publisher"),
            asyncio.create_task(self._expire_forever(), name="relay-lock-expiry"),
        ]
        try:
            await self.controller.run([TeeSource(s, self) for s in sources])
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _publish_forever(self) -> None:
        error_class = mqtt_error()
        attempt = 0
        will = (self.topics.relay, self.status("offline", "relay connection lost"))
        while True:
            try:
                async with client(self.bus, will=will) as mqtt:
                    self.connections += 1
                    attempt = 0
                    await mqtt.publish(
                        self.topics.relay,
                        self.status("online", "relay running"),
                        qos=1,
                        retain=True,
                    )
                    await self._subscribe(mqtt)
                    # Everything current again: a restarted broker forgot it.
                    clears = {t: p for t, p in self._dirty.items() if not p}
                    self._dirty = OrderedDict(self.current)
                    self._dirty.update(clears)
                    self._wake.set()
                    self.connected.set()
                    try:
                        await first_to_end(self._drain(mqtt), self._listen(mqtt))
                    finally:
                        self.connected.clear()
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(
                                mqtt.publish(
                                    self.topics.relay,
                                    self.status("offline", "relay stopped"),
                                    qos=1,
                                    retain=True,
                                ),
                                2.0,
                            )
            except error_class:
                pass
            await asyncio.sleep(backoff(attempt))
            attempt += 1

    async def _subscribe(self, mqtt: Any) -> None:
        """What the relay reads: the lock's claims and the clients' presences."""
        await mqtt.subscribe(self.topics.claim_filter, qos=1)
        await mqtt.subscribe(self.topics.presence_filter, qos=1)
        await mqtt.subscribe(self.topics.lock_filter, qos=1)

    async def _listen(self, mqtt: Any) -> None:
        async for message in mqtt.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                payload = b""
            self.on_message(str(message.topic), bytes(payload), retained=bool(message.retain))

    def on_message(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        """A claim or a presence (the arbiter's input); a malformed one is dropped."""
        now = self.clock()
        if topic.startswith(f"{self.topics.prefix}/lock/") and not topic.endswith("/claim"):
            if retained and payload:
                self._adopt(self.topics.last_segment(topic), payload)
            return
        if topic.startswith(f"{self.topics.prefix}/presence/"):
            if not payload:  # cleared: its last will, or a goodbye
                gone = self.topics.last_segment(topic)
                for service in self.arbiter.gone(gone):
                    self._freed(service, "its holder's connection is gone")
            return
        if not topic.endswith("/claim"):
            return
        service = self.topics.last_segment(topic, strip="/claim")
        try:
            claim = decode(payload)
            who, holder = str(claim["client"]), str(claim["holder"])
        except (BadMessage, KeyError):
            self.dropped += 1
            return
        if claim.get("release"):
            if self.arbiter.release(service, who):
                self._freed(service, f"released by {holder}")
            return
        if claim.get("renew"):  # only its holder's, only while held
            renewed = self.arbiter.renew(service, who, now)
            if renewed is not None:
                self._granted(renewed)
            return
        lock = self.arbiter.claim(service, who, holder, now, takeover=bool(claim.get("takeover")))
        if lock is not None:
            self._granted(lock)

    def _adopt(self, service: str, payload: bytes) -> None:
        """A lock granted before this relay started (a restart): it still holds."""
        if service in self.arbiter.locks:
            return
        try:
            body = decode(payload)
            lock = Lock(
                service,
                str(body["client"]),
                str(body["holder"]),
                datetime.fromisoformat(str(body["since"])),
                datetime.fromisoformat(str(body["expires"])),
            )
        except (BadMessage, KeyError, ValueError):
            self.dropped += 1
            return
        self.arbiter.locks[service] = lock
        self.current[self.topics.lock(service)] = payload

    def _granted(self, lock: Lock) -> None:
        body = {
            "service": lock.service,
            "client": lock.client,
            "holder": lock.holder,
            "since": lock.since.isoformat(),
            "expires": lock.expires.isoformat(),
            "ttl_s": self.arbiter.ttl.total_seconds(),
            "taken_over_from": lock.taken_over_from,
        }
        before = self.current.get(self.topics.lock(lock.service))
        self._retain(self.topics.lock(lock.service), encode(body))
        if before is None or lock.taken_over_from is not None:
            text = lock.words()
            if lock.taken_over_from is not None:
                text = (
                    f"{lock.service}: {lock.holder} took the lock over from {lock.taken_over_from}"
                )
            self._send(self.topics.events, encode({"type": "lock", **body, "text": text}))
            if lock.taken_over_from is not None:
                self._send(self.topics.announce, encode({"type": "lock", **body, "text": text}))

    def _freed(self, service: str, why: str) -> None:
        self._retain(self.topics.lock(service), b"")
        self._send(
            self.topics.events,
            encode({"type": "lock", "service": service, "text": f"{service}: unlocked ({why})"}),
        )

    async def _expire_forever(self) -> None:
        while True:
            now = self.clock()
            due = self.arbiter.next_expiry()
            wait = 5.0 if due is None else min(5.0, max(0.05, (due - now).total_seconds()))
            await asyncio.sleep(wait)
            for service in self.arbiter.expire(self.clock()):
                self._freed(service, "expired")

    async def _drain(self, mqtt: Any) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty or self._stream:
                batch: list[tuple[str, bytes, bool]] = []
                while self._dirty and len(batch) < 200:
                    topic, payload = self._dirty.popitem(last=False)
                    batch.append((topic, payload, True))
                while self._stream and len(batch) < 400:
                    topic, payload = self._stream.popleft()
                    batch.append((topic, payload, False))
                try:
                    await asyncio.gather(
                        *(mqtt.publish(t, p, qos=1, retain=r) for t, p, r in batch)
                    )
                except BaseException:
                    # Not sent: the retained ones go out again after the reconnect.
                    for topic, payload, retained in batch:
                        if retained and topic not in self._dirty:
                            self._dirty[topic] = payload
                    raise
                self.published += len(batch)


__all__ = ["EVENTS_KEPT", "Relay", "TeeSource"]
