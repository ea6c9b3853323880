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

import json
import re
import threading
import time
import uuid
import zlib
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from sandbox.httpserver import FixedWindowLimiter, WsgiServer, json_body
from sandbox.sentry_events import (
    Issue,
    StoredEvent,
    _base32,
    _decode_body,
    _event_matches,
    _event_time,
    _event_user,
    _grouping,
    _issue_matches,
    _Release,
    format_datetime,
    parse_envelope,
)
from sandbox.sentry_query import (
    _EVENT_KEYS,
    _ISSUE_KEYS,
    _BadRequest,
    _parse_datetime,
    _parse_duration,
    _parse_query,
)

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
            if start <= ev.timestamp < end and _event_matches(ev, filters, envs):
                per_issue.setdefault(ev.issue_id, []).append(ev)
        rows: list[tuple[Issue, list[StoredEvent]]] = []
        for issue_id, evs in per_issue.items():
            issue = issues[issue_id]
            if projects is not None and issue.project_id not in projects:
                continue
            if filters.short_ids is not None and issue.short_id not in filters.short_ids:
                continue
            if _issue_matches(issue, filters):
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
            if not _event_matches(ev, filters, envs):
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
