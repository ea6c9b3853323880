"""A local Sentry: ingests what the real sentry-sdk posts, serves Sentry's web API subset.

Ingestion (what sentry-sdk sends, authenticated by the DSN's public key):

- ``POST /api/{project_id}/envelope/`` -- an envelope, gzip/deflate-encoded or not (br
  when the ``brotli`` module is installed). ``event`` items are stored; other items
  (transactions, sessions, client reports, attachments...) are accepted and counted.
- ``POST /api/{project_id}/store/`` -- the legacy single-event JSON endpoint.

Events are grouped into issues by project + exception type + location (the top in-app
frame's module and function; the last frame when none is in-app), or by message for
message events, or by an explicit ``fingerprint``.

Web API (``Authorization: Bearer <token>``; 401 ``{"detail": ...}`` otherwise):

- ``GET /api/0/organizations/{org}/issues/`` -- ``query`` (``is:``, ``release:``,
  ``firstRelease:``, ``firstSeen:``/``lastSeen:`` with ``> >= < <=`` and an ISO date or a
  relative ``-1h``/``+1h``/``1h``, ``level:``, ``environment:``, ``error.type:``,
  ``issue:``, free text on title and culprit; default ``is:unresolved``), ``project``,
  ``environment``, ``statsPeriod`` or ``start``/``end`` (default 14d), ``sort``
  (date, new, freq, user), ``limit`` (<= 100), ``cursor``, ``groupStatsPeriod``.
  ``count``, ``userCount``, ``firstSeen`` and ``lastSeen`` cover the events inside the
  period that match the environment and release filters (as Sentry shows them);
  ``lifetime`` carries the all-time figures. Pagination: ``Link`` header exactly like
  Sentry's, cursors ``0:<offset>:<is_prev>``.
- ``GET /api/0/organizations/{org}/issues/{id}/`` and ``GET /api/0/issues/{id}/``.
- ``GET /api/0/organizations/{org}/events-stats/`` -- ``interval``, ``statsPeriod`` or
  ``start``/``end``, ``query`` (event filters as above), ``project``, ``environment``,
  ``yAxis`` (``count()`` or ``count_unique(user)``).

Every web API answer carries ``X-Sentry-Rate-Limit-Limit``, ``-Remaining``, ``-Reset``
(epoch seconds), ``-ConcurrentLimit`` and ``-ConcurrentRemaining``; both limits are
enforced with 429.
"""

from __future__ import annotations

import gzip
import json
import re
import shlex
import threading
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from sandbox.httpserver import FixedWindowLimiter, WsgiServer, json_body

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from types import TracebackType

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from sandbox.faults import FaultSource

__all__ = [
    "DEFAULT_PUBLIC_KEY",
    "DEFAULT_TOKEN",
    "MAX_EVENTS",
    "MAX_LIMIT",
    "Issue",
    "SentryApp",
    "SentryServer",
    "StoredEvent",
    "format_datetime",
]

DEFAULT_TOKEN = "sandbox-sentry-token"
DEFAULT_PUBLIC_KEY = "sandboxpublickey"
DEFAULT_ORG = "sandbox"
# Most events kept for the windowed figures and events-stats (issue lifetime counters
# keep counting past it).
MAX_EVENTS = 100_000
# Sentry's page size bound.
MAX_LIMIT = 100
MAX_STATS_BUCKETS = 10_000
_BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PERIOD_RE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_STATUSES = {"unresolved", "resolved", "ignored"}


class _BadRequest(Exception):
    """A 4xx answer with Sentry's ``{"detail": ...}`` body."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


def format_datetime(ts: float) -> str:
    """Format epoch seconds as Sentry's API does (``2024-05-01T12:34:56.789Z``).

    Args:
        ts: Epoch seconds.
    """
    dt = datetime.fromtimestamp(ts, UTC)
    text = dt.isoformat()
    if dt.microsecond:
        text = text[:23] + text[26:]
    return text.replace("+00:00", "Z")


def _parse_datetime(text: str) -> float:
    value = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _BadRequest(f"Invalid date: {text!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _parse_duration(text: str) -> float:
    match = _PERIOD_RE.match(text.strip())
    if not match:
        raise _BadRequest(f"Invalid duration {text!r}: use e.g. 30m, 24h, 14d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _base32(number: int) -> str:
    out = ""
    while True:
        number, rem = divmod(number, 32)
        out = _BASE32[rem] + out
        if number == 0:
            return out


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One ingested error event (what the windowed figures are computed from).

    Attributes:
        event_id: The event's id.
        issue_id: Its issue.
        project_id: Its project.
        timestamp: Event time, epoch seconds.
        release: ``release`` (``None`` if absent).
        environment: ``environment`` (``None`` if absent).
        user: The user identity (id, else email, username, IP) or ``None``.
        level: Event level.
        error_type: Main exception type (``None`` for message events).
    """

    event_id: str
    issue_id: int
    project_id: int
    timestamp: float
    release: str | None
    environment: str | None
    user: str | None
    level: str
    error_type: str | None


