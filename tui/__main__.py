"""Command line: ``deploywatch [run]``, ``check-config``, ``demo``, ``sandbox``.

Kept light: Textual and the sources are imported only by the commands that need
them, so ``check-config`` and ``--help`` answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import DEFAULT_CONFIG, ConfigError, Settings, load_config, visible

if TYPE_CHECKING:
    from engine.recording import Recorder
    from tui.app import DeployWatchApp

COMMANDS = ("run", "check-config", "demo", "sandbox", "gate", "replay", "relay", "announce")
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deploywatch",
        description="Watch an ECS deployment with its metrics, errors and probes; act on it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="open the dashboard (the default command)")
    run.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="TOML config (default: %(default)s)"
    )
    run.add_argument("--read-only", action="store_true", help="refuse every action")
    _record_option(run)
    run.add_argument(
        "--bus",
        metavar="URL",
        default=None,
        help="view a relay's watch from an MQTT bus (read-only, no polling, no cloud credentials)",
    )
    run.add_argument(
        "--operate",
        action="store_true",
        help="with --bus: act with your own AWS credentials, one operator per service "
        "(the bus's lock)",
    )

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file", type=Path, nargs="?", default=DEFAULT_CONFIG)

    demo = sub.add_parser("demo", help="run the dashboard against the local rehearsal sandbox")
    demo.add_argument(
        "--scenario", default="demo", help="scenario name (see --list) or a scenario .toml file"
    )
    demo.add_argument("--list", action="store_true", help="list the scenarios and exit")
    demo.add_argument("--speed", type=float, default=1.0, help="sandbox clock speed")
    demo.add_argument("--read-only", action="store_true", help="refuse every action")
    demo.add_argument(
        "--production",
        action="store_true",
        help="rehearse as production: destructive actions ask for the service name",
    )
    demo.add_argument(
        "--viewers",
        type=int,
        default=0,
        metavar="N",
        help="rehearse the deployment bus: a relay, this dashboard and N more in tmux "
        "panes beside it (inside tmux)",
    )
    _record_option(demo)

    from tui import gate, replay

    _record_option(gate.add_parser(sub))
    replay.add_parser(sub)

    from tui import bus_cli

    bus_cli.add_parsers(sub)

    box = sub.add_parser("sandbox", help="run the rehearsal sandbox alone, without the TUI")
    box.add_argument(
        "--scenario", default="demo", help="scenario name (see --list) or a scenario .toml file"
    )
    box.add_argument("--list", action="store_true")
    box.add_argument("--speed", type=float, default=1.0)
    return parser


def _record_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="PATH",
        help="record what the watch takes in (gzip JSON lines; no credentials) for "
        "`deploywatch replay PATH`",
    )


def _fail(message: str, code: int = EXIT_CONFIG) -> int:
    print(f"deploywatch: {visible(message)}", file=sys.stderr)
    return code


def _exit_on_signals() -> None:
    """Until the app takes over: SIGTERM or SIGHUP raise SystemExit, so ``finally`` runs.

    The app installs its own handlers while it runs (``tui/app.py``: it exits the way
    ``q`` does and Textual restores the terminal).
    """

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, leave)


def plural(count: int, word: str) -> str:
    """``1 probe``, ``2 probes``, ``0 probes``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _scenario(name_or_path: str, scenarios: list[tuple[str, str]]) -> str | None:
    """The scenario to pass to the sandbox: a bundled name, or a ``.toml`` file (made
    absolute, the sandbox runs elsewhere) — the same rule as ``deploywatch sandbox``."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
        return str(path.resolve()) if path.is_file() else None
    return name_or_path if name_or_path in {name for name, _ in scenarios} else None


def _run_app(settings: Settings, *, read_only: bool, record: Path | None = None) -> int:
    from tui.app import DeployWatchApp

    app = DeployWatchApp(settings, read_only=read_only)
    if record is not None:
        app.record(record)
    app.run()
    _final_report(app)
    _close_recording(app.controller.recorder)
    return app.return_code or 0


def _close_recording(recorder: Recorder | None) -> None:
    if recorder is None:
        return
    try:
        recorder.close()
        message = f"deploywatch: recording written to {recorder.path}"
        if recorder.truncated:
            message += " (stopped at its size bound)"
    except OSError as exc:
        message = f"deploywatch: the recording could not be written: {exc}"
    with contextlib.suppress(OSError):
        print(visible(message), file=sys.stderr)


def _final_report(app: DeployWatchApp) -> None:
    """The deployment report as the watch ended, and one line saying where it is."""
    try:
        paths = app.write_final_report()
        message = f"deploywatch: report written to {paths[-1]} (and .json)"
    except OSError as exc:
        message = f"deploywatch: the report could not be written: {exc}"
    with contextlib.suppress(OSError):  # the terminal may be gone (a hang-up)
        print(visible(message), file=sys.stderr)


SANDBOX_NEEDS = ("moto", "werkzeug", "sentry_sdk")
"""What the rehearsal sandbox imports beyond the product (the ``sandbox`` extra)."""


def _sandbox_missing() -> str | None:
    """One line saying what to install when the ``sandbox`` extra is absent, else None."""
    import importlib.util

    missing = [name for name in SANDBOX_NEEDS if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (
        f"the rehearsal sandbox needs the 'sandbox' extra ({', '.join(missing)} missing): "
        "pipx install 'deploywatch[sandbox]' (or pip install 'deploywatch[sandbox]')"
    )


def _demo(args: argparse.Namespace) -> int:
    missing = _sandbox_missing()
    if missing is not None:
        return _fail(missing, 1)
    from sandbox.process import SandboxProcess, SandboxStartError, list_scenarios

    scenarios = list_scenarios()
    if args.list:
        width = max((len(name) for name, _ in scenarios), default=0)
        for name, description in scenarios:
            print(f"{name:<{width}}  {description}")
        return 0
    scenario = _scenario(args.scenario, scenarios)
    if scenario is None:
        names = ", ".join(name for name, _ in scenarios)
        return _fail(
            f"no scenario {args.scenario!r}; expected one of: {names} (or a scenario .toml file)"
        )
    if args.viewers:
        from tui.demo_bus import DemoBusError, check_viewers

        try:
            check_viewers(
                args.viewers, os.environ, production=args.production, record=bool(args.record)
            )
        except DemoBusError as exc:
            return _fail(str(exc), 2)
    # The sandbox takes any credentials; never let a real profile or IMDS be used.
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="sandbox",
        AWS_SECRET_ACCESS_KEY="sandbox",
        AWS_EC2_METADATA_DISABLED="true",
    )
    os.environ.pop("AWS_SESSION_TOKEN", None)
    print(f"deploywatch: starting the sandbox (scenario {args.scenario})…", file=sys.stderr)
    # A SIGTERM or SIGHUP while the sandbox starts stops it (start() cleans up on any exit).
    _exit_on_signals()
    try:
        sandbox = SandboxProcess(scenario, speed=args.speed).start()
    except SandboxStartError as exc:
        # The message is a headline plus the child's stderr; its last line says why.
        lines = str(exc).strip().splitlines() or ["no reason given"]
        why = f" {lines[-1].strip()}" if len(lines) > 1 else ""
        return _fail(f"the sandbox did not start: {lines[0]}{why}", 1)
    # The sandbox's own Datadog/Sentry credentials, so a real DD_API_KEY or
    # SENTRY_AUTH_TOKEN in this shell is never sent anywhere, not even to loopback.
    os.environ.update(sandbox.client_env)
    try:
        settings = load_config(Path(sandbox.config_path))
        if args.production:
            env = settings.environment.model_copy(update={"production": True})
            settings = settings.model_copy(update={"environment": env})
        if args.viewers:
            from tui.demo_bus import demo_over_the_bus

            return demo_over_the_bus(settings, sandbox, args.viewers, read_only=args.read_only)
        return _run_app(settings, read_only=args.read_only, record=args.record)
    except ConfigError as exc:
        return _fail(str(exc))
    finally:
        sandbox.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deploywatch`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    args = _parser().parse_args(argv)

    if args.command == "check-config":
        try:
            settings = load_config(args.file, missing_hint="usage: deploywatch check-config FILE")
        except ConfigError as exc:
            return _fail(str(exc))
        counts = [
            plural(len(settings.services), "service"),
            plural(len(settings.metrics), "metric"),
            plural(len(settings.probes), "probe"),
            plural(len(settings.rules), "rule"),
            f"sentry {'on' if settings.sentry else 'off'}",
        ]
        print(
            f"{visible(str(args.file))}: ok ({', '.join(counts)}; environment {settings.environment.name})"
        )
        return 0
    if args.command == "demo":
        return _demo(args)
    if args.command == "gate":
        from tui import gate

        return gate.run(args)
    if args.command == "replay":
        from tui import replay

        return replay.run(args)
    if args.command in ("relay", "announce"):
        from tui import bus_cli

        return bus_cli.run_relay(args) if args.command == "relay" else bus_cli.run_announce(args)
    if args.command == "sandbox":
        missing = _sandbox_missing()
        if missing is not None:
            return _fail(missing, 1)
        extra = (
            ["--list"] if args.list else ["--scenario", args.scenario, "--speed", str(args.speed)]
        )
        os.execv(sys.executable, [sys.executable, "-m", "sandbox", *extra])
    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    if args.bus:
        from tui import bus_cli

        if args.record:
            return _fail(
                "--record does not combine with --bus: a viewer polls nothing of its own "
                "(record where the watch polls: deploywatch run --record FILE)",
                2,
            )
        return bus_cli.run_viewer(settings, args.bus, operate=args.operate)
    return _run_app(settings, read_only=args.read_only, record=args.record)


if __name__ == "__main__":
    sys.exit(main())
