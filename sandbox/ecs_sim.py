"""The ECS scheduler of the sandbox: makes deployments progress the way ECS does.

moto stores ECS services but never runs anything. This scheduler owns, per service, the
deployments (PRIMARY / ACTIVE), their tasks, service events, service deployments and
service revisions, and moves them forward on a clock of its own. After every change it
writes the result back onto moto's ``Service`` object (``deployments``, ``running_count``,
``pending_count``, ``events``, ``task_definition``, ``deployment_configuration``) and
registers real moto ``Task`` objects, so ``describe_services``, ``list_tasks`` and
``describe_tasks`` answer from the simulation.

Deployment controller ``ECS`` only. The rolling update (strategy ``ROLLING``) is the
default; ``BLUE_GREEN``, ``CANARY`` and ``LINEAR`` (ECS native traffic shifting, with
lifecycle stages and hooks, see :mod:`sandbox.ecs_shift`) plug in at
:meth:`Scheduler._step_deployment`. :meth:`Scheduler.traffic_weights` is the production
traffic split a front proxy follows: the live task mix for rolling services, the shifted
weights while a traffic-shifting deployment runs.

Timing: decisions use sandbox seconds (:class:`SandboxClock`, ``speed`` times real time);
every timestamp the API returns is real wall-clock UTC, so clients compute real ages.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from moto.core.exceptions import ServiceException
from moto.ecs.exceptions import InvalidParameterException, ServiceNotFoundException
from moto.ecs.models import Task, TaskSet, ecs_backends

from sandbox.ecs_shift import (
    DEFAULT_HOOK_TIMEOUT_ACTION,
    DEFAULT_HOOK_TIMEOUT_MINUTES,
    HOOK_ACTIONS,
    SHIFTING_STRATEGIES,
    ShiftConfigurationError,
    ShiftState,
    SimHook,
    build_phases,
    hook_id,
    hooks_for,
    validate_configuration,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from moto.ecs.models import EC2ContainerServiceBackend, Service

    from sandbox.scenario import ServiceSpec

log = logging.getLogger(__name__)

DEFAULT_ACCOUNT = "123456789012"
"""moto's account when the access key is not one of its special keys (e.g. ``sandbox``)."""

EVENT_LIMIT = 100
"""ECS keeps the 100 most recent service events."""

STOPPED_TASKS_KEPT = 100
"""Stopped tasks kept visible to ``describe_tasks`` per service (ECS keeps them ~1 h)."""

TERMINAL_SD_STATUSES = frozenset(
    {"SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"}
)

TaskState = Literal["PENDING", "RUNNING", "STOPPING", "STOPPED"]


class ServiceDeploymentNotFound(ServiceException):
    """ECS's ``ServiceDeploymentNotFoundException``."""

    code = "ServiceDeploymentNotFoundException"


class SandboxClock:
    """Sandbox time: seconds since start, running ``speed`` times faster than real time.

    Args:
        speed: Sandbox seconds per real second (> 0).
        monotonic: The real clock, injectable for tests.
    """

    def __init__(self, speed: float = 1.0, monotonic: Callable[[], float] = time.monotonic):
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self._monotonic = monotonic
        self._origin = monotonic()

    def now(self) -> float:
        """Return sandbox seconds since the clock was created."""
        return (self._monotonic() - self._origin) * self.speed

    def real_seconds(self, sandbox_seconds: float) -> float:
        """Return how many real seconds ``sandbox_seconds`` of sandbox time take."""
        return sandbox_seconds / self.speed

    @staticmethod
    def wall() -> datetime:
        """Return the real wall-clock time (UTC) used for every API timestamp."""
        return datetime.now(UTC)


@dataclass(frozen=True)
class TaskBehaviour:
    """How the tasks of one task definition behave, resolved from the scenario."""

    version: str
    start_seconds: float = 5.0
    fails_to_start: bool = False
    crash_after_seconds: float | None = None


@dataclass
class SimRevision:
    """An ECS service revision: one task definition as deployed to one service."""

    arn: str
    task_definition: str
    version: str
    images: list[dict[str, str]]
    created_at: datetime


@dataclass(eq=False)
class SimTask:
    """One task of a deployment."""

    moto: Any
    """moto's ``Task``; typed ``Any`` because the scheduler adds ECS fields moto lacks
    (``startedAt``, ``stoppedAt``, ``stopCode``...), which moto's serializer then returns."""
    behaviour: TaskBehaviour
    state: TaskState
    due: float
    """Sandbox time of the next transition: start (PENDING), crash (RUNNING), stop (STOPPING)."""

    @property
    def id(self) -> str:
        return str(self.moto.id)


@dataclass(eq=False)
class SimDeployment:
    """One entry of ``describe_services``' ``deployments``."""

    id: str
    revision: SimRevision
    desired: int
    created_at: datetime
    updated_at: datetime
    status: str = "PRIMARY"
    rollout_state: str = "IN_PROGRESS"
    rollout_reason: str = ""
    failed_tasks: int = 0
    launching: bool = True
    """False once the deployment failed or was stopped: it launches no more tasks."""
    tasks: list[SimTask] = field(default_factory=list)
    service_deployment: SimServiceDeployment | None = None
    is_rollback: bool = False
    steady_since: float | None = None
    task_set: Any = None
    """CODE_DEPLOY services: moto's ``TaskSet`` mirroring this deployment."""
    weight: float = 0.0
    """CODE_DEPLOY services: percent of production traffic on this task set."""
    external_id: str | None = None
    """CODE_DEPLOY services: the CodeDeploy deployment that created this task set."""

    def count(self, *states: TaskState) -> int:
        return sum(1 for t in self.tasks if t.state in states)


@dataclass(eq=False)
class SimServiceDeployment:
    """One ECS service deployment (the ``ListServiceDeployments`` resource)."""

    arn: str
    target: SimDeployment
    sources: list[SimRevision]
    configuration: dict[str, Any]
    threshold: int
    created_at: datetime
    updated_at: datetime
    status: str = "PENDING"
    status_reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    stopped_at: datetime | None = None
    breaker_status: str = "MONITORING"
    rollback: dict[str, Any] | None = None
    request: str | None = None
    """A pending ``stop_service_deployment`` stop type, acted on at the next tick."""
    shift: ShiftState | None = None
    """Progress of a traffic-shifting (BLUE_GREEN / CANARY / LINEAR) deployment."""


@dataclass(eq=False)
class SimService:
    """Scheduler state of one ECS service."""

    moto: Any
    """moto's ``Service``; ``Any`` because the scheduler sets ``deployment_configuration``."""
    cluster: str
    name: str
    desired: int
    configuration: dict[str, Any]
    spec: ServiceSpec | None
    deployments: list[SimDeployment] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    service_deployments: list[SimServiceDeployment] = field(default_factory=list)
    last_completed: SimDeployment | None = None
    steady: bool = False
    stopped_task_arns: deque[str] = field(default_factory=deque)
    controller: str = "ECS"
    """``ECS`` or ``CODE_DEPLOY`` (task sets driven by :mod:`sandbox.codedeploy_sim`)."""

    @property
    def primary(self) -> SimDeployment | None:
        return self.deployments[0] if self.deployments else None

    @property
    def arn(self) -> str:
        return str(self.moto.arn)

    @property
    def cluster_arn(self) -> str:
        return str(self.moto.cluster_arn)

    @property
    def stop_seconds(self) -> float:
        return self.spec.stop_seconds if self.spec else 2.0

    @property
    def steady_seconds(self) -> float:
        return self.spec.steady_seconds if self.spec else 3.0

    @property
    def minute_seconds(self) -> float:
        """Sandbox seconds per API minute (bake times, hook timeouts)."""
        return self.spec.deployment.minute_seconds if self.spec else 60.0

    def all_tasks(self) -> Iterable[SimTask]:
        for deployment in self.deployments:
            yield from deployment.tasks


