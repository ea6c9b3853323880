"""The local Sentry's events and issues: envelopes parsed, events grouped into issues
the way Sentry groups them, and a search's filters evaluated against them. No HTTP."""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sandbox.sentry_query import (
    _BadRequest,
    _compare,
    _Filters,
    _parse_datetime,
)

if TYPE_CHECKING:
    from collections.abc import Mapping


_BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


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


def _event_matches(ev: StoredEvent, f: _Filters, envs: set[str] | None) -> bool:
    """Whether an event passes the environments asked for and the search's event filters."""
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


def _issue_matches(issue: Issue, f: _Filters) -> bool:
    """Whether an issue passes the search's issue filters and free text."""
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
        if key == "is" and issue.status in {("ignored" if v == "archived" else v) for v in values}:
            return False
        if key == "firstRelease" and issue.first_release in values:
            return False
        if key == "issue" and issue.short_id in {v.upper() for v in values}:
            return False
    haystack = f"{issue.title} {issue.culprit}".lower()
    return all(word in haystack for word in f.text)
