"""The bus's commands: ``deploywatch relay``, ``deploywatch announce`` and the viewer
(``deploywatch run --bus URL``). Textual is imported only by the viewer."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import DEFAULT_CONFIG, ConfigError, load_config, visible

if TYPE_CHECKING:
    from engine.config import Settings
    from sources.bus import BusSettings

EXIT_USAGE = 2
PIPELINE_EVENT_NAMES = ("started", "finished", "failed", "rolled-back")
"""``announce --event`` (as ``sources.bus.PIPELINE_EVENTS``, without importing the bus)."""
EXIT_BROKER = 1

BUS_HELP = (
    "MQTT broker: mqtt://HOST[:PORT] or mqtts://HOST[:PORT][?ca=FILE&cert=FILE&key=FILE]; "
    "credentials from DEPLOYWATCH_MQTT_USERNAME / DEPLOYWATCH_MQTT_PASSWORD"
)


def add_parsers(sub: Any) -> None:
    """The ``relay`` and ``announce`` sub-commands."""
    relay: argparse.ArgumentParser = sub.add_parser(
        "relay",
        help="poll the cloud once and publish the watch on an MQTT bus for the whole team",
    )
    relay.add_argument("--bus", required=True, metavar="URL", help=BUS_HELP)
    relay.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="TOML config (default: %(default)s)"
    )
    relay.add_argument(
        "--act",
        action="store_true",
        help="let rules with action = rollback/pause act (audited); without it the relay only watches",
    )
    announce: argparse.ArgumentParser = sub.add_parser(
        "announce",
        help="tell the team on the bus that a deploy began or ended (one message, then exit)",
    )
    announce.add_argument("--bus", required=True, metavar="URL", help=BUS_HELP)
    announce.add_argument("--env", default=None, help="environment (default: the config's)")
    announce.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="TOML config naming the environment"
    )
    announce.add_argument("--service", required=True)
    announce.add_argument("--event", required=True, choices=PIPELINE_EVENT_NAMES)
    announce.add_argument("--version", default=None)
    announce.add_argument("--commit", default=None)
    announce.add_argument("--url", default=None)


def _fail(message: str, code: int) -> int:
    print(f"deploywatch: {visible(message)}", file=sys.stderr)
    return code


def bus_settings(url: str) -> BusSettings:
    """The broker of ``--bus`` (raises :class:`~sources.bus.BusError`)."""
    from sources.bus import parse_bus_url

    return parse_bus_url(url)


def now() -> datetime:
    return datetime.now(UTC)


def run_relay(args: argparse.Namespace) -> int:
    """``deploywatch relay``: runs until SIGINT/SIGTERM/SIGHUP (exit 128 + signal)."""
    from engine.contexts import headless_watch
    from engine.relay import Relay
    from engine.wiring import build_sources
    from sources.bus import BusError, Topics

    try:
        settings = load_config(args.config)
        bus = bus_settings(args.bus)
    except (ConfigError, BusError) as exc:
        return _fail(str(exc), EXIT_USAGE)

    async def main() -> int:
        # With [[aws]] contexts: each call with its own context's credentials.
        controller, aws = headless_watch(settings, clock=now, act=args.act, face="relay")
        if args.act:
            await asyncio.to_thread(aws.resolve_operator)
        relay = Relay(controller, bus, Topics(settings.environment.name), clock=now)
        task = asyncio.current_task()
        assert task is not None
        got: list[int] = []

        def stop(sig: signal.Signals) -> None:
            got.append(int(sig))
            task.cancel()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop, sig)
        print(
            f"deploywatch relay: environment {visible(settings.environment.name)} on {bus.url} "
            f"({'acting on rules' if args.act else 'watching only'})",
            file=sys.stderr,
            flush=True,
        )
        try:
            await relay.run(build_sources(settings, controller.store, now))
        except asyncio.CancelledError:
            if not got:
                raise
            return 128 + got[0]
        return 0

    return asyncio.run(main())


def viewer_sources(settings: Settings, url: str) -> list[Any]:
    """A viewer's only source: the bus (raises :class:`~sources.bus.BusError`)."""
    from sources.bus import BusSource, Topics

    bus = bus_settings(url)
    return [BusSource(bus, Topics(settings.environment.name), [s.key for s in settings.services])]