def breaker_threshold(desired: int) -> int:
    """Return ECS's circuit-breaker failure threshold for a desired count.

    ECS: ``max(3, min(200, ceil(0.5 * desired)))``.
    """
    return max(3, min(200, math.ceil(0.5 * desired)))


def default_configuration() -> dict[str, Any]:
    """Return ECS's default ``deploymentConfiguration`` for a rolling service."""
    return {
        "minimumHealthyPercent": 100,
        "maximumPercent": 200,
        "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    }


def merge_configuration(base: dict[str, Any], update: dict[str, Any] | None) -> dict[str, Any]:
    """Return ``base`` overlaid with the keys present in ``update`` (an API request value)."""
    merged = {**base, **{k: v for k, v in (update or {}).items() if v is not None}}
    breaker = {"enable": False, "rollback": False, **merged.get("deploymentCircuitBreaker", {})}
    merged["deploymentCircuitBreaker"] = breaker
    return merged


def _deployment_id() -> str:
    return f"ecs-svc/{random.randint(10**18, 10**19 - 1)}"


def _task_list(tasks: Iterable[SimTask]) -> str:
    return " ".join(f"(task {t.id})" for t in tasks)


class Scheduler:
    """Runs the ECS services of one account and region of moto's backend.

    Thread safety: every public method takes :attr:`lock`; moto's request handling for
    ECS runs under the same lock (see :mod:`sandbox.aws`), so the API never sees a
    half-applied tick.

    Args:
        clock: Sandbox clock.
        account_id: moto account whose ECS backend is simulated.
        region: Region whose ECS backend is simulated.
        tick_seconds: Sandbox seconds between two scheduler steps.
    """

    def __init__(
        self,
        clock: SandboxClock,
        account_id: str = DEFAULT_ACCOUNT,
        region: str = "us-east-1",
        tick_seconds: float = 0.5,
    ) -> None:
        self.clock = clock
        self.account_id = account_id
        self.region = region
        self.tick_seconds = tick_seconds
        self.lock = threading.RLock()
        self._services: dict[tuple[str, str], SimService] = {}
        self._profiles: dict[tuple[str, str], ServiceSpec] = {}
        self._service_deployments: dict[str, tuple[SimService, SimServiceDeployment]] = {}
        self._revisions: dict[str, tuple[SimService, SimRevision]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tickers: list[Callable[[float], None]] = []
        self.error: Exception | None = None
        """The last exception a tick raised, if any (logged, and the ticks go on)."""

    # ------------------------------------------------------------------ lifecycle

    @property
    def backend(self) -> EC2ContainerServiceBackend:
        """moto's ECS backend for this account and region."""
        return ecs_backends[self.account_id][self.region]

    def handles(self, account_id: str, region: str) -> bool:
        """Return whether a request for ``account_id``/``region`` is simulated here."""
        return account_id == self.account_id and region == self.region

    def start(self) -> None:
        """Start the tick thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="ecs-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the tick thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        interval = max(0.01, self.clock.real_seconds(self.tick_seconds))
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # a bug must not freeze the world: log, keep, go on
                log.exception("scheduler tick failed")
                self.error = exc
            self._stop.wait(interval)

    # ------------------------------------------------------------------ profiles

    def register_profile(self, cluster: str, spec: ServiceSpec) -> None:
        """Tell the scheduler how the versions of a service behave.

        Args:
            cluster: Cluster name.
            spec: The scenario's service (versions, timings, failure modes).
        """
        with self.lock:
            self._profiles[(cluster, spec.name)] = spec

    def _behaviour(self, svc: SimService, task_definition: str) -> TaskBehaviour:
        td = self.backend.describe_task_definition(task_definition)
        image = (
            str(td.container_definitions[0].get("image", "")) if td.container_definitions else ""
        )
        label = image.rsplit(":", 1)[-1] if ":" in image else f"{td.family}:{td.revision}"
        version = svc.spec.version_for_image(image) if svc.spec else None
        if version is None:
            return TaskBehaviour(version=label)
        return TaskBehaviour(
            version=version.name,
            start_seconds=version.start_seconds,
            fails_to_start=version.failure == "fail_to_start",
            crash_after_seconds=version.crash_after_seconds if version.failure == "crash" else None,
        )

    # ------------------------------------------------------------------ hooks from aws.py

    def on_create_service(self, service: Service, configuration: dict[str, Any] | None) -> None:
        """Adopt a service moto just created: first deployment, first service deployment.

        Args:
            service: moto's new ``Service``.
            configuration: The request's ``deploymentConfiguration``, if any.
        """
        controller = (service.deployment_controller or {}).get("type", "ECS")
        if controller not in ("ECS", "CODE_DEPLOY"):
            return  # EXTERNAL: not modelled, plain moto behaviour
        with self.lock:
            key = (str(service.cluster_name), str(service.name))
            svc = SimService(
                moto=service,
                cluster=key[0],
                name=key[1],
                desired=int(service.desired_count),
                configuration=merge_configuration(default_configuration(), configuration),
                spec=self._profiles.get(key),
                controller=controller,
            )
            self._services[key] = svc
            if service.task_definition:
                self._new_deployment(svc, str(service.task_definition))
            self._sync(svc)

    def check_request(self, params: dict[str, Any], *, creating: bool) -> None:
        """Refuse, before moto applies it, a create/update the sandbox would get wrong.

        Args:
            params: ``create_service``/``update_service`` request parameters.
            creating: True for ``create_service``.

        Raises:
            InvalidParameterException: An invalid deployment strategy, traffic shift or
                lifecycle hook, or an ``awsvpc`` task definition for a service without a
                network configuration (ECS refuses them too).
        """
        with self.lock:
            configuration = params.get("deploymentConfiguration")
            if configuration:
                try:
                    validate_configuration(configuration)
                except ShiftConfigurationError as exc:
                    raise InvalidParameterException(str(exc)) from None
            if not params.get("taskDefinition"):
                return
            network = params.get("networkConfiguration")
            if not creating:
                cluster = str(params.get("cluster") or "default").split("/")[-1]
                svc = self._services.get((cluster, str(params.get("service")).split("/")[-1]))
                if svc is None:
                    return
                if svc.controller == "CODE_DEPLOY":
                    raise InvalidParameterException(
                        "Unable to update task definition on services with a CODE_DEPLOY "
                        "deployment controller. Use AWS CodeDeploy to trigger a new deployment."
                    )
                network = network or svc.moto.network_configuration
            td = self.backend.describe_task_definition(params["taskDefinition"])
            if td.network_mode == "awsvpc" and not network:
                raise InvalidParameterException(
                    "Network Configuration must be provided when networkMode 'awsvpc' is specified."
                )

    def on_update_service(self, service: Service, params: dict[str, Any]) -> None:
        """React to ``update_service`` after moto applied it.

        A new task definition (or ``forceNewDeployment``) starts a new deployment; a new
        ``desiredCount`` rescales; a ``deploymentConfiguration`` is merged.

        Args:
            service: moto's ``Service``, already updated by moto.
            params: The request parameters (API names).
        """
        with self.lock:
            svc = self._services.get((str(service.cluster_name), str(service.name)))
            if svc is None:
                return
            if params.get("deploymentConfiguration") is not None:
                svc.configuration = merge_configuration(
                    svc.configuration, params["deploymentConfiguration"]
                )
            if params.get("desiredCount") is not None:
                svc.desired = int(params["desiredCount"])
                if svc.primary is not None:
                    svc.primary.desired = svc.desired
            new_td: str | None = None
            if params.get("taskDefinition"):
                new_td = str(self.backend.describe_task_definition(params["taskDefinition"]).arn)
            current = svc.primary.revision.task_definition if svc.primary else None
            if new_td is not None and new_td != current:
                self._new_deployment(svc, new_td)
            elif params.get("forceNewDeployment") and current is not None:
                self._new_deployment(svc, current)
            self._sync(svc)

    # ------------------------------------------------------------------ deployments

    def _new_revision(self, svc: SimService, task_definition: str) -> SimRevision:
        td = self.backend.describe_task_definition(task_definition)
        arn = (
            f"arn:aws:ecs:{self.region}:{self.account_id}:service-revision/"
            f"{svc.cluster}/{svc.name}/{random.randint(10**18, 10**19 - 1)}"
        )
        revision = SimRevision(
            arn=arn,
            task_definition=str(td.arn),
            version=self._behaviour(svc, str(td.arn)).version,
            images=[
                {"containerName": str(c.get("name", "")), "image": str(c.get("image", ""))}
                for c in td.container_definitions
            ],
            created_at=self.clock.wall(),
        )
        self._revisions[arn] = (svc, revision)
        return revision

    def _new_deployment(self, svc: SimService, task_definition: str) -> SimDeployment:
        now = self.clock.wall()
        revision = self._new_revision(svc, task_definition)
        deployment = self._make_primary(svc, revision)
        if svc.controller == "CODE_DEPLOY":
            deployment.weight = 100.0  # the first task set takes all production traffic
            return deployment  # no ECS service deployment: CodeDeploy owns deployments
        sources: list[SimRevision] = []
        for old in svc.deployments[1:]:
            if old.tasks and old.revision not in sources:
                sources.append(old.revision)
            sd_old = old.service_deployment
            if sd_old is not None and sd_old.status not in TERMINAL_SD_STATUSES:
                sd_old.request = None
                self._finish_sd(sd_old, "STOPPED", "Superseded by a newer service deployment.")
        sd = SimServiceDeployment(
            arn=(
                f"arn:aws:ecs:{self.region}:{self.account_id}:service-deployment/"
                f"{svc.cluster}/{svc.name}/{secrets.token_urlsafe(16)[:21]}"
            ),
            target=deployment,
            sources=sources,
            configuration=dict(svc.configuration),
            threshold=breaker_threshold(svc.desired),
            created_at=now,
            updated_at=now,
            breaker_status="MONITORING" if self._breaker(svc)["enable"] else "DISABLED",
        )
        strategy = str(svc.configuration.get("strategy") or "ROLLING")
        blue = self._blue_for(svc)
        if strategy in SHIFTING_STRATEGIES and blue is not None:
            sd.shift = ShiftState(
                strategy=strategy,
                blue=blue,
                phases=build_phases(sd.configuration, svc.minute_seconds),
            )
        deployment.service_deployment = sd
        svc.service_deployments.append(sd)
        self._service_deployments[sd.arn] = (svc, sd)
        return deployment

    @staticmethod
    def _blue_for(svc: SimService) -> SimDeployment | None:
        """The deployment serving production when a new one starts (the new one is first).

        The last completed deployment if it still has tasks; else, when a traffic shift
        was superseded, the side holding most of its production traffic; else the
        newest older deployment with tasks.
        """
        older = [d for d in svc.deployments[1:] if d.tasks]
        if not older:
            return None
        if svc.last_completed in older:
            return svc.last_completed
        for old in older:
            sd = old.service_deployment
            if sd is not None and sd.shift is not None and sd.shift.blue in older:
                return old if sd.shift.production_weight >= 50 else sd.shift.blue
        return older[0]

    def _make_primary(
        self,
        svc: SimService,
        revision: SimRevision,
        *,
        rollback_of: SimServiceDeployment | None = None,
    ) -> SimDeployment:
        now = self.clock.wall()
        deployment_id = _deployment_id()
        deployment = SimDeployment(
            id=deployment_id,
            revision=revision,
            desired=svc.desired,
            created_at=now,
            updated_at=now,
            rollout_reason=f"ECS deployment {deployment_id} in progress.",
            service_deployment=rollback_of,
            is_rollback=rollback_of is not None,
        )
        for old in svc.deployments:
            if old.status == "PRIMARY":
                old.status = "ACTIVE"
                old.updated_at = now
        svc.deployments.insert(0, deployment)
        svc.moto.task_definition = revision.task_definition
        svc.steady = False
        return deployment

    @staticmethod
    def _breaker(svc: SimService) -> dict[str, bool]:
        raw = svc.configuration.get("deploymentCircuitBreaker") or {}
        return {"enable": bool(raw.get("enable")), "rollback": bool(raw.get("rollback"))}

    def _finish_sd(self, sd: SimServiceDeployment, status: str, reason: str | None) -> None:
        now = self.clock.wall()
        sd.status = status
        sd.status_reason = reason
        sd.updated_at = now
        sd.finished_at = now
        if status in ("STOPPED", "ROLLBACK_FAILED"):
            sd.stopped_at = now
        if sd.started_at is None:
            sd.started_at = now
        if sd.breaker_status == "MONITORING":
            sd.breaker_status = "MONITORING_COMPLETE"

    def _fail_deployment(self, svc: SimService, deployment: SimDeployment, reason: str) -> None:
        deployment.rollout_state = "FAILED"
        deployment.rollout_reason = reason
        deployment.launching = False
        deployment.updated_at = self.clock.wall()
        pending = [t for t in deployment.tasks if t.state == "PENDING"]
        for task in pending:
            self._stopped(svc, deployment, task, "Scheduler stopped the task: deployment failed")

    def _begin_rollback(
        self, svc: SimService, sd: SimServiceDeployment, target: SimRevision, reason: str
    ) -> None:
        if sd.shift is not None and sd.shift.blue in svc.deployments:
            self._begin_shift_rollback(svc, sd, reason)
            return
        now = self.clock.wall()
        failing = sd.target
        if failing.rollout_state == "IN_PROGRESS":
            self._fail_deployment(svc, failing, reason)
        failing.launching = False
        rolled_to = svc.last_completed
        back_to = rolled_to.id if rolled_to and rolled_to.revision is target else None
        self._make_primary(svc, target, rollback_of=sd)
        sd.status = "ROLLBACK_IN_PROGRESS"
        sd.updated_at = now
        sd.rollback = {"reason": reason, "startedAt": now, "serviceRevisionArn": target.arn}
        if back_to is None:
            back_to = next(
                (d.id for d in svc.deployments[1:] if d.revision is target), svc.deployments[0].id
            )
        self._event(svc, f"(service {svc.name}) rolling back to deployment {back_to}.")

    # ------------------------------------------------------------------ the tick

    def add_ticker(self, ticker: Callable[[float], None]) -> None:
        """Run ``ticker(now)`` at the start of every tick, under :attr:`lock` (a controller
        such as CodeDeploy deciding task-set counts and weights before tasks move)."""
        with self.lock:
            self._tickers.append(ticker)

    def tick(self, now: float | None = None) -> None:
        """Advance every service to sandbox time ``now`` (default: the clock's now)."""
        with self.lock:
            at = self.clock.now() if now is None else now
            for ticker in self._tickers:
                ticker(at)
            for svc in list(self._services.values()):
                if svc.moto.status != "ACTIVE":
                    continue
                self._tick_service(svc, at)
                self._sync(svc)
            self._sync_clusters()

    def _tick_service(self, svc: SimService, now: float) -> None:
        if svc.controller == "CODE_DEPLOY":
            self._advance_tasks(svc, now)
            self._step_task_sets(svc, now)
            self._check_steady(svc)
            return
        self._handle_requests(svc)
        self._advance_tasks(svc, now)
        self._check_breaker(svc)
        primary = svc.primary
        if primary is not None:
            self._step_deployment(svc, primary, now)
        self._retire_drained(svc)
        self._check_completion(svc, now)
        self._check_steady(svc)

    def _handle_requests(self, svc: SimService) -> None:
        for sd in svc.service_deployments:
            if sd.status == "PENDING":
                sd.status = "IN_PROGRESS"
                sd.started_at = sd.updated_at = self.clock.wall()
            if sd.request == "ROLLBACK":
                sd.request = None
                source = sd.sources[0] if sd.sources else None
                if source is None:  # refused at request time; kept as a guard
                    continue
                self._begin_rollback(
                    svc, sd, source, "Service deployment rolled back because of a stop request."
                )
            elif sd.request == "ABORT":
                sd.request = None
                target = sd.target
                if target.rollout_state == "IN_PROGRESS":
                    self._fail_deployment(
                        svc, target, f"ECS deployment {target.id} stopped by an ABORT request."
                    )
                self._finish_sd(sd, "STOPPED", "Service deployment stopped by an ABORT request.")

    def _advance_tasks(self, svc: SimService, now: float) -> None:
        for deployment in list(svc.deployments):
            for task in list(deployment.tasks):
                if task.moto.desired_status == "STOPPED" and task.state in ("PENDING", "RUNNING"):
                    # stopped from outside (stop_task): ECS replaces it, not a failure
                    self._stopped(svc, deployment, task, task.moto.stopped_reason or "Task stopped")
                    continue
                if task.due > now:
                    continue
                if task.state == "PENDING":
                    if task.behaviour.fails_to_start:
                        deployment.failed_tasks += 1
                        task.moto.stop_code = "TaskFailedToStart"
                        self._stopped(svc, deployment, task, "Task failed to start")
                        continue
                    task.state = "RUNNING"
                    task.moto.last_status = "RUNNING"
                    task.moto.started_at = self.clock.wall()
                    crash = task.behaviour.crash_after_seconds
                    task.due = now + crash if crash is not None else math.inf
                    deployment.failed_tasks = 0  # ECS default: resetOnHealthyTask
                elif task.state == "RUNNING":
                    task.moto.stop_code = "EssentialContainerExited"
                    self._stopped(svc, deployment, task, "Essential container in task exited")
                    self._event(
                        svc, f"(service {svc.name}) has stopped 1 running tasks: (task {task.id})."
                    )
                elif task.state == "STOPPING":
                    self._stopped(svc, deployment, task, task.moto.stopped_reason)

    def _check_breaker(self, svc: SimService) -> None:
        primary = svc.primary
        if primary is None or primary.rollout_state != "IN_PROGRESS":
            return
        sd = primary.service_deployment
        breaker = self._breaker(svc)
        threshold = sd.threshold if sd else breaker_threshold(svc.desired)
        if not breaker["enable"] or primary.failed_tasks < threshold:
            return
        reason = "ECS deployment circuit breaker: tasks failed to start."
        self._fail_deployment(svc, primary, reason)
        self._event(
            svc,
            f"(service {svc.name}) (deployment {primary.id}) deployment failed: "
            "tasks failed to start.",
        )
        if sd is None:
            return
        sd.breaker_status = "TRIGGERED"
        if primary.is_rollback:
            self._finish_sd(sd, "ROLLBACK_FAILED", reason)
            return
        last = svc.last_completed
        if breaker["rollback"] and last is not None and last.revision is not primary.revision:
            self._begin_rollback(svc, sd, last.revision, reason)
        else:
            self._finish_sd(sd, "STOPPED", reason)

    def _step_deployment(self, svc: SimService, primary: SimDeployment, now: float) -> None:
        """One step of the primary's strategy (ROLLING unless a traffic shift runs)."""
        sd = primary.service_deployment
        if (
            sd is not None
            and sd.shift is not None
            and sd.status == "IN_PROGRESS"
            and primary.launching
            and sd.shift.blue in svc.deployments
        ):
            self._step_shift(svc, primary, sd, sd.shift, now)
            return
        self._step_rolling(svc, primary, now)

    def _step_rolling(self, svc: SimService, primary: SimDeployment, now: float) -> None:
        """One ROLLING step: stop what the bounds allow, then launch what they allow."""
        desired = svc.desired
        min_percent = int(svc.configuration.get("minimumHealthyPercent", 100))
        max_percent = int(svc.configuration.get("maximumPercent", 200))
        min_healthy = math.ceil(desired * min_percent / 100)
        max_live = math.floor(desired * max_percent / 100)
        stopping: list[SimTask] = []

        def stop(deployment: SimDeployment, task: SimTask, reason: str) -> None:
            if task.state == "RUNNING":
                stopping.append(task)
            self._stopping(svc, deployment, task, now, reason)

        # Old deployments' pending tasks do nothing for health: stop them at once.
        for old in svc.deployments[1:]:
            for task in [t for t in old.tasks if t.state == "PENDING"]:
                stop(old, task, "Scheduler stopped the task: deployment replaced")
        # Scale in the primary if it has more than desired.
        extra = primary.count("PENDING", "RUNNING") - desired
        for task in sorted(primary.tasks, key=lambda t: t.state != "PENDING"):
            if extra <= 0:
                break
            if task.state in ("PENDING", "RUNNING"):
                if task.state == "RUNNING" and self._healthy(svc) - 1 < min_healthy:
                    break
                stop(primary, task, "Scheduler stopped the task: service scaled in")
                extra -= 1
        # Stop old running tasks while the healthy count stays at or above min healthy,
        # but only while the primary is able to replace them.
        if primary.launching:
            for old in reversed(svc.deployments[1:]):  # oldest first
                for task in [t for t in old.tasks if t.state == "RUNNING"]:
                    if self._healthy(svc) - 1 < min_healthy:
                        break
                    stop(old, task, "Scheduler stopped the task: deployment replaced")
        if stopping:
            self._event(
                svc,
                f"(service {svc.name}) has stopped {len(stopping)} running tasks: "
                f"{_task_list(stopping)}.",
            )
        # Launch new tasks within maximum percent.
        if not primary.launching:
            return
        live = sum(1 for t in svc.all_tasks() if t.state in ("PENDING", "RUNNING"))
        count = min(desired - primary.count("PENDING", "RUNNING"), max_live - live)
        if count > 0:
            started = [self._launch(svc, primary, now) for _ in range(count)]
            self._event(
                svc,
                f"(service {svc.name}) has started {count} tasks: {_task_list(started)}.",
            )

    # ------------------------------------------------------------------ CODE_DEPLOY task sets

    def _step_task_sets(self, svc: SimService, now: float) -> None:
        """Keep every task set at its own desired count (CodeDeploy decides the counts)."""
        stopping: list[SimTask] = []
        started: list[SimTask] = []
        for d in list(svc.deployments):
            live = [t for t in d.tasks if t.state in ("PENDING", "RUNNING")]
            extra = len(live) - d.desired
            for task in sorted(live, key=lambda t: t.state != "PENDING")[: max(0, extra)]:
                if task.state == "RUNNING":
                    stopping.append(task)
                self._stopping(svc, d, task, now, "Scheduler stopped the task: task set scaled in")
            if d.launching:
                started += [self._launch(svc, d, now) for _ in range(max(0, -extra))]
        for d in svc.deployments[1:]:
            if d.desired == 0 and not d.tasks:
                d.status = "INACTIVE"
        svc.deployments = [d for d in svc.deployments if d.status != "INACTIVE"]
        if stopping:
            self._event(
                svc,
                f"(service {svc.name}) has stopped {len(stopping)} running tasks: "
                f"{_task_list(stopping)}.",
            )
        if started:
            self._event(
                svc,
                f"(service {svc.name}) has started {len(started)} tasks: {_task_list(started)}.",
            )

    def code_deploy_service(self, cluster: str, service: str) -> SimService:
        """Return a CODE_DEPLOY service (for :mod:`sandbox.codedeploy_sim`; hold :attr:`lock`).

        Raises:
            ServiceNotFoundException: Unknown service, or not a CODE_DEPLOY one.
        """
        svc = self._service(cluster, service)
        if svc.controller != "CODE_DEPLOY":
            raise ServiceNotFoundException
        return svc

    def create_task_set(
        self, svc: SimService, task_definition: str, external_id: str
    ) -> SimDeployment:
        """Add an ACTIVE task set (the replacement, green) at the service's desired count.

        Call with :attr:`lock` held. It takes no production traffic until
        :meth:`set_task_set_weights` gives it some.
        """
        now = self.clock.wall()
        td = str(self.backend.describe_task_definition(task_definition).arn)
        revision = self._new_revision(svc, td)
        deployment_id = _deployment_id()
        deployment = SimDeployment(
            id=deployment_id,
            revision=revision,
            desired=svc.desired,
            created_at=now,
            updated_at=now,
            status="ACTIVE",
            rollout_state="IN_PROGRESS",
            rollout_reason=f"ECS deployment {deployment_id} in progress.",
            external_id=external_id,
        )
        svc.deployments.append(deployment)
        svc.steady = False
        self._sync(svc)
        return deployment

    def promote_task_set(self, svc: SimService, deployment: SimDeployment) -> None:
        """Make ``deployment`` the PRIMARY task set (``UpdateServicePrimaryTaskSet``)."""
        now = self.clock.wall()
        for d in svc.deployments:
            if d.status == "PRIMARY" and d is not deployment:
                d.status = "ACTIVE"
                d.updated_at = now
        deployment.status = "PRIMARY"
        deployment.rollout_state = "COMPLETED"
        deployment.rollout_reason = f"ECS deployment {deployment.id} completed."
        deployment.updated_at = now
        svc.deployments.remove(deployment)
        svc.deployments.insert(0, deployment)
        svc.moto.task_definition = deployment.revision.task_definition
        svc.last_completed = deployment
        self._sync(svc)

    def remove_task_set(self, svc: SimService, deployment: SimDeployment) -> None:
        """Scale a task set to zero and drop it once drained (``DeleteTaskSet``)."""
        deployment.desired = 0
        deployment.launching = False
        if deployment.rollout_state == "IN_PROGRESS":
            deployment.rollout_state = "FAILED"
            deployment.rollout_reason = f"ECS deployment {deployment.id} stopped."
        deployment.updated_at = self.clock.wall()
        self._sync(svc)

    # ------------------------------------------------------------------ traffic shifting

    def _step_shift(
        self,
        svc: SimService,
        green: SimDeployment,
        sd: SimServiceDeployment,
        shift: ShiftState,
        now: float,
    ) -> None:
        """One tick of a BLUE_GREEN / CANARY / LINEAR deployment (see :mod:`sandbox.ecs_shift`)."""
        blue = shift.blue
        stopping: list[SimTask] = []
        # Deployments other than blue and green (superseded ones) drain at once.
        for old in svc.deployments[1:]:
            if old is blue:
                continue
            for task in [t for t in old.tasks if t.state in ("PENDING", "RUNNING")]:
                if task.state == "RUNNING":
                    stopping.append(task)
                self._stopping(
                    svc, old, task, now, "Scheduler stopped the task: deployment replaced"
                )
        if shift.index < 0:
            self._enter_phase(svc, sd, shift, 0, now)
        # Walk through every phase that completes at once; bounded by the phase count.
        for _ in range(len(shift.phases) + 1):
            phase = shift.phase
            if phase is None or not self._phase_done(svc, green, sd, shift, now):
                break
            if sd.status != "IN_PROGRESS":  # a hook timed out into a rollback
                return
            self._enter_phase(svc, sd, shift, shift.index + 1, now)
        phase = shift.phase
        # Keep each side at its size: green from SCALE_UP on, blue until CLEAN_UP.
        started: list[SimTask] = []
        if phase is not None and shift.index >= 1:
            for _ in range(max(0, svc.desired - green.count("PENDING", "RUNNING"))):
                started.append(self._launch(svc, green, now))
        if phase is not None and phase.action != "clean_up" and blue.launching:
            for _ in range(max(0, svc.desired - blue.count("PENDING", "RUNNING"))):
                started.append(self._launch(svc, blue, now))
        if stopping:
            self._event(
                svc,
                f"(service {svc.name}) has stopped {len(stopping)} running tasks: "
                f"{_task_list(stopping)}.",
            )
        if started:
            self._event(
                svc,
                f"(service {svc.name}) has started {len(started)} tasks: {_task_list(started)}.",
            )

    def _enter_phase(
        self, svc: SimService, sd: SimServiceDeployment, shift: ShiftState, index: int, now: float
    ) -> None:
        shift.index = index
        shift.entered_at = now
        shift.hooks = []
        phase = shift.phase
        sd.updated_at = self.clock.wall()
        if phase is None:
            return
        shift.stage = phase.stage
        if phase.action == "test_shift":
            shift.test_weight = 100.0
        elif phase.action == "prod_shift":
            shift.production_weight = phase.value
        elif phase.action == "clean_up":
            stopping = []
            for task in [t for t in shift.blue.tasks if t.state in ("PENDING", "RUNNING")]:
                if task.state == "RUNNING":
                    stopping.append(task)
                self._stopping(
                    svc, shift.blue, task, now, "Scheduler stopped the task: deployment replaced"
                )
            shift.blue.launching = False
            if stopping:
                self._event(
                    svc,
                    f"(service {svc.name}) has stopped {len(stopping)} running tasks: "
                    f"{_task_list(stopping)}.",
                )
        if phase.hook_stage is None:
            return
        for hook in hooks_for(sd.configuration, phase.hook_stage):
            target = str(hook.get("targetType") or "AWS_LAMBDA")
            timeout = hook.get("timeoutConfiguration") or {}
            minutes = float(timeout.get("timeoutInMinutes") or DEFAULT_HOOK_TIMEOUT_MINUTES)
            seconds = minutes * svc.minute_seconds
            shift.hooks.append(
                SimHook(
                    hook_id=hook_id(target),
                    target_type=target,
                    target_arn=hook.get("hookTargetArn") if target != "PAUSE" else None,
                    status="AWAITING_ACTION" if target == "PAUSE" else "IN_PROGRESS",
                    expires_at=now + seconds,
                    expires_wall=self.clock.wall()
                    + timedelta(seconds=self.clock.real_seconds(seconds)),
                    timeout_action=str(timeout.get("action") or DEFAULT_HOOK_TIMEOUT_ACTION),
                    stage=phase.hook_stage,
                )
            )

    def _phase_done(
        self,
        svc: SimService,
        green: SimDeployment,
        sd: SimServiceDeployment,
        shift: ShiftState,
        now: float,
    ) -> bool:
        phase = shift.phase
        if phase is None:
            return False
        if phase.action == "scale_up":
            action_done = green.count("RUNNING") >= svc.desired
        elif phase.action == "wait":
            action_done = now - shift.entered_at >= phase.value
        elif phase.action == "clean_up":
            action_done = False  # _check_completion completes the deployment
        else:
            action_done = True
        hooks_done = True
        for hook in shift.hooks:
            if hook.status == "IN_PROGRESS" and hook.target_type != "PAUSE":
                hook.status = "SUCCEEDED"  # no Lambda in the sandbox: it "succeeds"
                hooks_done = False  # one tick IN_PROGRESS, visible to a poller
            elif hook.status == "AWAITING_ACTION" and now >= hook.expires_at:
                hook.status = "TIMED_OUT"
                if hook.timeout_action == "ROLLBACK":
                    self._begin_shift_rollback(svc, sd, f"Lifecycle hook {hook.hook_id} timed out.")
                    return True
            if hook.status == "AWAITING_ACTION":
                hooks_done = False
        return action_done and hooks_done

    def _begin_shift_rollback(self, svc: SimService, sd: SimServiceDeployment, reason: str) -> None:
        """Traffic back to blue at once, blue PRIMARY again, green drains."""
        shift = sd.shift
        if shift is None:  # pragma: no cover - callers check
            return
        now = self.clock.wall()
        green, blue = sd.target, shift.blue
        if green.rollout_state == "IN_PROGRESS":
            self._fail_deployment(svc, green, reason)
        green.launching = False
        if green.status == "PRIMARY":
            green.status = "ACTIVE"
        for hook in shift.hooks:
            if hook.status in ("AWAITING_ACTION", "IN_PROGRESS"):
                hook.status = "FAILED"
        shift.production_weight = 0.0
        shift.test_weight = 0.0
        blue.status = "PRIMARY"
        blue.launching = True
        blue.updated_at = now
        if blue in svc.deployments:
            svc.deployments.remove(blue)
        svc.deployments.insert(0, blue)
        svc.moto.task_definition = blue.revision.task_definition
        svc.steady = False
        sd.status = "ROLLBACK_IN_PROGRESS"
        sd.updated_at = now
        sd.rollback = {"reason": reason, "startedAt": now, "serviceRevisionArn": blue.revision.arn}
        self._event(svc, f"(service {svc.name}) rolling back to deployment {blue.id}.")

    def _check_shift_rollbacks(self, svc: SimService) -> None:
        """A traffic-shift rollback succeeds once green has no task left."""
        for sd in svc.service_deployments:
            if sd.shift is None or sd.status != "ROLLBACK_IN_PROGRESS":
                continue
            if sd.target.tasks or sd.target in svc.deployments[:1]:
                continue
            self._finish_sd(sd, "ROLLBACK_SUCCESSFUL", sd.status_reason)
            sd.shift.stage = "CLEAN_UP"
            sd.shift.hooks = []

    def continue_service_deployment(self, arn: str, hook: str, action: str) -> str:
        """Answer a lifecycle hook that waits (``AWAITING_ACTION``): CONTINUE or ROLLBACK.

        Args:
            arn: Service deployment ARN.
            hook: The ``hookId`` from ``lifecycleHookDetails``.
            action: ``CONTINUE`` (the hook SUCCEEDS, the deployment goes on at the next
                tick) or ``ROLLBACK`` (the hook FAILS; ROLLBACK_REQUESTED, then traffic
                back to blue: ROLLBACK_IN_PROGRESS, ROLLBACK_SUCCESSFUL).

        Returns:
            The ARN.

        Raises:
            ServiceDeploymentNotFound: Unknown ARN.
            InvalidParameterException: Bad action, unknown hook, or a hook that does not
                wait (already answered, timed out, or not a PAUSE hook).
        """
        with self.lock:
            entry = self._service_deployments.get(arn)
            if entry is None:
                raise ServiceDeploymentNotFound(f"Service deployment {arn} not found.")
            _, sd = entry
            if action not in HOOK_ACTIONS:
                raise InvalidParameterException(f"Invalid action: {action}.")
            shift = sd.shift
            found = next((h for h in shift.hooks if h.hook_id == hook), None) if shift else None
            if found is None:
                raise InvalidParameterException(
                    f"The lifecycle hook {hook} is not active on service deployment {arn}."
                )
            if found.status != "AWAITING_ACTION" or sd.status != "IN_PROGRESS":
                raise InvalidParameterException(
                    f"The lifecycle hook {hook} is in status {found.status} and is not "
                    "awaiting action."
                )
            sd.updated_at = self.clock.wall()
            if action == "CONTINUE":
                found.status = "SUCCEEDED"
            else:
                found.status = "FAILED"
                sd.request = "ROLLBACK"
                sd.status = "ROLLBACK_REQUESTED"
            return arn

    @staticmethod
    def _healthy(svc: SimService) -> int:
        return sum(1 for t in svc.all_tasks() if t.state == "RUNNING")

    def _retire_drained(self, svc: SimService, *, keep_failed: bool = True) -> None:
        """Drop drained non-primary deployments (INACTIVE).

        A FAILED deployment stays visible (ACTIVE, no tasks) while the deployment that
        replaced it is in progress, as ECS shows it during a rollback.
        """
        primary = svc.primary
        in_progress = primary is not None and primary.rollout_state == "IN_PROGRESS"
        for old in svc.deployments[1:]:
            if old.tasks or (keep_failed and in_progress and old.rollout_state == "FAILED"):
                continue
            old.status = "INACTIVE"
            old.updated_at = self.clock.wall()
        svc.deployments = [d for d in svc.deployments if d.status != "INACTIVE"]

    def _check_completion(self, svc: SimService, now: float) -> None:
        self._check_shift_rollbacks(svc)
        primary = svc.primary
        if primary is None or primary.rollout_state != "IN_PROGRESS":
            return
        sd = primary.service_deployment
        if sd is not None and sd.shift is not None and sd.status == "IN_PROGRESS":
            phase = sd.shift.phase
            if phase is None or phase.action != "clean_up":
                primary.steady_since = None
                return
        done = (
            not any(d.tasks for d in svc.deployments[1:])
            and primary.count("RUNNING") == svc.desired
            and len(primary.tasks) == svc.desired
        )
        if not done:
            primary.steady_since = None
            return
        if primary.steady_since is None:
            primary.steady_since = now
        if now - primary.steady_since >= svc.steady_seconds:
            self._complete(svc, primary)

    def _complete(self, svc: SimService, primary: SimDeployment) -> None:
        primary.rollout_state = "COMPLETED"
        primary.rollout_reason = f"ECS deployment {primary.id} completed."
        primary.updated_at = self.clock.wall()
        svc.last_completed = primary
        self._retire_drained(svc, keep_failed=False)
        self._event(svc, f"(service {svc.name}) (deployment {primary.id}) deployment completed.")
        sd = primary.service_deployment
        if sd is not None and sd.status not in TERMINAL_SD_STATUSES:
            self._finish_sd(
                sd, "ROLLBACK_SUCCESSFUL" if primary.is_rollback else "SUCCESSFUL", None
            )

    def _check_steady(self, svc: SimService) -> None:
        primary = svc.primary
        steady = (
            primary is not None
            and primary.rollout_state != "IN_PROGRESS"
            and len(svc.deployments) == 1
            and primary.count("RUNNING") == svc.desired
            and len(primary.tasks) == svc.desired
        )
        if steady and not svc.steady:
            self._event(svc, f"(service {svc.name}) has reached a steady state.")
        svc.steady = steady

    # ------------------------------------------------------------------ tasks

    def _launch(self, svc: SimService, deployment: SimDeployment, now: float) -> SimTask:
        backend = self.backend
        cluster = backend._get_cluster(svc.cluster)
        td = backend.describe_task_definition(deployment.revision.task_definition)
        network = svc.moto.network_configuration or None
        moto_task: Any = Task(
            cluster=cluster,
            task_definition=td,
            container_instance_arn=None,
            resource_requirements=None,
            backend=backend,
            group=f"service:{svc.name}",
            launch_type=str(svc.moto.launch_type or "EC2"),
            started_by=deployment.id,
            networking_configuration=network,
        )
        moto_task.id = uuid.uuid4().hex
        moto_task.last_status = "PENDING"
        moto_task.stopped_reason = None
        moto_task.created_at = self.clock.wall()
        backend.tasks.setdefault(cluster.name, {})[moto_task.task_arn] = moto_task
        behaviour = self._behaviour(svc, deployment.revision.task_definition)
        task = SimTask(
            moto=moto_task, behaviour=behaviour, state="PENDING", due=now + behaviour.start_seconds
        )
        deployment.tasks.append(task)
        deployment.updated_at = self.clock.wall()
        return task

    def _stopping(
        self, svc: SimService, deployment: SimDeployment, task: SimTask, now: float, reason: str
    ) -> None:
        if task.state == "PENDING":
            self._stopped(svc, deployment, task, reason)
            return
        task.state = "STOPPING"
        task.due = now + svc.stop_seconds
        task.moto.last_status = "DEACTIVATING"
        task.moto.desired_status = "STOPPED"
        task.moto.stopped_reason = reason
        task.moto.stop_code = "ServiceSchedulerInitiated"
        task.moto.stopping_at = self.clock.wall()

    def _stopped(
        self, svc: SimService, deployment: SimDeployment, task: SimTask, reason: str
    ) -> None:
        task.state = "STOPPED"
        task.moto.last_status = "STOPPED"
        task.moto.desired_status = "STOPPED"
        task.moto.stopped_reason = reason
        task.moto.stopped_at = self.clock.wall()
        if task in deployment.tasks:
            deployment.tasks.remove(task)
        deployment.updated_at = self.clock.wall()
        svc.stopped_task_arns.append(str(task.moto.task_arn))
        cluster_tasks = self.backend.tasks.get(svc.cluster, {})
        while len(svc.stopped_task_arns) > STOPPED_TASKS_KEPT:
            cluster_tasks.pop(svc.stopped_task_arns.popleft(), None)

    def _event(self, svc: SimService, message: str) -> None:
        svc.events.insert(
            0, {"id": str(uuid.uuid4()), "createdAt": self.clock.wall(), "message": message}
        )
        del svc.events[EVENT_LIMIT:]

    # ------------------------------------------------------------------ moto sync

    def _sync(self, svc: SimService) -> None:
        moto = svc.moto
        moto.deployments = [self._deployment_dict(svc, d) for d in svc.deployments]
        moto.running_count = sum(d.count("RUNNING") for d in svc.deployments)
        moto.pending_count = sum(d.count("PENDING") for d in svc.deployments)
        moto.desired_count = svc.desired
        moto.events = list(svc.events)
        moto.deployment_configuration = dict(svc.configuration)
        if svc.primary is not None:
            moto.task_definition = svc.primary.revision.task_definition
        if svc.controller == "CODE_DEPLOY":
            moto.task_sets = [self._sync_task_set(svc, d) for d in svc.deployments]

    def _sync_task_set(self, svc: SimService, d: SimDeployment) -> Any:
        if d.task_set is None:
            task_set: Any = TaskSet(
                service=svc.arn,
                cluster=svc.cluster_arn,
                task_definition=d.revision.task_definition,
                account_id=self.account_id,
                region_name=self.region,
                external_id=d.external_id,
                launch_type=svc.moto.launch_type,
            )
            task_set.service_arn = svc.arn
            task_set.cluster_arn = svc.cluster_arn
            task_set.id = d.id
            task_set.task_set_arn = (
                f"arn:aws:ecs:{self.region}:{self.account_id}:task-set/"
                f"{svc.cluster}/{svc.name}/{d.id}"
            )
            task_set.createdAt = d.created_at
            task_set.started_by = "CodeDeploy" if d.external_id else None
            d.task_set = task_set
        task_set = d.task_set
        task_set.status = d.status
        task_set.computed_desired_count = d.desired
        task_set.running_count = d.count("RUNNING")
        task_set.pending_count = d.count("PENDING")
        percent = 100.0 * d.desired / svc.desired if svc.desired else 0.0
        task_set.scale = {"value": round(percent, 1), "unit": "PERCENT"}
        stable = d.count("RUNNING") == d.desired and len(d.tasks) == d.desired
        status = "STEADY_STATE" if stable else "STABILIZING"
        if task_set.stabilityStatus != status:
            task_set.stabilityStatus = status
            task_set.stabilityStatusAt = self.clock.wall()
        task_set.updatedAt = d.updated_at
        return task_set

    def _sync_clusters(self) -> None:
        totals: dict[str, list[int]] = {}
        for svc in self._services.values():
            counts = totals.setdefault(svc.cluster, [0, 0])
            counts[0] += int(svc.moto.running_count)
            counts[1] += int(svc.moto.pending_count)
        for name, (running, pending) in totals.items():
            cluster = self.backend.clusters.get(name)
            if cluster is not None:
                cluster.running_tasks_count = running
                cluster.pending_tasks_count = pending

    def _deployment_dict(self, svc: SimService, d: SimDeployment) -> dict[str, Any]:
        desired = d.desired if d.status == "PRIMARY" else d.count("PENDING", "RUNNING")
        return {
            "id": d.id,
            "status": d.status,
            "taskDefinition": d.revision.task_definition,
            "desiredCount": desired,
            "pendingCount": d.count("PENDING"),
            "runningCount": d.count("RUNNING"),
            "failedTasks": d.failed_tasks,
            "createdAt": d.created_at,
            "updatedAt": d.updated_at,
            "launchType": svc.moto.launch_type,
            "networkConfiguration": svc.moto.network_configuration or None,
            "rolloutState": d.rollout_state,
            "rolloutStateReason": d.rollout_reason,
        }

    # ------------------------------------------------------------------ service-deployments API

    def _service(self, cluster: str, service: str) -> SimService:
        name = service.split("/")[-1]
        cluster_name = cluster.split("/")[-1]
        svc = self._services.get((cluster_name, name))
        if svc is None:
            raise ServiceNotFoundException
        return svc

    def _revision_summary(
        self, svc: SimService, revision: SimRevision, requested: int
    ) -> dict[str, Any]:
        tasks = [t for d in svc.deployments if d.revision is revision for t in d.tasks]
        return {
            "arn": revision.arn,
            "requestedTaskCount": requested,
            "runningTaskCount": sum(1 for t in tasks if t.state == "RUNNING"),
            "pendingTaskCount": sum(1 for t in tasks if t.state == "PENDING"),
        }

    def _sd_dict(self, svc: SimService, sd: SimServiceDeployment) -> dict[str, Any]:
        rolling_back = sd.status.startswith("ROLLBACK")
        target_requested = 0 if rolling_back or sd.status == "STOPPED" else svc.desired
        sources = []
        for revision in sd.sources:
            requested = (
                svc.desired
                if rolling_back
                and sd.rollback
                and (sd.rollback["serviceRevisionArn"] == revision.arn)
                else 0
            )
            sources.append(self._revision_summary(svc, revision, requested))
        target = self._revision_summary(svc, sd.target.revision, target_requested)
        shift = sd.shift
        if shift is not None:
            blue_requested = 0 if shift.stage == "CLEAN_UP" and not rolling_back else svc.desired
            if rolling_back:
                target["requestedTaskCount"] = 0
            for source in sources:
                if source["arn"] == shift.blue.revision.arn:
                    source["requestedTaskCount"] = blue_requested
                    source["requestedProductionTrafficWeight"] = 100.0 - shift.production_weight
                    source["requestedTestTrafficWeight"] = 100.0 - shift.test_weight
            target["requestedProductionTrafficWeight"] = shift.production_weight
            target["requestedTestTrafficWeight"] = shift.test_weight
        result: dict[str, Any] = {
            "serviceDeploymentArn": sd.arn,
            "serviceArn": svc.arn,
            "clusterArn": svc.cluster_arn,
            "createdAt": sd.created_at,
            "startedAt": sd.started_at,
            "finishedAt": sd.finished_at,
            "stoppedAt": sd.stopped_at,
            "updatedAt": sd.updated_at,
            "sourceServiceRevisions": sources,
            "targetServiceRevision": target,
            "status": sd.status,
            "statusReason": sd.status_reason,
            "lifecycleStage": shift.stage if shift is not None else None,
            "lifecycleHookDetails": [h.detail() for h in shift.hooks] if shift else None,
            "deploymentConfiguration": sd.configuration,
            "rollback": sd.rollback,
            "deploymentCircuitBreaker": {
                "status": sd.breaker_status,
                "failureCount": sd.target.failed_tasks,
                "threshold": sd.threshold,
            },
        }
        return {k: v for k, v in result.items() if v is not None}

    def list_service_deployments(
        self,
        cluster: str,
        service: str,
        statuses: list[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Return ``ServiceDeploymentBrief`` dicts of one service, newest first.

        Args:
            cluster: Cluster name or ARN.
            service: Service name or ARN.
            statuses: Only these statuses, if given.
            created_after: Only deployments created at or after this time.
            created_before: Only deployments created at or before this time.

        Raises:
            ServiceNotFoundException: Unknown service.
        """
        with self.lock:
            svc = self._service(cluster, service)
            briefs = []
            for sd in reversed(svc.service_deployments):
                if statuses and sd.status not in statuses:
                    continue
                if created_after is not None and sd.created_at < created_after:
                    continue
                if created_before is not None and sd.created_at > created_before:
                    continue
                brief = {
                    "serviceDeploymentArn": sd.arn,
                    "serviceArn": svc.arn,
                    "clusterArn": svc.cluster_arn,
                    "startedAt": sd.started_at,
                    "createdAt": sd.created_at,
                    "finishedAt": sd.finished_at,
                    "targetServiceRevisionArn": sd.target.revision.arn,
                    "status": sd.status,
                    "statusReason": sd.status_reason,
                }
                briefs.append({k: v for k, v in brief.items() if v is not None})
            return briefs

    def describe_service_deployments(
        self, arns: list[str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """Return ``(serviceDeployments, failures)`` for up to 20 service deployment ARNs."""
        with self.lock:
            found, failures = [], []
            for arn in arns:
                entry = self._service_deployments.get(arn)
                if entry is None:
                    failures.append({"arn": arn, "reason": "MISSING"})
                else:
                    found.append(self._sd_dict(*entry))
            return found, failures

    def stop_service_deployment(self, arn: str, stop_type: str = "ROLLBACK") -> str:
        """Request a stop of an ongoing service deployment; the next tick acts on it.

        Args:
            arn: Service deployment ARN.
            stop_type: ``ROLLBACK`` (back to the source revision) or ``ABORT``.

        Returns:
            The ARN.

        Raises:
            ServiceDeploymentNotFound: Unknown ARN.
            InvalidParameterException: The deployment is not in progress, or there is
                nothing to roll back to.
        """
        with self.lock:
            entry = self._service_deployments.get(arn)
            if entry is None:
                raise ServiceDeploymentNotFound(f"Service deployment {arn} not found.")
            _, sd = entry
            if stop_type not in ("ROLLBACK", "ABORT"):
                raise InvalidParameterException(f"Invalid stopType: {stop_type}.")
            if sd.status not in ("PENDING", "IN_PROGRESS") or sd.request is not None:
                raise InvalidParameterException(
                    f"The service deployment {arn} is in status {sd.status} and can't be stopped."
                )
            if stop_type == "ABORT" and sd.shift is not None:
                raise InvalidParameterException(
                    f"The service deployment {arn} uses the {sd.shift.strategy} strategy; "
                    "only stopType ROLLBACK is supported."
                )
            if stop_type == "ROLLBACK" and not sd.sources:
                raise InvalidParameterException(
                    f"The service deployment {arn} has no source service revision to roll back to."
                )
            sd.request = stop_type
            sd.status = "ROLLBACK_REQUESTED" if stop_type == "ROLLBACK" else "STOP_REQUESTED"
            sd.updated_at = self.clock.wall()
            return arn

    def describe_service_revisions(
        self, arns: list[str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """Return ``(serviceRevisions, failures)`` for service revision ARNs."""
        with self.lock:
            found, failures = [], []
            for arn in arns:
                entry = self._revisions.get(arn)
                if entry is None:
                    failures.append({"arn": arn, "reason": "MISSING"})
                    continue
                svc, revision = entry
                found.append(
                    {
                        "serviceRevisionArn": revision.arn,
                        "serviceArn": svc.arn,
                        "clusterArn": svc.cluster_arn,
                        "taskDefinition": revision.task_definition,
                        "launchType": svc.moto.launch_type,
                        "containerImages": revision.images,
                        "createdAt": revision.created_at,
                    }
                )
            return found, failures

    # ------------------------------------------------------------------ for the runtime

    def settle(self, cluster: str, service: str) -> None:
        """Bring a freshly created service to steady state at once (sandbox set-up).

        Its pending tasks start now and its first deployment completes, with the events
        ECS would have written.
        """
        with self.lock:
            svc = self._service(cluster, service)
            now = self.clock.now()
            primary = svc.primary
            if primary is None:
                return
            self._handle_requests(svc)
            self._step_deployment(svc, primary, now)
            for task in primary.tasks:
                if task.state == "PENDING":
                    task.due = now
            self._advance_tasks(svc, now)
            if primary.count("RUNNING") == svc.desired and len(svc.deployments) == 1:
                self._complete(svc, primary)
            self._check_steady(svc)
            self._sync(svc)
            self._sync_clusters()

    def task_mix(self, cluster: str, service: str) -> dict[str, int]:
        """Return the RUNNING task count per version label of one service.

        This is what a traffic-splitting proxy needs: e.g. ``{"v1": 2, "v2": 4}``.
        Versions with no running task are left out.

        Raises:
            ServiceNotFoundException: Unknown service.
        """
        with self.lock:
            svc = self._service(cluster, service)
            mix: dict[str, int] = {}
            for task in svc.all_tasks():
                if task.state == "RUNNING":
                    mix[task.behaviour.version] = mix.get(task.behaviour.version, 0) + 1
            return mix

    def traffic_weights(self, cluster: str, service: str) -> dict[str, float]:
        """Return the production traffic split of one service: version -> weight.

        A rolling service splits by its live task mix (:meth:`task_mix`). While a
        traffic-shifting deployment runs (or rolls back), production traffic follows its
        weights: blue ``100 - w``, green ``w`` percent, each only while that side has a
        RUNNING task (an empty side gets nothing, as a target group without healthy
        targets); with neither side running, the task mix again.

        Raises:
            ServiceNotFoundException: Unknown service.
        """
        with self.lock:
            svc = self._service(cluster, service)
            mix = {v: float(n) for v, n in self.task_mix(cluster, service).items()}
            if svc.controller == "CODE_DEPLOY":
                by_task_set: dict[str, float] = {}
                for d in svc.deployments:
                    if d.weight > 0 and d.count("RUNNING") > 0:
                        version = d.revision.version
                        by_task_set[version] = by_task_set.get(version, 0.0) + d.weight
                return by_task_set or mix
            sd = next(
                (
                    sd
                    for sd in reversed(svc.service_deployments)
                    if sd.shift is not None and sd.status not in TERMINAL_SD_STATUSES
                ),
                None,
            )
            if sd is None or sd.shift is None:
                return mix
            weights: dict[str, float] = {}
            for side, weight in (
                (sd.shift.blue, 100.0 - sd.shift.production_weight),
                (sd.target, sd.shift.production_weight),
            ):
                if weight > 0 and side.count("RUNNING") > 0:
                    version = side.revision.version
                    weights[version] = weights.get(version, 0.0) + weight
            return weights or mix

    def services(self) -> list[tuple[str, str]]:
        """Return ``(cluster, service)`` of every simulated service."""
        with self.lock:
            return list(self._services)
