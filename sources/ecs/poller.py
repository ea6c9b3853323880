"""ECS source: services, their deployments and events, via boto3 in worker threads.

boto3 is imported lazily (in a worker thread, on the first poll) so importing this
module costs nothing before the first paint. Every failure becomes a
:class:`~sources.model.SourceFailure` for the services it concerns; the stream never
raises.

A poll has two phases, so that a large fleet is on screen long before its details are:

1. ``describe_services``, 10 services per call. A service whose details are known and
   cannot have changed gets its sample as soon as its batch answers: a steady fleet
   costs one call per 10 services and nothing else.
2. Details, for the services that need them, 20 services at a time: service
   deployments (listed only when the service's deployments changed; described 20 ARNs
   per call across services, a settled one never again), service revisions (20 per
   call, cached; they also carry the images), task definitions whose images are still
   unknown (cached), CodeDeploy and ALB weights. The service's sample follows.

Every call goes through one gate of ``max_concurrency`` worker threads that serves
``describe_services`` first, then the detail groups in order. The event loop owns all
state (caches, seen events); the worker threads only make boto3 calls and return the
answers.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sources.aws_session import AwsContextSpec
from sources.aws_session import client_factory as boto_client_factory
from sources.discovery import DEFAULT_LIMIT, Discovery, list_matching, service_key
from sources.ecs.errors import NOT_IMPLEMENTED_POLLS, _not_implemented, _unsupported, classify
from sources.ecs.gate import _DESCRIBE_FIRST, _Calls, _chunks, _settle
from sources.ecs.lookups import AuxLookups
from sources.ecs.mapping import (
    TERMINAL_SERVICE_DEPLOYMENT,
    EcsTarget,
    _revision_arns,
    _time,
    map_service,
    map_service_deployment,
)
from sources.model import (
    AlbWeights,
    CodeDeployDeployment,
    Discovered,
    EcsEvent,
    EcsServiceSample,
    FleetChange,
    Item,
    ServiceDeployment,
    SourceAuthError,
    SourceBadResponse,
    SourceError,
    SourceFailure,
    SourceNotFound,
    SourceRateLimited,
    SourceTimeout,
)
from sources.poll import Backoff, server_wait, waiting
from sources.redact import public_text

DESCRIBE_BATCH = 10
"""``describe_services`` accepts at most 10 services per call."""
DESCRIBE_ARNS = 20
"""``describe_service_deployments`` and ``describe_service_revisions`` accept at most 20
ARNs per call."""
DETAIL_GROUP = 20
"""Services whose details are fetched together, sharing their describe calls."""
SEEN_EVENTS_PER_SERVICE = 500
"""Bound on remembered event ids per service (ECS returns the latest 100)."""
SERVICE_DEPLOYMENTS_PER_SERVICE = 5
"""How many recent service deployments are listed and described per service."""
CACHE_MAX = 4096
"""Least bound on the immutable-object caches (task definitions' images, service
revisions)."""
CACHE_PER_SERVICE = 4
"""The same caches hold at least this many entries per watched service, so that a large
fleet's working set (one or two task definitions per service) is never evicted."""


@dataclass(frozen=True, slots=True)
class _Known:
    """The service deployments last fetched for one service."""

    ids: frozenset[str]
    """The ``describe_services`` deployment ids they were fetched for."""
    arns: tuple[str, ...]
    """The listed service deployment ARNs, newest first."""
    deployments: tuple[ServiceDeployment, ...]
    """Their descriptions, newest first (an ARN ECS did not describe is left out)."""

    def settled(self) -> dict[str, ServiceDeployment]:
        """The deployments that can no longer change, by ARN."""
        return {sd.arn: sd for sd in self.deployments if sd.status in TERMINAL_SERVICE_DEPLOYMENT}

    def unsettled(self) -> bool:
        """Whether a listed deployment may still change (or was not described)."""
        settled = self.settled()
        return any(arn not in settled for arn in self.arns)


