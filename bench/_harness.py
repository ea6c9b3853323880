"""The measured process: the real app, in a real terminal, instrumented from outside.

Run by the benches inside a 200x50 tmux pane (``python -m bench._harness ...``); it is
not a bench itself. It builds :class:`~tui.app.DeployWatchApp` with the bench config and
either the synthetic sources (``--mode synthetic`` / ``idle``) or the real ones
(``--mode real``: the ECS source against the sandbox), runs it with Textual's real Linux
driver, and measures without touching product code:

- terminal output: a driver subclass counts the UTF-8 bytes Textual writes, that is
  what the terminal receives; a *frame* is one display that wrote something;
- data→screen: every ingest that changed the store is stamped; the stamps a dashboard
  flush consumed are resolved by the next frame written after that flush;
- keys: a key event's arrival is stamped; the first frame written after the screen
  or the focus changed resolves it (the bench adds the sender's side);
- CPU: ``time.process_time()`` (all threads) over wall time, in a window after warm-up;
- memory: ``VmRSS`` every ``--rss-every`` seconds and ``VmHWM`` at the end.

Everything is written to ``--out`` as JSON when the run ends (by itself, after the
window, or on ``--max-seconds``).
"""

from __future__ import annotations

import time

T_START = time.monotonic()
"""Before the product's imports: the process has just started."""

import argparse  # noqa: E402
import asyncio  # noqa: E402
import cProfile  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections import deque  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, ClassVar  # noqa: E402

from textual import events  # noqa: E402
from textual.drivers.linux_driver import LinuxDriver  # noqa: E402
from textual.message import Message  # noqa: E402

from bench._census import Tracer, census  # noqa: E402
from bench._common import proc_status_kb  # noqa: E402
from bench._workload import Pace, bench_settings, synthetic_sources  # noqa: E402
from sources.model import EcsServiceSample  # noqa: E402
from tui.app import DeployWatchApp  # noqa: E402

T_IMPORTED = time.monotonic()
HEAVY = ("boto3", "botocore", "datadog_api_client", "sentry_sdk", "moto")
"""Modules that must not be loaded before the first paint."""


class CountingDriver(LinuxDriver):
    """Textual's Linux driver, counting the bytes it hands to the terminal."""

    bytes_out = 0
    writes = 0

    def process_message(self, message: Message) -> None:
        # Runs in the input thread as the key is parsed: stamp it once, here.
        if isinstance(message, events.Key):
            message._bench_t = time.monotonic()  # type: ignore[attr-defined]
        super().process_message(message)

    def write(self, data: str) -> None:
        CountingDriver.bytes_out += len(data.encode("utf-8", "replace"))
        CountingDriver.writes += 1
        super().write(data)


class Probe:
    """What the harness records while the app runs."""

    def __init__(self, n: int, keep_latencies: int = 200_000, keep_frames: int = 20_000) -> None:
        self.n = n
        self.keep_latencies = keep_latencies
        self.seen: set[str] = set()
        self.pending: list[float] = []
        """Ingest times not yet taken by a flush."""
        self.flushed: list[float] = []
        """Ingest times taken by a flush, waiting for the next frame."""
        self.latencies: list[tuple[float, float]] = []
        """``(frame time, latency s)`` per ingested change."""
        self.frames: deque[tuple[float, int]] = deque(maxlen=keep_frames)
        """``(time, bytes so far)`` of the latest frames written."""
        self.frame_count = 0
        self.last_bytes = 0
        self.first_paint: float | None = None
        self.full_view: float | None = None
        self.full_pending = False
        self.keys: list[dict[str, Any]] = []
        self.key_waiting: list[tuple[int, tuple[int, int, object]]] = []
        """Keys (index into ``keys``, state before) waiting for a frame showing a change."""
        self.rss: list[tuple[float, int | None]] = []
        self.modules_at_first_paint: list[str] = []
        self.ingested = 0


