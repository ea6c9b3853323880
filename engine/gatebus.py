"""The gate on the deployment bus (``deploywatch gate --bus URL``).

The gate still polls the cloud itself (it is the pipeline's own watch); on the bus it

- publishes one-line announcements on the environment's ``announce`` topic: the gate
  started, each verdict change with its evidence, an action sent and its result, a bake
  signed off or failed, and the gate's exit (wording shared with the relay:
  ``engine/announce.py``);
- reads the environment's ``events`` for pipeline events (``deploywatch announce``) and
  hands each to the watch (``Controller.ingest``: the store keeps it for the report's
  *Pipeline events*, a re-delivery is taken once) and to ``say`` for a line; and each
  service's latest one, retained on ``pipeline/<service>``, when it is recent
  (:data:`RETAINED_RECENT`): the pipeline's ``announce --event started`` usually comes
  just before the gate starts.

The bus is never the gate's business: a broker that is down or goes away is said once
(``say("bus", ...)``) and retried with back-off; nothing it does reaches the watch's
verdict or the gate's exit code. Announcements wait in a bounded queue while it is away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from engine.announce import (
    action_text,
    bake_text,
    gate_exit_text,
    gate_started_text,
    sent_text,
    verdict_text,
)
from engine.bake import BakeState
from engine.text import clean
from engine.verdict import Verdict
from sources.bus import (
    BadMessage,
    BusStats,
    backoff,
    client,
    decode_pipeline,
    encode,
    first_to_end,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from engine.controller import Controller, Update
    from sources.bus import BusSettings, Topics

PENDING_MAX = 200
"""Announcements kept while the broker is away (the oldest are dropped first)."""

FLUSH_WAIT = 5.0
"""Seconds the gate waits at exit for its last announcements to reach the broker."""

RETAINED_RECENT = timedelta(minutes=15)
"""A service's retained pipeline event counts when it is at most this old when the gate
starts (or ``--since``, when that is longer): older ones are an earlier deploy's."""


