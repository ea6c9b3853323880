"""HTTP health probes: one task per probe on its own interval, one shared httpx client.

Each round has ONE deadline (``asyncio.timeout``) covering connect, headers and the
whole body, so a server that drips its body a byte at a time cannot hold a round past
the probe's timeout; the body is read with a size bound. A failing probe is data: every
round yields a :class:`~sources.model.ProbeSample` (``ok=False`` with the reason in
words), never a :class:`~sources.model.SourceFailure`.

httpx is imported lazily (in a worker thread, when the stream starts) so importing this
module costs nothing before the first paint.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from sources.model import Item, ProbeSample
from sources.redact import public_text
from sources.transport import failure_words

if TYPE_CHECKING:
    import httpx

MAX_BODY_BYTES = 64 * 1024
"""Most body bytes read per round; a health answer is small."""
QUEUE_PER_PROBE = 4
"""Samples buffered per probe before the probe's task waits for the consumer."""


@dataclass(frozen=True, slots=True)
class Probe:
    """One HTTP health check.

    Attributes:
        name: Short name (``web-health``), used by rules as ``probe:<name>``.
        url: What to request.
        method: HTTP method.
        headers: Request headers (may hold credentials: they are never reported).
        expect_status: The status a healthy answer has.
        body_contains: Text the body must contain, if set.
        json_path: Dotted path into a JSON body (``status``, ``checks.db.status``,
            ``items.0.state``) that must exist, if set.
        json_value: The value expected at ``json_path`` (``None``: any value).
        timeout: Deadline of one round (connect + headers + body), seconds.
        interval: Seconds from the start of one round to the start of the next.
        service: The configured service key the probe belongs to.
        window: Rounds counted in the rolling success ratio.
    """

    name: str
    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    expect_status: int = 200
    body_contains: str | None = None
    json_path: str | None = None
    json_value: Any = None
    timeout: float = 2.0
    interval: float = 5.0
    service: str | None = None
    window: int = 20

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.interval <= 0:
            raise ValueError(f"probe {self.name!r}: timeout and interval must be positive")
        if self.window < 1:
            raise ValueError(f"probe {self.name!r}: window must be >= 1")


_MISSING = object()


def json_lookup(document: Any, path: str) -> Any:
    """Follow a dotted path (``checks.db.status``, ``items.0.state``) into decoded JSON.

    Args:
        document: Decoded JSON.
        path: Dot-separated keys; a numeric part indexes a list.

    Returns:
        The value, or a private sentinel when the path does not exist.
    """
    current = document
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current


def check_answer(probe: Probe, status: int, body: bytes, truncated: bool) -> str | None:
    """Judge one complete answer.

    Args:
        probe: The probe.
        status: HTTP status received.
        body: The body read (at most the size bound).
        truncated: Whether the body went past the size bound.

    Returns:
        ``None`` when healthy, else the reason in words.
    """
    if status != probe.expect_status:
        return f"expected {probe.expect_status}, got {status}"
    needs_body = probe.body_contains is not None or probe.json_path is not None
    if needs_body and truncated:
        return f"body over {MAX_BODY_BYTES // 1024} KiB, not checked"
    if probe.body_contains is not None:
        text = body.decode("utf-8", "replace")
        if probe.body_contains not in text:
            return f"body lacks {probe.body_contains!r}"
    if probe.json_path is not None:
        try:
            document = json.loads(body)
        except ValueError:
            return "body is not JSON"
        value = json_lookup(document, probe.json_path)
        if value is _MISSING:
            return f"json lacks {probe.json_path!r}"
        if probe.json_value is not None and value != probe.json_value:
            return f"json {probe.json_path} is {value!r}, expected {probe.json_value!r}"
    return None


def public_url(url: str) -> str:
    """The URL without user info (``https://user:pass@host`` → ``https://host``).

    Args:
        url: A probe URL.

    Returns:
        The URL fit for a sample.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class _ProbeState:
    """Rolling tallies of one probe (bounded by its window)."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.url = public_url(probe.url)
        self.results: deque[bool] = deque(maxlen=probe.window)
        self.last_failure: datetime | None = None
        self.last_failure_reason: str | None = None

    def record(
        self, at: datetime, status: int | None, latency_ms: float | None, error: str | None
    ) -> ProbeSample:
        ok = error is None
        if error is not None:
            # A reason may quote the body (``json status is ...``): scrubbed, then cut.
            secrets = list(self.probe.headers.values())
            secrets.extend(part for v in secrets for part in v.split()[1:])  # "Bearer x"
            error = public_text(error, secrets)
        self.results.append(ok)
        if not ok:
            self.last_failure = at
            self.last_failure_reason = error
        return ProbeSample(
            probe=self.probe.name,
            service=self.probe.service,
            url=self.url,
            at=at,
            ok=ok,
            status=status,
            latency_ms=latency_ms,
            error=error,
            success_ratio=sum(self.results) / len(self.results),
            window=self.probe.window,
            last_failure=self.last_failure,
            last_failure_reason=self.last_failure_reason,
            attempts=len(self.results),
        )