@dataclass
class Issue:
    """A group of events, with Sentry's lifetime figures.

    Attributes:
        id: Numeric id.
        project_id: Project.
        short_id: ``PROJECT-<base32 number>``.
        key: The grouping key.
        title: Title (``Type: value``).
        culprit: ``module in function`` of the top in-app frame.
        level: Level of the latest event.
        type: ``"error"`` or ``"default"`` (message events).
        metadata: Sentry's ``metadata`` object.
        first_seen: First event time.
        last_seen: Latest event time.
        count: Events ever.
        users: Distinct users ever.
        first_release: Release of the first event.
        last_release: Release of the latest event.
        status: ``unresolved``, ``resolved`` or ``ignored``.
        platform: Platform of the events.
        logger: Logger name of the latest event.
    """

    id: int
    project_id: int
    short_id: str
    key: tuple[Any, ...]
    title: str
    culprit: str
    level: str
    type: str
    metadata: dict[str, Any]
    first_seen: float
    last_seen: float
    count: int = 0
    users: set[str] = field(default_factory=set)
    first_release: str | None = None
    last_release: str | None = None
    status: str = "unresolved"
    platform: str = "python"
    logger: str | None = None


@dataclass
class _Release:
    version: str
    created: float
    first_event: float
    last_event: float
    new_groups: int = 0
    projects: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class _Grouping:
    key: tuple[Any, ...]
    title: str
    culprit: str
    type: str
    metadata: dict[str, Any]
    error_type: str | None


def _grouping(project_id: int, event: Mapping[str, Any]) -> _Grouping:
    fingerprint = event.get("fingerprint")
    exc_values = (event.get("exception") or {}).get("values") or []
    message = event.get("logentry") or event.get("message") or ""
    if isinstance(message, dict):
        message = message.get("formatted") or message.get("message") or ""
    message = str(message)
    culprit = str(event.get("culprit") or event.get("transaction") or "")
    if exc_values:
        main = exc_values[-1]
        etype = str(main.get("type") or "Error")
        evalue = str(main.get("value") or "")
        frames = (main.get("stacktrace") or {}).get("frames") or []
        in_app = [f for f in frames if f.get("in_app")]
        top = (in_app or frames)[-1] if frames else {}
        module = top.get("module") or top.get("filename") or top.get("abs_path") or "?"
        function = top.get("function") or "?"
        if in_app and len(in_app) == len(frames):
            mix = "in-app-only"
        elif in_app:
            mix = "mixed"
        else:
            mix = "system-only"
        first_line = evalue.splitlines()[0] if evalue else ""
        title = f"{etype}: {first_line}"[:200] if first_line else etype
        if top:
            culprit = f"{module} in {function}"
        metadata = {
            "type": etype,
            "value": evalue,
            "filename": top.get("filename"),
            "function": top.get("function"),
            "in_app_frame_mix": mix,
            "display_title_with_tree_label": False,
        }
        key: tuple[Any, ...] = (project_id, "exception", etype, module, function)
        kind, error_type = "error", etype
    else:
        title = (message.splitlines()[0] if message else "<unlabeled event>")[:200]
        metadata = {"title": title}
        key = (project_id, "message", message)
        kind, error_type = "default", None
    if (
        isinstance(fingerprint, list)
        and fingerprint
        and fingerprint != ["{{ default }}"]
        and all(isinstance(part, str) for part in fingerprint)
    ):
        key = (project_id, "fingerprint", tuple(fingerprint))
    return _Grouping(key, title, culprit, kind, metadata, error_type)


def _event_time(event: Mapping[str, Any], received: float) -> float:
    raw = event.get("timestamp")
    ts = received
    if isinstance(raw, int | float):
        ts = float(raw)
    elif isinstance(raw, str):
        try:
            ts = _parse_datetime(raw)
        except _BadRequest:
            ts = received
    # Sentry clamps events from the future.
    return min(ts, received + 60)


def _event_user(event: Mapping[str, Any]) -> str | None:
    user = event.get("user")
    if not isinstance(user, dict):
        return None
    for key in ("id", "email", "username", "ip_address"):
        value = user.get(key)
        if value:
            return f"{key}:{value}"
    return None


