"""Recordings: what a watch took in, written off the loop, read back, replayed to the
same verdicts; bounded; no credentials."""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.audit import AuditLog
from engine.config import parse_config
from engine.controller import Controller
from engine.recording import (
    Recorder,
    RecordingError,
    read_recording,
    recorded_settings,
    replay_offline,
)
from tests.fakes import (
    SIGNALS,
    T0,
    FrozenClock,
    bad_release_signals,
    mid_deploy_script,
    settings,
)
from tui.replay import verdicts_agree


async def _live(tmp_path: Path, items: list[Any], *, minutes: int = 4) -> tuple[Path, FrozenClock]:
    """A watch on a fake clock that records: items arrive half a second apart, each
    judged, then the clock runs on past the last, judged every second (the live loop
    wakes at least that often when something can change)."""
    clock = FrozenClock()
    clock.now = T0 - timedelta(minutes=1)
    config = settings(signals=True)
    controller = Controller(
        config,
        clock=clock,
        executor=lambda call: {},
        audit=AuditLog(tmp_path / "audit.jsonl"),
        operator=lambda: "t",
        read_only=True,
    )
    path = tmp_path / "rec.jsonl.gz"
    recorder = Recorder(path, clock)
    recorder.start(config)
    controller.recorder = recorder
    controller.step()
    for item in items:
        clock.advance(0.5)
        controller.ingest(item)
        controller.step()
    for _ in range(minutes * 60):
        clock.advance(1)
        controller.step()
    await controller.settle()  # the automatic rollback a countdown sent: refused
    await asyncio.to_thread(recorder.close)
    return path, clock


def _bad_release_of_web() -> list[Any]:
    """web mid-rollout, then v2 failing; api never heard of (NO DATA when the signals age)."""
    web = [i for i in mid_deploy_script() if getattr(i, "key", None) == "demo/web"]
    return [*web, *bad_release_signals(minutes=6)]


async def test_a_recording_replays_to_the_verdict_timeline_the_live_watch_published(
    tmp_path: Path,
) -> None:
    path, _ = await _live(tmp_path, _bad_release_of_web(), minutes=6)
    recording = await asyncio.to_thread(read_recording, path)
    recorded = recording.verdicts()
    # FAILING on the error rate, then NO DATA when the signals age past their freshness.
    assert [v for _, v in recorded] == ["NO DATA", "FAILING", "NO DATA"]
    replayed, controller = await replay_offline(recording)
    assert verdicts_agree(replayed, recorded), (replayed, recorded)
    assert controller.read_only


async def test_a_different_config_replays_to_a_different_timeline(tmp_path: Path) -> None:
    """The check can fail: replayed without the rules, no FAILING."""
    path, _ = await _live(tmp_path, _bad_release_of_web(), minutes=6)
    recording = await asyncio.to_thread(read_recording, path)
    replayed, _ = await replay_offline(recording, settings())
    assert not verdicts_agree(replayed, recording.verdicts())


def test_no_credentials_in_the_recording(tmp_path: Path) -> None:
    data: dict[str, Any] = json.loads(json.dumps(SIGNALS))
    data["probe"] = [
        {
            "name": "web",
            "url": "https://user:hunter2secret@127.0.0.1:9/health",
            "headers": {"Authorization": "Bearer abcdef0123456789"},
            "service": "web",
        }
    ]
    data["environment"] = {"name": "t"}
    data["service"] = [{"cluster": "demo", "service": "web"}]
    config = parse_config(data, Path("t.toml"))
    recorder = Recorder(tmp_path / "r.gz", FrozenClock())
    recorder.start(config)
    recorder.close()
    text = gzip.decompress((tmp_path / "r.gz").read_bytes()).decode()
    assert "hunter2secret" not in text and "abcdef0123456789" not in text
    assert "Authorization" in text  # the header's name stays: it tells what was sent
    # ...and the masked config still loads for a replay.
    assert recorded_settings(read_recording(tmp_path / "r.gz")).probes[0].name == "web"


