"""Planning: what pause, resume, promote and roll back mean for a service right now, per
deployment kind (rolling, ECS native blue/green, canary and linear, CodeDeploy, an ALB
canary deploywatch drives). Pure: the latest ECS sample (and canary) in, a :class:`Plan`
out; :mod:`engine.actions` executes it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sources.ecs import revision_of

if TYPE_CHECKING:
    from collections.abc import Mapping

    from engine.canary import CanaryDriver
    from engine.store import ServiceState
    from sources.model import EcsServiceSample, ServiceDeployment


class Verb(StrEnum):
    """What an operator (or a rule) asks for."""

    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ROLLBACK = "rollback"

    @property
    def words(self) -> str:
        """``Roll back``, ``Promote`` ... for titles and buttons."""
        return _WORDS[self]


_WORDS = {
    Verb.PAUSE: "Pause",
    Verb.RESUME: "Resume",
    Verb.PROMOTE: "Promote",
    Verb.ROLLBACK: "Roll back",
}

IN_FLIGHT = frozenset({"PENDING", "IN_PROGRESS"})
"""Service-deployment statuses that an action can still change."""

ROLLING_BACK = frozenset({"ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"})


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One AWS API call: the boto3 client name, the operation and its parameters."""

    client: str
    """``ecs``, ``codedeploy`` or ``elbv2``."""
    operation: str
    """snake_case boto3 method, e.g. ``stop_service_deployment``."""
    params: Mapping[str, Any]
    context: str | None = None
    """The ``[[aws]]`` context whose credentials send it (``None``: the only one)."""

    def describe(self) -> str:
        """``ecs:StopServiceDeployment stopType=ROLLBACK`` — short, for the confirmation."""
        name = "".join(part.title() for part in self.operation.split("_"))
        shown = [
            f"{k}={v}"
            for k, v in self.params.items()
            if k in ("stopType", "action", "taskDefinition", "deploymentWaitType")
        ]
        return " ".join([f"{self.client}:{name}", *(revision_of(s) for s in shown)])


@dataclass(frozen=True, slots=True)
class Plan:
    """What a verb would do to one service now; disabled plans say why."""

    verb: Verb
    key: str
    label: str
    cluster: str
    service: str
    environment: str
    production: bool
    kind: DeploymentKind
    """The deployment kind (its value is in words: ``ECS rolling``, ``ECS canary``...)."""
    from_revision: str | None
    to_revision: str | None
    call: ApiCall | None
    effect: str
    """What happens, in a deployer's words (or why nothing can)."""
    disabled_reason: str | None = None
    context: str | None = None
    """The ``[[aws]]`` context (account and region) the service is in, when named."""
    account: str | None = None
    """Its AWS account id, when known."""
    region: str | None = None

    @property
    def where(self) -> str:
        """``prod-eu · account 111122223333 · eu-west-1`` (for the confirmation)."""
        return f"{self.context} · account {self.account or '?'} · {self.region or '?'}"

    @property
    def enabled(self) -> bool:
        """Whether the plan can be executed."""
        return self.call is not None and self.disabled_reason is None

    @property
    def title(self) -> str:
        """``Roll back web`` — names the target."""
        return f"{self.verb.words} {self.label}"

    @property
    def change(self) -> str:
        """``web:7 → web:6``, or what is known of it; one side when nothing moves
        (``canary 25%``: a hold or release of the ALB canary leaves traffic where it is)."""
        if self.from_revision is not None and self.from_revision == self.to_revision:
            return self.from_revision
        return f"{self.from_revision or '?'} → {self.to_revision or '?'}"

    def audit_target(self) -> dict[str, Any]:
        """The target as written in the audit log."""
        return {
            "environment": self.environment,
            "cluster": self.cluster,
            "service": self.service,
            "kind": self.kind,
            "from": self.from_revision,
            "to": self.to_revision,
        } | (
            {"context": self.context, "account": self.account, "region": self.region}
            if self.context is not None
            else {}
        )


