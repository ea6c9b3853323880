"""Recordings for the post-mortem: what a watch took in, replayable.

A recording is gzip-compressed JSON lines:

- a header: format version, when, the config the watch ran with (secrets removed);
- every source item the controller ingested (``item``), with its clock time;
- every operator intent (``intent``: an action sent, a confirmation declined, automatic
  actions cancelled), with its clock time;
- every verdict change the live watch published (``verdict``), so a replay can be
  checked against what was seen;
- an end line (``end``), or ``truncated`` when the size bound was reached.

Writing never blocks the event loop: lines are buffered (bounded) and a background task
writes them off the loop. A recording holds no credentials: the config's probe header
values and any user:password in a URL are masked, and item texts are the ones the
sources already scrubbed for the screen.

:func:`replay_offline` plays a recording through a fresh controller on a fake clock, as
fast as it can: the verdict timeline it yields is what the live watch would have judged,
and a report can be regenerated from it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from engine.smoke import SmokeRun
from sources.bus import ADAPTERS as BUS_ADAPTERS
from sources.bus import KINDS as BUS_KINDS
from sources.model import FleetChange, PipelineEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from engine.config import Settings
    from sources.model import Item

log = logging.getLogger(__name__)

FORMAT = 1
"""The recording format's version."""

MAX_BYTES = 256 * 1024 * 1024
"""Uncompressed bytes a recording may hold; beyond it recording stops (said in the file)."""

BUFFER_LINES = 50_000
"""Lines buffered between two writes; beyond it the oldest unwritten are dropped (and
counted): the watch never waits for a disk."""

FLUSH_EVERY = 1.0
"""Seconds between two writes."""

KINDS: dict[str, type[Any]] = {**BUS_KINDS, "smoke": SmokeRun, "fleet": FleetChange}
"""Every kind of item the watch ingests: the bus's source items, and smoke runs and
discovery's fleet changes (which stay local to a watch)."""
KINDS["pipeline"] = PipelineEvent  # a viewer's pipeline announcements (from the bus)
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    **BUS_ADAPTERS,
    "smoke": TypeAdapter(SmokeRun),
    "fleet": TypeAdapter(FleetChange),
    "pipeline": TypeAdapter(PipelineEvent),
}
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


class RecordingError(Exception):
    """A recording that cannot be read (said in one line)."""


def kind_of(item: Item | SmokeRun) -> str:
    for kind, cls in KINDS.items():
        if isinstance(item, cls):
            return kind
    raise TypeError(f"not a source item: {type(item).__name__}")


def public_config(settings: Settings) -> dict[str, Any]:
    """The config as data, fit to keep: probe header values, smoke suites' environment
    values and URL passwords masked."""
    data = settings.model_dump(mode="json", by_alias=True, exclude_none=True)
    for probe in data.get("probe", []):
        if probe.get("headers"):
            probe["headers"] = dict.fromkeys(probe["headers"], "***")
    for smoke in data.get("smoke", []):
        if smoke.get("env"):
            smoke["env"] = dict.fromkeys(smoke["env"], "***")
    text = _USERINFO.sub("***@", json.dumps(data))
    result: dict[str, Any] = json.loads(text)
    return result


