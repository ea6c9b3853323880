"""ECS source: services, their deployments and events, via boto3 in worker threads.

boto3 is imported lazily (in a worker thread, on the first poll) so importing this
module costs nothing before the first paint. Every failure becomes a
:class:`~sources.model.SourceFailure` for the services it concerns; the stream never
raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sources.model import (
    AlbWeights,
    CircuitBreaker,
    CodeDeployDeployment,
    EcsDeployment,
    EcsEvent,
    EcsServiceSample,
    Item,
    LifecycleHook,
    ServiceDeployment,
    SourceAuthError,
    SourceBadResponse,
    SourceError,
    SourceFailure,
    SourceNotFound,
    SourceRateLimited,
    SourceTimeout,
    SourceUnavailable,
)
from sources.poll import Backoff

DESCRIBE_BATCH = 10
"""``describe_services`` accepts at most 10 services per call."""
SEEN_EVENTS_PER_SERVICE = 500
"""Bound on remembered event ids per service (ECS returns the latest 100)."""
SERVICE_DEPLOYMENTS_PER_SERVICE = 5
"""How many recent service deployments are listed and described per service."""
CACHE_MAX = 4096
"""Bound on the immutable-object caches (task definitions, service revisions)."""

TERMINAL_SERVICE_DEPLOYMENT = frozenset(
    {"SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"}
)
_UNSUPPORTED_CODES = frozenset(
    {"UnknownOperationException", "InvalidAction", "UnsupportedOperation", "NotImplemented"}
)
_THROTTLE_CODES = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "Throttling"}
)
_AUTH_CODES = frozenset(
    {
        "ExpiredTokenException",
        "ExpiredToken",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "AccessDeniedException",
        "AccessDenied",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)


@dataclass(frozen=True, slots=True)
class EcsTarget:
    """A service to watch."""

    key: str
    cluster: str
    service: str
    codedeploy: tuple[str, str] | None = None
    """``(application, deployment group)`` of a ``CODE_DEPLOY`` service."""
    alb: AlbTarget | None = None
    """The ALB forward action of a canary deploywatch drives for this service."""


@dataclass(frozen=True, slots=True)
class AlbTarget:
    """Where an ALB canary's weights live."""

    listener_arn: str
    rule_arn: str | None
    stable_target_group_arn: str
    canary_target_group_arn: str


def forward_weights(actions: Iterable[dict[str, Any]], alb: AlbTarget) -> AlbWeights:
    """The stable/canary weights of the forward action among ``actions``."""
    weights: dict[str, int] = {}
    for action in actions:
        if action.get("Type") != "forward":
            continue
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or ()
        if not groups and action.get("TargetGroupArn"):
            groups = [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]
        for group in groups:
            weight = group.get("Weight", 1)
            weights[str(group.get("TargetGroupArn"))] = weight if isinstance(weight, int) else 1
    return AlbWeights(
        stable=weights.get(alb.stable_target_group_arn),
        canary=weights.get(alb.canary_target_group_arn, 0 if weights else None),
    )


def revision_of(task_definition_arn: str | None) -> str:
    """``arn:...:task-definition/web:12`` → ``web:12`` (unchanged when not an ARN)."""
    if not task_definition_arn:
        return "?"
    return task_definition_arn.rsplit("/", 1)[-1]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def _breaker(config: Any) -> CircuitBreaker | None:
    if not isinstance(config, dict):
        return None
    cb = config.get("deploymentCircuitBreaker")
    if not isinstance(cb, dict):
        return None
    return CircuitBreaker(enabled=bool(cb.get("enable")), rollback=bool(cb.get("rollback")))


def map_deployment(raw: dict[str, Any], images: dict[str, tuple[str, ...]]) -> EcsDeployment:
    """Map one ``deployments[]`` entry of ``describe_services``.

    Args:
        raw: The entry as botocore returns it.
        images: Known container images per task definition ARN.

    Returns:
        The typed deployment; absent counts stay ``None``.
    """
    task_def = str(raw.get("taskDefinition") or "")
    return EcsDeployment(
        id=str(raw.get("id") or "?"),
        status=str(raw.get("status") or "?"),
        task_definition=task_def,
        revision=revision_of(task_def),
        desired=_int(raw.get("desiredCount")),
        running=_int(raw.get("runningCount")),
        pending=_int(raw.get("pendingCount")),
        failed=_int(raw.get("failedTasks")),
        rollout_state=raw.get("rolloutState"),
        rollout_reason=raw.get("rolloutStateReason"),
        created_at=_time(raw.get("createdAt")),
        updated_at=_time(raw.get("updatedAt")),
        images=images.get(task_def, ()),
    )


