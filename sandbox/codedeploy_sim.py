"""CodeDeploy blue/green for ECS services (deployment controller ``CODE_DEPLOY``).

moto 5.2.5 stores CodeDeploy applications, deployment groups and deployments but never
runs them. :class:`CodeDeploySim` makes an ECS deployment progress the way CodeDeploy
does, on the ECS scheduler's clock and lock, through the scheduler's task sets:

1. ``Created`` → ``InProgress``: the replacement (green) task set starts at the
   service's desired count (lifecycle events ``BeforeInstall``, ``Install``...).
2. With ``deploymentReadyOption.actionOnTimeout = STOP_DEPLOYMENT``: status ``Ready``
   (target ``Ready``) until ``ContinueDeployment(deploymentWaitType=READY_WAIT)``; when
   ``waitTimeInMinutes`` passes first, the deployment is ``Stopped`` (error ``TIMEOUT``).
3. ``InProgress``: production traffic moves to green following the deployment config:
   ``CodeDeployDefault.ECSAllAtOnce``, ``ECSCanary<P>Percent<M>Minutes``,
   ``ECSLinear<P>PercentEvery<M>Minute(s)``. Task-set ``trafficWeight`` is what the
   sandbox's front proxy follows. Then green becomes the PRIMARY task set.
4. ``terminateBlueInstancesOnDeploymentSuccess.terminationWaitTimeInMinutes``: status
   stays ``InProgress`` with ``instanceTerminationWaitTimeStarted = true`` until the wait
   ends or ``ContinueDeployment(deploymentWaitType=TERMINATION_WAIT)``.
5. The original (blue) task set is removed; ``Succeeded`` once it is drained.

``StopDeployment(autoRollbackEnabled=True)``: the deployment is ``Stopped`` (error
``MANUAL_STOP``) and a rollback deployment (creator ``codeDeployRollback``) puts 100 %
of traffic back on blue, makes blue PRIMARY again and removes green (``InProgress`` →
``Succeeded``); ``rollbackInfo`` links the two. Without rollback, the deployment stops
where it is (traffic and task sets unchanged).

Minutes are the scenario service's ``minute_seconds`` sandbox seconds (60 by default).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from moto.codedeploy.exceptions import CodeDeployException
from moto.codedeploy.models import DeploymentInfo, codedeploy_backends

if TYPE_CHECKING:
    from datetime import datetime

    from moto.codedeploy.models import CodeDeployBackend

    from sandbox.ecs_sim import Scheduler, SimDeployment, SimService

ECS_EVENTS = (
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "AllowTestTraffic",
    "AfterAllowTestTraffic",
    "BeforeAllowTraffic",
    "AllowTraffic",
    "AfterAllowTraffic",
)
TERMINAL = frozenset({"Succeeded", "Failed", "Stopped"})
DEFAULT_CONFIG = "CodeDeployDefault.ECSAllAtOnce"
_CANARY = re.compile(r"^CodeDeployDefault\.ECSCanary(\d+)Percent(\d+)Minutes?$")
_LINEAR = re.compile(r"^CodeDeployDefault\.ECSLinear(\d+)PercentEvery(\d+)Minutes?$")
_TASK_DEFINITION = re.compile(r"TaskDefinition\"?\s*:\s*\"?([^\"\s,}]+)")
MAX_DEPLOYMENTS = 500
"""Finished deployments kept by the simulation (the oldest are forgotten first)."""


class CodeDeployError(CodeDeployException):
    """A CodeDeploy error with its real code (``DeploymentIsNotInReadyStateException``...)."""

    code = 400

    def __init__(self, error: str, message: str) -> None:
        super().__init__(error, message)


def traffic_steps(config_name: str, minute_seconds: float) -> list[tuple[float, float]]:
    """``(green percent, seconds to hold it)`` per traffic step of a deployment config.

    Raises:
        CodeDeployError: Not an ECS deployment config the sandbox knows.
    """
    if config_name == DEFAULT_CONFIG:
        return [(100.0, 0.0)]
    canary = _CANARY.match(config_name)
    if canary:
        percent, minutes = float(canary.group(1)), float(canary.group(2))
        return [(percent, minutes * minute_seconds), (100.0, 0.0)]
    linear = _LINEAR.match(config_name)
    if linear:
        step, minutes = float(linear.group(1)), float(linear.group(2))
        steps: list[tuple[float, float]] = []
        percent = step
        while percent < 100 and len(steps) < 100:
            steps.append((percent, minutes * minute_seconds))
            percent += step
        return [*steps, (100.0, 0.0)]
    raise CodeDeployError(
        "DeploymentConfigDoesNotExistException",
        f"The deployment config {config_name} is not an ECS config the sandbox knows "
        "(ECSAllAtOnce, ECSCanary<P>Percent<M>Minutes, ECSLinear<P>PercentEvery<M>Minutes).",
    )


def task_definition_of(revision: dict[str, Any]) -> str:
    """The ``TaskDefinition`` an ECS AppSpec (JSON or YAML ``appSpecContent``) names.

    Raises:
        CodeDeployError: No AppSpec content, or no task definition in it.
    """
    content = str(
        (revision.get("appSpecContent") or revision.get("string") or {}).get("content") or ""
    )
    try:
        spec = json.loads(content)
        for resource in spec.get("Resources", []):
            for value in resource.values():
                task_definition = (value.get("Properties") or {}).get("TaskDefinition")
                if task_definition:
                    return str(task_definition)
    except (ValueError, AttributeError, TypeError):
        pass
    match = _TASK_DEFINITION.search(content)
    if match:
        return match.group(1).strip("'\"")
    raise CodeDeployError(
        "InvalidRevisionException",
        "The AppSpec content names no TargetService TaskDefinition.",
    )


@dataclass(eq=False)
class LifecycleEvent:
    name: str
    status: str = "Pending"
    start: datetime | None = None
    end: datetime | None = None

    def to_api(self) -> dict[str, Any]:
        result: dict[str, Any] = {"lifecycleEventName": self.name, "status": self.status}
        if self.start is not None:
            result["startTime"] = self.start
        if self.end is not None:
            result["endTime"] = self.end
        return result


@dataclass(eq=False)
class SimCodeDeployment:
    """One CodeDeploy deployment of an ECS service, as simulated."""

    moto: Any
    """moto's ``DeploymentInfo``; its ``status``, times... are kept in step."""
    svc: SimService
    task_definition: str
    steps: list[tuple[float, float]]
    ready_stop: bool
    ready_wait_seconds: float
    termination_wait_seconds: float
    target_groups: tuple[str, str]
    """(blue's target group, green's target group)."""
    phase: str = "created"
    phase_since: float = 0.0
    step: int = -1
    blue: SimDeployment | None = None
    green: SimDeployment | None = None
    events: list[LifecycleEvent] = field(
        default_factory=lambda: [LifecycleEvent(n) for n in ECS_EVENTS]
    )
    target_status: str = "Pending"
    error: dict[str, str] | None = None
    rollback_info: dict[str, str] | None = None
    rollback_of: SimCodeDeployment | None = None
    updated_at: datetime | None = None

    @property
    def id(self) -> str:
        return str(self.moto.deployment_id)

    @property
    def target_id(self) -> str:
        return f"{self.svc.cluster}:{self.svc.name}"