@dataclass(slots=True)
class _Work:
    """One service whose sample waits for details, and what was fetched for it."""

    target: EcsTarget
    raw: dict[str, Any]
    """Its ``describe_services`` entry."""
    at: datetime
    events: tuple[EcsEvent, ...]
    """Its new events, not yet delivered."""
    ids: frozenset[str]
    """Its deployment ids."""
    relist: bool
    """List its service deployments: none are known, or its deployments changed."""
    refresh: bool
    """Describe again its known service deployments that are not settled."""
    task_definitions: tuple[str, ...]
    """Task definitions of its deployments whose images are not known."""
    codedeploy: bool
    """Fetch the newest deployment of its CodeDeploy group."""
    arns: tuple[str, ...] = ()
    """Its service deployment ARNs, newest first, once listed (or known)."""
    error: SourceError | None = None
    """The first failure of a call it needed: it gets a failure, not a sample."""
    deployment: CodeDeployDeployment | None = None
    weights: AlbWeights | None = None

    @property
    def waits(self) -> bool:
        """Whether anything must be fetched before its sample is complete."""
        return (
            self.relist
            or self.refresh
            or bool(self.task_definitions)
            or self.codedeploy
            or self.target.alb is not None
        )

    def fail(self, error: SourceError) -> None:
        """Remember ``error`` unless an earlier call failed already."""
        if self.error is None:
            self.error = error