def _in_flight(sample: EcsServiceSample) -> ServiceDeployment | None:
    return next((sd for sd in sample.service_deployments if sd.status in IN_FLIGHT), None)


def _revisions(
    sample: EcsServiceSample, sd: ServiceDeployment | None
) -> tuple[str | None, str | None, str | None]:
    """``(new revision, old revision, old task definition ARN)`` as best known."""
    primary = sample.primary
    active = next((d for d in sample.deployments if d.status == "ACTIVE"), None)
    new = revision_of(sd.target_task_definition) if sd and sd.target_task_definition else None
    if new is None and primary is not None:
        new = primary.revision
    old_td = sd.source_task_definitions[0] if sd and sd.source_task_definitions else None
    if old_td is None and active is not None:
        old_td = active.task_definition
    if old_td is not None and not old_td.startswith("arn:") and active is not None:
        old_td = active.task_definition
    return new, (revision_of(old_td) if old_td else None), old_td


def _previous_after_done(sample: EcsServiceSample) -> tuple[str | None, str | None]:
    """After a finished deployment: ``(old task definition, its revision)`` to roll forward to."""
    done = next((sd for sd in sample.service_deployments if sd.status == "SUCCESSFUL"), None)
    if done is not None and done.source_task_definitions:
        td = done.source_task_definitions[0]
        if td.startswith("arn:"):
            return td, revision_of(td)
    active = next((d for d in sample.deployments if d.status == "ACTIVE"), None)
    if active is not None:
        return active.task_definition, active.revision
    return None, None


class DeploymentKind(StrEnum):
    """What drives a service's deployments; its value is the kind in a deployer's words."""

    UNKNOWN = "unknown"
    ECS_ROLLING = "ECS rolling"
    ECS_BLUE_GREEN = "ECS blue/green"
    ECS_CANARY = "ECS canary"
    ECS_LINEAR = "ECS linear"
    CODEDEPLOY = "CodeDeploy blue/green"
    EXTERNAL = "external controller"
    ALB_CANARY = "ALB canary"

    @property
    def native(self) -> bool:
        """ECS's own blue/green, canary or linear: lifecycle stages and hooks."""
        return self in (
            DeploymentKind.ECS_BLUE_GREEN,
            DeploymentKind.ECS_CANARY,
            DeploymentKind.ECS_LINEAR,
        )


_NATIVE_KIND = {
    "BLUE_GREEN": DeploymentKind.ECS_BLUE_GREEN,
    "CANARY": DeploymentKind.ECS_CANARY,
    "LINEAR": DeploymentKind.ECS_LINEAR,
}


def deployment_kind(sample: EcsServiceSample | None) -> DeploymentKind:
    """The kind, from the controller and the strategy ECS reports."""
    if sample is None:
        return DeploymentKind.UNKNOWN
    if sample.controller == "CODE_DEPLOY":
        return DeploymentKind.CODEDEPLOY
    if sample.controller == "EXTERNAL":
        return DeploymentKind.EXTERNAL
    strategy = _in_flight(sample) or sample.newest
    name = (strategy.strategy if strategy and strategy.strategy else None) or sample.strategy
    return _NATIVE_KIND.get(name or "", DeploymentKind.ECS_ROLLING)


