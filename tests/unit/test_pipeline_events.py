"""Pipeline announcements (``deploywatch announce``) as a viewer takes them from the bus:
validated on receipt, one line in the events pane, recorded in the deployment report.
Every field is outside text."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from engine.audit import AuditLog
from engine.controller import Controller
from engine.report import ReportBook, render_markdown
from sources.bus import BadMessage, decode_pipeline, encode
from sources.model import PipelineEvent
from tests.fakes import T0, FrozenClock, settings

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

HOSTILE = "v2\x1b[2J\u202e[b]x[/b]|\nrm"


def body(**fields: Any) -> bytes:
    base: dict[str, Any] = {
        "type": "pipeline",
        "id": "a1",
        "service": "web",
        "event": "started",
        "version": "v2",
        "commit": "0123456789abcdef",
        "url": "https://ci.example/run/7",
        "by": "ci@runner-3",
        "text": "ignored: the words are made from the fields",
        "at": T0.isoformat(),
    }
    return encode({**base, **fields})


def test_a_pipeline_message_is_validated_and_the_relays_own_events_are_not_items() -> None:
    event = decode_pipeline(body())
    assert event == PipelineEvent(
        "a1", "web", "started", T0, "v2", "0123456789abcdef", "https://ci.example/run/7",
        "ci@runner-3",
    )  # fmt: skip
    assert event.words() == (
        "pipeline: deploy started v2 @ 0123456789ab by ci@runner-3 https://ci.example/run/7"
    )
    assert decode_pipeline(encode({"type": "verdict", "verdict": "FAILING"})) is None
    assert decode_pipeline(encode({"type": "ecs_event", "text": "x"})) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"event": "deleted-prod"},
        {"service": ""},
        {"id": None},
        {"at": "yesterday"},
        {"version": "v" * 201},
        {"url": ["not", "a", "string"]},
    ],
)
def test_an_invalid_pipeline_message_is_a_bad_message(fields: dict[str, Any]) -> None:
    with pytest.raises(BadMessage):
        decode_pipeline(body(**fields))


def controller(tmp_path: Path) -> Controller:
    return Controller(
        settings(),
        clock=FrozenClock(),
        executor=lambda call: {},
        audit=AuditLog(tmp_path / "a.jsonl"),
        operator=lambda: "t",
        read_only=True,
    )


def test_a_pipeline_event_is_one_line_under_its_service_once(tmp_path: Path) -> None:
    watch = controller(tmp_path)
    event = decode_pipeline(body())
    assert event is not None
    assert watch.ingest(event)
    assert not watch.ingest(event)  # a re-delivery (QoS 1) is shown once
    (line,) = watch.store.take_events()
    # "web" is the ECS name of the watched demo/web: its line goes under that service.
    assert line[0] == "demo/web"
    assert line[1].message.startswith("pipeline: deploy started v2")
    assert list(watch.store.pipeline) == [event]


def test_the_report_records_pipeline_events_cleaned(tmp_path: Path) -> None:
    watch = controller(tmp_path)
    book = ReportBook(watch, ("demo/web", "demo/api"), T0 - timedelta(minutes=5))
    for ident, what, version in (("a1", "started", HOSTILE), ("a2", "finished", "v2")):
        event = decode_pipeline(body(id=ident, event=what, version=version))
        assert event is not None
        watch.ingest(event)
    data = book.to_json(outcome="WATCHED", code=None, why="", ended=T0, audit=None)
    events = data["pipeline_events"]
    assert [(e["service"], e["event"], e["commit"]) for e in events] == [
        ("web", "started", "0123456789abcdef"),
        ("web", "finished", "0123456789abcdef"),
    ]
    assert events[0]["at"] == T0.isoformat(timespec="seconds")
    assert events[0]["by"] == "ci@runner-3" and events[0]["url"] == "https://ci.example/run/7"
    assert events[0]["version"] == "v2␛[2J<U+202E>[b]x[/b]|⏎rm"
    md = render_markdown(data)
    assert not {"\x1b", "\u202e"} & set(md + json.dumps(data, ensure_ascii=False))
    assert "## Pipeline events" in md
    table = md.split("## Pipeline events", 1)[1].split("\n\n", 2)[1].splitlines()
    assert len(table) == 4  # header, rule, two rows: the hostile version stays on its row
    assert "\\|" in table[2] and "⏎rm" in table[2]


def test_a_report_without_pipeline_events_has_no_such_section(tmp_path: Path) -> None:
    watch = controller(tmp_path)
    book = ReportBook(watch, ("demo/web",), T0)
    data = book.to_json(outcome="WATCHED", code=None, why="", ended=T0, audit=None)
    assert data["pipeline_events"] == []
    assert "Pipeline events" not in render_markdown(data)