class EcsSource(AuxLookups):
    """Polls ECS for a set of services.

    Args:
        targets: The services to watch.
        region: AWS region.
        profile: Named AWS profile, or ``None`` for the default credential chain.
        endpoint_url: Endpoint override (the sandbox), or ``None``.
        poll_interval: Seconds between the end of one poll and the start of the next.
        connect_timeout: botocore connect timeout.
        read_timeout: botocore read timeout.
        max_concurrency: AWS calls in flight at once (worker threads).
        client_factory: Builds the ECS client; injected by tests.
        clock: Current UTC time; injected by tests.
        aux_factory: Builds the ``codedeploy`` / ``elbv2`` client by name; injected by tests.
        discover: Entries that match many services, listed every ``discover_interval``
            seconds (at most ``discover_limit`` services in all).
        context: The name of the AWS context (account and region) polled, if named.
        auth_hint: What to do when the credentials fail, in words (``aws sso login
            --profile prod-eu``), added to an authentication failure.
    """

    name = "ecs"

    def __init__(
        self,
        targets: Sequence[EcsTarget],
        *,
        region: str,
        profile: str | None = None,
        endpoint_url: str | None = None,
        poll_interval: float = 5.0,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_concurrency: int = 8,
        client_factory: Callable[[], Any] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        aux_factory: Callable[[str], Any] | None = None,
        context: str | None = None,
        auth_hint: str | None = None,
        discover: Sequence[Discovery] = (),
        discover_interval: float = 60.0,
        discover_limit: int = DEFAULT_LIMIT,
    ) -> None:
        self.context = context
        self.auth_hint = auth_hint
        self.discover = tuple(discover)
        self.discover_interval = discover_interval
        self.discover_limit = discover_limit
        self._static = tuple(targets)
        self._discovered: dict[str, Discovered] = {}
        """What discovery found, by service key (the event loop owns it)."""
        self._found: dict[str, list[tuple[str, str]]] = {}
        """Each discovery entry's last good listing (kept while a listing fails)."""
        self._discover_due = 0.0
        self._gone: set[str] = set()
        """Discovered services ECS describes as deleted (INACTIVE or missing)."""
        self.targets = tuple(targets)
        self.region = region
        self.profile = profile
        self.endpoint_url = endpoint_url
        self.poll_interval = poll_interval
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_concurrency = max_concurrency
        boto_clients = boto_client_factory(
            AwsContextSpec(region, profile, endpoint_url),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": 2, "mode": "standard"},
            max_pool_connections=max(10, max_concurrency),
        )
        self._client_factory = client_factory or (lambda: boto_clients("ecs"))
        self._aux_factory = aux_factory or boto_clients
        self._aux_clients: dict[str, Any] = {}
        self._clock = clock
        self._client: Any = None
        self._client_lock = threading.Lock()
        # State, owned by the event loop; the per-service maps are bounded by the targets.
        self._codedeploy_last: dict[str, str] = {}
        self._seen: dict[str, tuple[deque[str], set[str]]] = {}
        self._known: dict[str, _Known] = {}
        self._sampled: set[str] = set()
        self._cache_max = max(CACHE_MAX, CACHE_PER_SERVICE * len(self.targets))
        self._revisions: OrderedDict[str, str] = OrderedDict()
        self._images: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._sd_supported = True
        self._sd_streak = 0
        """Polls in a row whose service-deployments calls all failed "not implemented"."""
        self._sd_answered = False
        self._sd_not_implemented = False
        self.backoff = Backoff(base=max(poll_interval, 1.0), cap=60.0)
        # One call may take connect+read per attempt, two attempts; plus slack.
        self.deadline = 2 * (connect_timeout + read_timeout) + 2.0
        self._batches = self._make_batches()

    async def rediscover(self, executor: ThreadPoolExecutor) -> list[Item]:
        """List every discovery entry (worker threads, bounded) and watch what they
        match from the next poll on: a :class:`FleetChange` (what appeared, what left,
        which entries listed fine), and a failure per entry whose listing failed (its
        services known before are kept)."""
        loop = asyncio.get_running_loop()
        self._discover_due = loop.time() + self.discover_interval
        failures: list[Item] = []
        listed: list[str] = []
        limit = self.discover_limit
        truncated = False
        for entry in self.discover:
            try:
                found, more = await asyncio.wait_for(
                    asyncio.wrap_future(executor.submit(self._list_matching, entry, max(0, limit))),
                    timeout=self.deadline * 4,
                )
            except Exception as exc:  # classified and shown on the entry; never raised
                error = (
                    SourceTimeout("listing took too long")
                    if isinstance(exc, TimeoutError)
                    else classify(exc)
                )
                failures.append(self._failure(entry.key, error))
                continue
            self._found[entry.key] = found
            listed.append(entry.key)
            limit -= len(found)
            truncated = truncated or more
        static = {t.key for t in self._static}
        discovered: dict[str, Discovered] = {}
        for entry in self.discover:
            for cluster, service in self._found.get(entry.key, ()):
                key = service_key(self.context, cluster, service)
                if key not in static and key not in discovered and key not in self._gone:
                    discovered[key] = Discovered(
                        key, cluster, service, entry.key, entry.only_active
                    )
        added = tuple(d for k, d in discovered.items() if k not in self._discovered)
        removed = tuple(k for k in self._discovered if k not in discovered)
        self._gone &= {key for found in self._found.values() for key in self._keys(found)}
        self._discovered = discovered
        if added or removed:
            self.set_targets(
                [
                    *self._static,
                    *(EcsTarget(d.key, d.cluster, d.service) for d in discovered.values()),
                ]
            )
        change = FleetChange(
            source=self.name,
            context=self.context,
            added=added,
            removed=removed,
            listed=tuple(listed),
            at=self._clock(),
            truncated=truncated,
        )
        return [change, *failures]

    def _keys(self, found: Iterable[tuple[str, str]]) -> list[str]:
        return [service_key(self.context, cluster, service) for cluster, service in found]

    def _list_matching(self, entry: Discovery, limit: int) -> tuple[list[tuple[str, str]], bool]:
        return list_matching(self.client(), entry, limit)

    def set_targets(self, targets: Sequence[EcsTarget]) -> None:
        """Watch these services from the next poll on (the state of those that left
        is forgotten)."""
        self.targets = tuple(targets)
        keys = {t.key for t in self.targets}
        for state in (self._known, self._seen, self._codedeploy_last):
            for key in [k for k in state if k not in keys]:
                del state[key]
        self._sampled &= keys
        self._cache_max = max(CACHE_MAX, CACHE_PER_SERVICE * len(self.targets))
        self._batches = self._make_batches()

    def _make_batches(self) -> list[tuple[str, tuple[EcsTarget, ...]]]:
        by_cluster: dict[str, list[EcsTarget]] = {}
        for target in self.targets:
            by_cluster.setdefault(target.cluster, []).append(target)
        batches = []
        for cluster, members in by_cluster.items():
            for i in range(0, len(members), DESCRIBE_BATCH):
                batches.append((cluster, tuple(members[i : i + DESCRIBE_BATCH])))
        return batches

    def client(self) -> Any:
        """The ECS client, built on first use (call from a worker thread)."""
        with self._client_lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    async def stream(self) -> AsyncGenerator[Item, None]:
        """Poll forever.

        Each poll yields a service's sample as soon as it is complete: at once from
        ``describe_services`` for a service that needs no details, after its details
        for the others. A service never sampled before that needs details first gets a
        provisional sample (see :meth:`_provisional`), so that every service is on
        screen after the first round of ``describe_services``.
        """
        executor = ThreadPoolExecutor(
            max_workers=self.max_concurrency, thread_name_prefix="deploywatch-ecs"
        )
        try:
            while True:
                failed = False
                retry_after: float | None = None
                if self.discover and asyncio.get_running_loop().time() >= self._discover_due:
                    for change in await self.rediscover(executor):
                        yield change
                poll = self._poll(executor, provisional=True)
                try:
                    async for item in poll:
                        if isinstance(item, SourceFailure):
                            failed = True
                            if item.retry_in is not None:
                                retry_after = max(retry_after or 0.0, item.retry_in)
                        yield item
                finally:
                    await poll.aclose()
                if failed:
                    delay = max(self.poll_interval, self.backoff.next_delay(retry_after))
                else:
                    self.backoff.reset()
                    delay = self.poll_interval
                await asyncio.sleep(delay)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    async def poll_once(self) -> list[Item]:
        """One full poll of every service (for scripts and tests): complete samples only."""
        executor = ThreadPoolExecutor(
            max_workers=self.max_concurrency, thread_name_prefix="deploywatch-ecs"
        )
        poll = self._poll(executor, provisional=False)
        try:
            found = await self.rediscover(executor) if self.discover else []
            return found + [item async for item in poll]
        finally:
            await poll.aclose()
            # Never wait for the threads on the event loop (a hung call would block it).
            executor.shutdown(wait=False, cancel_futures=True)

    async def _poll(
        self, executor: ThreadPoolExecutor, *, provisional: bool
    ) -> AsyncGenerator[Item, None]:
        """One poll: ``describe_services`` for every batch, then the details in groups.

        Args:
            executor: The worker threads for the calls.
            provisional: Yield a provisional sample for a service never sampled before
                that waits for details.

        Yields:
            Samples and failures, each as soon as it is known.
        """
        calls = _Calls(executor, self.max_concurrency, self.deadline)
        self._sd_answered = self._sd_not_implemented = False
        describing: set[asyncio.Task[tuple[list[Item], list[_Work]]]] = {
            asyncio.ensure_future(self._describe(calls, cluster, batch, provisional=provisional))
            for cluster, batch in self._batches
        }
        detailing: set[asyncio.Task[list[Item]]] = set()
        waiting: list[_Work] = []
        groups = 0
        described_ok = True
        try:
            while describing or detailing:
                done, _ = await asyncio.wait(
                    {*describing, *detailing}, return_when=asyncio.FIRST_COMPLETED
                )
                ready: list[Item] = []
                for described in describing & done:
                    items, work = described.result()
                    waiting.extend(work)
                    ready.extend(items)
                    if any(isinstance(item, SourceFailure) for item in items):
                        described_ok = False
                for detailed in detailing & done:
                    ready.extend(detailed.result())
                describing -= done
                detailing -= done
                while len(waiting) >= DETAIL_GROUP or (waiting and not describing):
                    groups += 1
                    group, waiting = waiting[:DETAIL_GROUP], waiting[DETAIL_GROUP:]
                    detailing.add(asyncio.ensure_future(self._details(calls, groups, group)))
                if described_ok and not describing:
                    # ECS answered for every service: whatever the details do, the
                    # back-off of an earlier outage is over.
                    self.backoff.reset()
                    described_ok = False
                for item in ready:
                    yield item
        finally:
            for task in (*describing, *detailing):
                task.cancel()
        if self._sd_answered:
            self._sd_streak = 0
        elif self._sd_not_implemented:
            self._sd_streak += 1

    def _sd_failed(self, exc: Exception) -> bool:
        """Note a service-deployments call that failed.

        Returns:
            Whether the API is now taken as unsupported by this endpoint: the caller
            then carries on without it, from ``describe_services``, instead of failing
            the service.
        """
        if _unsupported(exc):
            self._sd_supported = False
        elif _not_implemented(exc):
            self._sd_not_implemented = True
            if self._sd_streak + 1 >= NOT_IMPLEMENTED_POLLS:
                self._sd_supported = False
        return not self._sd_supported

    def _sd_ok(self) -> None:
        self._sd_answered = True

    async def _describe(
        self,
        calls: _Calls,
        cluster: str,
        batch: tuple[EcsTarget, ...],
        *,
        provisional: bool,
    ) -> tuple[list[Item], list[_Work]]:
        """``describe_services`` for one batch.

        Returns:
            The samples complete now (and provisional ones) with the failures, and the
            services that wait for details.
        """
        try:
            answer = await calls.run(
                _DESCRIBE_FIRST, self._describe_services, cluster, [t.service for t in batch]
            )
            return self._described(batch, answer, provisional=provisional)
        except Exception as exc:  # the stream must never raise
            error = classify(exc)
            return [self._failure(t.key, error) for t in batch], []

    def _described(
        self, batch: tuple[EcsTarget, ...], answer: dict[str, Any], *, provisional: bool
    ) -> tuple[list[Item], list[_Work]]:
        """Sort one batch's ``describe_services`` answer into samples, failures and work."""
        at = self._clock()
        if "services" not in answer and "failures" not in answer:
            # A 200 whose body botocore could not read comes back as {"message": ...}
            # (no exception): an unreadable answer, not every service gone.
            error = SourceBadResponse("unreadable answer: describe_services has no services")
            return [self._failure(t.key, error) for t in batch], []
        by_name: dict[str, dict[str, Any]] = {}
        for svc in answer.get("services") or ():
            by_name[str(svc.get("serviceName"))] = svc
            by_name[str(svc.get("serviceArn"))] = svc
        items: list[Item] = []
        waiting: list[_Work] = []
        gone: list[str] = []
        for target in batch:
            raw = by_name.get(target.service) or by_name.get(target.service.rsplit("/", 1)[-1])
            if raw is None:
                reason = next(
                    (
                        f.get("reason")
                        for f in answer.get("failures") or ()
                        if str(f.get("arn", "")).endswith("/" + target.service.rsplit("/", 1)[-1])
                    ),
                    "MISSING",
                )
                if target.key in self._discovered:
                    gone.append(target.key)  # deleted since it was listed
                    continue
                items.append(
                    self._failure(target.key, SourceNotFound(f"service not found ({reason})"))
                )
                continue
            if raw.get("status") == "INACTIVE" and target.key in self._discovered:
                gone.append(target.key)  # deleted (an endpoint may still list it a while)
                continue
            try:
                work = self._plan(target, raw, at)
                if not work.waits:
                    known = self._known.get(target.key)
                    deployments = known.deployments if known and self._sd_supported else ()
                    items.append(self._sample(work, deployments))
                    continue
                if provisional and target.key not in self._sampled:
                    items.append(self._provisional(work))
                    work.events = ()  # delivered
                waiting.append(work)
            except Exception as exc:
                items.append(self._failure(target.key, classify(exc)))
        if gone:
            items.append(self._forget(gone, at))
        return items, waiting

    def _forget(self, gone: list[str], at: datetime) -> FleetChange:
        """Discovered services ECS says are deleted leave now, and stay out while a
        listing still names them."""
        self._gone.update(gone)
        for key in gone:
            self._discovered.pop(key, None)
        self.set_targets([t for t in self.targets if t.key not in self._gone])
        return FleetChange(self.name, self.context, (), tuple(gone), (), at)

    def _plan(self, target: EcsTarget, raw: dict[str, Any], at: datetime) -> _Work:
        """What ``target`` needs beyond its ``describe_services`` entry ``raw``.

        Service deployments are listed when none are known or a deployment id appeared
        (a new deployment, a rollback), and while ECS says a deployment is in flight but
        the newest known service deployment, settled, is not the PRIMARY one's (a new one
        may not be listed yet). Known ones that are not settled are described again.
        Otherwise they cannot have changed (a settled service deployment is final), and
        nothing is fetched for them: not for a steady service, nor for one whose old
        deployment is still draining after its service deployment succeeded.
        """
        deployments = raw.get("deployments") or ()
        ids = frozenset(str(d.get("id")) for d in deployments)
        relist = refresh = False
        if self._sd_supported:
            known = self._known.get(target.key)
            if known is None or not ids <= known.ids:
                relist = True
            elif known.unsettled():
                refresh = True
            else:
                relist = _in_flight(deployments) and not _newest_is_primary(known, deployments)
        task_definitions = (str(d.get("taskDefinition") or "") for d in deployments)
        controller = (raw.get("deploymentController") or {}).get("type")
        return _Work(
            target=target,
            raw=raw,
            at=at,
            events=self._new_events(target.key, raw.get("events") or ()),
            ids=ids,
            relist=relist,
            refresh=refresh,
            task_definitions=tuple(
                dict.fromkeys(td for td in task_definitions if td and td not in self._images)
            ),
            codedeploy=target.codedeploy is not None and controller == "CODE_DEPLOY",
        )

    def _sample(
        self, work: _Work, service_deployments: tuple[ServiceDeployment, ...]
    ) -> EcsServiceSample:
        """The sample of ``work`` with what is known now."""
        images: dict[str, tuple[str, ...]] = {}
        for deployment in work.raw.get("deployments") or ():
            td = str(deployment.get("taskDefinition") or "")
            if td in self._images:
                self._images.move_to_end(td)
                images[td] = self._images[td]
        sample = map_service(
            work.raw,
            key=work.target.key,
            at=work.at,
            new_events=work.events,
            service_deployments=service_deployments,
            images=images,
            service_deployments_supported=self._sd_supported,
        )
        if work.codedeploy:
            sample = replace(sample, codedeploy=work.deployment)
        if work.target.alb is not None:
            sample = replace(sample, alb=work.weights)
        self._sampled.add(work.target.key)
        return sample

    def _provisional(self, work: _Work) -> EcsServiceSample:
        """A first sample from ``describe_services`` alone, for a service never sampled.

        Its counts, events and settings are ECS's answer; images, CodeDeploy and ALB
        weights follow with the details. While its service deployments are unknown its
        deployments are left out, so that its status reads NO DATA: judged without
        them, a deployment ECS rolled back would read STEADY, a rollback in flight
        IN_PROGRESS. Only a deployment ECS itself calls FAILED is shown at once.
        """
        sample = self._sample(work, ())
        failed = any(d.get("rolloutState") == "FAILED" for d in work.raw.get("deployments") or ())
        if (work.relist or work.refresh) and not failed:
            sample = replace(sample, deployments=())
        return sample

    async def _details(self, calls: _Calls, priority: int, group: list[_Work]) -> list[Item]:
        """Fetch what ``group`` waits for; a sample or a failure per service."""
        try:
            await self._fetch_extras(calls, priority, group)
            described: dict[str, dict[str, Any]] = {}
            if self._sd_supported:
                described = await self._fetch_service_deployments(calls, priority, group)
            await self._fetch_images(calls, priority, group)
            return [self._finish(work, described) for work in group]
        except Exception as exc:  # the stream must never raise
            error = classify(exc)
            return [self._failure(work.target.key, error) for work in group]

    async def _fetch_extras(self, calls: _Calls, priority: int, group: list[_Work]) -> None:
        """List service deployments, fetch CodeDeploy deployments and ALB weights."""
        relist = [w for w in group if w.relist and self._sd_supported]
        codedeploy = [w for w in group if w.codedeploy]
        alb = [(w, w.target.alb) for w in group if w.target.alb is not None]
        listed, newest, weights = await asyncio.gather(
            _settle(calls.run(priority, self._list_service_deployments, w.target) for w in relist),
            _settle(
                calls.run(
                    priority, self._codedeploy, w.target, self._codedeploy_last.get(w.target.key)
                )
                for w in codedeploy
            ),
            _settle(calls.run(priority, self._alb_weights, target) for _, target in alb),
        )
        for work, arns in zip(relist, listed, strict=True):
            if not isinstance(arns, Exception):
                work.arns = arns
                self._sd_ok()
            elif not self._sd_failed(arns):
                work.fail(classify(arns))
        for work, deployment in zip(codedeploy, newest, strict=True):
            if isinstance(deployment, Exception):
                work.fail(classify(deployment))
                continue
            work.deployment = deployment
            if deployment is not None:
                self._codedeploy_last[work.target.key] = deployment.id
        for (work, _), answer in zip(alb, weights, strict=True):
            if isinstance(answer, Exception):
                work.fail(classify(answer))
            else:
                work.weights = answer

    async def _fetch_service_deployments(
        self, calls: _Calls, priority: int, group: list[_Work]
    ) -> dict[str, dict[str, Any]]:
        """Describe the service deployments of ``group`` that are not settled (20 per
        call across services), then the service revisions they name that are unknown.

        Returns:
            The descriptions, by ARN.
        """
        owners: dict[str, list[_Work]] = {}
        for work in group:
            if work.error is not None or not (work.relist or work.refresh):
                continue
            known = self._known.get(work.target.key)
            if not work.relist:
                work.arns = known.arns if known is not None else ()
            settled = known.settled() if known is not None else {}
            for arn in work.arns:
                if arn not in settled:
                    owners.setdefault(arn, []).append(work)
        described: dict[str, dict[str, Any]] = {}
        revision_owners: dict[str, list[_Work]] = {}
        answers = await _describe_in_chunks(
            calls,
            priority,
            self._describe_service_deployments,
            owners,
            self._sd_failed,
            self._sd_ok,
        )
        for raw in answers:
            arn = str(raw.get("serviceDeploymentArn"))
            if arn not in owners:
                continue
            described[arn] = raw
            for revision in _revision_arns(raw):
                if revision not in self._revisions:
                    revision_owners.setdefault(revision, []).extend(owners[arn])
        await self._fetch_revisions(calls, priority, revision_owners, group)
        return described

    async def _fetch_revisions(
        self,
        calls: _Calls,
        priority: int,
        owners: dict[str, list[_Work]],
        group: list[_Work],
    ) -> None:
        """Describe unknown service revisions (20 per call): their task definition, and
        the images of the task definitions ``group`` waits for."""
        wanted_images = {td for work in group for td in work.task_definitions}
        for revision in await _describe_in_chunks(
            calls, priority, self._describe_service_revisions, owners, self._sd_failed, self._sd_ok
        ):
            if not revision.get("serviceRevisionArn") or not revision.get("taskDefinition"):
                continue
            td = str(revision["taskDefinition"])
            _remember(self._revisions, str(revision["serviceRevisionArn"]), td, self._cache_max)
            images = tuple(
                str(c["image"])
                for c in revision.get("containerImages") or ()
                if isinstance(c, dict) and c.get("image")
            )
            if images and td in wanted_images and td not in self._images:
                _remember(self._images, td, images, self._cache_max)

    async def _fetch_images(self, calls: _Calls, priority: int, group: list[_Work]) -> None:
        """Describe the task definitions whose images are still unknown.

        Images are a nicety: a failure must not hide the deployment. Not cached, so the
        next poll asks again.
        """
        wanted = list(
            dict.fromkeys(
                td
                for work in group
                if work.error is None
                for td in work.task_definitions
                if td not in self._images
            )
        )
        answers = await _settle(
            calls.run(priority, self._describe_task_definition, td) for td in wanted
        )
        for td, images in zip(wanted, answers, strict=True):
            if not isinstance(images, Exception):
                _remember(self._images, td, images, self._cache_max)

    def _finish(self, work: _Work, described: dict[str, dict[str, Any]]) -> Item:
        """The sample of ``work`` once its details are in (or its failure)."""
        key = work.target.key
        if work.error is not None:
            return self._failure(key, work.error)
        deployments: tuple[ServiceDeployment, ...] = ()
        known = self._known.get(key)
        if self._sd_supported and (work.relist or work.refresh):
            settled = known.settled() if known is not None else {}
            mapped: list[ServiceDeployment] = []
            for arn in work.arns:
                raw = described.get(arn)
                if raw is not None:
                    revisions = {
                        rev: self._revisions[rev]
                        for rev in _revision_arns(raw)
                        if rev in self._revisions
                    }
                    mapped.append(map_service_deployment(raw, revisions))
                elif arn in settled:
                    mapped.append(settled[arn])
            mapped.sort(
                key=lambda sd: sd.created_at or sd.started_at or datetime.min.replace(tzinfo=UTC),
                reverse=True,
            )
            deployments = tuple(mapped)
            self._known[key] = _Known(work.ids, work.arns, deployments)
        elif self._sd_supported and known is not None:
            deployments = known.deployments
        return self._sample(work, deployments)

    def _failure(self, key: str, error: SourceError) -> SourceFailure:
        retry = None
        if isinstance(error, SourceRateLimited):
            retry = server_wait(error.retry_after)
            if retry is not None:
                error = waiting(error, retry)
        if isinstance(error, SourceAuthError) and self.auth_hint:
            hinted = SourceAuthError(f"fix: {self.auth_hint} · {error}")
            hinted.reason = error.reason
            error = hinted
        return SourceFailure(
            source=self.name,
            key=key,
            error=public_text(str(error) or error.reason),
            reason=error.reason,
            at=self._clock(),
            retry_in=retry,
        )

    def _new_events(self, key: str, events: Iterable[dict[str, Any]]) -> tuple[EcsEvent, ...]:
        order, seen = self._seen.setdefault(key, (deque(), set()))
        fresh: list[EcsEvent] = []
        for event in reversed(list(events)):  # ECS sends newest first; keep ties in order
            event_id = str(event.get("id") or "")
            if not event_id or event_id in seen:
                continue
            seen.add(event_id)
            order.append(event_id)
            if len(order) > SEEN_EVENTS_PER_SERVICE:
                seen.discard(order.popleft())
            fresh.append(
                EcsEvent(
                    id=event_id,
                    at=_time(event.get("createdAt")),
                    message=str(event.get("message") or ""),
                )
            )
        fresh.sort(key=lambda e: e.at or datetime.min.replace(tzinfo=UTC))
        return tuple(fresh)

    # ---- everything below runs in a worker thread: boto3 calls, no shared state ------

    def _describe_services(self, cluster: str, services: list[str]) -> dict[str, Any]:
        answer: dict[str, Any] = self.client().describe_services(cluster=cluster, services=services)
        return answer

    def _list_service_deployments(self, target: EcsTarget) -> tuple[str, ...]:
        listed = self.client().list_service_deployments(
            cluster=target.cluster,
            service=target.service,
            maxResults=SERVICE_DEPLOYMENTS_PER_SERVICE,
        )
        return tuple(
            str(sd["serviceDeploymentArn"]) for sd in listed.get("serviceDeployments") or ()
        )

    def _describe_service_deployments(self, arns: list[str]) -> list[dict[str, Any]]:
        answer = self.client().describe_service_deployments(serviceDeploymentArns=arns)
        return list(answer.get("serviceDeployments") or ())

    def _describe_service_revisions(self, arns: list[str]) -> list[dict[str, Any]]:
        answer = self.client().describe_service_revisions(serviceRevisionArns=arns)
        return list(answer.get("serviceRevisions") or ())

    def _describe_task_definition(self, arn: str) -> tuple[str, ...]:
        answer = self.client().describe_task_definition(taskDefinition=arn)
        containers = (answer.get("taskDefinition") or {}).get("containerDefinitions") or ()
        return tuple(str(c.get("image")) for c in containers if c.get("image"))


