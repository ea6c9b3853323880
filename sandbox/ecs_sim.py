"""The ECS scheduler of the sandbox: makes deployments progress the way ECS does.

moto stores ECS services but never runs anything. This scheduler owns, per service, the
deployments (PRIMARY / ACTIVE), their tasks, service events, service deployments and
service revisions, and moves them forward on a clock of its own. After every change it
writes the result back onto moto's ``Service`` object (``deployments``, ``running_count``,
``pending_count``, ``events``, ``task_definition``, ``deployment_configuration``) and
registers real moto ``Task`` objects, so ``describe_services``, ``list_tasks`` and
``describe_tasks`` answer from the simulation.

Only the rolling update (deployment controller ``ECS``, strategy ``ROLLING``) is
modelled. Strategies plug in at :meth:`Scheduler._step_deployment`: a blue/green, canary
or linear strategy is another way of choosing which tasks to launch and stop per tick.

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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from moto.core.exceptions import ServiceException
from moto.ecs.exceptions import InvalidParameterException, ServiceNotFoundException
from moto.ecs.models import Task, ecs_backends

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


class UnsupportedFeature(ServiceException):
    """ECS's ``UnsupportedFeatureException``."""

    code = "UnsupportedFeatureException"


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
        if (service.deployment_controller or {}).get("type", "ECS") != "ECS":
            return  # CODE_DEPLOY / EXTERNAL: not modelled yet, plain moto behaviour
        with self.lock:
            key = (str(service.cluster_name), str(service.name))
            svc = SimService(
                moto=service,
                cluster=key[0],
                name=key[1],
                desired=int(service.desired_count),
                configuration=merge_configuration(default_configuration(), configuration),
                spec=self._profiles.get(key),
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
            UnsupportedFeature: A deployment strategy other than ROLLING (not modelled yet).
            InvalidParameterException: An ``awsvpc`` task definition for a service without
                a network configuration (ECS refuses it too).
        """
        with self.lock:
            strategy = (params.get("deploymentConfiguration") or {}).get("strategy")
            if strategy not in (None, "ROLLING"):
                raise UnsupportedFeature(
                    f"The deploywatch sandbox models only ROLLING deployments, not {strategy}."
                )
            if not params.get("taskDefinition"):
                return
            network = params.get("networkConfiguration")
            if not creating:
                cluster = str(params.get("cluster") or "default").split("/")[-1]
                svc = self._services.get((cluster, str(params.get("service")).split("/")[-1]))
                if svc is None:
                    return
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
        deployment.service_deployment = sd
        svc.service_deployments.append(sd)
        self._service_deployments[sd.arn] = (svc, sd)
        return deployment

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

    def tick(self, now: float | None = None) -> None:
        """Advance every service to sandbox time ``now`` (default: the clock's now)."""
        with self.lock:
            at = self.clock.now() if now is None else now
            for svc in list(self._services.values()):
                if svc.moto.status != "ACTIVE":
                    continue
                self._tick_service(svc, at)
                self._sync(svc)
            self._sync_clusters()

    def _tick_service(self, svc: SimService, now: float) -> None:
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
        primary = svc.primary
        if primary is None or primary.rollout_state != "IN_PROGRESS":
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
            "targetServiceRevision": self._revision_summary(
                svc, sd.target.revision, target_requested
            ),
            "status": sd.status,
            "statusReason": sd.status_reason,
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

    def services(self) -> list[tuple[str, str]]:
        """Return ``(cluster, service)`` of every simulated service."""
        with self.lock:
            return list(self._services)
