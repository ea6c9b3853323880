"""The demo service: one real HTTP server process per version, instrumented with sentry-sdk.

Run one process per version::

    python -m sandbox.service --name web --version v2 --port 0 \\
        --dsn http://key@127.0.0.1:PORT/1 --behaviour '{"error_ratio": 0.15}'

The process prints one JSON line on stdout once it listens
(``{"port": ..., "url": ..., "pid": ..., "service": ..., "version": ...}``) and exits on
SIGTERM, SIGINT or EOF on stdin (``--no-stdin-watch`` turns the latter off). It
initialises the real sentry-sdk with ``release`` = its version and ``environment`` =
``sandbox``; every error it answers is an exception raised, captured by sentry-sdk and
answered 500.

Routes: ``GET /health`` (status per :class:`HealthSpec`), ``GET /__behaviour`` (the
behaviour as JSON), anything else is "application traffic" shaped by :class:`Behaviour`.

The behaviour dict (what a scenario TOML carries; every key optional)::

    error_ratio    = 0.15                     # share of requests answered 500, 0..1
    error_pattern  = "even"                   # "even": exactly spread; "random": Bernoulli
    exceptions     = ["ValueError", "PaymentDeclinedError"]   # raised in turn on errors;
                     # builtin names are the builtin classes, any other identifier
                     # becomes an exception class of module sandbox.service
    latency        = {base_ms = 20, jitter_ms = 10, p95_shift_ms = 0, tail_ratio = 0.1}
                     # base + uniform(0, jitter); a random tail_ratio share of requests
                     # gets + p95_shift_ms (with tail_ratio >= 0.05 that shifts p95)
    health         = {status = 200, flap_period_s = 0, flap_down_s = 0, down_status = 503}
                     # with flap_period_s > 0, /health answers down_status for the last
                     # flap_down_s (default half) of every period, counted from start
    bursts         = {period_s = 10, chance = 0.3, length_s = 3, error_ratio = 0.3,
                      latency_ms = 300, seed = 1}
                     # shared trouble (a database hiccup): REAL wall-clock periods of
                     # period_s; each is, with probability chance (drawn from seed and
                     # the period's number, so every version with the same seed bursts
                     # at the same moments), a burst for its first length_s: a request
                     # then fails with probability error_ratio and takes latency_ms more
    crash_after_s  = 12                       # process exits (code crash_exit_code) then
    crash_exit_code = 1
    seed           = 7                        # random generator seed (None: random)
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from http import HTTPStatus
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sandbox.httpserver import WsgiServer, json_body

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from types import FrameType, TracebackType

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "BUILTIN_EXCEPTIONS",
    "Behaviour",
    "HealthSpec",
    "LatencySpec",
    "ServiceApp",
    "ServiceProcess",
    "ServiceStartError",
    "exception_class",
    "main",
]

BUILTIN_EXCEPTIONS = frozenset(
    {
        "ArithmeticError",
        "AttributeError",
        "ConnectionError",
        "IndexError",
        "KeyError",
        "LookupError",
        "NotImplementedError",
        "OSError",
        "PermissionError",
        "RuntimeError",
        "TimeoutError",
        "TypeError",
        "ValueError",
        "ZeroDivisionError",
    }
)
ERROR_PATTERNS = ("even", "random")
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Lines of the child's stderr kept by ServiceProcess.
STDERR_TAIL_LINES = 200


def _check_keys(cls: type[Any], data: Mapping[str, Any], where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(
            f"unknown {where} key(s): {', '.join(sorted(unknown))}; known: "
            + ", ".join(sorted(known))
        )


def _number(data: Mapping[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class LatencySpec:
    """Latency added to each application request.

    Attributes:
        base_ms: Minimum latency.
        jitter_ms: Uniform jitter added on top of ``base_ms``.
        p95_shift_ms: Extra latency for a random ``tail_ratio`` share of requests.
        tail_ratio: Share of requests that get ``p95_shift_ms``.
    """

    base_ms: float = 20.0
    jitter_ms: float = 10.0
    p95_shift_ms: float = 0.0
    tail_ratio: float = 0.1

    def __post_init__(self) -> None:
        if min(self.base_ms, self.jitter_ms, self.p95_shift_ms) < 0:
            raise ValueError("latency values must be >= 0")
        if not 0 <= self.tail_ratio <= 1:
            raise ValueError("latency.tail_ratio must be in [0, 1]")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencySpec:
        """Parse from a dict (unknown keys refused).

        Args:
            data: The ``latency`` table.
        """
        _check_keys(cls, data, "latency")
        return cls(
            base_ms=_number(data, "base_ms", cls.base_ms),
            jitter_ms=_number(data, "jitter_ms", cls.jitter_ms),
            p95_shift_ms=_number(data, "p95_shift_ms", cls.p95_shift_ms),
            tail_ratio=_number(data, "tail_ratio", cls.tail_ratio),
        )

    def sample_ms(self, rng: random.Random) -> float:
        """Draw one latency in milliseconds.

        Args:
            rng: The random generator.
        """
        ms = self.base_ms + rng.uniform(0.0, self.jitter_ms)
        if self.p95_shift_ms and rng.random() < self.tail_ratio:
            ms += self.p95_shift_ms
        return ms


@dataclass(frozen=True)
class BurstSpec:
    """Bursts of errors and latency on a seeded wall-clock schedule (shared trouble).

    Attributes:
        period_s: Length of one period, REAL seconds (0: no bursts).
        chance: Probability that a period holds a burst.
        length_s: A burst lasts this long from the period's start.
        error_ratio: Share of requests failing during a burst.
        latency_ms: Extra latency of every request during a burst.
        seed: Seed of the schedule: versions with the same seed burst together.
    """

    period_s: float = 0.0
    chance: float = 0.0
    length_s: float = 0.0
    error_ratio: float = 0.0
    latency_ms: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.period_s, self.length_s, self.latency_ms) < 0:
            raise ValueError("bursts values must be >= 0")
        if not 0 <= self.chance <= 1 or not 0 <= self.error_ratio <= 1:
            raise ValueError("bursts.chance and bursts.error_ratio must be in [0, 1]")
        if self.length_s > self.period_s:
            raise ValueError("bursts.length_s must be at most period_s")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BurstSpec:
        """Parse from a dict (unknown keys refused).

        Args:
            data: The ``bursts`` table.
        """
        _check_keys(cls, data, "bursts")
        return cls(
            period_s=_number(data, "period_s", cls.period_s),
            chance=_number(data, "chance", cls.chance),
            length_s=_number(data, "length_s", cls.length_s),
            error_ratio=_number(data, "error_ratio", cls.error_ratio),
            latency_ms=_number(data, "latency_ms", cls.latency_ms),
            seed=int(_number(data, "seed", cls.seed)),
        )

    def active(self, at: float) -> bool:
        """Whether a burst is on at wall-clock time ``at`` (epoch seconds)."""
        if self.period_s <= 0 or self.chance <= 0:
            return False
        period, phase = divmod(at, self.period_s)
        if phase >= self.length_s:
            return False
        return random.Random(f"{self.seed}:{int(period)}").random() < self.chance


@dataclass(frozen=True)
class HealthSpec:
    """What ``/health`` answers.

    Attributes:
        status: Status when healthy (200) or a fixed failing status.
        flap_period_s: Flapping period; 0 disables flapping.
        flap_down_s: Seconds of each period spent down (default: half the period).
        down_status: Status answered while down.
    """

    status: int = 200
    flap_period_s: float = 0.0
    flap_down_s: float | None = None
    down_status: int = 503

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599 or not 100 <= self.down_status <= 599:
            raise ValueError("health statuses must be HTTP statuses")
        if self.flap_period_s < 0:
            raise ValueError("health.flap_period_s must be >= 0")
        if self.flap_down_s is not None and not 0 <= self.flap_down_s <= self.flap_period_s:
            raise ValueError("health.flap_down_s must be within [0, flap_period_s]")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HealthSpec:
        """Parse from a dict (unknown keys refused).

        Args:
            data: The ``health`` table.
        """
        _check_keys(cls, data, "health")
        down = data.get("flap_down_s")
        return cls(
            status=int(_number(data, "status", cls.status)),
            flap_period_s=_number(data, "flap_period_s", cls.flap_period_s),
            flap_down_s=None if down is None else _number(data, "flap_down_s", 0.0),
            down_status=int(_number(data, "down_status", cls.down_status)),
        )

    def status_at(self, uptime_s: float) -> int:
        """The status ``/health`` answers ``uptime_s`` seconds after start.

        Args:
            uptime_s: Seconds since the process started.
        """
        if self.flap_period_s <= 0:
            return self.status
        down = self.flap_period_s / 2 if self.flap_down_s is None else self.flap_down_s
        phase = uptime_s % self.flap_period_s
        return self.down_status if phase >= self.flap_period_s - down else self.status


@dataclass(frozen=True)
class Behaviour:
    """How one version of the service behaves (see the module docstring for the dict).

    Attributes:
        error_ratio: Share of application requests answered 500 after raising.
        error_pattern: ``"even"`` spreads errors exactly; ``"random"`` draws each one.
        exceptions: Exception class names raised in turn.
        latency: Latency distribution.
        health: ``/health`` behaviour.
        crash_after_s: The process exits this many seconds after start (``None``: never).
        crash_exit_code: Exit code of the crash.
        seed: Random seed (``None``: unseeded).
    """

    error_ratio: float = 0.0
    error_pattern: str = "even"
    exceptions: tuple[str, ...] = ("RuntimeError",)
    latency: LatencySpec = field(default_factory=LatencySpec)
    health: HealthSpec = field(default_factory=HealthSpec)
    bursts: BurstSpec = field(default_factory=BurstSpec)
    crash_after_s: float | None = None
    crash_exit_code: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.error_ratio <= 1:
            raise ValueError("error_ratio must be in [0, 1]")
        if self.error_pattern not in ERROR_PATTERNS:
            raise ValueError(f"error_pattern must be one of {', '.join(ERROR_PATTERNS)}")
        if not self.exceptions:
            raise ValueError("exceptions must name at least one exception class")
        for name in self.exceptions:
            exception_class(name)  # validates the name
        if self.crash_after_s is not None and self.crash_after_s < 0:
            raise ValueError("crash_after_s must be >= 0")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Behaviour:
        """Parse a behaviour dict, e.g. a scenario TOML table.

        Args:
            data: The dict (``None`` or empty: the defaults).

        Returns:
            The behaviour.

        Raises:
            ValueError: On unknown keys or invalid values.
        """
        data = dict(data or {})
        _check_keys(cls, data, "behaviour")
        exceptions = data.get("exceptions", cls.exceptions)
        if isinstance(exceptions, str):
            exceptions = [exceptions]
        if not isinstance(exceptions, list | tuple) or not all(
            isinstance(e, str) for e in exceptions
        ):
            raise ValueError("exceptions must be a list of exception class names")
        crash = data.get("crash_after_s")
        seed = data.get("seed")
        pattern = data.get("error_pattern", cls.error_pattern)
        if not isinstance(pattern, str):
            raise ValueError("error_pattern must be a string")
        return cls(
            error_ratio=_number(data, "error_ratio", cls.error_ratio),
            error_pattern=pattern,
            exceptions=tuple(exceptions),
            latency=LatencySpec.from_dict(data.get("latency") or {}),
            health=HealthSpec.from_dict(data.get("health") or {}),
            bursts=BurstSpec.from_dict(data.get("bursts") or {}),
            crash_after_s=None if crash is None else _number(data, "crash_after_s", 0.0),
            crash_exit_code=int(_number(data, "crash_exit_code", cls.crash_exit_code)),
            seed=None if seed is None else int(seed),
        )

    def to_dict(self) -> dict[str, Any]:
        """The behaviour as a JSON-ready dict that :meth:`from_dict` reads back."""
        out = asdict(self)
        out["exceptions"] = list(self.exceptions)
        return out


_EXCEPTION_CLASSES: dict[str, type[Exception]] = {}
_EXCEPTION_LOCK = threading.Lock()


def exception_class(name: str) -> type[Exception]:
    """The exception class raised for ``name``.

    Builtin names give the builtin class; any other identifier gives a
    :class:`RuntimeError` subclass of that name, defined in this module (one per name).

    Args:
        name: The class name.

    Raises:
        ValueError: If ``name`` is not an identifier.
    """
    if name in BUILTIN_EXCEPTIONS:
        cls = getattr(builtins, name)
        assert isinstance(cls, type) and issubclass(cls, Exception)
        return cls
    if not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"exception name {name!r} is not a valid class name")
    with _EXCEPTION_LOCK:
        cls = _EXCEPTION_CLASSES.get(name)
        if cls is None:
            created: type[Exception] = type(name, (RuntimeError,), {"__module__": __name__})
            _EXCEPTION_CLASSES[name] = created
            return created
        return cls


def _fail(exc_type: type[Exception], service: str, version: str, route: str) -> None:
    """Raise the scripted failure (its frame is the issue's location in Sentry)."""
    raise exc_type(f"simulated failure of {service} {version} on {route}")


class ServiceApp:
    """The WSGI app of one service version.

    Args:
        name: Service name.
        version: Version (also the Sentry release).
        behaviour: How it behaves.
        sleep: Sleep function (tests may pass a fake).
    """

    def __init__(
        self,
        name: str,
        version: str,
        behaviour: Behaviour,
        sleep: Any = time.sleep,
    ) -> None:
        self.name = name
        self.version = version
        self.behaviour = behaviour
        self._sleep = sleep
        self._started = time.monotonic()
        self._rng = random.Random(behaviour.seed)
        self._lock = threading.Lock()
        self._acc = 0.5  # error accumulator phase for the "even" pattern
        self._next_exc = 0
        self.requests = 0
        self.errors = 0

    def uptime_s(self) -> float:
        """Seconds since the app was created."""
        return time.monotonic() - self._started

    def _decide(self) -> tuple[float, type[Exception] | None]:
        return self.decide_at(time.time())

    def decide_at(self, at: float) -> tuple[float, type[Exception] | None]:
        """The latency and the exception (``None``: success) of a request at wall-clock
        time ``at``; a unit test may drive it with its own times."""
        b = self.behaviour
        with self._lock:
            self.requests += 1
            latency = b.latency.sample_ms(self._rng)
            burst = b.bursts.active(at)
            if burst:
                latency += b.bursts.latency_ms
            if b.error_pattern == "even":
                self._acc += b.error_ratio
                failing = self._acc >= 1.0 - 1e-9
                if failing:
                    self._acc -= 1.0
            else:
                failing = self._rng.random() < b.error_ratio
            if burst and not failing:
                failing = self._rng.random() < b.bursts.error_ratio
            exc_type = None
            if failing:
                self.errors += 1
                exc_type = exception_class(b.exceptions[self._next_exc % len(b.exceptions)])
                self._next_exc += 1
        return latency, exc_type

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        headers = [("X-Service-Version", self.version), ("X-Service-Name", self.name)]
        if path == "/health":
            status = self.behaviour.health.status_at(self.uptime_s())
            payload: dict[str, Any] = {
                "status": "ok" if status < 400 else "failing",
                "service": self.name,
                "version": self.version,
                "uptime_s": round(self.uptime_s(), 3),
            }
            return _respond(start_response, status, payload, headers)
        if path == "/__behaviour":
            return _respond(start_response, 200, self.behaviour.to_dict(), headers)
        latency_ms, exc_type = self._decide()
        self._sleep(latency_ms / 1000.0)
        if exc_type is None:
            return _respond(
                start_response,
                200,
                {"ok": True, "service": self.name, "version": self.version, "path": path},
                headers,
            )
        route = f"{method} {path}"
        try:
            _fail(exc_type, self.name, self.version, route)
        except Exception as exc:
            _capture(exc, self.name, route, environ.get("HTTP_X_USER_ID"))
            payload = {
                "ok": False,
                "error": type(exc).__name__,
                "message": str(exc),
                "service": self.name,
                "version": self.version,
            }
            return _respond(start_response, 500, payload, headers)
        raise AssertionError("unreachable")  # pragma: no cover


def _capture(exc: BaseException, service: str, route: str, user_id: str | None) -> None:
    try:
        import sentry_sdk
    except ImportError:  # pragma: no cover - sentry-sdk is a sandbox dependency
        return
    with sentry_sdk.isolation_scope() as scope:
        scope.set_tag("service", service)
        scope.set_transaction_name(route)
        if user_id:
            scope.set_user({"id": user_id})
        sentry_sdk.capture_exception(exc)


def _respond(
    start_response: StartResponse,
    status: int,
    payload: Any,
    headers: Sequence[tuple[str, str]] = (),
) -> list[bytes]:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    body = json_body(payload)
    start_response(
        f"{status} {reason}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *headers,
        ],
    )
    return [body]


