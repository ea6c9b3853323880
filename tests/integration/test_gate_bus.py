"""``deploywatch gate --bus URL`` against the sandbox and a real broker (mosquitto, or
amqtt): the gate announces itself, its verdicts, its sign-off and its exit, records a
pipeline's ``deploywatch announce`` in its report, and never lets the bus decide it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from engine.config import load_config
from sandbox.broker import Broker, broker_kind
from sources.bus import Topics, client, decode, parse_bus_url
from tests.integration.test_gate import FORGET_ENV, ROOT, gate

if TYPE_CHECKING:
    from tests.conftest import StartSandboxProcess

pytestmark = pytest.mark.integration

WAIT = 240.0
"""Bound on the gate's whole run (a loaded 2-core machine)."""

HOSTILE = "v2\x1b]0;pwned\x07\u202e"


async def cli(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tui", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip


@pytest.mark.skipif(broker_kind() is None, reason="no MQTT broker installed")
@pytest.mark.timeout(300)
async def test_a_gate_on_the_bus_announces_its_run_and_records_pipeline_events(
    sandbox_process: StartSandboxProcess, broker: Broker, tmp_path: Path
) -> None:
    sandbox = await asyncio.to_thread(sandbox_process, "clean-rollout", 2.0)
    settings = await asyncio.to_thread(load_config, sandbox.config_path)
    topics = Topics(settings.environment.name)
    env = {k: v for k, v in os.environ.items() if k not in FORGET_ENV}
    env.update(sandbox.client_env)
    report = tmp_path / "report"
    announced: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []

    async with client(parse_bus_url(broker.url, {})) as mqtt:
        await mqtt.subscribe(topics.announce, qos=1)

        async def listen() -> None:
            async for message in mqtt.messages:
                body = decode(message.payload)
                if body.get("source") == "gate":
                    announced.append(body)
                    if "(exit " in body["text"]:
                        return

        listener = asyncio.create_task(listen())

        async def announce(*args: str) -> None:
            sent = await cli("announce", "--bus", broker.url, "--env", topics.env, *args, env=env)
            _, err = await asyncio.wait_for(sent.communicate(), WAIT)
            assert sent.returncode == 0, err.decode()

        # The pipeline's step before the gate (the gate hears it retained).
        await announce(
            "--service", "web", "--event", "started", "--version", "v2",
            "--commit", "0123456789abcdef",
        )  # fmt: skip
        proc = await cli(
            "gate", "--config", str(sandbox.config_path), "--bake", "5s", "--timeout", "3m",
            "--json", "--report", str(report), "--bus", broker.url, env=env,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(WAIT):
                while line := await proc.stdout.readline():
                    lines.append(json.loads(line))
                    if lines[-1]["event"] == "bus" and lines[-1]["state"] == "connected":
                        # Another pipeline of the environment, while the gate runs
                        # (hostile text in it).
                        await announce("--service", "api", "--event", "started",
                                       "--version", HOSTILE)  # fmt: skip
                _, err = await proc.communicate()
                await listener
        finally:
            listener.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    print("\n".join(json.dumps(r, ensure_ascii=False) for r in lines[-20:]))
    print("\n".join(a["text"] for a in announced))
    assert proc.returncode == 0, err.decode()[-2000:]
    assert lines[-1]["event"] == "summary" and lines[-1]["code"] == 0

    # The pipeline events: one line each, cleaned, and in the report's JSON.
    pipeline = [r["text"] for r in lines if r["event"] == "pipeline"]
    assert len(pipeline) == 2, pipeline
    assert pipeline[0].startswith("web  pipeline: deploy started v2 @ 0123456789ab")
    assert pipeline[1].startswith("api  pipeline: deploy started v2␛]0;pwned␇<U+202E>")
    assert not {"\x1b", "\x07", "\u202e"} & set("".join(pipeline))
    data = json.loads(await asyncio.to_thread((tmp_path / "report.json").read_text))
    events = data["pipeline_events"]
    assert [(e["service"], e["event"], e["version"]) for e in events] == [
        ("web", "started", "v2"),
        ("api", "started", "v2␛]0;pwned␇<U+202E>"),
    ]
    assert "## Pipeline events" in await asyncio.to_thread((tmp_path / "report.md").read_text)

    # The announcements, in order: started … a verdict … signed off … the exit.
    texts = [a["text"] for a in announced]
    env_name = topics.env
    assert texts[0].startswith(f"{env_name}: deploywatch gate started: watching ")
    assert "bake 5s" in texts[0]
    signed = next(i for i, t in enumerate(texts) if "web signed off at" in t)
    healthy = next(i for i, t in enumerate(texts) if t == f"{env_name}: HEALTHY")
    assert 0 < healthy < signed < len(texts) - 1
    assert texts[-1].startswith(f"{env_name}: deploywatch gate SIGNED OFF (exit 0) — ")


@pytest.mark.timeout(300)
def test_a_gate_whose_broker_is_unreachable_still_signs_off(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    sandbox = sandbox_process("clean-rollout", speed=2.0)
    code, lines = gate(
        sandbox, tmp_path, "--bake", "5s", "--timeout", "3m", "--bus", "mqtt://127.0.0.1:1"
    )
    assert code == 0
    down = [line for line in lines if "unavailable" in line]
    assert len(down) == 1, lines
    assert "bus mqtt://127.0.0.1:1 unavailable" in down[0]
    assert "the gate carries on without it" in down[0]
    assert "SIGNED OFF (exit 0)" in lines[-1]


@pytest.mark.skipif(broker_kind() is None, reason="no MQTT broker installed")
@pytest.mark.timeout(120)
async def test_a_broker_that_goes_away_is_said_once_and_never_reaches_the_watch(
    broker: Broker, tmp_path: Path
) -> None:
    from engine.audit import AuditLog
    from engine.controller import Controller
    from engine.gatebus import GateBus
    from engine.verdict import Verdict
    from tests.fakes import FakeSource, FrozenClock, mid_deploy_script, settings

    clock = FrozenClock()
    controller = Controller(
        settings(),
        clock=clock,
        executor=lambda call: {},
        audit=AuditLog(tmp_path / "audit.jsonl"),
        operator=lambda: "ci",
        read_only=True,
    )
    said: list[tuple[str, str]] = []
    news = asyncio.Event()

    def say(event: str, text: str, **fields: Any) -> None:
        said.append((event, text))
        news.set()

    async def until(check: Any, what: str) -> None:
        try:
            async with asyncio.timeout(60):
                while not check():
                    news.clear()
                    # Re-checked on each line, and every 0.1 s (a publish says nothing).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(news.wait(), 0.1)
        except TimeoutError:
            raise AssertionError(f"not within 60s: {what}; said {said}") from None

    bus = GateBus(
        controller,
        ["demo/web"],
        parse_bus_url(broker.url, {}),
        Topics("sandbox-demo"),
        clock=clock,
        say=say,
    )
    source = FakeSource(mid_deploy_script())
    watch = asyncio.create_task(controller.run([source]))
    bus.start()
    try:
        await until(lambda: bus.connected.is_set(), "connected")
        # api rolled back by its circuit breaker: FAILING, whatever the bus does.
        await until(
            lambda: source.drained and controller.snapshot.verdict is Verdict.FAILING, "FAILING"
        )
        await asyncio.to_thread(broker.stop)
        await until(lambda: bus.down, "the broker is away")
        bus.announce("gate", "said while the broker is away")
        assert bus.waiting == 1
        await asyncio.to_thread(broker.start)
        await until(lambda: bus.connected.is_set() and bus.waiting == 0, "back, and sent")
    finally:
        await bus.close()
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    lines = [text for event, text in said if event == "bus"]
    assert len(lines) == 3, lines
    assert f"bus {bus.bus.url} connected: announcing on " in lines[0]
    assert f"bus {bus.bus.url} unavailable (" in lines[1]
    assert "the gate carries on without it" in lines[1]
    assert f"bus {bus.bus.url} connected again: " in lines[2]
    # Nothing of the bus reached the watch: no failure, the same verdict.
    assert all(s.failure is None for s in controller.store.services.values())
    assert controller.snapshot.verdict is Verdict.FAILING
