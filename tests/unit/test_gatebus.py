"""The gate on the bus without a broker: what it would announce, and how it takes a
pipeline's events (``engine/gatebus.py``). The broker itself: tests/integration/
test_gate_bus.py."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from engine.actions import Verb
from engine.audit import AuditLog
from engine.controller import Controller
from engine.gatebus import PENDING_MAX, GateBus
from sources.bus import Topics, encode, parse_bus_url
from tests.fakes import FrozenClock, mid_deploy_script, settings

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from engine.actions import ApiCall

HOSTILE = "v2\x1b]0;pwned\x07\u202e"


class World:
    def __init__(self, tmp_path: Path, *, read_only: bool = True) -> None:
        self.clock = FrozenClock()
        self.calls: list[ApiCall] = []
        self.controller = Controller(
            settings(),
            clock=self.clock,
            executor=self.execute,
            audit=AuditLog(tmp_path / "audit.jsonl"),
            operator=lambda: "ci",
            read_only=read_only,
        )
        self.said: list[tuple[str, str, dict[str, Any]]] = []
        self.bus = GateBus(
            self.controller,
            ["demo/web"],
            parse_bus_url("mqtt://127.0.0.1:1", {}),
            Topics("sandbox-demo"),
            clock=self.clock,
            say=self.say,
        )

    def execute(self, call: ApiCall) -> Mapping[str, Any]:
        self.calls.append(call)
        return {"ok": True}

    def say(self, event: str, text: str, **fields: Any) -> None:
        self.said.append((event, text, fields))

    def announced(self) -> list[str]:
        """The queued announcements' texts, oldest first."""
        return [json.loads(p)["text"] for p in self.bus._pending]


def pipeline(**fields: Any) -> bytes:
    body = {"type": "pipeline", "id": "run-7", "service": "web", "event": "started"}
    body["at"] = "2026-11-22T02:00:00+00:00"
    return encode({**body, **fields})


def test_a_pipeline_event_goes_to_the_report_once_with_one_clean_line(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.bus.on_event(pipeline(version=HOSTILE, commit="0123456789abcdef"))
    world.bus.on_event(pipeline(version=HOSTILE, commit="0123456789abcdef"))  # re-delivered
    world.bus.on_event(encode({"type": "verdict", "verdict": "FAILING"}))  # the relay's own
    world.bus.on_event(pipeline(id="run-8", event="rm -rf /"))  # malformed: dropped
    world.bus.on_event(b"\xff not json")
    assert [e.id for e in world.controller.store.pipeline] == ["run-7"]
    [(event, text, fields)] = world.said
    assert event == "pipeline"
    assert text == "web  pipeline: deploy started v2␛]0;pwned␇<U+202E> @ 0123456789ab"
    assert fields["version"] == "v2␛]0;pwned␇<U+202E>"
    assert world.bus.stats.malformed == 2


def test_announcements_follow_the_watch_in_order(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.bus.started(bake="10s", timeout=timedelta(minutes=30), act=False)
    for item in mid_deploy_script():
        world.controller.ingest(item)
    world.controller.step()
    world.bus.finished(1, "FAILED", "FAILING: demo/api rolled back \x1b[2J")
    texts = world.announced()
    assert texts[0] == (
        "sandbox-demo: deploywatch gate started: watching demo/web "
        "(bake 10s, timeout 30m00s, read-only)"
    )
    assert texts[1].startswith("sandbox-demo: FAILING — ")
    assert texts[-1] == (
        "sandbox-demo: deploywatch gate FAILED (exit 1) — FAILING: demo/api rolled back ␛[2J"
    )
    # The same verdict judged again is not news.
    world.controller.step()
    assert len(world.announced()) == 3


async def test_a_rollback_is_announced_when_sent_and_when_done(tmp_path: Path) -> None:
    world = World(tmp_path, read_only=False)
    world.controller.ingest(mid_deploy_script()[0])
    world.controller.step()
    before = len(world.announced())
    result = await world.controller.act(world.controller.plan(Verb.ROLLBACK, "demo/web"))
    assert [c.operation for c in world.calls] == ["stop_service_deployment"]
    assert world.announced()[before:] == [
        "web: rollback sent (web:2 → web:1)",
        f"web: rollback done (web:2 → web:1) — {result.message}",
    ]


def test_announcements_wait_bounded_while_the_broker_is_away(tmp_path: Path) -> None:
    world = World(tmp_path)
    for n in range(PENDING_MAX + 5):
        world.bus.announce("gate", f"line {n}")
    texts = world.announced()
    assert len(texts) == PENDING_MAX and texts[-1] == f"line {PENDING_MAX + 4}"
    assert world.bus.waiting == PENDING_MAX


def test_a_retained_pipeline_event_counts_only_when_recent(tmp_path: Path) -> None:
    world = World(tmp_path)
    topic = Topics("sandbox-demo").pipeline("web")
    # An earlier deploy's, three days old: not this gate's.
    world.bus.on_event(
        pipeline(id="run-6", at="2026-11-19T02:00:00+00:00"), topic=topic, retained=True
    )
    # This deploy's, announced just before the gate started; then the live copy.
    world.bus.on_event(pipeline(at="2026-11-22T01:59:40+00:00"), topic=topic, retained=True)
    world.bus.on_event(pipeline(at="2026-11-22T01:59:40+00:00"))
    assert [e.id for e in world.controller.store.pipeline] == ["run-7"]
    assert world.bus.old == 1
    assert [event for event, _, _ in world.said] == ["pipeline"]


def test_the_watch_starting_up_is_not_announced_but_what_follows_is(tmp_path: Path) -> None:
    """The first judgement, before any data, is NO DATA ("nothing to judge yet"): a
    chat hears the gate start and then real verdicts, not that."""
    world = World(tmp_path)
    world.bus.started(bake="10s", timeout=timedelta(minutes=30), act=False)
    world.controller.step()  # no data yet
    assert len(world.announced()) == 1  # only "gate started"
    for item in mid_deploy_script():
        world.controller.ingest(item)
    world.controller.step()
    assert world.announced()[1].startswith("sandbox-demo: FAILING — ")