@dataclass
class Recorder:
    """Buffers what a watch takes in and writes it to ``path`` off the event loop."""

    path: Path
    clock: Callable[[], datetime]
    max_bytes: int = MAX_BYTES
    written: int = 0
    dropped: int = 0
    truncated: bool = False
    closed: bool = False
    _lines: list[bytes] = field(default_factory=list)
    _file: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, settings: Settings) -> None:
        """Begin with the header (buffered: the file is opened by the first write, off
        the event loop)."""
        self._add(
            {
                "type": "header",
                "format": FORMAT,
                "started": self.clock().isoformat(),
                "config": public_config(settings),
            }
        )

    def item(self, item: Item | SmokeRun) -> None:
        try:
            kind = kind_of(item)
        except TypeError:  # a kind this format does not know yet: counted, never fatal
            self.dropped += 1
            return
        body = _ADAPTERS[kind].dump_python(item, mode="json")
        self._add({"type": "item", "t": self.clock().isoformat(), "kind": kind, "item": body})

    def intent(self, what: str, **fields: Any) -> None:
        self._add({"type": "intent", "t": self.clock().isoformat(), "what": what, **fields})

    def verdict(self, at: datetime, verdict: str, headline: str) -> None:
        self._add({"type": "verdict", "t": at.isoformat(), "verdict": verdict, "why": headline})

    def _add(self, record: dict[str, Any]) -> None:
        if self.truncated or self.closed:
            return
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        if self.written + len(line) > self.max_bytes:
            self.truncated = True
            end = {"type": "truncated", "t": self.clock().isoformat(), "bytes": self.written}
            self._lines.append(json.dumps(end).encode() + b"\n")
            return
        if len(self._lines) >= BUFFER_LINES:
            self._lines.pop(1 if self._file is None else 0)  # never the header
            self.dropped += 1
        self._lines.append(line)
        self.written += len(line)

    def _write_now(self) -> None:
        """Write what is buffered (blocking; opens the file the first time)."""
        with self._lock:  # the background writer and close() may overlap
            self._write_locked()

    def _write_locked(self) -> None:
        lines, self._lines = self._lines, []
        if not lines:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = gzip.open(self.path, "wb", compresslevel=6)  # noqa: SIM115
        self._file.write(b"".join(lines))
        self._file.flush()

    async def run(self) -> None:
        """Write buffered lines every :data:`FLUSH_EVERY` seconds until cancelled."""
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            if self._lines:
                try:
                    await asyncio.to_thread(self._write_now)
                except OSError as exc:
                    log.error("recording %s stopped: %s", self.path, exc)
                    self.truncated = True
                    return

    def close(self) -> None:
        """Write the rest and the end line (blocking: at exit).

        Raises:
            OSError: The file cannot be written.
        """
        if self.closed:
            return
        if not self.truncated:
            end = {"type": "end", "t": self.clock().isoformat(), "dropped": self.dropped}
            self._lines.append(json.dumps(end).encode() + b"\n")
        self.closed = True
        with self._lock:
            try:
                self._write_locked()
            finally:
                if self._file is not None:
                    self._file.close()


# ---- reading -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One recorded line after the header."""

    at: datetime
    type: str
    item: Item | SmokeRun | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recording:
    """A recording, read."""

    path: Path
    started: datetime
    config: dict[str, Any]
    entries: list[Entry]
    truncated: bool = False
    bad_lines: int = 0
    end_at: datetime | None = None
    """When the watch stopped recording (its end line), if it says."""

    @property
    def ended(self) -> datetime:
        """When the recording ends: its end line, else its last entry."""
        if self.end_at is not None:
            return self.end_at
        return self.entries[-1].at if self.entries else self.started

    def verdicts(self) -> list[tuple[datetime, str]]:
        """The verdict timeline the live watch published."""
        return [(e.at, str(e.data["verdict"])) for e in self.entries if e.type == "verdict"]

    def items(self) -> Iterator[tuple[datetime, Item | SmokeRun]]:
        for entry in self.entries:
            if entry.item is not None:
                yield entry.at, entry.item


def read_recording(path: Path) -> Recording:
    """Read a recording (blocking). A malformed line is counted and skipped.

    Raises:
        RecordingError: Not a deploywatch recording, or unreadable.
    """
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise RecordingError(f"{path}: cannot read the recording: {exc}") from None
    lines = raw.splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("type") != "header":
        raise RecordingError(f"{path}: not a deploywatch recording (no header line)")
    if header.get("format") != FORMAT:
        raise RecordingError(
            f"{path}: recording format {header.get('format')!r}; this deploywatch reads {FORMAT}"
        )
    recording = Recording(
        path=path,
        started=datetime.fromisoformat(header["started"]),
        config=header.get("config") or {},
        entries=[],
    )
    for line in lines[1:]:
        try:
            record = json.loads(line)
            kind = record["type"]
            at = datetime.fromisoformat(record["t"])
            if kind == "item":
                item = _ADAPTERS[record["kind"]].validate_python(record["item"])
                recording.entries.append(Entry(at, kind, item=item))
            elif kind in ("intent", "verdict"):
                recording.entries.append(Entry(at, kind, data=record))
            elif kind == "truncated":
                recording.truncated = True
                recording.end_at = at
            elif kind == "end":
                recording.end_at = at
        except (ValueError, KeyError, TypeError, ValidationError):
            recording.bad_lines += 1
    return recording