class GateBus:
    """A gate's announcements and pipeline events over the bus.

    Args:
        controller: The gate's watch.
        services: The watched service keys.
        bus: The broker.
        topics: The environment's topics.
        clock: Current UTC time.
        say: The gate's line: ``say(event, text, **fields)``.
        since: The gate's ``--since`` (widens :data:`RETAINED_RECENT`).
    """

    def __init__(
        self,
        controller: Controller,
        services: Sequence[str],
        bus: BusSettings,
        topics: Topics,
        *,
        clock: Callable[[], datetime],
        say: Callable[..., None],
        since: timedelta | None = None,
    ) -> None:
        self.controller = controller
        self.services = tuple(services)
        self.bus = bus
        self.topics = topics
        self.clock = clock
        self.say = say
        self.env = controller.settings.environment.name
        self.recent_from = clock() - max(RETAINED_RECENT, since or timedelta(0))
        """A retained pipeline event older than this is not the gate's deploy."""
        self.old = 0
        """Retained pipeline events left out as too old."""
        self.stats = BusStats()
        self.connected = asyncio.Event()
        self.connections = 0
        self.published = 0
        self.down = False
        """The broker is away (said once; said again when it is back)."""
        self._pending: deque[bytes] = deque(maxlen=PENDING_MAX)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._verdict: Verdict | None = None
        self._sending: set[str] = set()
        self._bakes: dict[str, BakeState] = {}
        self._task: asyncio.Task[None] | None = None
        self._quiet = False
        """Closing: the gate's summary line stays its last line."""
        controller.listen(self._on_update)

    # ---- what goes out ---------------------------------------------------------------

    def announce(self, kind: str, text: str) -> None:
        """Queue one line for the ``announce`` topic (sent in order, once connected)."""
        body = {"type": kind, "text": text, "source": "gate", "at": self.clock().isoformat()}
        self._pending.append(encode(body))
        self._idle.clear()
        self._wake.set()

    def started(self, *, bake: str, timeout: timedelta, act: bool) -> None:
        """The gate began."""
        self.announce(
            "gate", gate_started_text(self.env, self.services, bake=bake, timeout=timeout, act=act)
        )

    def finished(self, code: int, words: str, why: str) -> None:
        """The gate's exit: its code and words."""
        self.announce("gate", gate_exit_text(self.env, words, code, why))

    def _on_update(self, update: Update) -> None:
        snapshot = update.snapshot
        if snapshot is not None:
            report = snapshot.report
            if report.verdict is not self._verdict:
                first = self._verdict is None
                self._verdict = report.verdict
                # The watch starting up ("nothing to judge yet") is not news for a chat.
                if not (first and report.verdict is Verdict.NO_DATA):
                    self.announce("verdict", verdict_text(self.env, report.verdict, report.reasons))
            sending = {plan.key for plan in snapshot.sending}
            for plan in snapshot.sending:
                if plan.key not in self._sending:
                    self.announce("action", sent_text(plan))
            self._sending = sending
            for key in self.services:
                bake = self.controller.bakes.get(key)
                state = self.controller.store.services.get(key)
                if bake is None or state is None or not bake.window:
                    continue  # no bake window: the gate's exit says it all (as its lines)
                before = self._bakes.get(key)
                self._bakes[key] = bake.state
                if bake.state is before:
                    continue
                text = bake_text(self.env, bake.view(state.label))
                if text is not None:
                    self.announce("bake", text)
        if update.result is not None:
            self.announce("action", action_text(update.result))

    def _say(self, event: str, text: str, **fields: Any) -> None:
        if not self._quiet:
            self.say(event, text, **fields)

    # ---- running ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect and keep connecting (in the background) until :meth:`close`."""
        self._task = asyncio.create_task(self._run_forever(), name="gate-bus")

    async def close(self, wait: float = FLUSH_WAIT) -> None:
        """Send what is queued (at most ``wait`` seconds; not at all while the broker is
        known to be away), then disconnect."""
        if self._task is None:
            return
        self._quiet = True
        if not self.down:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._idle.wait()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run_forever(self) -> None:
        attempt = 0
        while True:
            connections = self.connections
            try:
                await self._connected_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the bus never ends the gate
                self.connected.clear()
                if not self.down:
                    self.down = True
                    self._idle.set()  # nothing waits for a broker that is away
                    self._say(
                        "bus",
                        f"bus {self.bus.url} unavailable ({clean(str(exc) or type(exc).__name__)}):"
                        " the gate carries on without it (its verdict and exit code do not"
                        " depend on the bus)",
                        state="unavailable",
                    )
            if self.connections != connections:
                attempt = 0  # it was up: back off from the start again
            await asyncio.sleep(backoff(attempt))
            attempt += 1

    @property
    def waiting(self) -> int:
        """Announcements not yet taken by the broker."""
        return len(self._pending)

    async def _connected_once(self) -> None:
        async with client(self.bus) as mqtt:
            await mqtt.subscribe(self.topics.events, qos=1)  # pipeline events
            await mqtt.subscribe(self.topics.pipeline_filter, qos=1)  # the latest, retained
            self.connections += 1
            again = self.down
            self.down = False
            if self._pending:
                self._idle.clear()
            self.connected.set()
            self._say(
                "bus",
                f"bus {self.bus.url} {'connected again' if again else 'connected'}: announcing "
                f"on {self.topics.announce}, reading pipeline events",
                state="connected",
            )
            try:
                await first_to_end(self._drain(mqtt), self._listen(mqtt))
            finally:
                self.connected.clear()

    async def _drain(self, mqtt: Any) -> None:
        while True:
            while self._pending:
                payload = self._pending[0]
                await mqtt.publish(self.topics.announce, payload, qos=1)
                if self._pending and self._pending[0] is payload:
                    self._pending.popleft()
                self.published += 1
            self._idle.set()
            self._wake.clear()
            await self._wake.wait()

    async def _listen(self, mqtt: Any) -> None:
        async for message in mqtt.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                payload = b""
            self.stats.received += 1
            topic = str(message.topic)
            if topic == self.topics.events:
                self.on_event(bytes(payload))
            elif message.retain and payload:
                # A live one came on ``events`` too: only the retained is news here.
                self.on_event(bytes(payload), topic=topic, retained=True)

    def on_event(self, payload: bytes, *, topic: str = "", retained: bool = False) -> None:
        """One ``events`` message (or a retained ``pipeline/<service>`` one): a pipeline
        event goes to the watch and gets a line; the relay's own events are not the
        gate's; a malformed one is counted and dropped; a retained one older than
        :attr:`recent_from` is an earlier deploy's."""
        try:
            event = decode_pipeline(payload)
        except BadMessage as exc:
            self.stats.count(exc, topic or self.topics.events)
            return
        if event is not None and retained and event.at < self.recent_from:
            self.old += 1
            return
        if event is None or not self.controller.ingest(event):
            return  # not a pipeline event, or one taken already
        self._say(
            "pipeline",
            f"{clean(event.service, 200)}  {clean(event.words(), 1000)}",
            service=clean(event.service, 200),
            pipeline_event=clean(event.event, 40),
            version=clean(event.version, 200) or None,
            commit=clean(event.commit, 100) or None,
        )


__all__ = ["FLUSH_WAIT", "GateBus"]