def plan(
    verb: Verb,
    state: ServiceState,
    *,
    environment: str,
    production: bool,
    canary: CanaryDriver | None = None,
    context: str | None = None,
) -> Plan:
    """What ``verb`` would do to this service now (see DESIGN.md's table per kind);
    ``context`` is the named context its key starts with (``context:cluster/service``)."""
    key = state.key
    if context is not None and key.startswith(f"{context}:"):
        key = key[len(context) + 1 :]
    cluster, _, service = key.partition("/")
    sample = state.sample
    kind = DeploymentKind.ALB_CANARY if canary is not None else deployment_kind(sample)
    base = Plan(
        verb=verb,
        key=state.key,
        label=state.label,
        cluster=cluster,
        service=service,
        environment=environment,
        production=production,
        kind=kind,
        from_revision=None,
        to_revision=None,
        call=None,
        effect="",
    )

    def disabled(reason: str, **changes: Any) -> Plan:
        return replace(base, effect=reason, disabled_reason=reason, **changes)

    if canary is not None:
        return _canary_plan(verb, canary, base)
    if sample is None:
        return disabled("no ECS data yet for this service")
    if kind is DeploymentKind.EXTERNAL:
        return disabled(f"{kind}: act in the tool that drives this service's deployments")
    if kind is DeploymentKind.CODEDEPLOY:
        return _codedeploy_plan(verb, sample, replace(base, effect=""))
    sd = _in_flight(sample)
    new, old, old_td = _revisions(sample, sd)
    base = replace(base, from_revision=new, to_revision=old)
    native = kind.native
    hook = sd.awaiting_hook if sd is not None else None
    newest = sample.newest

    if verb is Verb.ROLLBACK:
        if newest is not None and newest.status in ROLLING_BACK:
            return disabled(f"ECS is already rolling back ({newest.status})")
        if sd is not None and hook is not None:
            return replace(
                base,
                call=ApiCall(
                    "ecs",
                    "continue_service_deployment",
                    {"serviceDeploymentArn": sd.arn, "hookId": hook.hook_id, "action": "ROLLBACK"},
                ),
                effect=f"answer the waiting lifecycle hook with ROLLBACK: traffic returns to {old or 'the old revision'}",
            )
        if sd is not None:
            return replace(
                base,
                call=ApiCall(
                    "ecs",
                    "stop_service_deployment",
                    {"serviceDeploymentArn": sd.arn, "stopType": "ROLLBACK"},
                ),
                effect=f"stop the deployment; ECS rolls the service back to {old or 'the old revision'}",
            )
        # No service deployment in flight (finished, or older than that API):
        # roll forward to the previous task definition.
        prev_td, prev_rev = (old_td, old) if old_td and old_td.startswith("arn:") else (None, None)
        if prev_td is None:
            prev_td, prev_rev = _previous_after_done(sample)
        current = revision_of(sample.task_definition) if sample.task_definition else new
        if prev_td is None or prev_rev == current:
            return disabled("no deployment in flight and no earlier revision known")
        return replace(
            base,
            from_revision=current,
            to_revision=prev_rev,
            call=ApiCall(
                "ecs",
                "update_service",
                {"cluster": cluster, "service": service, "taskDefinition": prev_td},
            ),
            effect=f"roll forward to the old revision {prev_rev} (a new deployment of it)",
        )
    if verb is Verb.PROMOTE:
        if not native:
            return disabled("ECS rolling has no promote: ECS replaces every task by itself")
        if sd is None:
            return disabled(f"{kind}: no deployment in flight")
        if hook is None:
            stage = sd.lifecycle_stage or "?"
            return disabled(f"{kind}: no lifecycle hook is waiting (stage {stage})")
        # A promote goes forward: from the current (old) revision to the new one.
        return replace(
            base,
            from_revision=old,
            to_revision=new,
            call=ApiCall(
                "ecs",
                "continue_service_deployment",
                {"serviceDeploymentArn": sd.arn, "hookId": hook.hook_id, "action": "CONTINUE"},
            ),
            effect=f"continue past {sd.lifecycle_stage or 'the waiting hook'} towards {new or 'the new revision'}",
        )
    # pause / resume
    if not native:
        return disabled(
            "ECS rolling has no pause: roll back, or let ECS finish (a pending automatic action can be cancelled)"
        )
    if hook is not None:
        return disabled(
            f"{kind}: already paused at {sd.lifecycle_stage if sd else '?'}; promote continues, roll back aborts"
        )
    return disabled(
        f"{kind}: ECS pauses only at a PAUSE lifecycle hook (none is waiting); configure one in the deployment"
    )