class BenchApp(DeployWatchApp):
    """The app with a probe attached (hooks only: no behaviour is changed)."""

    CSS_PATH = str(Path(sys.modules[DeployWatchApp.__module__].__file__ or "").parent / "app.tcss")
    probe: Probe
    bench_args: argparse.Namespace
    bench_result: dict[str, Any]
    _keys_seen: ClassVar[set[float | None]] = set()
    profiler: cProfile.Profile | None = None
    """With ``--profile``: cProfile of the event loop's thread, during the window only."""

    def on_mount(self) -> None:
        self.run_worker(
            run_clock(self, self.bench_args, self.bench_result),
            name="bench-clock",
            exit_on_error=False,
        )

    def attach(self, probe: Probe) -> None:
        """Wrap the store's ingest and the dashboard's flush to stamp them."""
        self.probe = probe
        ingest = self.store.ingest

        def stamped(item: Any) -> bool:
            changed = ingest(item)
            probe.ingested += 1
            if changed:
                probe.pending.append(time.monotonic())
                if isinstance(item, EcsServiceSample):
                    probe.seen.add(item.key)
            return changed

        self.store.ingest = stamped  # type: ignore[method-assign]
        flush = self.dashboard._flush

        def flushed() -> None:
            if self.screen is self.dashboard:
                probe.flushed += probe.pending
                probe.pending = []
                if probe.full_view is None and len(probe.seen) >= probe.n:
                    probe.full_pending = True
            flush()

        self.dashboard._flush = flushed  # type: ignore[method-assign]

    def _state(self) -> tuple[int, int, object]:
        """What a key can change: the screen, the focus, or the selected row (j/k move a
        selection inside the focused list, not the focus)."""
        screen = self.screen
        return id(screen), id(screen.focused), getattr(screen, "selected", None)

    async def on_event(self, event: events.Event) -> None:
        # A key event comes to the App from the driver, then again as it bubbles up from
        # the focused widget: count it once, by the driver's stamp.
        stamp = getattr(event, "_bench_t", None)
        if (
            isinstance(event, events.Key)
            and hasattr(self, "probe")
            and stamp not in self._keys_seen
        ):
            self._keys_seen.add(stamp)
            probe = self.probe
            probe.keys.append({"key": event.key, "received": stamp, "frame": None})
            probe.key_waiting.append((len(probe.keys) - 1, self._state()))
        await super().on_event(event)

    def post_display_hook(self) -> None:
        probe = getattr(self, "probe", None)
        if probe is None or CountingDriver.bytes_out == probe.last_bytes:
            return
        now = time.monotonic()
        probe.last_bytes = CountingDriver.bytes_out
        probe.frames.append((now, CountingDriver.bytes_out))
        probe.frame_count += 1
        if probe.first_paint is None:
            probe.first_paint = now
            probe.modules_at_first_paint = [m for m in HEAVY if m in sys.modules]
        if probe.flushed:
            room = probe.keep_latencies - len(probe.latencies)
            if room > 0:  # bounded: the soak must measure the app, not this list
                probe.latencies += [(now, now - t) for t in probe.flushed[:room]]
            probe.flushed = []
        if probe.full_pending and probe.full_view is None:
            probe.full_view = now
            probe.full_pending = False
        if probe.key_waiting:
            state = self._state()
            if any(before != state for _, before in probe.key_waiting):
                for index, _ in probe.key_waiting:
                    probe.keys[index]["frame"] = now
                probe.key_waiting = []