def recorded_settings(recording: Recording) -> Settings:
    """The config the recorded watch ran with.

    Raises:
        RecordingError: It does not validate (a recording of another version).
    """
    from engine.config import ConfigError, parse_config

    try:
        return parse_config(recording.config, recording.path)
    except ConfigError as exc:
        raise RecordingError(str(exc)) from None


# ---- replay ------------------------------------------------------------------------


class ReplayClock:
    """A clock that a replay moves: frozen between moves (a replay's time is the
    recording's, never the wall clock's)."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self._watchers: list[Callable[[], None]] = []

    def __call__(self) -> datetime:
        return self.now

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._watchers.append(callback)

    def move_to(self, when: datetime) -> None:
        if when > self.now:
            self.now = when
            for callback in self._watchers:
                callback()


async def replay_offline(
    recording: Recording,
    settings: Settings | None = None,
    *,
    on_start: Callable[[Any], None] | None = None,
) -> tuple[list[tuple[datetime, str]], Any]:
    """Play a recording through a fresh, read-only controller as fast as possible.

    Between two recorded moments the watch is judged at every moment it would have woken
    (a window ending, a countdown), so countdowns and freshness behave as they did live.

    Returns:
        The verdict timeline (each change, with its moment) and the controller at the end.
    """
    from engine.audit import AuditLog
    from engine.controller import Controller

    settings = settings or recorded_settings(recording)
    clock = ReplayClock(recording.started)
    controller = Controller(
        settings,
        clock=clock,
        executor=never_calls_aws,
        audit=AuditLog(Path("/dev/null")),
        operator=lambda: "replay",
        read_only=True,
    )
    controller.runs_commands = False
    if on_start is not None:
        on_start(controller)  # e.g. a report book listens from the first judgement
    timeline: list[tuple[datetime, str]] = []

    async def judge(at: datetime) -> None:
        clock.move_to(at)
        await controller.compare.refresh(at)  # the comparison rules' tests, as live
        verdict = controller.step(at).verdict.value
        if not timeline or timeline[-1][1] != verdict:
            timeline.append((at, verdict))

    async def catch_up(until: datetime) -> None:
        """Judge at every moment the watch would have woken by itself up to ``until``."""
        for _ in range(100_000):  # bounded: each wake moves time forward
            now = clock()
            wake = controller.next_wake(now)
            if wake is None or wake > until:
                return
            await judge(max(wake, now + timedelta(milliseconds=1)))

    await judge(recording.started)
    for entry in recording.entries:
        await catch_up(entry.at)
        clock.move_to(entry.at)
        if entry.item is not None:
            controller.ingest(entry.item)
            await judge(entry.at)
        elif entry.type == "intent" and entry.data.get("what") == "cancel":
            controller.autopilot.cancel()
            await judge(entry.at)
    await catch_up(recording.ended)
    await judge(recording.ended)  # as the watch stood when the recording ended
    await controller.settle()  # automatic actions a countdown started: refused (read-only)
    return timeline, controller


class PlaybackClock:
    """The recording's time, moving ``speed`` times faster than real time (the watch
    divides its sleeps by :attr:`speed`)."""

    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        self.start = start
        self.speed = speed
        self._t0 = time.monotonic()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)


class PlaybackSource:
    """Yields a recording's items when the playback clock reaches their moment, then
    stays open (like a poller between polls)."""

    name = "replay"

    def __init__(self, recording: Recording, clock: PlaybackClock) -> None:
        self.recording = recording
        self.clock = clock
        self.done = False
        self.smoke: Callable[[SmokeRun], object] | None = None
        """Where recorded smoke runs go (the watch's ``ingest``; they are not source
        items)."""

    async def stream(self) -> AsyncIterator[Item]:
        for at, item in self.recording.items():
            wait = (at - self.clock()).total_seconds() / self.clock.speed
            if wait > 0:
                await asyncio.sleep(wait)
            if isinstance(item, SmokeRun):
                if self.smoke is not None:
                    self.smoke(item)
                continue
            yield item
        self.done = True
        await asyncio.Event().wait()  # the end of the recording: nothing more comes


def never_calls_aws(call: Any) -> dict[str, Any]:
    """A replay's executor: it is read-only, so this is never reached; if it were, it
    refuses rather than calling AWS."""
    raise RuntimeError("a replay never calls AWS")
