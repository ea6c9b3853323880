"""ECS native blue/green, canary and linear deployments: the plan and its state.

A traffic-shifting deployment (``deploymentConfiguration.strategy`` ``BLUE_GREEN``,
``CANARY`` or ``LINEAR``, deployment controller ``ECS``) runs the green service revision
next to the blue one at full size, then moves production traffic from blue to green,
then removes blue. :func:`build_phases` turns a ``deploymentConfiguration`` into the
ordered phases the :class:`~sandbox.ecs_sim.Scheduler` walks through:

====================================  ==================================================
phase (``lifecycleStage`` reported)    what happens
====================================  ==================================================
``PRE_SCALE_UP``                       hooks only
``SCALE_UP``                           green launches ``desired`` tasks; done when all run
``POST_SCALE_UP``                      hooks only
``TEST_TRAFFIC_SHIFT``                 test traffic 100 % green (+ Lambda hooks)
``POST_TEST_TRAFFIC_SHIFT``            hooks only
``PRODUCTION_TRAFFIC_SHIFT`` (per step)  ``PRE_PRODUCTION_TRAFFIC_SHIFT`` hooks, then the
                                       production weight moves to the step's percentage
                                       (+ Lambda hooks), then the step bake time (not
                                       after the last step)
``POST_PRODUCTION_TRAFFIC_SHIFT``      hooks only
``BAKE_TIME``                          ``bakeTimeInMinutes``: blue still up, rollback is
                                       instant
``CLEAN_UP``                           blue's tasks stop; COMPLETED once drained
====================================  ==================================================

Steps: ``BLUE_GREEN`` one step to 100 %; ``CANARY`` ``canaryPercent`` (default 5) then
100 % after ``canaryBakeTimeInMinutes`` (default 10); ``LINEAR`` ``stepPercent``
(default 10), ``2 * stepPercent``... up to 100 %, ``stepBakeTimeInMinutes`` (default 6)
between steps. ``PRE_PRODUCTION_TRAFFIC_SHIFT`` is not a ``lifecycleStage`` value of the
API (it exists only as a hook stage): while its hooks run the stage reads
``PRODUCTION_TRAFFIC_SHIFT``.

Hooks (``lifecycleHooks``): a ``PAUSE`` hook waits ``AWAITING_ACTION`` for
``ContinueServiceDeployment`` (CONTINUE or ROLLBACK) or its timeout
(``timeoutConfiguration``, default 1440 minutes, action ROLLBACK). The sandbox runs no
Lambda: an ``AWS_LAMBDA`` hook is ``IN_PROGRESS`` for one scheduler tick, then
``SUCCEEDED``. ECS refuses ``PAUSE`` hooks at ``TEST_TRAFFIC_SHIFT`` and
``PRODUCTION_TRAFFIC_SHIFT``; so does :func:`validate_configuration`.

Minutes: API durations are whole minutes; a sandbox may compress them (a scenario's
``minute_seconds``), so every duration here is converted with ``minute_seconds``.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from datetime import datetime

    from sandbox.ecs_sim import SimDeployment

SHIFTING_STRATEGIES = frozenset({"BLUE_GREEN", "CANARY", "LINEAR"})
STRATEGIES = frozenset({"ROLLING"}) | SHIFTING_STRATEGIES
HOOK_STAGES = (
    "RECONCILE_SERVICE",
    "PRE_SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRE_PRODUCTION_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
)
PAUSE_FORBIDDEN_STAGES = frozenset({"TEST_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT"})
HOOK_TARGETS = frozenset({"AWS_LAMBDA", "PAUSE"})
HOOK_ACTIONS = frozenset({"CONTINUE", "ROLLBACK"})
DEFAULT_HOOK_TIMEOUT_MINUTES = 1440
DEFAULT_HOOK_TIMEOUT_ACTION = "ROLLBACK"
DEFAULT_CANARY_PERCENT = 5.0
DEFAULT_CANARY_BAKE_MINUTES = 10
DEFAULT_LINEAR_STEP_PERCENT = 10.0
DEFAULT_LINEAR_BAKE_MINUTES = 6
DEFAULT_BAKE_MINUTES = 0
MAX_STEPS = 40
"""At most this many production traffic steps (``LINEAR`` at its 3 % minimum has 34)."""

PhaseAction = Literal["hooks", "scale_up", "test_shift", "prod_shift", "wait", "clean_up"]
HookStatus = Literal["AWAITING_ACTION", "IN_PROGRESS", "SUCCEEDED", "FAILED", "TIMED_OUT"]


class ShiftConfigurationError(ValueError):
    """A ``deploymentConfiguration`` the sandbox (and ECS) refuses."""


@dataclass(frozen=True)
class Phase:
    """One phase of a traffic-shifting deployment."""

    stage: str
    """The ``lifecycleStage`` reported while in this phase."""
    action: PhaseAction
    hook_stage: str | None = None
    """Hooks configured for this hook stage run in this phase."""
    value: float = 0.0
    """``prod_shift``: the green production percentage; ``wait``: sandbox seconds."""


@dataclass(eq=False)
class SimHook:
    """One lifecycle hook execution (a ``DeploymentLifecycleHookDetail``)."""

    hook_id: str
    target_type: str
    target_arn: str | None
    status: HookStatus
    expires_at: float
    """Sandbox time of the timeout."""
    expires_wall: datetime
    timeout_action: str
    stage: str

    def detail(self) -> dict[str, Any]:
        """The API's ``DeploymentLifecycleHookDetail``."""
        result: dict[str, Any] = {
            "hookId": self.hook_id,
            "targetType": self.target_type,
            "targetArn": self.target_arn,
            "status": self.status,
            "expiresAt": self.expires_wall,
            "timeoutAction": self.timeout_action,
        }
        return {k: v for k, v in result.items() if v is not None}