class ProbeSource:
    """Runs HTTP health probes, each on its own interval.

    Args:
        probes: The probes; names must be unique.
        transport: httpx transport (tests pass ``httpx.MockTransport``).
        max_body_bytes: Most body bytes read per round.
        verify: TLS verification (``False`` only for rehearsals on self-signed hosts).
        clock: Current UTC time.
    """

    name = "probes"

    def __init__(
        self,
        probes: Sequence[Probe],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        verify: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        names = [p.name for p in probes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate probe names: {', '.join(duplicates)}")
        self.probes = tuple(probes)
        self.max_body_bytes = max_body_bytes
        self.verify = verify
        self._transport = transport
        self._clock = clock
        self._states = {p.name: _ProbeState(p) for p in self.probes}

    async def stream(self) -> AsyncGenerator[Item, None]:
        """Run every probe until cancelled, yielding each round's sample as it ends."""
        if not self.probes:
            return
        await asyncio.to_thread(importlib.import_module, "httpx")
        import httpx

        queue: asyncio.Queue[ProbeSample] = asyncio.Queue(
            maxsize=QUEUE_PER_PROBE * len(self.probes)
        )
        # Built in a thread: a client loads the CA bundle (tens of ms), which would
        # hold the event loop, and the first frame, while the app starts.
        client = await asyncio.to_thread(
            httpx.AsyncClient,
            transport=self._transport,
            verify=self.verify,
            follow_redirects=False,  # a redirect to a login page is not "healthy"
            limits=httpx.Limits(max_connections=max(10, 2 * len(self.probes))),
        )
        async with client:
            tasks = [
                asyncio.create_task(self._run(client, p, queue), name=f"probe:{p.name}")
                for p in self.probes
            ]
            try:
                while True:
                    yield await queue.get()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(
        self, client: httpx.AsyncClient, probe: Probe, queue: asyncio.Queue[ProbeSample]
    ) -> None:
        loop = asyncio.get_running_loop()
        next_start = loop.time()
        while True:
            sample = await self.check(client, probe)
            # The consumer being slow holds this probe back (bounded queue), rather
            # than piling samples up.
            await queue.put(sample)
            next_start += probe.interval
            now = loop.time()
            if next_start < now:  # a round overran: start again now, not in a burst
                next_start = now
            await asyncio.sleep(next_start - now)

    async def check(self, client: httpx.AsyncClient, probe: Probe) -> ProbeSample:
        """Run one round of ``probe`` and record it.

        Args:
            client: The shared client.
            probe: The probe.

        Returns:
            The round's sample (a failure is a sample with ``ok=False``).
        """
        status: int | None = None
        latency_ms: float | None = None
        error: str | None
        started = time.monotonic()
        try:
            async with asyncio.timeout(probe.timeout):
                status, body, truncated = await self._request(client, probe)
            latency_ms = (time.monotonic() - started) * 1000
            error = check_answer(probe, status, body, truncated)
        except TimeoutError:
            error = f"timed out after {probe.timeout:g}s"
        except Exception as exc:  # a probe never raises: its failure is data
            error = _request_error(exc, probe.timeout)
        return self._states[probe.name].record(self._clock(), status, latency_ms, error)

    async def _request(self, client: httpx.AsyncClient, probe: Probe) -> tuple[int, bytes, bool]:
        async with client.stream(
            probe.method,
            probe.url,
            headers=dict(probe.headers),
            # httpx's own per-operation timeouts sit above our one deadline, as a
            # backstop only.
            timeout=probe.timeout + 1.0,
        ) as resp:
            chunks: list[bytes] = []
            size = 0
            truncated = False
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > self.max_body_bytes:
                    # Decoded bytes are counted, so a compressed bomb stops here too.
                    chunks.append(chunk[: max(0, self.max_body_bytes - (size - len(chunk)))])
                    truncated = True
                    break
                chunks.append(chunk)
            return resp.status_code, b"".join(chunks), truncated


def _request_error(exc: Exception, timeout: float) -> str:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, httpx.HTTPError | OSError):
        return failure_words(exc)
    return f"probe error ({type(exc).__name__})"
