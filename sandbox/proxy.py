"""The front proxy of one service: splits requests between version upstreams by weight.

Weights come from a callable ``weights() -> {version: weight}`` (the ECS scheduler's live
task mix, or ALB target-group weights), read at most once per ``weights_ttl_s``. The
split is a smooth weighted round-robin (nginx's), so any window of requests follows the
weights closely, not just on average. Every request, ``/health`` included, is written
to the :class:`~sandbox.requestlog.RequestLog` with the version that served it;
``/health`` is forwarded to an upstream's ``/health`` like any other path.

Failures are answered like a load balancer would: no upstream with a positive weight
-> 503 (logged with version ``"none"``), upstream unreachable -> 502, upstream timeout
-> 504 (logged with the version tried).
"""

from __future__ import annotations

import logging
import threading
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import httpx

from sandbox.httpserver import WsgiServer, json_body

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from types import TracebackType

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from sandbox.faults import FaultSource
    from sandbox.requestlog import RequestLog

__all__ = ["NO_VERSION", "VERSION_HEADER", "WeightedProxy", "WeightedRoundRobin"]

NO_VERSION = "none"
VERSION_HEADER = "X-Sandbox-Version"
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)
_log = logging.getLogger(__name__)


class WeightedRoundRobin:
    """Smooth weighted round-robin (as in nginx): deterministic, evenly interleaved."""

    def __init__(self) -> None:
        self._weights: dict[str, float] = {}
        self._current: dict[str, float] = {}
        self._lock = threading.Lock()

    def choose(self, weights: Mapping[str, float]) -> str | None:
        """Pick the next version.

        Args:
            weights: Version -> weight; versions with weight <= 0 never get picked.

        Returns:
            The version, or ``None`` when no weight is positive.
        """
        eligible = {v: float(w) for v, w in weights.items() if w > 0}
        if not eligible:
            return None
        with self._lock:
            if eligible != self._weights:
                self._weights = eligible
                self._current = dict.fromkeys(eligible, 0.0)
            total = sum(eligible.values())
            for version, weight in eligible.items():
                self._current[version] += weight
            best = max(sorted(eligible), key=lambda v: self._current[v])
            self._current[best] -= total
            return best