@dataclass(eq=False)
class ShiftState:
    """Progress of one traffic-shifting service deployment."""

    strategy: str
    blue: SimDeployment
    phases: list[Phase]
    index: int = -1
    """Index of the current phase (-1: not entered yet)."""
    entered_at: float = 0.0
    hooks: list[SimHook] = field(default_factory=list)
    """Hooks of the current phase."""
    production_weight: float = 0.0
    """Percent of production traffic on green."""
    test_weight: float = 0.0
    """Percent of test traffic on green."""
    stage: str = "PRE_SCALE_UP"

    @property
    def phase(self) -> Phase | None:
        return self.phases[self.index] if 0 <= self.index < len(self.phases) else None


def hook_id(target_type: str) -> str:
    """A new hook execution id, in the form ECS prints (``ecs-pause-...``)."""
    kind = "pause" if target_type == "PAUSE" else "lambda"
    return f"ecs-{kind}-{secrets.token_urlsafe(32)[:43]}"


def _number(raw: Any, default: float, name: str, low: float, high: float) -> float:
    value = default if raw is None else raw
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ShiftConfigurationError(f"{name} must be a number.")
    if not low <= float(value) <= high:
        raise ShiftConfigurationError(f"{name} must be between {low:g} and {high:g}.")
    return float(value)


def validate_configuration(configuration: dict[str, Any]) -> None:
    """Refuse what ECS refuses in a traffic-shifting ``deploymentConfiguration``.

    Raises:
        ShiftConfigurationError: With ECS's kind of message.
    """
    strategy = configuration.get("strategy") or "ROLLING"
    if strategy not in STRATEGIES:
        raise ShiftConfigurationError(f"Invalid deployment strategy: {strategy}.")
    canary = configuration.get("canaryConfiguration") or {}
    linear = configuration.get("linearConfiguration") or {}
    _number(canary.get("canaryPercent"), DEFAULT_CANARY_PERCENT, "canaryPercent", 0.1, 100)
    _number(canary.get("canaryBakeTimeInMinutes"), 0, "canaryBakeTimeInMinutes", 0, 1440)
    _number(linear.get("stepPercent"), DEFAULT_LINEAR_STEP_PERCENT, "stepPercent", 3.0, 100)
    _number(linear.get("stepBakeTimeInMinutes"), 0, "stepBakeTimeInMinutes", 0, 1440)
    _number(configuration.get("bakeTimeInMinutes"), 0, "bakeTimeInMinutes", 0, 1440)
    hooks = configuration.get("lifecycleHooks") or []
    if not isinstance(hooks, list) or len(hooks) > 20:
        raise ShiftConfigurationError("lifecycleHooks must be a list of at most 20 hooks.")
    for hook in hooks:
        target = hook.get("targetType") or "AWS_LAMBDA"
        if target not in HOOK_TARGETS:
            raise ShiftConfigurationError(f"Invalid lifecycle hook targetType: {target}.")
        stages = hook.get("lifecycleStages") or []
        if not stages:
            raise ShiftConfigurationError("A lifecycle hook needs at least one lifecycleStage.")
        for stage in stages:
            if stage not in HOOK_STAGES:
                raise ShiftConfigurationError(f"Invalid lifecycle stage: {stage}.")
            if target == "PAUSE" and stage in PAUSE_FORBIDDEN_STAGES:
                raise ShiftConfigurationError(
                    f"PAUSE hooks cannot be configured at the {stage} stage."
                )
        timeout = hook.get("timeoutConfiguration") or {}
        _number(
            timeout.get("timeoutInMinutes"),
            DEFAULT_HOOK_TIMEOUT_MINUTES,
            "timeoutInMinutes",
            1,
            20160,
        )
        action = timeout.get("action") or DEFAULT_HOOK_TIMEOUT_ACTION
        if action not in HOOK_ACTIONS:
            raise ShiftConfigurationError(f"Invalid lifecycle hook timeout action: {action}.")