class CodeDeploySim:
    """Drives CodeDeploy ECS deployments of one account and region on the ECS scheduler.

    Every method expects the scheduler's lock to be held (the API patches in
    :mod:`sandbox.aws` take it; :meth:`tick` runs inside the scheduler's tick).

    Args:
        scheduler: The ECS scheduler owning the services and task sets.
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.deployments: dict[str, SimCodeDeployment] = {}
        self._production_tg: dict[tuple[str, str], int] = {}
        """(application, group) -> index of the target group production uses."""

    @property
    def backend(self) -> CodeDeployBackend:
        return codedeploy_backends[self.scheduler.account_id][self.scheduler.region]

    # ------------------------------------------------------------------ API

    def check_create(self, application: str, group: str) -> None:
        """Refuse a second active deployment for one deployment group, as CodeDeploy does.

        Raises:
            CodeDeployError: ``DeploymentLimitExceededException``.
        """
        for deployment in self.deployments.values():
            moto = deployment.moto
            if (
                moto.application_name == application
                and moto.deployment_group_name == group
                and deployment.moto.status not in TERMINAL
            ):
                raise CodeDeployError(
                    "DeploymentLimitExceededException",
                    f"The deployment group {group} already has an active deployment "
                    f"{deployment.id}.",
                )

    def on_create(self, deployment_id: str) -> None:
        """Adopt a deployment moto just created (``Created``; it starts at the next tick).

        Raises:
            CodeDeployError: The group names no simulated CODE_DEPLOY ECS service, the
                config is unknown, or the AppSpec names no task definition.
        """
        moto: Any = self.backend.get_deployment(deployment_id)
        group = moto.deployment_group
        services = group.ecs_services or []
        if not services:
            self._refuse(moto, "The deployment group has no ecsServices.")
        service = services[0]
        try:
            svc = self.scheduler.code_deploy_service(
                str(service.get("clusterName")), str(service.get("serviceName"))
            )
        except Exception:
            self._refuse(
                moto,
                f"ECS service {service.get('clusterName')}/{service.get('serviceName')} is "
                "not a CODE_DEPLOY service of the sandbox.",
            )
        config = str(moto.deployment_config_name or "")
        if not config.startswith("CodeDeployDefault.ECS"):
            config = DEFAULT_CONFIG
        moto.deployment_config_name = config
        blue_green = group.blue_green_deployment_configuration or {}
        ready = blue_green.get("deploymentReadyOption") or {}
        terminate = blue_green.get("terminateBlueInstancesOnDeploymentSuccess") or {}
        pairs = (group.load_balancer_info or {}).get("targetGroupPairInfoList") or [{}]
        names = [str(tg.get("name")) for tg in pairs[0].get("targetGroups") or []]
        names = [*names, "sandbox-tg-1", "sandbox-tg-2"][:2]
        key = (str(moto.application_name), str(moto.deployment_group_name))
        production = self._production_tg.setdefault(key, 0)
        try:
            steps = traffic_steps(config, svc.minute_seconds)
            task_definition = task_definition_of(moto.revision or {})
        except CodeDeployError:
            self.backend.deployments.pop(deployment_id, None)
            raise
        deployment = SimCodeDeployment(
            moto=moto,
            svc=svc,
            task_definition=task_definition,
            steps=steps,
            ready_stop=ready.get("actionOnTimeout") == "STOP_DEPLOYMENT",
            ready_wait_seconds=float(ready.get("waitTimeInMinutes") or 0) * svc.minute_seconds,
            termination_wait_seconds=float(terminate.get("terminationWaitTimeInMinutes") or 0)
            * svc.minute_seconds,
            target_groups=(names[production], names[1 - production]),
            updated_at=self.scheduler.clock.wall(),
        )
        self.deployments[deployment_id] = deployment
        self._forget_old()

    def _refuse(self, moto: Any, message: str) -> None:
        self.backend.deployments.pop(moto.deployment_id, None)
        raise CodeDeployError("InvalidECSServiceException", message)

    def _forget_old(self) -> None:
        finished = [d for d in self.deployments.values() if d.moto.status in TERMINAL]
        for deployment in finished[: max(0, len(self.deployments) - MAX_DEPLOYMENTS)]:
            del self.deployments[deployment.id]

    def _get(self, deployment_id: str) -> SimCodeDeployment:
        deployment = self.deployments.get(deployment_id)
        if deployment is None:
            raise CodeDeployError(
                "DeploymentDoesNotExistException",
                f"The deployment {deployment_id} could not be found.",
            )
        return deployment

    def continue_deployment(self, deployment_id: str, wait_type: str) -> None:
        """``ContinueDeployment``: end the READY_WAIT or the TERMINATION_WAIT.

        Raises:
            CodeDeployError: Unknown deployment, not waiting, or waiting for the other kind.
        """
        deployment = self._get(deployment_id)
        waiting = {"ready_wait": "READY_WAIT", "termination_wait": "TERMINATION_WAIT"}.get(
            deployment.phase
        )
        if waiting is None or deployment.moto.status in TERMINAL:
            raise CodeDeployError(
                "DeploymentIsNotInReadyStateException",
                f"The deployment {deployment_id} is not waiting (status {deployment.moto.status}).",
            )
        if wait_type != waiting:
            raise CodeDeployError(
                "InvalidDeploymentWaitTypeException",
                f"The deployment {deployment_id} is in {waiting}, not {wait_type}.",
            )
        now = self.scheduler.clock.now()
        if waiting == "READY_WAIT":
            self._start_traffic(deployment, now)
        else:
            self._terminate_blue(deployment, now)

    def stop_deployment(self, deployment_id: str, auto_rollback: bool) -> tuple[str, str]:
        """``StopDeployment``; returns ``(status, statusMessage)``.

        Raises:
            CodeDeployError: Unknown or already finished deployment.
        """
        deployment = self._get(deployment_id)
        if deployment.moto.status in TERMINAL:
            raise CodeDeployError(
                "DeploymentAlreadyCompletedException",
                f"The deployment {deployment_id} has already completed.",
            )
        self._stop(deployment, "MANUAL_STOP", "The deployment was stopped by the user.")
        if not auto_rollback or deployment.green is None or deployment.blue is None:
            return "Succeeded", "The deployment was stopped."
        self._rollback(deployment)
        return "Pending", "The deployment is stopping; a rollback deployment was started."

    def target_ids(self, deployment_id: str) -> list[str]:
        """``ListDeploymentTargets``: the one ECS target, ``<cluster>:<service>``."""
        return [self._get(deployment_id).target_id]

    def target(self, deployment_id: str, target_id: str) -> dict[str, Any]:
        """``GetDeploymentTarget``'s ``deploymentTarget``.

        Raises:
            CodeDeployError: Unknown deployment or target.
        """
        deployment = self._get(deployment_id)
        if target_id != deployment.target_id:
            raise CodeDeployError(
                "DeploymentTargetDoesNotExistException",
                f"The target {target_id} is not part of deployment {deployment_id}.",
            )
        task_sets = []
        for label, task_set, group in (
            ("Blue", deployment.blue, deployment.target_groups[0]),
            ("Green", deployment.green, deployment.target_groups[1]),
        ):
            if task_set is None:
                continue
            task_sets.append(
                {
                    "identifer": task_set.id,  # sic: the API's spelling
                    "desiredCount": task_set.desired,
                    "pendingCount": task_set.count("PENDING"),
                    "runningCount": task_set.count("RUNNING"),
                    "status": task_set.status,
                    "trafficWeight": task_set.weight,
                    "targetGroup": {"name": group},
                    "taskSetLabel": label,
                }
            )
        return {
            "deploymentTargetType": "ECSTarget",
            "ecsTarget": {
                "deploymentId": deployment.id,
                "targetId": deployment.target_id,
                "targetArn": deployment.svc.arn,
                "lastUpdatedAt": deployment.updated_at,
                "lifecycleEvents": [e.to_api() for e in deployment.events],
                "status": deployment.target_status,
                "taskSetsInfo": task_sets,
            },
        }

    def overlay(self, info: dict[str, Any]) -> dict[str, Any]:
        """Complete moto's ``DeploymentInfo`` dict with what the simulation knows."""
        deployment = self.deployments.get(str(info.get("deploymentId")))
        if deployment is None:
            return info
        moto = deployment.moto
        overlaid = dict(info)
        overlaid["status"] = moto.status
        overlaid["startTime"] = moto.start_time
        overlaid["completeTime"] = moto.complete_time
        overlaid["instanceTerminationWaitTimeStarted"] = deployment.phase == "termination_wait"
        overlaid["deploymentOverview"] = dict(moto.deployment_overview)
        overlaid["creator"] = moto.creator
        overlaid["deploymentConfigName"] = moto.deployment_config_name
        overlaid["errorInformation"] = deployment.error
        overlaid["rollbackInfo"] = deployment.rollback_info
        overlaid["previousRevision"] = None
        overlaid["deploymentStatusMessages"] = list(moto.deployment_status_messages)
        return {k: v for k, v in overlaid.items() if v is not None and v != {}}

    # ------------------------------------------------------------------ progress

    def tick(self, now: float) -> None:
        """Move every running deployment on (called from the scheduler's tick)."""
        for deployment in list(self.deployments.values()):
            if deployment.moto.status in TERMINAL:
                continue
            self._step(deployment, now)

    def _set_event(self, deployment: SimCodeDeployment, name: str, status: str) -> None:
        wall = self.scheduler.clock.wall()
        for event in deployment.events:
            if event.name != name:
                continue
            if event.start is None and status != "Pending":
                event.start = wall
            if status in ("Succeeded", "Failed", "Skipped"):
                event.end = wall
            event.status = status
        deployment.updated_at = wall

    def _phase(self, deployment: SimCodeDeployment, phase: str, now: float) -> None:
        deployment.phase = phase
        deployment.phase_since = now
        deployment.updated_at = self.scheduler.clock.wall()

    def _overview(self, deployment: SimCodeDeployment, state: str) -> None:
        overview = {k: 0 for k in deployment.moto.deployment_overview}
        overview[state] = 1
        deployment.moto.deployment_overview = overview

    def _step(self, deployment: SimCodeDeployment, now: float) -> None:
        moto = deployment.moto
        wall = self.scheduler.clock.wall()
        svc = deployment.svc
        if deployment.phase == "created":
            moto.status = "InProgress"
            moto.start_time = wall
            deployment.target_status = "InProgress"
            self._overview(deployment, "InProgress")
            if deployment.rollback_of is not None:  # a rollback deployment: see _rollback
                self._phase(deployment, "rollback", now)
                return
            deployment.blue = svc.primary
            deployment.green = self.scheduler.create_task_set(
                svc, deployment.task_definition, deployment.id
            )
            self._set_event(deployment, "BeforeInstall", "Succeeded")
            self._set_event(deployment, "Install", "InProgress")
            self._phase(deployment, "install", now)
            return
        green, blue = deployment.green, deployment.blue
        if deployment.phase == "install" and green is not None:
            if green.count("RUNNING") < green.desired:
                return
            for name in ("Install", "AfterInstall", "AllowTestTraffic", "AfterAllowTestTraffic"):
                self._set_event(deployment, name, "Succeeded")
            if deployment.ready_stop:
                moto.status = "Ready"
                deployment.target_status = "Ready"
                self._overview(deployment, "Ready")
                self._phase(deployment, "ready_wait", now)
            else:
                self._start_traffic(deployment, now)
            return
        if deployment.phase == "ready_wait":
            if deployment.ready_wait_seconds and now - deployment.phase_since >= (
                deployment.ready_wait_seconds
            ):
                self._stop(
                    deployment,
                    "TIMEOUT",
                    "The deployment timed out while waiting for the replacement task set "
                    "to be rerouted.",
                )
                if green is not None:
                    self.scheduler.remove_task_set(svc, green)
            return
        if deployment.phase == "traffic":
            step_percent, hold = deployment.steps[deployment.step]
            if step_percent < 100 and now - deployment.phase_since < hold:
                return
            if deployment.step + 1 < len(deployment.steps):
                self._shift(deployment, deployment.step + 1, now)
                return
            self._set_event(deployment, "AllowTraffic", "Succeeded")
            self._set_event(deployment, "AfterAllowTraffic", "Succeeded")
            if green is not None:
                self.scheduler.promote_task_set(svc, green)
            key = (str(moto.application_name), str(moto.deployment_group_name))
            self._production_tg[key] = 1 - self._production_tg.get(key, 0)
            if deployment.termination_wait_seconds > 0:
                moto.instance_termination_wait_time_started = True
                self._phase(deployment, "termination_wait", now)
            else:
                self._terminate_blue(deployment, now)
            return
        if deployment.phase == "termination_wait":
            if now - deployment.phase_since >= deployment.termination_wait_seconds:
                self._terminate_blue(deployment, now)
            return
        if deployment.phase == "terminate":
            if blue is not None and blue in svc.deployments:
                return
            self._finish(deployment, "Succeeded")
            return
        if deployment.phase == "rollback":
            original = deployment.rollback_of
            leftover = original.green if original is not None else None
            if leftover is not None and leftover in svc.deployments:
                return
            self._finish(deployment, "Succeeded")

    def _start_traffic(self, deployment: SimCodeDeployment, now: float) -> None:
        deployment.moto.status = "InProgress"
        deployment.target_status = "InProgress"
        self._overview(deployment, "InProgress")
        self._set_event(deployment, "BeforeAllowTraffic", "Succeeded")
        self._set_event(deployment, "AllowTraffic", "InProgress")
        self._shift(deployment, 0, now)

    def _shift(self, deployment: SimCodeDeployment, step: int, now: float) -> None:
        percent = deployment.steps[step][0]
        deployment.step = step
        if deployment.green is not None:
            deployment.green.weight = percent
        if deployment.blue is not None:
            deployment.blue.weight = 100.0 - percent
        self._phase(deployment, "traffic", now)

    def _terminate_blue(self, deployment: SimCodeDeployment, now: float) -> None:
        deployment.moto.instance_termination_wait_time_started = True
        if deployment.blue is not None:
            self.scheduler.remove_task_set(deployment.svc, deployment.blue)
        self._phase(deployment, "terminate", now)

    def _finish(self, deployment: SimCodeDeployment, status: str) -> None:
        deployment.moto.status = status
        deployment.moto.complete_time = self.scheduler.clock.wall()
        deployment.target_status = status
        self._overview(deployment, status)
        self._phase(deployment, "done", self.scheduler.clock.now())

    def _stop(self, deployment: SimCodeDeployment, code: str, message: str) -> None:
        deployment.error = {"code": code, "message": message}
        for event in deployment.events:
            if event.status == "InProgress":
                self._set_event(deployment, event.name, "Failed")
            elif event.status == "Pending":
                self._set_event(deployment, event.name, "Skipped")
        deployment.moto.deployment_status_messages.append(message)
        deployment.moto.status = "Stopped"
        deployment.moto.complete_time = self.scheduler.clock.wall()
        deployment.target_status = "Failed"
        self._overview(deployment, "Failed")
        self._phase(deployment, "stopped", self.scheduler.clock.now())

    def _rollback(self, deployment: SimCodeDeployment) -> None:
        """Traffic back to blue, blue PRIMARY, green removed; tracked by a new deployment."""
        green, blue, svc = deployment.green, deployment.blue, deployment.svc
        if green is None or blue is None:  # pragma: no cover - the caller checks
            return
        blue.weight, green.weight = 100.0, 0.0
        if blue in svc.deployments:
            if blue.desired == 0:  # blue was already being removed: bring it back
                blue.desired = svc.desired
                blue.launching = True
            self.scheduler.promote_task_set(svc, blue)
        self.scheduler.remove_task_set(svc, green)
        moto = deployment.moto
        info: Any = DeploymentInfo(
            moto.application,
            moto.deployment_group,
            moto.revision,
            moto.deployment_config_name,
            f"Rollback of {deployment.id}",
            None,
            None,
            None,
            None,
            None,
            None,
            "codeDeployRollback",
        )
        self.backend.deployments[info.deployment_id] = info
        rollback = SimCodeDeployment(
            moto=info,
            svc=svc,
            task_definition=blue.revision.task_definition,
            steps=[(100.0, 0.0)],
            ready_stop=False,
            ready_wait_seconds=0.0,
            termination_wait_seconds=0.0,
            target_groups=deployment.target_groups,
            rollback_of=deployment,
            blue=blue,
            updated_at=self.scheduler.clock.wall(),
        )
        rollback.rollback_info = {"rollbackTriggeringDeploymentId": deployment.id}
        self.deployments[info.deployment_id] = rollback
        deployment.rollback_info = {
            "rollbackDeploymentId": info.deployment_id,
            "rollbackMessage": (
                f"Deployment {deployment.id} was stopped by the user; "
                f"rollback deployment {info.deployment_id} restores the original task set."
            ),
        }