def map_service_deployment(raw: dict[str, Any], revisions: dict[str, str]) -> ServiceDeployment:
    """Map one entry of ``describe_service_deployments``.

    Args:
        raw: The entry as botocore returns it.
        revisions: Task definition ARN per service revision ARN, where known.

    Returns:
        The typed service deployment.
    """
    target = raw.get("targetServiceRevision") or {}
    target_arn = target.get("arn")
    sources = tuple(
        revisions.get(str(rev.get("arn")), str(rev.get("arn")))
        for rev in raw.get("sourceServiceRevisions") or ()
    )
    cb_raw = raw.get("deploymentCircuitBreaker")
    config_cb = (raw.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker") or {}
    breaker = None
    if isinstance(cb_raw, dict) or config_cb:
        cb = cb_raw if isinstance(cb_raw, dict) else {}
        breaker = CircuitBreaker(
            enabled=bool(config_cb.get("enable", cb.get("status") not in (None, "DISABLED"))),
            rollback=bool(config_cb.get("rollback", False)),
            status=cb.get("status"),
            failure_count=_int(cb.get("failureCount")),
            threshold=_int(cb.get("threshold")),
        )
    rollback = raw.get("rollback") or {}
    hooks = tuple(
        LifecycleHook(
            hook_id=str(h.get("hookId")),
            status=str(h.get("status") or "?"),
            target_type=h.get("targetType"),
            expires_at=_time(h.get("expiresAt")),
            timeout_action=h.get("timeoutAction"),
        )
        for h in raw.get("lifecycleHookDetails") or ()
        if isinstance(h, dict) and h.get("hookId")
    )
    strategy = (raw.get("deploymentConfiguration") or {}).get("strategy")
    return ServiceDeployment(
        arn=str(raw.get("serviceDeploymentArn") or "?"),
        status=str(raw.get("status") or "?"),
        status_reason=raw.get("statusReason"),
        target_revision_arn=target_arn,
        target_task_definition=revisions.get(str(target_arn)) if target_arn else None,
        source_task_definitions=sources,
        created_at=_time(raw.get("createdAt")),
        started_at=_time(raw.get("startedAt")),
        finished_at=_time(raw.get("finishedAt")),
        stopped_at=_time(raw.get("stoppedAt")),
        circuit_breaker=breaker,
        rollback_reason=rollback.get("reason") if isinstance(rollback, dict) else None,
        lifecycle_stage=raw.get("lifecycleStage"),
        strategy=strategy if isinstance(strategy, str) else None,
        hooks=hooks,
    )


def map_service(
    raw: dict[str, Any],
    *,
    key: str,
    at: datetime,
    new_events: tuple[EcsEvent, ...],
    service_deployments: tuple[ServiceDeployment, ...],
    images: dict[str, tuple[str, ...]],
    service_deployments_supported: bool = True,
) -> EcsServiceSample:
    """Map one ``services[]`` entry of ``describe_services`` into a sample."""
    return EcsServiceSample(
        key=key,
        at=at,
        status=raw.get("status"),
        desired=_int(raw.get("desiredCount")),
        running=_int(raw.get("runningCount")),
        pending=_int(raw.get("pendingCount")),
        task_definition=raw.get("taskDefinition"),
        deployments=tuple(map_deployment(d, images) for d in raw.get("deployments") or ()),
        service_deployments=service_deployments,
        new_events=new_events,
        circuit_breaker=_breaker(raw.get("deploymentConfiguration")),
        service_deployments_supported=service_deployments_supported,
        controller=(raw.get("deploymentController") or {}).get("type") or "ECS",
        strategy=(raw.get("deploymentConfiguration") or {}).get("strategy") or "ROLLING",
    )


def map_codedeploy(info: dict[str, Any]) -> CodeDeployDeployment:
    """Map one ``deploymentInfo`` of ``get_deployment`` / ``batch_get_deployments``."""
    error = info.get("errorInformation") or {}
    rollback = info.get("rollbackInfo") or {}
    return CodeDeployDeployment(
        id=str(info.get("deploymentId") or "?"),
        status=str(info.get("status") or "?"),
        termination_wait=bool(info.get("instanceTerminationWaitTimeStarted")),
        created_at=_time(info.get("createTime")),
        error=error.get("message") if isinstance(error, dict) else None,
        rollback_of=rollback.get("rollbackTriggeringDeploymentId")
        if isinstance(rollback, dict)
        else None,
    )


def classify(exc: BaseException) -> SourceError:
    """Turn a boto3/botocore exception into our error hierarchy (never leaks secrets)."""
    if isinstance(exc, SourceError):
        return exc
    name = type(exc).__name__
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        err = response.get("Error") or {}
        code = str(err.get("Code") or "")
        message = str(err.get("Message") or code)[:200]
        meta = response.get("ResponseMetadata") or {}
        http = meta.get("HTTPStatusCode")
        if code in _THROTTLE_CODES or http == 429:
            headers = meta.get("HTTPHeaders") or {}
            retry_after = None
            with contextlib.suppress(TypeError, ValueError):
                retry_after = float(headers.get("retry-after", ""))
            return SourceRateLimited(f"throttled: {message}", retry_after)
        if code in _AUTH_CODES or http in (401, 403):
            return SourceAuthError(f"{code}: {message}")
        if isinstance(http, int) and http >= 500:
            err5 = SourceUnavailable(f"HTTP {http}: {message}")
            err5.reason = f"http {http}"
            return err5
        return SourceError(f"{code or name}: {message}")
    if name in ("ConnectTimeoutError", "ReadTimeoutError"):
        return SourceTimeout(f"{name}: {exc}")
    if name in ("EndpointConnectionError", "ConnectionClosedError", "ProxyConnectionError"):
        return SourceUnavailable(f"cannot connect: {exc}")
    if name in (
        "NoCredentialsError",
        "PartialCredentialsError",
        "ProfileNotFound",
        "TokenRetrievalError",
        "SSOTokenLoadError",
        "UnauthorizedSSOTokenError",
        "CredentialRetrievalError",
    ):
        return SourceAuthError(f"credentials: {exc}")
    if name in ("ResponseParserError",) or isinstance(exc, ValueError | KeyError | TypeError):
        return SourceBadResponse(f"unreadable answer: {name}")
    return SourceError(f"{name}: {exc}"[:240])


class EcsSource:
    """Polls ECS for a set of services.

    Args:
        targets: The services to watch.
        region: AWS region.
        profile: Named AWS profile, or ``None`` for the default credential chain.
        endpoint_url: Endpoint override (the sandbox), or ``None``.
        poll_interval: Seconds between the end of one poll and the start of the next.
        connect_timeout: botocore connect timeout.
        read_timeout: botocore read timeout.
        max_concurrency: Batches in flight at once (threads).
        client_factory: Builds the ECS client; injected by tests.
        clock: Current UTC time; injected by tests.
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
    ) -> None:
        self.targets = tuple(targets)
        self.region = region
        self.profile = profile
        self.endpoint_url = endpoint_url
        self.poll_interval = poll_interval
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_concurrency = max_concurrency
        self._client_factory = client_factory or self._default_client
        self._aux_factory = aux_factory or self._default_aux_client
        self._aux_clients: dict[str, Any] = {}
        self._codedeploy_last: dict[str, str] = {}
        self._clock = clock
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._seen: dict[str, tuple[deque[str], set[str]]] = {}
        self._sd_cache: dict[str, tuple[tuple[Any, ...], tuple[ServiceDeployment, ...]]] = {}
        self._revisions: OrderedDict[str, str] = OrderedDict()
        self._images: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._sd_supported = True
        self.backoff = Backoff(base=max(poll_interval, 1.0), cap=60.0)
        # One fetch may take connect+read per attempt, two attempts; plus slack.
        self.deadline = 2 * (connect_timeout + read_timeout) + 2.0
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

    def _default_client(self) -> Any:
        import boto3  # lazy: heavy, and never needed before the first poll
        from botocore.config import Config

        session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
        return session.client(
            "ecs",
            endpoint_url=self.endpoint_url,
            config=Config(
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                retries={"total_max_attempts": 2, "mode": "standard"},
                max_pool_connections=max(10, self.max_concurrency),
                user_agent_appid="deploywatch",
            ),
        )

    def client(self) -> Any:
        """The ECS client, built on first use (call from a worker thread)."""
        with self._client_lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    async def stream(self) -> AsyncGenerator[Item, None]:
        """Poll forever, yielding each batch's samples as soon as that batch answers."""
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(
            max_workers=self.max_concurrency, thread_name_prefix="deploywatch-ecs"
        )
        tasks: list[asyncio.Task[list[Item]]] = []
        try:
            while True:
                tasks = [
                    asyncio.ensure_future(self._run_batch(loop, executor, cluster, batch))
                    for cluster, batch in self._batches
                ]
                failed = False
                retry_after: float | None = None
                for next_done in asyncio.as_completed(tasks):
                    for item in await next_done:
                        if isinstance(item, SourceFailure):
                            failed = True
                            if item.retry_in is not None:
                                retry_after = max(retry_after or 0.0, item.retry_in)
                        yield item
                if failed:
                    delay = max(self.poll_interval, self.backoff.next_delay(retry_after))
                else:
                    self.backoff.reset()
                    delay = self.poll_interval
                await asyncio.sleep(delay)
        finally:
            for task in tasks:
                task.cancel()
            executor.shutdown(wait=False, cancel_futures=True)

    async def poll_once(self) -> list[Item]:
        """One full poll of every batch (for scripts and tests)."""
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=self.max_concurrency)
        try:
            results = await asyncio.gather(
                *(self._run_batch(loop, executor, c, b) for c, b in self._batches)
            )
        finally:
            # Never wait for the threads on the event loop (a hung call would block it).
            executor.shutdown(wait=False, cancel_futures=True)
        return [item for batch in results for item in batch]

    async def _run_batch(
        self,
        loop: asyncio.AbstractEventLoop,
        executor: ThreadPoolExecutor,
        cluster: str,
        batch: tuple[EcsTarget, ...],
    ) -> list[Item]:
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(executor, self._fetch_batch, cluster, batch),
                timeout=self.deadline,
            )
        except TimeoutError:
            error: SourceError = SourceTimeout(f"no answer within {self.deadline:g}s")
        except Exception as exc:  # the stream must never raise
            error = classify(exc)
        return [self._failure(t.key, error) for t in batch]

    def _failure(self, key: str, error: SourceError) -> SourceFailure:
        retry = error.retry_after if isinstance(error, SourceRateLimited) else None
        return SourceFailure(
            source=self.name,
            key=key,
            error=str(error) or error.reason,
            reason=error.reason,
            at=self._clock(),
            retry_in=retry,
        )

    # ---- everything below runs in a worker thread -------------------------------

    def _fetch_batch(self, cluster: str, batch: tuple[EcsTarget, ...]) -> list[Item]:
        client = self.client()
        answer = client.describe_services(cluster=cluster, services=[t.service for t in batch])
        at = self._clock()
        if "services" not in answer and "failures" not in answer:
            # A 200 whose body botocore could not read comes back as {"message": ...}
            # (no exception): an unreadable answer, not every service gone.
            error = SourceBadResponse("unreadable answer: describe_services has no services")
            return [self._failure(t.key, error) for t in batch]
        by_name: dict[str, dict[str, Any]] = {}
        for svc in answer.get("services") or ():
            by_name[str(svc.get("serviceName"))] = svc
            by_name[str(svc.get("serviceArn"))] = svc
        items: list[Item] = []
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
                items.append(
                    self._failure(target.key, SourceNotFound(f"service not found ({reason})"))
                )
                continue
            try:
                items.append(self._sample(client, target, raw, at))
            except Exception as exc:
                items.append(self._failure(target.key, classify(exc)))
        return items

    def _sample(
        self, client: Any, target: EcsTarget, raw: dict[str, Any], at: datetime
    ) -> EcsServiceSample:
        deployments = raw.get("deployments") or ()
        self._describe_task_definitions(
            client, (str(d.get("taskDefinition")) for d in deployments if d.get("taskDefinition"))
        )
        sample = map_service(
            raw,
            key=target.key,
            at=at,
            new_events=self._new_events(target.key, raw.get("events") or ()),
            service_deployments=self._service_deployments(client, target, raw),
            images=dict(self._images),
            service_deployments_supported=self._sd_supported,
        )
        if target.codedeploy is not None and sample.controller == "CODE_DEPLOY":
            sample = replace(sample, codedeploy=self._codedeploy(target))
        if target.alb is not None:
            sample = replace(sample, alb=self._alb_weights(target.alb))
        return sample

    def _alb_weights(self, alb: AlbTarget) -> AlbWeights:
        client = self.aux_client("elbv2")
        if alb.rule_arn is not None:
            rules = client.describe_rules(RuleArns=[alb.rule_arn]).get("Rules") or ()
            actions = rules[0].get("Actions") or () if rules else ()
        else:
            listeners = (
                client.describe_listeners(ListenerArns=[alb.listener_arn]).get("Listeners") or ()
            )
            actions = listeners[0].get("DefaultActions") or () if listeners else ()
        return forward_weights(actions, alb)

    def _codedeploy(self, target: EcsTarget) -> CodeDeployDeployment | None:
        """The newest deployment of the service's CodeDeploy group (in flight first)."""
        assert target.codedeploy is not None
        application, group = target.codedeploy
        client = self.aux_client("codedeploy")
        listed = client.list_deployments(
            applicationName=application,
            deploymentGroupName=group,
            includeOnlyStatuses=["Created", "Queued", "InProgress", "Baking", "Ready"],
        )
        ids = list(listed.get("deployments") or ())
        last = self._codedeploy_last.get(target.key)
        if not ids and last is not None:
            ids = [last]  # follow the last one to its end (Succeeded, Stopped...)
        if not ids:
            return None
        infos = client.batch_get_deployments(deploymentIds=ids[:25]).get("deploymentsInfo") or ()
        mapped = [map_codedeploy(info) for info in infos if isinstance(info, dict)]
        if not mapped:
            return None
        newest = max(mapped, key=lambda d: d.created_at or datetime.min.replace(tzinfo=UTC))
        self._codedeploy_last[target.key] = newest.id
        return newest

    def aux_client(self, name: str) -> Any:
        """The ``codedeploy`` or ``elbv2`` client, built on first use (worker thread)."""
        with self._client_lock:
            if name not in self._aux_clients:
                self._aux_clients[name] = self._aux_factory(name)
            return self._aux_clients[name]

    def _default_aux_client(self, name: str) -> Any:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
        return session.client(
            name,
            endpoint_url=self.endpoint_url,
            config=Config(
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                retries={"total_max_attempts": 2, "mode": "standard"},
                user_agent_appid="deploywatch",
            ),
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

    def _service_deployments(
        self, client: Any, target: EcsTarget, raw: dict[str, Any]
    ) -> tuple[ServiceDeployment, ...]:
        if not self._sd_supported:
            return ()
        signature = tuple(
            (d.get("id"), d.get("rolloutState"), d.get("runningCount"), d.get("failedTasks"))
            for d in raw.get("deployments") or ()
        )
        cached = self._sd_cache.get(target.key)
        if cached is not None:
            old_signature, old = cached
            settled = all(sd.status in TERMINAL_SERVICE_DEPLOYMENT for sd in old)
            if old_signature == signature and settled:
                return old
        try:
            listed = client.list_service_deployments(
                cluster=target.cluster,
                service=target.service,
                maxResults=SERVICE_DEPLOYMENTS_PER_SERVICE,
            )
        except Exception as exc:
            code = ((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code")
            if code in _UNSUPPORTED_CODES or type(exc).__name__ == "OperationNotPageableError":
                self._sd_supported = False
                return ()
            raise
        arns = [str(sd["serviceDeploymentArn"]) for sd in listed.get("serviceDeployments") or ()]
        details: list[dict[str, Any]] = []
        if arns:
            described = client.describe_service_deployments(serviceDeploymentArns=arns[:20])
            details = list(described.get("serviceDeployments") or ())
        self._describe_revisions(client, details)
        mapped = sorted(
            (map_service_deployment(d, dict(self._revisions)) for d in details),
            key=lambda sd: sd.created_at or sd.started_at or datetime.min.replace(tzinfo=UTC),
            reverse=True,
        )
        result = tuple(mapped)
        self._sd_cache[target.key] = (signature, result)
        return result

    def _describe_revisions(self, client: Any, details: list[dict[str, Any]]) -> None:
        wanted: list[str] = []
        for sd in details:
            for rev in [
                sd.get("targetServiceRevision") or {},
                *(sd.get("sourceServiceRevisions") or ()),
            ]:
                arn = rev.get("arn")
                if arn and arn not in self._revisions and arn not in wanted:
                    wanted.append(str(arn))
        for i in range(0, len(wanted), 20):
            answer = client.describe_service_revisions(serviceRevisionArns=wanted[i : i + 20])
            for rev in answer.get("serviceRevisions") or ():
                arn = rev.get("serviceRevisionArn")
                if arn and rev.get("taskDefinition"):
                    _remember(self._revisions, str(arn), str(rev["taskDefinition"]))

    def _describe_task_definitions(self, client: Any, arns: Iterable[str]) -> None:
        for arn in set(arns):
            if arn in self._images:
                continue
            try:
                answer = client.describe_task_definition(taskDefinition=arn)
            except Exception:
                # Images are a nicety: a failure must not hide the deployment. Not
                # cached, so the next poll asks again.
                continue
            containers = (answer.get("taskDefinition") or {}).get("containerDefinitions") or ()
            images = tuple(str(c.get("image")) for c in containers if c.get("image"))
            _remember(self._images, arn, images)


def _remember(cache: OrderedDict[str, Any], key: str, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > CACHE_MAX:
        cache.popitem(last=False)