class WeightedProxy:
    """The front proxy of ``service``, as a WSGI app with its own server.

    Args:
        service: Service name (written in the request log).
        log: Where every request is logged.
        weights: Callable returning version -> weight.
        upstreams: Version -> base URL of that version's process.
        weights_ttl_s: How long a ``weights()`` answer is reused (0: every request).
        timeout_s: Upstream timeout.
        faults: Optional fault source; requests then go through a
            :class:`~sandbox.faults.FaultMiddleware` for ``fault_endpoint`` first.
        fault_endpoint: Endpoint name in the fault registry (default ``proxy:<service>``).
    """

    def __init__(
        self,
        service: str,
        log: RequestLog,
        weights: Callable[[], Mapping[str, float]],
        upstreams: Mapping[str, str] | None = None,
        *,
        weights_ttl_s: float = 0.5,
        timeout_s: float = 10.0,
        faults: FaultSource | None = None,
        fault_endpoint: str | None = None,
    ) -> None:
        self.service = service
        self.log = log
        self.weights_fn = weights
        self.weights_ttl_s = weights_ttl_s
        self.timeout_s = timeout_s
        self._upstreams: dict[str, str] = {v: u.rstrip("/") for v, u in (upstreams or {}).items()}
        self._lock = threading.Lock()
        self._cached: dict[str, float] = {}
        self._cached_until = 0.0
        self._rr = WeightedRoundRobin()
        self._client: httpx.Client | None = None
        app: WSGIApplication = self
        hooks: list[Callable[[], None]] = []
        if faults is not None:
            from sandbox.faults import FaultMiddleware

            middleware = FaultMiddleware(self, faults, fault_endpoint or f"proxy:{service}")
            app = middleware
            hooks.append(middleware.close)
        self._server = WsgiServer(app, name=f"proxy-{service}", on_stop=hooks)

    # ------------------------------------------------------------------ upstreams

    def set_upstream(self, version: str, url: str) -> None:
        """Add or move a version's upstream.

        Args:
            version: The version.
            url: Its base URL.
        """
        with self._lock:
            self._upstreams[version] = url.rstrip("/")

    def upstreams(self) -> dict[str, str]:
        """Version -> upstream URL."""
        with self._lock:
            return dict(self._upstreams)

    def current_weights(self) -> dict[str, float]:
        """The weights in force (cached for ``weights_ttl_s``)."""
        now = time.monotonic()
        with self._lock:
            if now < self._cached_until:
                return dict(self._cached)
        try:
            fresh = {str(v): float(w) for v, w in self.weights_fn().items()}
        except Exception:  # the weights source is someone else's code: keep the last
            _log.exception("weights() of %s failed; keeping the last weights", self.service)
            with self._lock:
                return dict(self._cached)
        with self._lock:
            self._cached = fresh
            self._cached_until = now + self.weights_ttl_s
            return dict(fresh)

    def choose(self) -> tuple[str, str] | None:
        """Pick the version (and its URL) for the next request.

        Returns:
            ``(version, url)``, or ``None`` when no upstream has a positive weight.
        """
        weights = self.current_weights()
        upstreams = self.upstreams()
        version = self._rr.choose({v: w for v, w in weights.items() if v in upstreams})
        if version is None:
            return None
        return version, upstreams[version]

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        method = str(environ.get("REQUEST_METHOD", "GET"))
        path = str(environ.get("PATH_INFO", "/")) or "/"
        query = str(environ.get("QUERY_STRING", ""))
        picked = self.choose()
        if picked is None:
            return self._answer(
                start_response,
                started,
                NO_VERSION,
                503,
                json_body({"error": f"no healthy upstream for {self.service}"}),
                [("Content-Type", "application/json")],
                method,
                path,
            )
        version, base = picked
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        headers = {
            key[5:].replace("_", "-").title(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_") and key[5:].replace("_", "-").lower() not in _HOP_BY_HOP
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = str(environ["CONTENT_TYPE"])
        headers["X-Forwarded-For"] = str(environ.get("REMOTE_ADDR", "127.0.0.1"))
        url = f"{base}{path}" + (f"?{query}" if query else "")
        try:
            resp = self._http().request(method, url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return self._answer(
                start_response,
                started,
                version,
                504,
                json_body({"error": f"upstream {version} timed out: {exc!r}"}),
                [("Content-Type", "application/json")],
                method,
                path,
            )
        except httpx.HTTPError as exc:
            return self._answer(
                start_response,
                started,
                version,
                502,
                json_body({"error": f"upstream {version} failed: {exc!r}"}),
                [("Content-Type", "application/json")],
                method,
                path,
            )
        out_headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP]
        return self._answer(
            start_response,
            started,
            version,
            resp.status_code,
            resp.content,
            out_headers,
            method,
            path,
            resp.reason_phrase,
        )

    def _answer(
        self,
        start_response: StartResponse,
        started: float,
        version: str,
        status: int,
        body: bytes,
        headers: list[tuple[str, str]],
        method: str,
        path: str,
        reason: str = "",
    ) -> list[bytes]:
        latency_ms = (time.monotonic() - started) * 1000.0
        self.log.record(self.service, version, status, latency_ms, path=path, method=method)
        if not reason:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = "Unknown"
        start_response(
            f"{status} {reason}",
            [
                *headers,
                ("Content-Length", str(len(body))),
                (VERSION_HEADER, version),
            ],
        )
        return [body]

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self.timeout_s,
                    trust_env=False,
                    limits=httpx.Limits(max_connections=200, max_keepalive_connections=0),
                )
            return self._client

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> WeightedProxy:
        """Start serving.

        Returns:
            This proxy.
        """
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the upstream client."""
        self._server.stop()
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    @property
    def url(self) -> str:
        """The proxy's base URL (the service's public URL)."""
        return self._server.url

    def describe(self) -> dict[str, Any]:
        """Upstreams and the weights in force, for status output."""
        return {
            "service": self.service,
            "upstreams": self.upstreams(),
            "weights": self.current_weights(),
        }

    def __enter__(self) -> WeightedProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