def production_steps(
    configuration: dict[str, Any], minute_seconds: float
) -> list[tuple[float, float]]:
    """Return ``(green percent, bake seconds after it)`` per production traffic step."""
    strategy = configuration.get("strategy")
    if strategy == "CANARY":
        canary = configuration.get("canaryConfiguration") or {}
        percent = float(canary.get("canaryPercent") or DEFAULT_CANARY_PERCENT)
        bake = canary.get("canaryBakeTimeInMinutes")
        bake_minutes = DEFAULT_CANARY_BAKE_MINUTES if bake is None else float(bake)
        if percent >= 100:
            return [(100.0, 0.0)]
        return [(percent, bake_minutes * minute_seconds), (100.0, 0.0)]
    if strategy == "LINEAR":
        linear = configuration.get("linearConfiguration") or {}
        step = float(linear.get("stepPercent") or DEFAULT_LINEAR_STEP_PERCENT)
        bake = linear.get("stepBakeTimeInMinutes")
        bake_seconds = (DEFAULT_LINEAR_BAKE_MINUTES if bake is None else float(bake)) * (
            minute_seconds
        )
        steps: list[tuple[float, float]] = []
        percent = step
        while percent < 100 - 1e-9 and len(steps) < MAX_STEPS - 1:
            steps.append((round(percent, 1), bake_seconds))
            percent += step
        steps.append((100.0, 0.0))
        return steps
    return [(100.0, 0.0)]


def build_phases(configuration: dict[str, Any], minute_seconds: float) -> list[Phase]:
    """Return the phases of a traffic-shifting deployment (see the module docstring).

    Args:
        configuration: The service deployment's ``deploymentConfiguration``.
        minute_seconds: Sandbox seconds per API minute.
    """
    bake = configuration.get("bakeTimeInMinutes")
    bake_seconds = (DEFAULT_BAKE_MINUTES if bake is None else float(bake)) * minute_seconds
    phases = [
        Phase("PRE_SCALE_UP", "hooks", "PRE_SCALE_UP"),
        Phase("SCALE_UP", "scale_up"),
        Phase("POST_SCALE_UP", "hooks", "POST_SCALE_UP"),
        Phase("TEST_TRAFFIC_SHIFT", "test_shift", "TEST_TRAFFIC_SHIFT"),
        Phase("POST_TEST_TRAFFIC_SHIFT", "hooks", "POST_TEST_TRAFFIC_SHIFT"),
    ]
    for percent, step_bake in production_steps(configuration, minute_seconds):
        phases.append(Phase("PRODUCTION_TRAFFIC_SHIFT", "hooks", "PRE_PRODUCTION_TRAFFIC_SHIFT"))
        phases.append(
            Phase("PRODUCTION_TRAFFIC_SHIFT", "prod_shift", "PRODUCTION_TRAFFIC_SHIFT", percent)
        )
        if percent < 100 and step_bake > 0:
            phases.append(Phase("PRODUCTION_TRAFFIC_SHIFT", "wait", None, step_bake))
    phases += [
        Phase("POST_PRODUCTION_TRAFFIC_SHIFT", "hooks", "POST_PRODUCTION_TRAFFIC_SHIFT"),
        Phase("BAKE_TIME", "wait", None, bake_seconds),
        Phase("CLEAN_UP", "clean_up"),
    ]
    return phases


def hooks_for(configuration: dict[str, Any], hook_stage: str) -> list[dict[str, Any]]:
    """The configured ``lifecycleHooks`` that run at ``hook_stage``."""
    return [
        hook
        for hook in configuration.get("lifecycleHooks") or []
        if hook_stage in (hook.get("lifecycleStages") or [])
    ]