def _in_flight(deployments: Iterable[dict[str, Any]]) -> bool:
    """Whether ECS says a deployment is under way (rolling, or more than one deployment)."""
    entries = list(deployments)
    return len(entries) > 1 or any(d.get("rolloutState") == "IN_PROGRESS" for d in entries)


def _newest_is_primary(known: _Known, deployments: Iterable[dict[str, Any]]) -> bool:
    """Whether the newest known service deployment targets the PRIMARY deployment's task
    definition."""
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    if primary is None or not known.deployments:
        return False
    return known.deployments[0].target_task_definition == primary.get("taskDefinition")


async def _describe_in_chunks(
    calls: _Calls,
    priority: int,
    describe: Callable[[list[str]], list[dict[str, Any]]],
    owners: dict[str, list[_Work]],
    failed: Callable[[Exception], bool],
    answered: Callable[[], None],
) -> list[dict[str, Any]]:
    """Describe the ARNs of ``owners`` ``DESCRIBE_ARNS`` per call, all calls at once.

    A call that fails fails every service owning one of its ARNs (``_Work.fail``),
    unless ``failed`` (told of every failure) says to carry on without the answer;
    ``answered`` is told of every call that answered.

    Returns:
        The descriptions the calls that answered returned, in chunk order.
    """
    chunks = _chunks(list(owners), DESCRIBE_ARNS)
    answers = await _settle(calls.run(priority, describe, chunk) for chunk in chunks)
    described: list[dict[str, Any]] = []
    for chunk, answer in zip(chunks, answers, strict=True):
        if isinstance(answer, Exception):
            if failed(answer):
                continue
            error = classify(answer)
            for arn in chunk:
                for work in owners[arn]:
                    work.fail(error)
        else:
            answered()
            described.extend(answer)
    return described


def _remember(cache: OrderedDict[str, Any], key: str, value: Any, bound: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > bound:
        cache.popitem(last=False)
