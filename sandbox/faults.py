"""Fault injection for every sandbox HTTP endpoint.

Three parts:

- :class:`FaultRegistry` holds, per endpoint name (``"datadog"``, ``"sentry"``, ``"aws"``,
  ``"web:v2"``...), the fault currently switched on, plus faults scheduled on the
  registry's clock (a scenario runner passes its own clock and calls
  :meth:`FaultRegistry.schedule`).
- :class:`FaultMiddleware` wraps any WSGI app (moto's server included) and, when its
  endpoint has a fault, answers with it instead of (or around) the app.
- :class:`FaultControlServer` is the small HTTP control endpoint::

      POST   /faults            {"endpoint": "datadog", "fault": "http429", "retry_after": 2}
                                 optional "after_s" / "at" (schedule) and "duration_s"
      GET    /faults            {"active": {...}, "scheduled": [...], "kinds": [...]}
      GET    /faults/<endpoint> {"endpoint": ..., "fault": {...} | null}
      DELETE /faults/<endpoint> switch that endpoint's fault off
      DELETE /faults            switch every fault off and drop the schedule

A process that cannot share the registry object (the service runs one process per
version) reads the control endpoint through :class:`RemoteFaults`, which polls it in the
background so that the request path never waits on it.

The faults:

``http500``
    500 with a JSON error body.
``http429``
    429 with ``Retry-After: <retry_after>``.
``hang``
    Holds the request for ``hang_s`` (bounded by :data:`MAX_HOLD_S`), then 504. Switching
    the fault off lets held requests through to the app; stopping the server (or
    :meth:`FaultRegistry.close`) drops them without an answer.
``slow_drip``
    The app's real answer, its body sent one byte per ``drip_interval_s``.
``reset``
    TCP RST: ``SO_LINGER`` 0 on ``environ["werkzeug.socket"]``, then the descriptor is
    closed (by ``dup2`` of a dead socketpair end over it, so that werkzeug's handler sees a
    clean EOF afterwards instead of a bad descriptor).
``garbage``
    200 with a body that is not JSON (an HTML page cut short, with a JSON content type).
``expired_token``
    For the ``aws`` endpoint: 400 ``ExpiredTokenException`` (an account whose session
    or SSO credentials expired), in the JSON shape of the ECS API.
``unimplemented``
    For the ``aws`` endpoint: the ECS service-deployments API (``ListServiceDeployments``,
    ``DescribeServiceDeployments``, ``DescribeServiceRevisions``, by ``X-Amz-Target``)
    answers 500 with an HTML error page, as a plain moto server or an older
    ECS-compatible endpoint does; every other request goes through.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import socket
import struct
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, Protocol
from urllib.parse import unquote

import httpx

from sandbox.httpserver import WsgiServer, json_body

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from types import TracebackType

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "DEFAULT_HOLD_S",
    "FAULT_KINDS",
    "MAX_HOLD_S",
    "UNIMPLEMENTED_TARGETS",
    "Fault",
    "FaultControlServer",
    "FaultMiddleware",
    "FaultRegistry",
    "FaultSource",
    "RemoteFaults",
    "ScheduledFault",
    "reset_connection",
]

FAULT_KINDS = (
    "http500",
    "http429",
    "hang",
    "slow_drip",
    "reset",
    "garbage",
    "unimplemented",
    "expired_token",
)
# Longest a fault may hold one request (hang, or a whole slow drip).
MAX_HOLD_S = 300.0
DEFAULT_HOLD_S = 60.0
# How often a held request looks at the registry (fault switched off? server stopping?).
_HOLD_POLL_S = 0.05
# The operations an ``unimplemented`` fault answers with an HTML 500 page.
UNIMPLEMENTED_TARGETS = frozenset(
    f"AmazonEC2ContainerServiceV20141113.{op}"
    for op in ("ListServiceDeployments", "DescribeServiceDeployments", "DescribeServiceRevisions")
)
_UNIMPLEMENTED_PAGE = (
    b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
    b"<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was"
    b" unable to complete your request. Either the server is overloaded or there is an"
    b" error in the application.</p>\n"
)
_ENDPOINT_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")
_GARBAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad"
    b" Gateway</h1></center><hr><center>nginx</center>\n"
)


@dataclass(frozen=True)
class Fault:
    """One fault, as switched on for an endpoint.

    Attributes:
        kind: One of :data:`FAULT_KINDS`.
        retry_after: ``http429``: seconds announced in ``Retry-After``.
        hang_s: ``hang``: how long a request is held before a 504.
        drip_interval_s: ``slow_drip``: seconds between two body bytes.
        ratio: Share of requests hit by the fault (1.0: every request).
    """

    kind: str
    retry_after: int = 1
    hang_s: float = DEFAULT_HOLD_S
    drip_interval_s: float = 0.5
    ratio: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; known: {', '.join(FAULT_KINDS)}")
        if self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if not 0 < self.hang_s <= MAX_HOLD_S:
            raise ValueError(f"hang_s must be in (0, {MAX_HOLD_S}]")
        if not 0 < self.drip_interval_s <= 60:
            raise ValueError("drip_interval_s must be in (0, 60]")
        if not 0 < self.ratio <= 1:
            raise ValueError("ratio must be in (0, 1]")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build a fault from ``{"fault": kind, ...parameters}`` (``"kind"`` also accepted).

        Args:
            data: The fault's fields; keys other than the fields, ``fault`` and the
                scheduling/endpoint keys of the control API are refused.

        Returns:
            The fault.

        Raises:
            ValueError: On an unknown key, kind or out-of-range value.
        """
        data = dict(data)
        kind = data.pop("fault", None) or data.pop("kind", None)
        if not isinstance(kind, str):
            raise ValueError('a fault needs "fault": one of ' + ", ".join(FAULT_KINDS))
        for key in ("endpoint", "after_s", "at", "duration_s"):
            data.pop(key, None)
        allowed = {"retry_after", "hang_s", "drip_interval_s", "ratio"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault parameter(s): {', '.join(sorted(unknown))}")
        try:
            return cls(
                kind=kind,
                retry_after=int(data.get("retry_after", 1)),
                hang_s=float(data.get("hang_s", DEFAULT_HOLD_S)),
                drip_interval_s=float(data.get("drip_interval_s", 0.5)),
                ratio=float(data.get("ratio", 1.0)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        """The fault as the control API shows it (``fault`` holds the kind)."""
        out = asdict(self)
        out["fault"] = out.pop("kind")
        return out

    def hits(self) -> bool:
        """Whether this request is hit (always, unless ``ratio`` < 1)."""
        return self.ratio >= 1.0 or random.random() < self.ratio


@dataclass(frozen=True)
class ScheduledFault:
    """A fault switched on at ``at`` (registry clock) and, if ``until`` is set, off again.

    Attributes:
        endpoint: Endpoint name.
        fault: The fault; ``None`` schedules switching the endpoint's fault off.
        at: Registry-clock time it takes effect.
        until: Registry-clock time it is switched off (``None``: stays on).
    """

    endpoint: str
    fault: Fault | None
    at: float
    until: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The schedule entry as the control API shows it."""
        return {
            "endpoint": self.endpoint,
            "fault": None if self.fault is None else self.fault.to_dict(),
            "at": self.at,
            "until": self.until,
        }


class FaultSource(Protocol):
    """Where a :class:`FaultMiddleware` looks up its endpoint's fault."""

    def get(self, endpoint: str) -> Fault | None:
        """The fault on for ``endpoint`` now, or ``None``."""
        ...

    @property
    def closed(self) -> threading.Event:
        """Set when held requests must be dropped (the sandbox is stopping)."""
        ...


@dataclass
class _Pending:
    when: float
    seq: int
    entry: ScheduledFault
    switch_on: bool
    installed: list[Fault] = field(default_factory=list)


class FaultRegistry:
    """The faults switched on, per endpoint name, and the schedule.

    Thread-safe. The clock is the scenario's (seconds; any origin); by default it is the
    number of seconds since the registry was created.

    Args:
        clock: Callable returning the current time on the scenario's clock.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        if clock is None:
            origin = time.monotonic()

            def _since_start() -> float:
                return time.monotonic() - origin

            clock = _since_start
        self.clock = clock
        self._active: dict[str, Fault] = {}
        self._pending: list[_Pending] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def closed(self) -> threading.Event:
        """Set by :meth:`close`; held requests of every endpoint are dropped."""
        return self._closed

    def set(self, endpoint: str, fault: Fault) -> None:
        """Switch ``fault`` on for ``endpoint`` now (replacing any other).

        Args:
            endpoint: Endpoint name.
            fault: The fault.
        """
        _check_endpoint(endpoint)
        with self._lock:
            self._active[endpoint] = fault

    def clear(self, endpoint: str) -> bool:
        """Switch ``endpoint``'s fault off.

        Args:
            endpoint: Endpoint name.

        Returns:
            Whether a fault was on.
        """
        with self._lock:
            return self._active.pop(endpoint, None) is not None

    def clear_all(self) -> None:
        """Switch every fault off and drop the schedule."""
        with self._lock:
            self._active.clear()
            self._pending.clear()

    def schedule(
        self,
        endpoint: str,
        fault: Fault | None,
        at: float,
        duration: float | None = None,
    ) -> ScheduledFault:
        """Switch ``fault`` on for ``endpoint`` at clock time ``at``.

        Called by a scenario runner with times on its own clock.

        Args:
            endpoint: Endpoint name.
            fault: The fault, or ``None`` to switch the endpoint's fault off at ``at``.
            at: Registry-clock time it takes effect.
            duration: Seconds it stays on (``None``: until switched off).

        Returns:
            The schedule entry.
        """
        _check_endpoint(endpoint)
        if duration is not None and duration <= 0:
            raise ValueError("duration must be positive")
        entry = ScheduledFault(endpoint, fault, at, None if duration is None else at + duration)
        with self._lock:
            on = _Pending(at, self._next_seq(), entry, switch_on=True)
            self._pending.append(on)
            if entry.until is not None:
                self._pending.append(
                    _Pending(entry.until, self._next_seq(), entry, False, on.installed)
                )
            self._pending.sort(key=lambda p: (p.when, p.seq))
        self._apply_due()
        return entry

    def get(self, endpoint: str) -> Fault | None:
        """The fault on for ``endpoint`` now (due schedule entries are applied first).

        Args:
            endpoint: Endpoint name.
        """
        self._apply_due()
        with self._lock:
            return self._active.get(endpoint)

    def active(self) -> dict[str, Fault]:
        """Every fault on now, by endpoint."""
        self._apply_due()
        with self._lock:
            return dict(self._active)

    def scheduled(self) -> list[ScheduledFault]:
        """Schedule entries with a switch still to come, in time order."""
        with self._lock:
            seen: list[ScheduledFault] = []
            for p in self._pending:
                if p.entry not in seen:
                    seen.append(p.entry)
            return seen

    def close(self) -> None:
        """Drop every held request (hang, slow drip) of every endpoint."""
        self._closed.set()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _apply_due(self) -> None:
        now = self.clock()
        with self._lock:
            while self._pending and self._pending[0].when <= now:
                p = self._pending.pop(0)
                ep = p.entry.endpoint
                if p.switch_on:
                    if p.entry.fault is None:
                        self._active.pop(ep, None)
                    else:
                        self._active[ep] = p.entry.fault
                        p.installed.append(p.entry.fault)
                elif p.installed and self._active.get(ep) is p.installed[0]:
                    # Only switch off what this entry switched on.
                    del self._active[ep]


def _check_endpoint(endpoint: str) -> None:
    if not _ENDPOINT_RE.match(endpoint):
        raise ValueError(f"bad endpoint name {endpoint!r} (letters, digits, _ . : - only)")


class RemoteFaults:
    """A :class:`FaultSource` reading a :class:`FaultControlServer` from another process.

    A background thread polls ``GET /faults`` every ``poll_s``; lookups read the last
    answer. When the control endpoint cannot be reached, the last answer is kept.

    Args:
        control_url: Base URL of the control endpoint.
        poll_s: Seconds between polls.
    """

    def __init__(self, control_url: str, poll_s: float = 0.25) -> None:
        self.control_url = control_url.rstrip("/")
        self.poll_s = poll_s
        self._active: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def closed(self) -> threading.Event:
        """Set by :meth:`close`."""
        return self._closed

    def start(self) -> RemoteFaults:
        """Poll once now, then in the background.

        Returns:
            This object.
        """
        self._poll_once()
        self._thread = threading.Thread(target=self._run, name="remote-faults", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop polling and drop held requests."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(5)

    def get(self, endpoint: str) -> Fault | None:
        """The fault last seen on for ``endpoint``.

        Args:
            endpoint: Endpoint name.
        """
        with self._lock:
            return self._active.get(endpoint)

    def _run(self) -> None:
        while not self._closed.wait(self.poll_s):
            self._poll_once()

    def _poll_once(self) -> None:
        try:
            resp = httpx.get(f"{self.control_url}/faults", timeout=2.0, trust_env=False)
            resp.raise_for_status()
            active = {ep: Fault.from_dict(d) for ep, d in resp.json()["active"].items()}
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return
        with self._lock:
            self._active = active


def reset_connection(sock: socket.socket) -> None:
    """Close a client connection with a TCP RST.

    ``SO_LINGER`` (on, 0 s) makes the kernel answer a close with RST. The descriptor is
    closed by ``dup2``-ing one end of a socketpair whose other end is closed over it: the
    RST goes out at once, and the server's later reads on the same descriptor see EOF.

    Args:
        sock: The connected socket (``environ["werkzeug.socket"]``).
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    left, right = socket.socketpair()
    right.close()
    try:
        os.dup2(left.fileno(), sock.fileno())
    finally:
        left.close()


def _drop(environ: WSGIEnvironment, why: str) -> NoReturn:
    """Drop the connection without an answer (the client sees the socket close)."""
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    raise ConnectionAbortedError(why)


def _json_response(
    start_response: StartResponse,
    status: str,
    payload: Any,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    body = json_body(payload)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    headers.extend(extra_headers)
    start_response(status, headers)
    return [body]


class FaultMiddleware:
    """WSGI middleware answering with the fault switched on for ``endpoint``.

    Args:
        app: The wrapped WSGI app.
        faults: Where faults are looked up (a :class:`FaultRegistry` or
            :class:`RemoteFaults`).
        endpoint: This endpoint's name in the registry.
        exempt_paths: Paths never faulted (e.g. a control path).
    """

    def __init__(
        self,
        app: WSGIApplication,
        faults: FaultSource,
        endpoint: str,
        exempt_paths: Iterable[str] = (),
    ) -> None:
        _check_endpoint(endpoint)
        self.app = app
        self.faults = faults
        self.endpoint = endpoint
        self.exempt_paths = frozenset(exempt_paths)
        self._closed = threading.Event()

    def close(self) -> None:
        """Drop this endpoint's held requests (call before stopping its server)."""
        self._closed.set()

    def _stopping(self) -> bool:
        return self._closed.is_set() or self.faults.closed.is_set()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in self.exempt_paths:
            return self.app(environ, start_response)
        fault = self.faults.get(self.endpoint)
        if fault is None or not fault.hits():
            return self.app(environ, start_response)
        kind = fault.kind
        if kind == "unimplemented":
            if environ.get("HTTP_X_AMZ_TARGET", "") not in UNIMPLEMENTED_TARGETS:
                return self.app(environ, start_response)
            start_response(
                "500 Internal Server Error",
                [
                    ("Content-Type", "text/html; charset=utf-8"),
                    ("Content-Length", str(len(_UNIMPLEMENTED_PAGE))),
                ],
            )
            return [_UNIMPLEMENTED_PAGE]
        if kind == "expired_token":
            return _json_response(
                start_response,
                "400 Bad Request",
                {
                    "__type": "ExpiredTokenException",
                    "message": "The security token included in the request is expired",
                },
            )
        if kind == "http500":
            return _json_response(
                start_response,
                "500 Internal Server Error",
                {"errors": [f"Internal Server Error (sandbox fault on {self.endpoint})"]},
            )
        if kind == "http429":
            return _json_response(
                start_response,
                "429 Too Many Requests",
                {"errors": [f"Too Many Requests (sandbox fault on {self.endpoint})"]},
                [("Retry-After", str(fault.retry_after))],
            )
        if kind == "garbage":
            start_response(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(_GARBAGE)))],
            )
            return [_GARBAGE]
        if kind == "reset":
            sock = environ.get("werkzeug.socket")
            if isinstance(sock, socket.socket):
                reset_connection(sock)
            # No answer: werkzeug treats this as a dropped connection.
            raise ConnectionResetError(f"sandbox fault: reset on {self.endpoint}")
        if kind == "hang":
            return self._hang(fault, environ, start_response)
        return self._slow_drip(fault, environ, start_response)

    def _hang(
        self, fault: Fault, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        deadline = time.monotonic() + fault.hang_s
        while time.monotonic() < deadline:
            if self._stopping():
                _drop(environ, f"sandbox stopping: hang on {self.endpoint}")
            if self.faults.get(self.endpoint) != fault:
                # Switched off (or replaced): the held request goes through.
                return self.app(environ, start_response)
            time.sleep(_HOLD_POLL_S)
        return _json_response(
            start_response,
            "504 Gateway Timeout",
            {"errors": [f"Gateway Timeout after {fault.hang_s:g}s (sandbox fault)"]},
        )

    def _slow_drip(
        self, fault: Fault, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        captured: dict[str, Any] = {}

        def capture(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            captured["status"] = status
            captured["headers"] = headers
            return lambda _data: None

        inner = self.app(environ, capture)
        try:
            body = b"".join(inner)
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()
        headers = [
            (k, v)
            for k, v in captured.get("headers", [])
            if k.lower() not in ("content-length", "transfer-encoding")
        ]
        headers.append(("Content-Length", str(len(body))))
        start_response(captured.get("status", "200 OK"), headers)
        return self._drip(fault, body, environ)

    def _drip(self, fault: Fault, body: bytes, environ: WSGIEnvironment) -> Iterator[bytes]:
        deadline = time.monotonic() + MAX_HOLD_S
        for i in range(len(body)):
            if self.faults.get(self.endpoint) != fault:
                yield body[i:]
                return
            yield body[i : i + 1]
            wake = time.monotonic() + fault.drip_interval_s
            while (left := wake - time.monotonic()) > 0:
                if self._stopping() or time.monotonic() > deadline:
                    _drop(environ, f"slow drip on {self.endpoint} cut short")
                time.sleep(min(_HOLD_POLL_S, left))


class FaultControlApp:
    """The control endpoint's WSGI app (see the module docstring for the routes).

    Args:
        registry: The registry it controls.
    """

    def __init__(self, registry: FaultRegistry) -> None:
        self.registry = registry

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "").rstrip("/")
        try:
            if path == "/faults":
                if method == "GET":
                    return self._listing(start_response)
                if method == "POST":
                    return self._post(environ, start_response)
                if method == "DELETE":
                    self.registry.clear_all()
                    return _json_response(start_response, "200 OK", {"cleared": "all"})
            elif path.startswith("/faults/"):
                endpoint = unquote(path[len("/faults/") :])
                if method == "GET":
                    fault = self.registry.get(endpoint)
                    return _json_response(
                        start_response,
                        "200 OK",
                        {"endpoint": endpoint, "fault": None if fault is None else fault.to_dict()},
                    )
                if method == "DELETE":
                    cleared = self.registry.clear(endpoint)
                    return _json_response(
                        start_response, "200 OK", {"endpoint": endpoint, "cleared": cleared}
                    )
            else:
                return _json_response(start_response, "404 Not Found", {"error": "not found"})
        except ValueError as exc:
            return _json_response(start_response, "400 Bad Request", {"error": str(exc)})
        return _json_response(
            start_response, "405 Method Not Allowed", {"error": f"{method} not allowed"}
        )

    def _listing(self, start_response: StartResponse) -> list[bytes]:
        return _json_response(
            start_response,
            "200 OK",
            {
                "active": {ep: f.to_dict() for ep, f in self.registry.active().items()},
                "scheduled": [s.to_dict() for s in self.registry.scheduled()],
                "kinds": list(FAULT_KINDS),
                "clock": self.registry.clock(),
            },
        )

    def _post(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            data = json.loads(raw or b"null")
        except (ValueError, KeyError) as exc:
            raise ValueError(f"body must be a JSON object: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        endpoint = data.get("endpoint")
        if not isinstance(endpoint, str):
            raise ValueError('"endpoint" (a string) is required')
        fault = Fault.from_dict(data)
        at = data.get("at")
        after_s = data.get("after_s")
        duration = data.get("duration_s")
        if duration is not None and not isinstance(duration, int | float):
            raise ValueError('"duration_s" must be a number')
        if at is None and after_s is None and duration is None:
            self.registry.set(endpoint, fault)
            return _json_response(
                start_response, "200 OK", {"endpoint": endpoint, "fault": fault.to_dict()}
            )
        if at is not None and after_s is not None:
            raise ValueError('give "at" or "after_s", not both')
        for name, value in (("at", at), ("after_s", after_s)):
            if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
                raise ValueError(f'"{name}" must be a number')
        when = float(at) if at is not None else self.registry.clock() + float(after_s or 0)
        entry = self.registry.schedule(
            endpoint, fault, when, None if duration is None else float(duration)
        )
        return _json_response(start_response, "200 OK", {"scheduled": entry.to_dict()})


class FaultControlServer:
    """The fault control endpoint on ``127.0.0.1:<free port>``.

    Args:
        registry: The registry it controls (a new one when omitted).
    """

    def __init__(self, registry: FaultRegistry | None = None) -> None:
        self.registry = registry if registry is not None else FaultRegistry()
        self._server = WsgiServer(FaultControlApp(self.registry), name="faults")

    def start(self) -> FaultControlServer:
        """Start serving.

        Returns:
            This server.
        """
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving (the registry stays usable)."""
        self._server.stop()

    @property
    def url(self) -> str:
        """Base URL; the API lives under ``/faults``."""
        return self._server.url

    def wrap(self, app: WSGIApplication, endpoint: str) -> FaultMiddleware:
        """Wrap ``app`` so that it obeys this registry's faults for ``endpoint``.

        Args:
            app: The WSGI app.
            endpoint: The endpoint name.

        Returns:
            The middleware (call its ``close()`` before stopping the app's server).
        """
        return FaultMiddleware(app, self.registry, endpoint)

    def __enter__(self) -> FaultControlServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