def test_the_size_bound_stops_recording_and_says_so(tmp_path: Path) -> None:
    clock = FrozenClock()
    recorder = Recorder(tmp_path / "r.gz", clock, max_bytes=20_000)
    recorder.start(settings(signals=True))
    for item in bad_release_signals(minutes=30) * 5:
        recorder.item(item)
    recorder.close()
    assert recorder.truncated
    recording = read_recording(tmp_path / "r.gz")
    assert recording.truncated and 0 < len(recording.entries) < 200
    assert recorder.written <= 20_000


async def test_malformed_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    path, _ = await _live(tmp_path, mid_deploy_script(), minutes=0)

    def spoil() -> None:
        lines = gzip.decompress(path.read_bytes()).splitlines()
        lines.insert(2, b'{"type": "item", "t": "yesterday", "kind": "ecs"}')
        lines.insert(3, b"\x1b[2J not json")
        path.write_bytes(gzip.compress(b"\n".join(lines)))

    await asyncio.to_thread(spoil)
    recording = await asyncio.to_thread(read_recording, path)
    assert recording.bad_lines == 2
    assert sum(1 for _ in recording.items()) == len(mid_deploy_script())


def test_not_a_recording_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.gz"
    bad.write_bytes(gzip.compress(b'{"hello": 1}\n'))
    with pytest.raises(RecordingError, match="not a deploywatch recording"):
        read_recording(bad)
    (tmp_path / "plain").write_text("not gzip")
    with pytest.raises(RecordingError, match="cannot read"):
        read_recording(tmp_path / "plain")


async def test_writing_happens_off_the_event_loop(tmp_path: Path) -> None:
    """The recorder's writer runs in a thread (blockbuster fails a blocking write here)."""
    clock = FrozenClock()
    recorder = Recorder(tmp_path / "r.gz", clock)
    recorder.start(settings())
    for item in mid_deploy_script():
        recorder.item(item)
    task = asyncio.create_task(recorder.run())
    for _ in range(200):
        if not recorder._lines:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    assert not recorder._lines  # all written by the background writer
    await asyncio.to_thread(recorder.close)
    recording = await asyncio.to_thread(read_recording, tmp_path / "r.gz")
    assert sum(1 for _ in recording.items()) == len(mid_deploy_script())


async def test_the_bad_release_recording_still_replays_to_its_judgement() -> None:
    """A recording of the bad-release rehearsal (the gate with --act, kept as a fixture):
    today's rules must judge it as the watch did when it was recorded. A change to the
    rules, the verdict or the sources' items that alters the judgement fails here."""
    fixture = Path(__file__).parents[1] / "fixtures" / "bad-release.jsonl.gz"
    recording = await asyncio.to_thread(read_recording, fixture)
    assert recording.bad_lines == 0
    recorded = recording.verdicts()
    assert [v for _, v in recorded] == ["NO DATA", "HEALTHY", "DEGRADED", "FAILING", "HEALTHY"]
    replayed, controller = await replay_offline(recording)
    assert verdicts_agree(replayed, recorded), (replayed, recorded)
    # The automatic rollback's countdown ran in the replay too (and was refused there).
    assert controller.last_result is not None
    assert controller.last_result.plan.verb.value == "rollback"
    assert controller.last_result.outcome.value == "refused"


def test_every_kind_of_item_the_watch_ingests_is_recorded_and_read_back(tmp_path: Path) -> None:
    from sources.model import Discovered, FleetChange

    change = FleetChange(
        source="discovery",
        context="prod-eu",
        added=(Discovered("prod-eu:shop/web-1", "shop", "web-1", "prod-eu:shop/web-*", None),),
        removed=("prod-eu:shop/web-0",),
        listed=("prod-eu:shop/web-*",),
        at=T0,
    )
    items = [*mid_deploy_script(), *bad_release_signals(minutes=1), change]
    recorder = Recorder(tmp_path / "r.gz", FrozenClock())
    recorder.start(settings(signals=True))
    for item in items:
        recorder.item(item)
    recorder.close()
    back = [item for _, item in read_recording(tmp_path / "r.gz").items()]
    assert back == items