def run_viewer(settings: Settings, url: str, *, operate: bool = False) -> int:
    """``deploywatch run --bus URL``: the dashboard from the bus, no polling; read-only
    unless ``operate``, where actions need the service's lock from the relay and are
    sent with this operator's own AWS credentials."""
    from sources.bus import BusError, LockClient, Topics

    try:
        sources = viewer_sources(settings, url)
        bus = bus_settings(url)
    except BusError as exc:
        return _fail(str(exc), EXIT_USAGE)
    from tui.app import DeployWatchApp

    lock = None
    if operate:
        # DEPLOYWATCH_HOLDER: a name for a shared account (or each pane of a demo).
        holder = os.environ.get("DEPLOYWATCH_HOLDER") or (
            f"{os.environ.get('USER', '?')}@{os.uname().nodename}"
        )
        lock = LockClient(bus, Topics(settings.environment.name), holder)

    class BusViewerApp(DeployWatchApp):
        def on_mount(self) -> None:  # Textual also runs DeployWatchApp's on_mount
            if lock is not None:
                self.dashboard.operator_lock = lock
                self.run_worker(lock.run(), name="lock", group="lock", exit_on_error=False)
                # Renewed while the operator uses this dashboard; else it expires.
                self.run_worker(lock.keep(), name="lock-renew", group="lock", exit_on_error=False)

    app = BusViewerApp(settings, sources, read_only=not operate)
    app.controller.automatic = False  # automatic actions are the relay's (relay --act)
    app.run()
    return app.return_code or 0


def run_announce(args: argparse.Namespace) -> int:
    """``deploywatch announce``: exit 0 once the broker acknowledged, 2 on usage, 1 on a
    broker error."""
    import uuid

    from sources.bus import PIPELINE_LIMITS, BusError, Topics, client, encode, mqtt_error

    for name, limit in PIPELINE_LIMITS.items():
        value = getattr(args, name, None)
        if value is not None and len(value) > limit:
            # Every viewer would drop it as malformed: refused here, said plainly.
            return _fail(f"--{name} is longer than {limit} characters", EXIT_USAGE)
    try:
        bus = bus_settings(args.bus)
        env = args.env
        if env is None:
            env = load_config(args.config).environment.name
    except (ConfigError, BusError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    words = {
        "started": "deploy started",
        "finished": "deploy finished",
        "failed": "deploy FAILED",
        "rolled-back": "deploy rolled back",
    }[args.event]
    text = f"{args.service}: {words}"
    if args.version:
        text += f" ({args.version}"
        text += f" @ {args.commit[:12]})" if args.commit else ")"
    if args.url:
        text += f" {args.url}"
    body = {
        "type": "pipeline",
        "id": uuid.uuid4().hex,  # a re-delivery is shown once
        "service": args.service,
        "event": args.event,
        "version": args.version,
        "commit": args.commit,
        "url": args.url,
        "text": text,
        "by": f"{os.environ.get('USER', '?')}@{os.uname().nodename}"[: PIPELINE_LIMITS["by"]],
        "at": now().isoformat(),
    }
    topics = Topics(env)

    async def send() -> None:
        async with client(bus) as mqtt:
            await mqtt.publish(topics.announce, encode(body), qos=1)
            await mqtt.publish(topics.events, encode(body), qos=1)
            # Retained: a gate that starts after this step still records it.
            await mqtt.publish(topics.pipeline(args.service), encode(body), qos=1, retain=True)

    try:
        asyncio.run(asyncio.wait_for(send(), 30))
    except (mqtt_error(), TimeoutError, OSError) as exc:
        return _fail(f"the broker {bus.url} did not take the announcement: {exc}", EXIT_BROKER)
    print(text)
    return 0
