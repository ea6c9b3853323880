"""A pipeline's ``deploywatch announce`` reaches a viewer over a real broker (mosquitto):
one line in its events pane, cleaned (the text is hostile), and recorded in its
deployment report."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING

import pytest

from sandbox.broker import Broker, broker_kind
from sources.bus import BusSource, Topics, client, encode, parse_bus_url
from tests.fakes import FrozenClock, settings, wait_until
from tui.app import DeployWatchApp
from widgets.events import EventsLog

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(broker_kind() is None, reason="no MQTT broker installed"),
]

WAIT = 30.0
"""Bound on every wait (a loaded 2-core machine; the CLI starts a Python process)."""

ENV = "sandbox-demo"
HOSTILE = "v2\x1b]0;pwned\x07\u202e[b]bold[/b]"


def log_text(app: DeployWatchApp) -> str:
    log = app.dashboard.query_one(EventsLog)
    return "\n".join("".join(seg.text for seg in strip) for strip in log.lines)


def viewer(broker: Broker, tmp_path: Path) -> tuple[DeployWatchApp, BusSource]:
    """A read-only dashboard on the bus (web and api), auditing under the test's folder."""
    source = BusSource(parse_bus_url(broker.url, {}), Topics(ENV), ["demo/web", "demo/api"])
    app = DeployWatchApp(
        settings(),
        [source],
        clock=FrozenClock(),
        read_only=True,
        executor=lambda call: {},
        audit_path=tmp_path / "audit.jsonl",
    )
    return app, source


async def announce(broker: Broker, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tui", "announce", "--bus", broker.url, "--env", ENV, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ),
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, err.decode()


async def test_an_announcement_is_a_line_in_a_viewers_events_pane_and_in_its_report(
    tmp_path: Path, broker: Broker
) -> None:
    app, source = viewer(broker, tmp_path)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_until(pilot, source.connected.is_set, WAIT)
        await announce(
            broker, "--service", "web", "--event", "started", "--version", HOSTILE,
            "--commit", "0123456789abcdef", "--url", "https://ci.example/run/7",
        )  # fmt: skip
        await wait_until(pilot, lambda: "deploy started" in log_text(app), WAIT)
        # A malformed pipeline event on the same topic is counted and dropped.
        async with client(parse_bus_url(broker.url, {})) as mqtt:
            bad = {"type": "pipeline", "id": "x", "service": "web", "event": "rm -rf"}
            await mqtt.publish(Topics(ENV).events, encode(bad), qos=1)
        await wait_until(pilot, lambda: source.stats.malformed == 1, WAIT)
        await announce(broker, "--service", "demo/api", "--event", "finished")
        await wait_until(pilot, lambda: "deploy finished" in log_text(app), WAIT)
        text = log_text(app)
        data = app.report_data([])
    line = next(li for li in text.splitlines() if "deploy started" in li)
    assert "web" in line and "0123456789ab" in line
    # Shown literally, never acted on: no escape, no bidi override, no markup.
    assert not {"\x1b", "\x07", "\u202e"} & set(text)
    assert "v2␛]0;pwned␇<U+202E>[b]bold[/b]" in text
    assert text.count("deploy started") == 1
    assert "api" in next(li for li in text.splitlines() if "deploy finished" in li)
    events = data["pipeline_events"]
    assert [(e["service"], e["event"]) for e in events] == [
        ("web", "started"),
        ("demo/api", "finished"),
    ]
    assert events[0]["version"] == "v2␛]0;pwned␇<U+202E>[b]bold[/b]"


async def test_a_viewer_started_after_the_announcement_still_shows_it_once(
    tmp_path: Path, broker: Broker
) -> None:
    """The pipeline said ``started`` before this viewer opened: the retained
    ``pipeline/<service>`` gives it the line. A later announcement arrives on both
    topics (live on ``events``, and forwarded on ``pipeline/<service>``): one line."""
    await announce(broker, "--service", "web", "--event", "started", "--version", "v7")
    app, source = viewer(broker, tmp_path)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_until(pilot, lambda: "deploy started" in log_text(app), WAIT)
        await announce(broker, "--service", "web", "--event", "finished", "--version", "v7")
        await wait_until(pilot, lambda: "deploy finished" in log_text(app), WAIT)
        # The forwarded copy of "finished" on pipeline/web comes right behind it.
        await wait_until(pilot, lambda: source.stats.received >= 3, WAIT)
        await pilot.pause()
        text = log_text(app)
        data = app.report_data([])
    assert text.count("deploy started") == 1 and text.count("deploy finished") == 1, text
    assert "v7" in next(li for li in text.splitlines() if "deploy started" in li)
    assert [e["event"] for e in data["pipeline_events"]] == ["started", "finished"]