# --------------------------------------------------------------------------- process


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sandbox.service", description=__doc__)
    p.add_argument("--name", required=True, help="service name")
    p.add_argument("--version", required=True, help="version, also the Sentry release")
    p.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    p.add_argument("--dsn", default=None, help="Sentry DSN (sentry-sdk stays off without)")
    p.add_argument("--environment", default="sandbox", help="Sentry environment")
    p.add_argument("--behaviour", default="{}", help="behaviour as a JSON object")
    p.add_argument("--fault-control", default=None, help="fault control endpoint URL")
    p.add_argument("--fault-endpoint", default=None, help="fault endpoint name (name:version)")
    p.add_argument("--no-stdin-watch", action="store_true", help="do not exit on stdin EOF")
    return p


def _init_sentry(dsn: str, name: str, version: str, environment: str) -> None:
    import sentry_sdk

    sentry_sdk.init(
        dsn=dsn,
        release=version,
        environment=environment,
        server_name=f"{name}-{version}",
        in_app_include=["sandbox"],
        auto_enabling_integrations=False,
        shutdown_timeout=2,
        send_client_reports=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one service version until SIGTERM / SIGINT / stdin EOF.

    Args:
        argv: Command-line arguments (``sys.argv[1:]`` when omitted).

    Returns:
        The exit code.
    """
    args = _parser().parse_args(argv)
    try:
        behaviour = Behaviour.from_dict(json.loads(args.behaviour))
    except (ValueError, TypeError) as exc:
        print(f"bad --behaviour: {exc}", file=sys.stderr)
        return 2
    if args.dsn:
        _init_sentry(args.dsn, args.name, args.version, args.environment)
    app = ServiceApp(args.name, args.version, behaviour)
    server = WsgiServer(app, name=f"{args.name}-{args.version}", port=args.port)
    remote = None
    if args.fault_control:
        from sandbox.faults import FaultMiddleware, RemoteFaults

        remote = RemoteFaults(args.fault_control).start()
        middleware = FaultMiddleware(
            app, remote, args.fault_endpoint or f"{args.name}:{args.version}"
        )
        server = WsgiServer(middleware, name=f"{args.name}-{args.version}", port=args.port)
        server.add_stop_hook(middleware.close)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    if behaviour.crash_after_s is not None:
        code = behaviour.crash_exit_code

        def crash() -> None:
            print(
                f"{args.name} {args.version}: crashing as scripted "
                f"({behaviour.crash_after_s:g}s after start)",
                file=sys.stderr,
                flush=True,
            )
            os._exit(code)

        timer = threading.Timer(behaviour.crash_after_s, crash)
        timer.daemon = True
        timer.start()
    if not args.no_stdin_watch:

        def watch_stdin() -> None:
            while sys.stdin.buffer.read(4096):
                pass
            stop.set()

        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    announce = {
        "port": server.port,
        "url": server.url,
        "pid": os.getpid(),
        "service": args.name,
        "version": args.version,
    }
    sys.stdout.write(json.dumps(announce) + "\n")
    sys.stdout.flush()
    while not stop.wait(0.2):
        pass
    server.stop()
    if remote is not None:
        remote.close()
    if args.dsn:
        import sentry_sdk

        sentry_sdk.flush(timeout=2)
    return 0


class ServiceStartError(RuntimeError):
    """The service process exited or stayed silent before announcing its port."""


class ServiceProcess:
    """A ``python -m sandbox.service`` child process, as a context manager.

    The child holds our end of a stdin pipe and exits when it reaches EOF, so it goes
    away with us. Its stderr is kept (last :data:`STDERR_TAIL_LINES` lines).

    Args:
        name: Service name.
        version: Version (Sentry release).
        behaviour: Behaviour (object or dict); defaults when omitted.
        dsn: Sentry DSN for sentry-sdk (off when ``None``).
        environment: Sentry environment.
        fault_control_url: Fault control endpoint the child obeys (``None``: no faults).
        fault_endpoint: The child's endpoint name there (default ``name:version``).
        startup_timeout: Seconds to wait for the port announcement.
        env: Extra environment variables.
    """

    def __init__(
        self,
        name: str,
        version: str,
        behaviour: Behaviour | Mapping[str, Any] | None = None,
        *,
        dsn: str | None = None,
        environment: str = "sandbox",
        fault_control_url: str | None = None,
        fault_endpoint: str | None = None,
        startup_timeout: float = 20.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.behaviour = (
            behaviour if isinstance(behaviour, Behaviour) else Behaviour.from_dict(behaviour)
        )
        self.dsn = dsn
        self.environment = environment
        self.fault_control_url = fault_control_url
        self.fault_endpoint = fault_endpoint
        self.startup_timeout = startup_timeout
        self._extra_env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._info: dict[str, Any] | None = None
        self._threads: list[threading.Thread] = []

    def command(self) -> list[str]:
        """The child's command line."""
        cmd = [
            sys.executable,
            "-m",
            "sandbox.service",
            "--name",
            self.name,
            "--version",
            self.version,
            "--port",
            "0",
            "--environment",
            self.environment,
            "--behaviour",
            json.dumps(self.behaviour.to_dict()),
        ]
        if self.dsn:
            cmd += ["--dsn", self.dsn]
        if self.fault_control_url:
            cmd += ["--fault-control", self.fault_control_url]
            if self.fault_endpoint:
                cmd += ["--fault-endpoint", self.fault_endpoint]
        return cmd

    def start(self, wait: bool = True) -> ServiceProcess:
        """Spawn the child; with ``wait``, also wait for its port.

        Args:
            wait: Whether to call :meth:`wait_ready`.

        Returns:
            This object.
        """
        if self._proc is not None:
            raise RuntimeError("already started")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self._extra_env)
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(_PROJECT_ROOT),
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._threads = [
            threading.Thread(
                target=self._pump, args=(self._proc.stdout, True), daemon=True, name="svc-out"
            ),
            threading.Thread(
                target=self._pump, args=(self._proc.stderr, False), daemon=True, name="svc-err"
            ),
        ]
        for t in self._threads:
            t.start()
        if wait:
            self.wait_ready()
        return self

    def _pump(self, stream: IO[bytes], is_stdout: bool) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if is_stdout:
                self._lines.put(line)
            else:
                self._stderr.append(line)
        if is_stdout:
            self._lines.put(None)

    def wait_ready(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the child's port announcement.

        Args:
            timeout: Seconds (default ``startup_timeout``).

        Returns:
            The announcement (``port``, ``url``, ``pid``, ``service``, ``version``).

        Raises:
            ServiceStartError: If the child exits or stays silent.
        """
        if self._info is not None:
            return self._info
        if self._proc is None:
            raise RuntimeError("not started")
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise ServiceStartError(
                    f"{self.name} {self.version}: no port within the timeout; stderr:\n"
                    + self.stderr_tail()
                )
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.stop()
                raise ServiceStartError(
                    f"{self.name} {self.version} exited with {self.returncode}; stderr:\n"
                    + self.stderr_tail()
                )
            try:
                info = json.loads(line)
            except ValueError:
                continue
            if isinstance(info, dict) and "port" in info:
                self._info = info
                return info

    def stop(self, timeout: float = 5.0) -> int | None:
        """Close stdin, send SIGTERM, wait; SIGKILL if it lingers.

        Args:
            timeout: Seconds to wait for a clean exit.

        Returns:
            The exit code (``None`` if never started).
        """
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        elif proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for t in self._threads:
            t.join(2)
        return proc.returncode

    def wait(self, timeout: float) -> int | None:
        """Wait for the child to exit on its own (e.g. a scripted crash).

        Args:
            timeout: Seconds.

        Returns:
            Its exit code, or ``None`` if it still runs.
        """
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    @property
    def info(self) -> dict[str, Any]:
        """The port announcement (after :meth:`wait_ready`)."""
        if self._info is None:
            raise RuntimeError(f"{self.name} {self.version} has not announced its port")
        return self._info

    @property
    def port(self) -> int:
        """The child's port."""
        return int(self.info["port"])

    @property
    def url(self) -> str:
        """The child's base URL (this version's own URL)."""
        return str(self.info["url"])

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, once exited."""
        return None if self._proc is None else self._proc.poll()

    @property
    def alive(self) -> bool:
        """Whether the child runs."""
        return self._proc is not None and self._proc.poll() is None

    def stderr_tail(self) -> str:
        """The last lines of the child's stderr."""
        return "\n".join(self._stderr)

    def __enter__(self) -> ServiceProcess:
        if self._proc is None:
            return self.start()
        self.wait_ready()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    # Run the importable copy, so that frames and scripted exception classes belong to
    # module "sandbox.service" (not "__main__") in the events Sentry receives.
    from sandbox.service import main as _main

    sys.exit(_main())