def parse_envelope(body: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """Split a Sentry envelope into its header and ``(item header, payload)`` pairs.

    Args:
        body: The decoded (decompressed) envelope.

    Returns:
        The envelope header and its items.

    Raises:
        ValueError: If the envelope is malformed.
    """
    pos = 0

    def line() -> bytes:
        nonlocal pos
        end = body.find(b"\n", pos)
        if end < 0:
            end = len(body)
        chunk = body[pos:end]
        pos = end + 1
        return chunk

    header_line = line()
    header = json.loads(header_line) if header_line.strip() else {}
    if not isinstance(header, dict):
        raise ValueError("envelope header is not a JSON object")
    items: list[tuple[dict[str, Any], bytes]] = []
    while pos < len(body):
        item_line = line()
        if not item_line.strip():
            continue
        item_header = json.loads(item_line)
        if not isinstance(item_header, dict):
            raise ValueError("item header is not a JSON object")
        length = item_header.get("length")
        if isinstance(length, int):
            payload = body[pos : pos + length]
            if len(payload) != length:
                raise ValueError("item shorter than its length")
            pos += length
            if pos < len(body) and body[pos : pos + 1] == b"\n":
                pos += 1
        else:
            payload = line()
        items.append((item_header, payload))
    return header, items


def _decode_body(data: bytes, encoding: str | None) -> bytes:
    enc = (encoding or "identity").strip().lower()
    try:
        if enc in ("", "identity"):
            return data
        if enc in ("gzip", "x-gzip"):
            return gzip.decompress(data)
        if enc == "deflate":
            try:
                return zlib.decompress(data)
            except zlib.error:
                return zlib.decompress(data, -zlib.MAX_WBITS)
        if enc == "br":
            try:
                import brotli  # type: ignore[import-not-found,unused-ignore]
            except ImportError as exc:
                raise _BadRequest("br encoding needs the brotli module", 415) from exc
            out = brotli.decompress(data)
            assert isinstance(out, bytes)
            return out
    except (OSError, zlib.error, EOFError) as exc:
        raise _BadRequest(f"cannot decode {enc} body: {exc}") from exc
    raise _BadRequest(f"unsupported Content-Encoding {enc!r}", 415)


@dataclass
class _Filters:
    """Parsed search query."""

    statuses: set[str] | None = None
    releases: set[str] | None = None
    first_releases: set[str] | None = None
    environments: set[str] | None = None
    levels: set[str] | None = None
    error_types: set[str] | None = None
    short_ids: set[str] | None = None
    first_seen: list[tuple[str, float]] = field(default_factory=list)
    last_seen: list[tuple[str, float]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    negated: list[tuple[str, set[str]]] = field(default_factory=list)


_ISSUE_KEYS = {
    "is",
    "release",
    "firstRelease",
    "firstSeen",
    "lastSeen",
    "level",
    "environment",
    "error.type",
    "issue",
    "event.type",
}
_EVENT_KEYS = {"release", "environment", "level", "error.type", "issue", "event.type"}


def _values(raw: str) -> set[str]:
    if raw.startswith("[") and raw.endswith("]"):
        return {v.strip().strip('"') for v in raw[1:-1].split(",") if v.strip()}
    return {raw}


def _date_condition(raw: str, now: float) -> tuple[str, float]:
    op = ">="
    for candidate in (">=", "<=", ">", "<"):
        if raw.startswith(candidate):
            op, raw = candidate, raw[len(candidate) :]
            break
    else:
        if raw.startswith("+"):
            return "<", now - _parse_duration(raw[1:])
        if raw.startswith("-"):
            return ">=", now - _parse_duration(raw[1:])
    rel = raw[1:] if raw.startswith(("-", "+")) else raw
    if _PERIOD_RE.match(rel):
        return op, now - _parse_duration(rel)
    return op, _parse_datetime(raw)


def _compare(value: float, op: str, bound: float) -> bool:
    if op == ">":
        return value > bound
    if op == ">=":
        return value >= bound
    if op == "<":
        return value < bound
    return value <= bound


def _parse_query(query: str, now: float, allowed: set[str]) -> _Filters:
    filters = _Filters()
    try:
        tokens = shlex.split(query)
    except ValueError as exc:
        raise _BadRequest(f"Invalid search query: {exc}") from exc
    for token in tokens:
        negate = token.startswith("!")
        body = token[1:] if negate else token
        key, sep, raw = body.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z_.]+", key):
            filters.text.append(token.lower())
            continue
        if key not in allowed:
            raise _BadRequest(
                f"Invalid search query: the sandbox does not support the key {key!r} "
                f"(supported: {', '.join(sorted(allowed))})"
            )
        if not raw:
            raise _BadRequest(f"Invalid search query: empty value for {key!r}")
        if negate:
            if key in ("firstSeen", "lastSeen"):
                raise _BadRequest(f"Invalid search query: cannot negate {key}")
            filters.negated.append((key, _values(raw)))
            continue
        if key == "is":
            value = raw.lower()
            if value == "archived":
                value = "ignored"
            if value in _STATUSES:
                filters.statuses = (filters.statuses or set()) | {value}
            elif value == "unassigned":
                pass  # nothing is ever assigned in the sandbox
            elif value in ("assigned", "for_review", "bookmarked", "linked"):
                filters.statuses = {"__none__"}
            else:
                raise _BadRequest(f"Invalid search query: unsupported is:{raw}")
        elif key == "release":
            filters.releases = _values(raw)
        elif key == "firstRelease":
            filters.first_releases = _values(raw)
        elif key == "environment":
            filters.environments = _values(raw)
        elif key == "level":
            filters.levels = _values(raw)
        elif key == "error.type":
            filters.error_types = _values(raw)
        elif key == "issue":
            filters.short_ids = {v.upper() for v in _values(raw)}
        elif key == "event.type":
            if _values(raw) - {"error", "default"}:
                raise _BadRequest("Invalid search query: only event.type:error is stored")
        elif key == "firstSeen":
            filters.first_seen.append(_date_condition(raw, now))
        elif key == "lastSeen":
            filters.last_seen.append(_date_condition(raw, now))
    return filters


def _params_list(request: Request, name: str) -> list[str]:
    return [v for v in request.args.getlist(name) if v != ""]


class SentryApp:
    """The WSGI app of the local Sentry (see the module docstring).

    Args:
        token: The bearer token the web API accepts.
        org: Organization slug.
        projects: Project id -> slug (default ``{1: "web"}``).
        public_key: The DSN public key ingestion accepts.
        rate_limit: Web API requests per ``rate_window_s``.
        rate_window_s: Rate-limit window.
        concurrent_limit: Web API requests in flight at once.
        clock: Wall clock in epoch seconds.
        max_events: Bound of the event store.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        org: str = DEFAULT_ORG,
        projects: Mapping[int, str] | None = None,
        public_key: str = DEFAULT_PUBLIC_KEY,
        rate_limit: int = 40,
        rate_window_s: float = 1.0,
        concurrent_limit: int = 25,
        clock: Callable[[], float] = time.time,
        max_events: int = MAX_EVENTS,
    ) -> None:
        self.token = token
        self.org = org
        self.public_key = public_key
        self.clock = clock
        self.projects: dict[int, str] = dict(projects or {1: "web"})
        self.limiter = FixedWindowLimiter(rate_limit, rate_window_s, clock)
        self.concurrent_limit = concurrent_limit
        self._in_flight = 0
        self._lock = threading.RLock()
        self._issues: dict[int, Issue] = {}
        self._by_key: dict[tuple[Any, ...], Issue] = {}
        self._short_counters: dict[int, int] = {}
        self._events: deque[StoredEvent] = deque(maxlen=max_events)
        self._releases: dict[str, _Release] = {}
        self._next_issue_id = 1
        self.envelopes = 0
        self.items_by_type: dict[str, int] = {}
        self._event_cond = threading.Condition(self._lock)

    # ------------------------------------------------------------------ model

    def project_id(self, slug: str) -> int:
        """The id of the project ``slug``.

        Args:
            slug: Project slug.
        """
        with self._lock:
            for pid, existing in self.projects.items():
                if existing == slug:
                    return pid
        raise KeyError(slug)

    def ingest_event(self, project_id: int, event: Mapping[str, Any]) -> StoredEvent:
        """Store one event (as if posted by an SDK) and group it into an issue.

        Args:
            project_id: The project.
            event: The event payload.

        Returns:
            The stored event.
        """
        received = self.clock()
        ts = _event_time(event, received)
        grouping = _grouping(project_id, event)
        release = event.get("release")
        release = str(release) if release else None
        environment = event.get("environment")
        environment = str(environment) if environment else None
        level = str(event.get("level") or "error")
        user = _event_user(event)
        event_id = str(event.get("event_id") or uuid.uuid4().hex)
        with self._lock:
            issue = self._by_key.get(grouping.key)
            if issue is None:
                number = self._short_counters.get(project_id, 0) + 1
                self._short_counters[project_id] = number
                slug = self.projects.get(project_id, f"project-{project_id}")
                issue = Issue(
                    id=self._next_issue_id,
                    project_id=project_id,
                    short_id=f"{slug.upper()}-{_base32(number)}",
                    key=grouping.key,
                    title=grouping.title,
                    culprit=grouping.culprit,
                    level=level,
                    type=grouping.type,
                    metadata=grouping.metadata,
                    first_seen=ts,
                    last_seen=ts,
                    first_release=release,
                    platform=str(event.get("platform") or "python"),
                )
                self._next_issue_id += 1
                self._issues[issue.id] = issue
                self._by_key[grouping.key] = issue
                if release is not None:
                    self._release(release, ts, project_id).new_groups += 1
            issue.count += 1
            if user:
                issue.users.add(user)
            if ts >= issue.last_seen:
                issue.last_seen = ts
                issue.last_release = release
                issue.level = level
                issue.title = grouping.title
                issue.metadata = grouping.metadata
                issue.logger = event.get("logger")
            if ts < issue.first_seen:
                issue.first_seen = ts
                issue.first_release = release
            if release is not None:
                self._release(release, ts, project_id)
            stored = StoredEvent(
                event_id,
                issue.id,
                project_id,
                ts,
                release,
                environment,
                user,
                level,
                grouping.error_type,
            )
            self._events.append(stored)
            self._event_cond.notify_all()
        return stored

    def _release(self, version: str, ts: float, project_id: int) -> _Release:
        rel = self._releases.get(version)
        if rel is None:
            rel = _Release(version, min(self.clock(), ts), ts, ts)
            self._releases[version] = rel
        rel.first_event = min(rel.first_event, ts)
        rel.last_event = max(rel.last_event, ts)
        rel.projects.add(project_id)
        return rel

    def issues(self) -> list[Issue]:
        """Every issue, oldest first."""
        with self._lock:
            return list(self._issues.values())

    def events(self) -> list[StoredEvent]:
        """Every stored event, in arrival order."""
        with self._lock:
            return list(self._events)

    def wait_for_events(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` events are stored.

        Args:
            count: Events expected in the store.
            timeout: Seconds.

        Returns:
            Whether the count was reached.
        """
        deadline = time.monotonic() + timeout
        with self._event_cond:
            while len(self._events) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._event_cond.wait(left)
            return True

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        response = self._dispatch(request)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        ingest = re.fullmatch(r"/api/(\d+)/(envelope|store)/?", path)
        if ingest:
            try:
                return self._ingest(request, int(ingest.group(1)), ingest.group(2))
            except _BadRequest as exc:
                return _json(exc.status, {"detail": exc.detail})
        if path.startswith("/api/0/"):
            return self._web_api(request)
        return _json(404, {"detail": "The requested resource does not exist"})

    def _ingest(self, request: Request, project_id: int, kind: str) -> Response:
        if request.method != "POST":
            return _json(405, {"detail": f'Method "{request.method}" not allowed.'})
        key = request.args.get("sentry_key")
        auth = request.headers.get("X-Sentry-Auth", "")
        match = re.search(r"sentry_key=([^,\s]+)", auth)
        if match:
            key = match.group(1)
        if key != self.public_key:
            return _json(401, {"detail": "bad sentry DSN public key"})
        with self._lock:
            if project_id not in self.projects:
                return _json(404, {"detail": f"unknown project {project_id}"})
        body = _decode_body(request.get_data(), request.headers.get("Content-Encoding"))
        if kind == "store":
            try:
                event = json.loads(body)
            except ValueError as exc:
                raise _BadRequest(f"invalid event JSON: {exc}") from exc
            if not isinstance(event, dict):
                raise _BadRequest("event is not a JSON object")
            stored = self.ingest_event(project_id, event)
            return _json(200, {"id": stored.event_id})
        try:
            header, items = parse_envelope(body)
        except ValueError as exc:
            raise _BadRequest(f"invalid envelope: {exc}") from exc
        event_id = header.get("event_id")
        with self._lock:
            self.envelopes += 1
        for item_header, payload in items:
            item_type = str(item_header.get("type") or "unknown")
            with self._lock:
                self.items_by_type[item_type] = self.items_by_type.get(item_type, 0) + 1
            if item_type != "event":
                continue
            try:
                event = json.loads(payload)
            except ValueError as exc:
                raise _BadRequest(f"invalid event item: {exc}") from exc
            if isinstance(event, dict):
                event_id = self.ingest_event(project_id, event).event_id
        return _json(200, {"id": event_id} if event_id else {})

    def _web_api(self, request: Request) -> Response:
        auth = request.headers.get("Authorization", "")
        if not auth:
            return _json(401, {"detail": "Authentication credentials were not provided."})
        if auth != f"Bearer {self.token}":
            return _json(401, {"detail": "Invalid token"})
        window = self.limiter.take()
        with self._lock:
            concurrent_ok = self._in_flight < self.concurrent_limit
            if concurrent_ok and window.allowed:
                self._in_flight += 1
            in_flight = self._in_flight
        headers = {
            "X-Sentry-Rate-Limit-Limit": str(window.limit),
            "X-Sentry-Rate-Limit-Remaining": str(window.remaining),
            "X-Sentry-Rate-Limit-Reset": str(int(window.reset_at)),
            "X-Sentry-Rate-Limit-ConcurrentLimit": str(self.concurrent_limit),
            "X-Sentry-Rate-Limit-ConcurrentRemaining": str(
                max(0, self.concurrent_limit - in_flight)
            ),
        }
        if not window.allowed:
            resp = _json(
                429,
                {
                    "detail": "You are attempting to use this endpoint too frequently. "
                    f"Limit is {window.limit} requests in {window.period_s:g} seconds"
                },
            )
        elif not concurrent_ok:
            resp = _json(
                429,
                {
                    "detail": "You are attempting to go above the allowed concurrency for "
                    f"this endpoint. Concurrency limit is {self.concurrent_limit}"
                },
            )
        else:
            try:
                resp = self._route(request)
            except _BadRequest as exc:
                resp = _json(exc.status, {"detail": exc.detail})
            finally:
                with self._lock:
                    self._in_flight -= 1
        resp.headers.update(headers)
        return resp

    def _route(self, request: Request) -> Response:
        if request.method != "GET":
            raise _BadRequest(f'Method "{request.method}" not allowed.', 405)
        path = request.path
        m = re.fullmatch(r"/api/0/organizations/([^/]+)/(issues|events-stats)/?", path)
        if m:
            self._check_org(m.group(1))
            if m.group(2) == "issues":
                return self._list_issues(request)
            return self._events_stats(request)
        m = re.fullmatch(r"/api/0/organizations/([^/]+)/issues/(\d+)/?", path)
        if m:
            self._check_org(m.group(1))
            return self._issue_detail(int(m.group(2)))
        m = re.fullmatch(r"/api/0/issues/(\d+)/?", path)
        if m:
            return self._issue_detail(int(m.group(1)))
        raise _BadRequest("The requested resource does not exist", 404)

    def _check_org(self, org: str) -> None:
        if org != self.org:
            raise _BadRequest("The requested resource does not exist", 404)

    # ------------------------------------------------------------------ queries

    def _window(self, request: Request, default_period: str = "14d") -> tuple[float, float]:
        now = self.clock()
        start_raw, end_raw = request.args.get("start"), request.args.get("end")
        period = request.args.get("statsPeriod")
        if start_raw or end_raw:
            if not (start_raw and end_raw):
                raise _BadRequest("start and end are both required")
            if period:
                raise _BadRequest("give statsPeriod or start/end, not both")
            start, end = _parse_datetime(start_raw), _parse_datetime(end_raw)
        else:
            start, end = now - _parse_duration(period or default_period), now
        if start >= end:
            raise _BadRequest("start must be before end")
        return start, end

    def _project_ids(self, request: Request) -> set[int] | None:
        raw = _params_list(request, "project")
        if not raw:
            return None
        try:
            ids = {int(v) for v in raw}
        except ValueError as exc:
            raise _BadRequest("Invalid project parameter. Values must be numbers.") from exc
        if -1 in ids:
            return None
        unknown = ids - set(self.projects)
        if unknown:
            raise _BadRequest(
                f"You do not have permission to access project(s) {sorted(unknown)}", 403
            )
        return ids

    @staticmethod
    def _event_matches(ev: StoredEvent, f: _Filters, envs: set[str] | None) -> bool:
        if envs is not None and ev.environment not in envs:
            return False
        if f.environments is not None and ev.environment not in f.environments:
            return False
        if f.releases is not None and ev.release not in f.releases:
            return False
        if f.levels is not None and ev.level not in f.levels:
            return False
        if f.error_types is not None and ev.error_type not in f.error_types:
            return False
        for key, values in f.negated:
            attr = {
                "release": ev.release,
                "environment": ev.environment,
                "level": ev.level,
                "error.type": ev.error_type,
            }.get(key)
            if key in ("release", "environment", "level", "error.type") and attr in values:
                return False
        return True

    def _issue_matches(self, issue: Issue, f: _Filters) -> bool:
        if f.statuses is not None and issue.status not in f.statuses:
            return False
        if f.first_releases is not None and issue.first_release not in f.first_releases:
            return False
        if f.short_ids is not None and issue.short_id not in f.short_ids:
            return False
        if not all(_compare(issue.first_seen, op, b) for op, b in f.first_seen):
            return False
        if not all(_compare(issue.last_seen, op, b) for op, b in f.last_seen):
            return False
        for key, values in f.negated:
            if key == "is" and issue.status in {
                ("ignored" if v == "archived" else v) for v in values
            }:
                return False
            if key == "firstRelease" and issue.first_release in values:
                return False
            if key == "issue" and issue.short_id in {v.upper() for v in values}:
                return False
        haystack = f"{issue.title} {issue.culprit}".lower()
        return all(word in haystack for word in f.text)

    def _list_issues(self, request: Request) -> Response:
        now = self.clock()
        start, end = self._window(request)
        query = request.args.get("query")
        filters = _parse_query("is:unresolved" if query is None else query, now, _ISSUE_KEYS)
        projects = self._project_ids(request)
        envs = set(_params_list(request, "environment")) or None
        try:
            limit = int(request.args.get("limit", MAX_LIMIT))
        except ValueError as exc:
            raise _BadRequest("Invalid limit parameter.") from exc
        if not 1 <= limit <= MAX_LIMIT:
            raise _BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
        offset = _parse_cursor(request.args.get("cursor"))
        sort = request.args.get("sort", "date")
        if sort not in ("date", "new", "freq", "user", "trends"):
            raise _BadRequest(f"Invalid sort {sort!r}: use date, new, freq or user")
        group_stats = request.args.get("groupStatsPeriod", "24h")
        if group_stats not in ("", "24h", "14d", "auto"):
            raise _BadRequest("groupStatsPeriod must be 24h, 14d, auto or empty")
        with self._lock:
            events = list(self._events)
            issues = dict(self._issues)
        per_issue: dict[int, list[StoredEvent]] = {}
        for ev in events:
            if start <= ev.timestamp < end and self._event_matches(ev, filters, envs):
                per_issue.setdefault(ev.issue_id, []).append(ev)
        rows: list[tuple[Issue, list[StoredEvent]]] = []
        for issue_id, evs in per_issue.items():
            issue = issues[issue_id]
            if projects is not None and issue.project_id not in projects:
                continue
            if filters.short_ids is not None and issue.short_id not in filters.short_ids:
                continue
            if self._issue_matches(issue, filters):
                rows.append((issue, evs))
        sort_keys: dict[str, Callable[[tuple[Issue, list[StoredEvent]]], Any]] = {
            "date": lambda r: (max(e.timestamp for e in r[1]), r[0].id),
            "new": lambda r: (r[0].first_seen, r[0].id),
            "freq": lambda r: (len(r[1]), r[0].id),
            "trends": lambda r: (len(r[1]), r[0].id),
            "user": lambda r: (len({e.user for e in r[1] if e.user}), r[0].id),
        }
        rows.sort(key=sort_keys[sort], reverse=True)
        page = rows[offset : offset + limit]
        stats_events = [ev for ev in events if envs is None or ev.environment in envs]
        body = [
            self._issue_json(
                issue,
                evs,
                request.host_url,
                group_stats,
                [e for e in stats_events if e.issue_id == issue.id],
                now,
            )
            for issue, evs in page
        ]
        resp = _json(200, body)
        resp.headers["Link"] = _link_header(request, offset, limit, len(rows))
        resp.headers["X-Hits"] = str(len(rows))
        resp.headers["X-Max-Hits"] = str(len(rows))
        return resp

    def _issue_detail(self, issue_id: int) -> Response:
        with self._lock:
            issue = self._issues.get(issue_id)
            events = [e for e in self._events if e.issue_id == issue_id]
        if issue is None:
            raise _BadRequest("The requested resource does not exist", 404)
        return _json(200, self._issue_json(issue, None, "", "24h", events, self.clock()))

    def _release_json(self, version: str | None) -> dict[str, Any] | None:
        if version is None:
            return None
        with self._lock:
            rel = self._releases.get(version)
            if rel is None:
                return None
            return {
                "id": zlib.crc32(version.encode()) % 10**9,
                "version": rel.version,
                "shortVersion": rel.version,
                "ref": None,
                "url": None,
                "dateCreated": format_datetime(rel.created),
                "dateReleased": None,
                "firstEvent": format_datetime(rel.first_event),
                "lastEvent": format_datetime(rel.last_event),
                "newGroups": rel.new_groups,
                "commitCount": 0,
                "deployCount": 0,
                "projects": [
                    {
                        "id": str(pid),
                        "slug": self.projects.get(pid, ""),
                        "name": self.projects.get(pid, ""),
                    }
                    for pid in sorted(rel.projects)
                ],
            }

    def _issue_json(
        self,
        issue: Issue,
        window_events: list[StoredEvent] | None,
        host_url: str,
        group_stats: str,
        stats_events: list[StoredEvent],
        now: float,
    ) -> dict[str, Any]:
        slug = self.projects.get(issue.project_id, f"project-{issue.project_id}")
        lifetime = {
            "count": str(issue.count),
            "userCount": len(issue.users),
            "firstSeen": format_datetime(issue.first_seen),
            "lastSeen": format_datetime(issue.last_seen),
        }
        if window_events is None:
            figures = dict(lifetime)
        else:
            figures = {
                "count": str(len(window_events)),
                "userCount": len({e.user for e in window_events if e.user}),
                "firstSeen": format_datetime(min(e.timestamp for e in window_events)),
                "lastSeen": format_datetime(max(e.timestamp for e in window_events)),
            }
        out: dict[str, Any] = {
            "id": str(issue.id),
            "shareId": None,
            "shortId": issue.short_id,
            "title": issue.title,
            "culprit": issue.culprit,
            "permalink": f"{host_url.rstrip('/')}/organizations/{self.org}/issues/{issue.id}/",
            "logger": issue.logger,
            "level": issue.level,
            "status": issue.status,
            "statusDetails": {},
            "substatus": "ongoing" if issue.status == "unresolved" else None,
            "isPublic": False,
            "platform": issue.platform,
            "project": {
                "id": str(issue.project_id),
                "name": slug,
                "slug": slug,
                "platform": "python",
            },
            "type": issue.type,
            "metadata": issue.metadata,
            "numComments": 0,
            "assignedTo": None,
            "isBookmarked": False,
            "isSubscribed": False,
            "subscriptionDetails": None,
            "hasSeen": False,
            "annotations": [],
            "issueType": "error",
            "issueCategory": "error",
            "priority": "high" if issue.level in ("error", "fatal") else "medium",
            "isUnhandled": False,
            **figures,
            "lifetime": lifetime,
            "firstRelease": self._release_json(issue.first_release),
            "lastRelease": self._release_json(issue.last_release),
        }
        if group_stats:
            key = "14d" if group_stats == "14d" else "24h"
            step, buckets = (86400, 14) if key == "14d" else (3600, 24)
            last = int(now // step) * step
            first = last - (buckets - 1) * step
            counts = [0] * buckets
            for ev in stats_events:
                idx = int((ev.timestamp - first) // step)
                if 0 <= idx < buckets:
                    counts[idx] += 1
            out["stats"] = {key: [[first + i * step, counts[i]] for i in range(buckets)]}
        return out

    def _events_stats(self, request: Request) -> Response:
        now = self.clock()
        start, end = self._window(request, "24h")
        interval_raw = request.args.get("interval", "1h")
        interval = float(interval_raw) if interval_raw.isdigit() else _parse_duration(interval_raw)
        if interval <= 0:
            raise _BadRequest("interval must be positive")
        y_axes = request.args.getlist("yAxis") or ["count()"]
        for y in y_axes:
            if y not in ("count()", "count_unique(user)"):
                raise _BadRequest(
                    f"yAxis {y!r} is not supported by the sandbox: use count() or "
                    "count_unique(user)"
                )
        filters = _parse_query(request.args.get("query", ""), now, _EVENT_KEYS)
        if filters.text:
            raise _BadRequest("free-text search is not supported by events-stats here")
        projects = self._project_ids(request)
        envs = set(_params_list(request, "environment")) or None
        first = int(start // interval) * interval
        n_buckets = int((end - first + interval - 1e-9) // interval)
        if n_buckets > MAX_STATS_BUCKETS:
            raise _BadRequest(
                "Your interval and date range would create too many results. Use a larger "
                "interval, or a smaller date range."
            )
        with self._lock:
            events = list(self._events)
            short_ids = {i.id: i.short_id for i in self._issues.values()}
        counts = [0] * n_buckets
        users: list[set[str]] = [set() for _ in range(n_buckets)]
        for ev in events:
            if not start <= ev.timestamp < end:
                continue
            if projects is not None and ev.project_id not in projects:
                continue
            if (
                filters.short_ids is not None
                and short_ids.get(ev.issue_id) not in filters.short_ids
            ):
                continue
            if not self._event_matches(ev, filters, envs):
                continue
            idx = int((ev.timestamp - first) // interval)
            if 0 <= idx < n_buckets:
                counts[idx] += 1
                if ev.user:
                    users[idx].add(ev.user)

        def series(y: str) -> dict[str, Any]:
            data = [
                [
                    int(first + i * interval),
                    [{"count": counts[i] if y == "count()" else len(users[i])}],
                ]
                for i in range(n_buckets)
            ]
            return {
                "data": data,
                "start": int(first),
                "end": int(first + n_buckets * interval),
                "isMetricsData": False,
                "meta": {
                    "fields": {y: "integer"},
                    "units": {y: None},
                    "isMetricsData": False,
                    "tips": {},
                    "datasetReason": "unchanged",
                },
            }

        if len(y_axes) == 1:
            return _json(200, series(y_axes[0]))
        return _json(200, {y: {**series(y), "order": i} for i, y in enumerate(y_axes)})


def _parse_cursor(raw: str | None) -> int:
    if not raw:
        return 0
    parts = raw.split(":")
    if len(parts) != 3 or not all(re.fullmatch(r"-?\d+", p) for p in parts):
        raise _BadRequest("Invalid cursor parameter.")
    offset = int(parts[1])
    if offset < 0:
        raise _BadRequest("Invalid cursor parameter.")
    return offset


def _link_header(request: Request, offset: int, limit: int, total: int) -> str:
    """Sentry's ``Link`` header, byte for byte (``<url>; rel=...; results=...; cursor=...``)."""
    pairs = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor"]
    base = f"{request.host_url.rstrip('/')}{request.path}?{urlencode(pairs)}"
    prev_cursor = f"0:{max(0, offset - limit)}:1"
    next_cursor = f"0:{offset + limit}:0"
    links = [
        (prev_cursor, "previous", offset > 0),
        (next_cursor, "next", offset + limit < total),
    ]
    return ", ".join(
        f'<{base}&cursor={cursor}>; rel="{rel}"; results="{"true" if has else "false"}"; '
        f'cursor="{cursor}"'
        for cursor, rel, has in links
    )


def _json(status: int, payload: Any) -> Response:
    return Response(json_body(payload), status=status, content_type="application/json")


class SentryServer:
    """The local Sentry on ``127.0.0.1:<free port>``.

    Args:
        token: Bearer token of the web API.
        org: Organization slug.
        projects: Project id -> slug (default ``{1: "web"}``).
        public_key: DSN public key.
        faults: Optional fault source; the app is wrapped in a
            :class:`~sandbox.faults.FaultMiddleware` for ``fault_endpoint``.
        fault_endpoint: Endpoint name in the fault registry.
        **app_options: Further :class:`SentryApp` options (rate limits, clock...).
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        org: str = DEFAULT_ORG,
        projects: Mapping[int, str] | None = None,
        public_key: str = DEFAULT_PUBLIC_KEY,
        faults: FaultSource | None = None,
        fault_endpoint: str = "sentry",
        **app_options: Any,
    ) -> None:
        self.app = SentryApp(token, org, projects, public_key, **app_options)
        wsgi: WSGIApplication = self.app
        self._server = WsgiServer(wsgi, name="sentry")
        if faults is not None:
            from sandbox.faults import FaultMiddleware

            middleware = FaultMiddleware(self.app, faults, fault_endpoint)
            self._server = WsgiServer(middleware, name="sentry", on_stop=[middleware.close])

    def start(self) -> SentryServer:
        """Start serving.

        Returns:
            This server.
        """
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    @property
    def url(self) -> str:
        """Base URL (the web API is under ``/api/0/``)."""
        return self._server.url

    @property
    def token(self) -> str:
        """The web API bearer token."""
        return self.app.token

    @property
    def org(self) -> str:
        """The organization slug."""
        return self.app.org

    def dsn(self, project: str | int = 1) -> str:
        """The DSN an SDK uses to send events to ``project``.

        Args:
            project: Project id or slug.
        """
        pid = project if isinstance(project, int) else self.app.project_id(project)
        return f"http://{self.app.public_key}@127.0.0.1:{self._server.port}/{pid}"

    def __enter__(self) -> SentryServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
