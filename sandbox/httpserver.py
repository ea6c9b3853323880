"""A small threaded WSGI server on 127.0.0.1 that starts and stops cleanly.

Every HTTP endpoint of the sandbox (the Datadog and Sentry APIs, the service, the proxy,
the fault control endpoint) runs on :class:`WsgiServer`: werkzeug's threaded server in a
background thread, bound to a free loopback port chosen at start (port 0).

werkzeug answers every request with ``Connection: close``. :meth:`WsgiServer.stop` runs
the stop hooks (which release requests held by a fault), stops the accept loop, waits for
the requests in progress and cuts the sockets of those that outlive a grace period, so
that no request thread survives the server.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from werkzeug.serving import WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

    from _typeshed.wsgi import WSGIApplication
    from werkzeug.serving import BaseWSGIServer

__all__ = [
    "LOOPBACK",
    "REQUEST_SOCKET_TIMEOUT_S",
    "FixedWindowLimiter",
    "QuietRequestHandler",
    "WindowState",
    "WsgiServer",
    "json_body",
]

LOOPBACK = "127.0.0.1"
# A request thread waits at most this long on a silent client socket.
REQUEST_SOCKET_TIMEOUT_S = 60.0


class _Connections:
    """The request handlers of one server that are still running."""

    def __init__(self) -> None:
        self._handlers: set[WSGIRequestHandler] = set()
        self._cond = threading.Condition()

    def add(self, handler: WSGIRequestHandler) -> None:
        with self._cond:
            self._handlers.add(handler)

    def discard(self, handler: WSGIRequestHandler) -> None:
        with self._cond:
            self._handlers.discard(handler)
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._handlers:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def cut(self) -> None:
        """Shut down the sockets of the handlers still running (they then see EOF)."""
        with self._cond:
            handlers = list(self._handlers)
        for handler in handlers:
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)


class QuietRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler without the per-request access log line.

    It also registers itself while it runs, so that :meth:`WsgiServer.stop` can wait for
    (and if need be cut) the requests in progress: werkzeug's request threads are daemon
    threads that ``server_close()`` does not join.
    """

    timeout = REQUEST_SOCKET_TIMEOUT_S
    connections: _Connections | None = None

    def handle(self) -> None:
        """Handle the connection, registered in the server's running set."""
        tracker = self.connections
        if tracker is not None:
            tracker.add(self)
        try:
            super().handle()
        finally:
            if tracker is not None:
                tracker.discard(self)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Do not log successful requests (the sandbox keeps its own request log)."""


def json_body(payload: Any) -> bytes:
    """Encode ``payload`` as compact UTF-8 JSON.

    Args:
        payload: Any JSON-serialisable value.

    Returns:
        The encoded bytes.
    """
    return json.dumps(payload, separators=(",", ":")).encode()


@dataclass(frozen=True)
class WindowState:
    """The state of a rate-limit window after one request.

    Attributes:
        allowed: Whether the request fits in the window.
        limit: Requests allowed per window.
        remaining: Requests left in the window.
        reset_at: Clock time at which the window ends.
        period_s: Window length in seconds.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_at: float
    period_s: float

    def reset_in(self, now: float) -> int:
        """Whole seconds (rounded up, at least 1) until the window ends.

        Args:
            now: Current clock time.
        """
        return max(1, math.ceil(self.reset_at - now))


class FixedWindowLimiter:
    """A fixed-window rate limiter (windows aligned on multiples of the period).

    Args:
        limit: Requests allowed per window.
        period_s: Window length in seconds.
        clock: Clock in seconds (wall clock by default).
    """

    def __init__(self, limit: int, period_s: float, clock: Callable[[], float] = time.time) -> None:
        if limit < 1 or period_s <= 0:
            raise ValueError("limit must be >= 1 and period_s > 0")
        self.limit = limit
        self.period_s = period_s
        self.clock = clock
        self._window = -1
        self._used = 0
        self._lock = threading.Lock()

    def _roll(self, now: float) -> int:
        window = int(now // self.period_s)
        if window != self._window:
            self._window = window
            self._used = 0
        return window

    def take(self) -> WindowState:
        """Count one request.

        Returns:
            The window state; ``allowed`` is false when the limit was already reached
            (a refused request is not counted).
        """
        now = self.clock()
        with self._lock:
            window = self._roll(now)
            allowed = self._used < self.limit
            if allowed:
                self._used += 1
            return WindowState(
                allowed,
                self.limit,
                self.limit - self._used,
                (window + 1) * self.period_s,
                self.period_s,
            )

    def peek(self) -> WindowState:
        """The window state without counting a request."""
        now = self.clock()
        with self._lock:
            window = self._roll(now)
            return WindowState(
                self._used < self.limit,
                self.limit,
                self.limit - self._used,
                (window + 1) * self.period_s,
                self.period_s,
            )


class WsgiServer:
    """Serve a WSGI app on ``127.0.0.1:<free port>`` from a background thread.

    Args:
        app: The WSGI application.
        name: A short name for the thread (and error messages).
        port: The port to bind; 0 (the default) picks a free one.
        on_stop: Callables run first thing in :meth:`stop`, e.g. to release requests held
            by a fault so that the request threads can be joined.
    """

    def __init__(
        self,
        app: WSGIApplication,
        name: str = "wsgi",
        port: int = 0,
        on_stop: Iterable[Callable[[], None]] = (),
    ) -> None:
        self.app = app
        self.name = name
        self._requested_port = port
        self._on_stop = list(on_stop)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: _Connections | None = None
        self._lock = threading.Lock()

    def add_stop_hook(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` at the start of :meth:`stop`.

        Args:
            hook: A callable without arguments.
        """
        self._on_stop.append(hook)

    def start(self) -> WsgiServer:
        """Bind the port and start serving.

        Returns:
            This server, so that ``server = WsgiServer(app).start()`` reads well.
        """
        with self._lock:
            if self._server is not None:
                return self
            tracker = _Connections()
            handler = type(
                "SandboxRequestHandler", (QuietRequestHandler,), {"connections": tracker}
            )
            server = make_server(
                LOOPBACK,
                self._requested_port,
                self.app,
                threaded=True,
                request_handler=handler,
            )
            self._connections = tracker
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"sandbox-{self.name}",
                daemon=True,
            )
            self._server = server
            self._thread = thread
        thread.start()
        return self

    def stop(self, grace_s: float = 2.0) -> None:
        """Release held requests, stop accepting, and wait for the requests in progress.

        Requests still running after ``grace_s`` get their socket shut down, and are
        waited for one more second.

        Args:
            grace_s: Seconds requests in progress get to finish.
        """
        with self._lock:
            server, thread, tracker = self._server, self._thread, self._connections
            self._server = None
            self._thread = None
            self._connections = None
        if server is None or thread is None:
            return
        for hook in self._on_stop:
            hook()
        server.shutdown()
        thread.join(grace_s)
        if tracker is not None and not tracker.wait_idle(grace_s):
            tracker.cut()
            tracker.wait_idle(1.0)

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (only while running)."""
        if self._server is None:
            raise RuntimeError(f"{self.name} server is not running")
        return int(self._server.port)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> WsgiServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
