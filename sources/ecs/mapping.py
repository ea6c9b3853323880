"""AWS JSON → typed samples: the targets the ECS source watches and the pure mapping of
ECS, CodeDeploy and ELB answers onto :mod:`sources.model` (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sources.model import (
    AlbWeights,
    CircuitBreaker,
    CodeDeployDeployment,
    EcsDeployment,
    EcsEvent,
    EcsServiceSample,
    LifecycleHook,
    ServiceDeployment,
)

TERMINAL_SERVICE_DEPLOYMENT = frozenset(
    {"SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"}
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


def _percent(value: Any) -> float | None:
    """A traffic weight, 0..100; anything else is unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value <= 100 else None


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
    weight = target.get("requestedProductionTrafficWeight")
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
        traffic_weight=_percent(weight),
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


def _revision_arns(raw: dict[str, Any]) -> list[str]:
    """The service revision ARNs a service deployment names (target, then sources)."""
    revisions = [raw.get("targetServiceRevision") or {}, *(raw.get("sourceServiceRevisions") or ())]
    return [str(rev["arn"]) for rev in revisions if isinstance(rev, dict) and rev.get("arn")]