def _canary_plan(verb: Verb, canary: CanaryDriver, base: Plan) -> Plan:
    """An ALB weighted canary driven by deploywatch: weights, and our own hold."""
    now = canary.observed

    def disabled(reason: str) -> Plan:
        return replace(base, effect=reason, disabled_reason=reason)

    def weights(canary_weight: int, effect: str) -> Plan:
        operation, params = canary.weights_params(canary_weight)
        return replace(
            base,
            from_revision=f"canary {now:.0f}%" if now is not None else "canary ?",
            to_revision=f"canary {canary_weight}%",
            call=ApiCall("elbv2", operation, params),
            effect=effect,
        )

    if now is None:
        return disabled("ALB canary: the listener's weights are not known yet")
    if verb is Verb.ROLLBACK:
        if not canary.started:
            return disabled("the canary already gets no traffic")
        return weights(0, "set the ALB weights to stable 100 / canary 0")
    if verb is Verb.PROMOTE:
        target = canary.next_weight()
        if target is None:
            return disabled("the canary already gets all the traffic")
        return weights(target, f"move the canary to {target}% of the traffic")
    if verb is Verb.PAUSE:
        if not canary.started or canary.complete:
            return disabled("the canary is not moving: nothing to pause")
        if canary.held:
            return disabled("the canary is already held: resume releases it")
        return replace(
            base,
            from_revision=f"canary {now:.0f}%",
            to_revision=f"canary {now:.0f}%",
            call=ApiCall("deploywatch", "hold_canary", {"service": base.key}),
            effect="stop advancing the canary's steps (traffic stays as it is)",
        )
    if not canary.held:
        return disabled("the canary is not held")
    return replace(
        base,
        from_revision=f"canary {now:.0f}%",
        to_revision=f"canary {now:.0f}%",
        call=ApiCall("deploywatch", "release_canary", {"service": base.key}),
        effect="advance the canary's steps again (only while no rule is FAILING)",
    )


def _codedeploy_plan(verb: Verb, sample: EcsServiceSample, base: Plan) -> Plan:
    """CodeDeploy blue/green: continue READY_WAIT / TERMINATION_WAIT; stop with rollback."""
    # The task sets (PRIMARY serves production; the replacement is the newer one).
    by_age = sorted(
        sample.deployments, key=lambda d: d.created_at or datetime.min.replace(tzinfo=UTC)
    )
    new = by_age[-1].revision if by_age else None
    old = by_age[-2].revision if len(by_age) > 1 else None
    base = replace(base, from_revision=new, to_revision=old)

    def disabled(reason: str) -> Plan:
        return replace(base, effect=reason, disabled_reason=reason)

    deployment = sample.codedeploy
    if deployment is None:
        return disabled(
            "CodeDeploy: no deployment seen (set [service.codedeploy] application and "
            "deployment_group)"
        )
    if not deployment.in_flight:
        return disabled(f"CodeDeploy deployment {deployment.id} is {deployment.status}")
    if verb is Verb.ROLLBACK:
        # Traffic goes back to the original (blue) task set: new → old.
        return replace(
            base,
            call=ApiCall(
                "codedeploy",
                "stop_deployment",
                {"deploymentId": deployment.id, "autoRollbackEnabled": True},
            ),
            effect=f"stop CodeDeploy deployment {deployment.id} and roll back to the original task set",
        )
    if verb is Verb.PROMOTE:
        if deployment.status == "Ready":
            wait, effect = "READY_WAIT", "reroute production traffic to the replacement task set"
        elif deployment.termination_wait:
            wait, effect = (
                "TERMINATION_WAIT",
                "end the wait and terminate the original task set now",
            )
        else:
            return disabled(f"CodeDeploy is {deployment.status}: nothing waits for a go")
        return replace(
            base,
            from_revision=old,
            to_revision=new,
            call=ApiCall(
                "codedeploy",
                "continue_deployment",
                {"deploymentId": deployment.id, "deploymentWaitType": wait},
            ),
            effect=effect,
        )
    return disabled(
        "CodeDeploy has no pause: a deployment with a wait time holds at READY_WAIT until promoted"
    )