async def run_clock(app: BenchApp, args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Wait for the first full view, warm up, measure a window, then end the app."""
    probe = app.probe
    deadline = T_START + args.max_seconds
    next_rss = time.monotonic()
    window_start: tuple[float, float, int, int] | None = None
    window_end = None
    ingested0 = 0
    tracer: Tracer | None = None
    mark_at: float | None = None
    extra = {"harness.frames": probe.frames, "harness.latencies": probe.latencies}
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_rss:
            probe.rss.append((now, proc_status_kb()))
            next_rss += args.rss_every
            if args.trace:
                result.setdefault("census", []).append((now, census(app, extra)))
        if tracer is not None and mark_at is not None and now >= mark_at:
            tracer.mark()
            result["trace_mark"] = time.monotonic()
            mark_at = None
        if (
            window_start is None
            and probe.full_view is not None
            and now >= probe.full_view + args.warmup
        ):
            window_start = (now, time.process_time(), CountingDriver.bytes_out, probe.frame_count)
            window_end = now + args.duration
            result["window_start"] = now
            ingested0 = probe.ingested
            if args.trace:
                tracer = Tracer()
                mark_at = now + args.trace_from
            args.out.with_suffix(".ready").write_text(str(now))  # the keys bench starts here
            if args.profile is not None:
                app.profiler = cProfile.Profile()
                app.profiler.enable()
        if window_end is not None and now >= window_end:
            break
        await asyncio.sleep(0.05)
    if app.profiler is not None:
        app.profiler.disable()
    if tracer is not None:
        result["census_end"] = census(app, extra)
        result["growth"] = tracer.growth()
    if window_start is not None:
        now = time.monotonic()
        t0, cpu0, bytes0, frames0 = window_start
        result["window"] = {
            "wall": now - t0,
            "cpu": time.process_time() - cpu0,
            "bytes": CountingDriver.bytes_out - bytes0,
            "frames": probe.frame_count - frames0,
            "ingested": probe.ingested - ingested0,
            "start": t0,
            "end": now,
        }
    app.exit()


def main() -> None:
    """Parse the options, run the app in this terminal, write the results."""
    parser = argparse.ArgumentParser(prog="python -m bench._harness")
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--mode", choices=("synthetic", "idle", "real"), default="synthetic")
    parser.add_argument("--rate", type=float, default=1.0, help="samples/s per service")
    parser.add_argument("--no-signals", action="store_true", help="ECS cards only")
    parser.add_argument("--endpoint", default=None, help="AWS endpoint (--mode real)")
    parser.add_argument("--max-concurrency", type=int, default=8)
    parser.add_argument(
        "--discover", action="store_true", help="discover the services (--mode real)"
    )
    parser.add_argument("--poll-interval", type=float, default=5.0, help="ECS (--mode real)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--rss-every", type=float, default=10.0)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--keep-latencies", type=int, default=200_000, help="bound on recorded latencies"
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="cProfile the measured window into this file"
    )
    parser.add_argument(
        "--keep-frames", type=int, default=20_000, help="bound on the frames remembered"
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="count the app's structures at every RSS sample; tracemalloc growth by line",
    )
    parser.add_argument(
        "--trace-from", type=float, default=120.0, help="window seconds before the growth starts"
    )
    args = parser.parse_args()

    kwargs: dict[str, Any] = {"signals": not args.no_signals}
    if args.mode == "real":
        kwargs.update(
            endpoint=args.endpoint or "http://127.0.0.1:9",
            poll_interval=args.poll_interval,
            max_concurrency=args.max_concurrency,
            discover=args.discover,
        )
    settings = bench_settings(args.services, **kwargs)
    sources = None
    if args.mode != "real":
        pace = Pace(rate=args.rate, updates=args.mode == "synthetic")
        sources = synthetic_sources(settings, pace)
    t_construct = time.monotonic()
    app = BenchApp(settings, sources)
    app.driver_class = CountingDriver
    probe = Probe(args.services, args.keep_latencies, args.keep_frames)
    app.attach(probe)
    result: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "pid": os.getpid(),
        "t_start": T_START,
        "t_imported": T_IMPORTED,
        "t_construct": t_construct,
    }
    app.bench_args, app.bench_result = args, result
    app.run()
    if app.profiler is not None:
        app.profiler.dump_stats(str(args.profile))
    result.update(
        t_exit=time.monotonic(),
        first_paint=probe.first_paint,
        full_view=probe.full_view,
        frames=list(probe.frames),
        latencies=probe.latencies,
        keys=probe.keys,
        rss=probe.rss,
        vmhwm_kb=proc_status_kb(field="VmHWM"),
        modules_at_first_paint=probe.modules_at_first_paint,
        ingested=probe.ingested,
        bytes_total=CountingDriver.bytes_out,
        terminal=list(app.size),
    )
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(args.out)
    os._exit(0)  # the synthetic sources' workers are gone with the app; don't linger


if __name__ == "__main__":
    main()
