"""``deploywatch replay``: play a recording back, for the post-mortem.

- In the dashboard (the default), read-only, at the recorded pace or ``--speed`` times
  faster: the same verdicts, countdowns and evidence at the same moments of the
  recording's clock.
- Headless with ``--timeline``: the verdict timeline a fresh watch judges from the
  recording, beside the one the live watch published; exit 0 when they agree.
- Headless with ``--report PATH``: the deployment report regenerated from the recording.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import ConfigError, visible

if TYPE_CHECKING:
    from datetime import datetime

    from engine.recording import Recording
    from tui.app import DeployWatchApp

EXIT_USAGE = 2
AGREE_WITHIN_S = 2.0
"""Seconds a replayed verdict change may sit from the recorded one and still agree
(the live watch judged a burst of data up to half a second after it came in)."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``replay`` sub-command's arguments."""
    replay: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help="play a recording (--record) back: in the dashboard, or as a timeline or report",
        description=(
            "Play back what a watch recorded with --record: in the dashboard (read-only, "
            "at the recorded pace or --speed times faster), or headless as a verdict "
            "timeline (--timeline) or a regenerated deployment report (--report)."
        ),
    )
    replay.add_argument("recording", type=Path, help="a recording written with --record")
    replay.add_argument(
        "--speed", type=float, default=1.0, help="times faster than recorded (default: 1)"
    )
    replay.add_argument(
        "--timeline",
        action="store_true",
        help="print the replayed verdict timeline beside the recorded one; exit 1 if they differ",
    )
    replay.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the deployment report regenerated from the recording to PATH.md/.json",
    )
    return replay


def _fail(message: str) -> int:
    print(f"deploywatch: {visible(message)}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    """``deploywatch replay``: returns the exit code."""
    from engine.recording import RecordingError, read_recording, recorded_settings

    if not args.speed > 0 or args.speed > 1000:
        return _fail(f"--speed {args.speed}: expected a number above 0 and at most 1000")
    try:
        recording = read_recording(args.recording)
        settings = recorded_settings(recording)
    except (RecordingError, ConfigError) as exc:
        return _fail(str(exc))
    if recording.bad_lines:
        print(
            f"deploywatch: {recording.bad_lines} malformed line(s) in the recording skipped",
            file=sys.stderr,
        )
    if args.timeline or args.report is not None:
        return asyncio.run(_headless(recording, settings, args))
    return _dashboard(recording, settings, args.speed)


def _when(at: datetime) -> str:
    return at.strftime("%H:%M:%S")


async def _headless(recording: Recording, settings: Any, args: argparse.Namespace) -> int:
    from engine.recording import replay_offline
    from engine.report import ReportBook, watch_outcome, write_report

    books: list[ReportBook] = []

    def observe(controller: Any) -> None:
        book = ReportBook(
            controller, tuple(ref.key for ref in settings.services), recording.started
        )
        books.append(book)
        book.follow()

    timeline, controller = await replay_offline(recording, settings, on_start=observe)
    code = 0
    if args.timeline:
        recorded = recording.verdicts()
        print(f"recorded {_when(recording.started)} → {_when(recording.ended)}")
        print(f"{'replayed':<28}  {'recorded':<28}")
        for i in range(max(len(timeline), len(recorded))):
            mine = f"{_when(timeline[i][0])} {timeline[i][1]}" if i < len(timeline) else ""
            live = f"{_when(recorded[i][0])} {recorded[i][1]}" if i < len(recorded) else ""
            print(f"{mine:<28}  {live:<28}")
        agree = verdicts_agree(timeline, recorded)
        print("the timelines agree" if agree else "the timelines DIFFER")
        code = 0 if agree else 1
    if args.report is not None:
        outcome, why = watch_outcome(controller.snapshot)
        data = books[0].to_json(
            outcome=outcome, code=None, why=why, ended=recording.ended, audit=None
        )
        data["replayed_from"] = str(recording.path)
        try:
            paths = await asyncio.to_thread(write_report, args.report, data)
        except OSError as exc:
            return _fail(f"the report could not be written: {exc}")
        print(f"report: {', '.join(str(p) for p in paths)}")
    return code


def verdicts_agree(
    replayed: list[tuple[datetime, str]], recorded: list[tuple[datetime, str]]
) -> bool:
    """The same verdict words in the same order, each change within
    :data:`AGREE_WITHIN_S` of the recorded one."""
    if [v for _, v in replayed] != [v for _, v in recorded]:
        return False
    return all(
        abs((a - b).total_seconds()) <= AGREE_WITHIN_S
        for (a, _), (b, _) in zip(replayed[1:], recorded[1:], strict=True)
    )


def replay_app(recording: Recording, settings: Any, speed: float) -> DeployWatchApp:
    """The dashboard playing ``recording`` back: read-only, on the recording's clock,
    its environment named ``replay …``."""
    from engine.recording import PlaybackClock, PlaybackSource, never_calls_aws
    from tui.app import DeployWatchApp

    clock = PlaybackClock(recording.started, speed)
    name = f"replay {settings.environment.name}"[:40]
    env = settings.environment.model_copy(update={"name": name})
    settings = settings.model_copy(update={"environment": env})
    source = PlaybackSource(recording, clock)
    app = DeployWatchApp(settings, [source], clock=clock, read_only=True, executor=never_calls_aws)
    app.controller.runs_commands = False  # smoke results come from the recording
    source.smoke = app.controller.ingest
    return app


def _dashboard(recording: Recording, settings: Any, speed: float) -> int:
    app = replay_app(recording, settings, speed)
    app.run()
    return app.return_code or 0
