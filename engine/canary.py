"""An ALB weighted canary that deploywatch drives itself, along the steps of its config.

Each step sets the canary target group's weight, then waits (and advances by itself
once the wait is over, only while no rule is FAILING) or pauses (until an operator
promotes). The driver's position is re-read from the listener's live weights on every
poll, so a restart, or a weight changed by hand, never makes it jump. It decides; the
action engine sends (and audits) every weight change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from engine.config import AlbCanarySettings
    from sources.model import AlbWeights

TOLERANCE = 0.5
"""Percent points within which an observed weight counts as a step's weight."""


@dataclass
class CanaryDriver:
    """The position and intent of one canary.

    Args:
        key: The service key.
        settings: Listener/rule, target groups and steps.
    """

    key: str
    settings: AlbCanarySettings
    step: int = -1
    """Index of the step whose weight is live; -1 before the first (canary at 0)."""
    since: datetime | None = None
    """When the current step's weight was first seen live."""
    held: bool = False
    """Paused by an operator: no automatic advance."""
    observed: float | None = None
    """The canary's live share of traffic, percent."""
    sent: int | None = None
    """A weight sent but not yet seen live: no other automatic step until it is."""

    def observe(self, weights: AlbWeights | None, now: datetime) -> None:
        """Sync the position with the listener's live weights."""
        percent = weights.canary_percent if weights is not None else None
        self.observed = percent
        if percent is None:
            return
        if self.sent is not None and abs(percent - self.sent) <= TOLERANCE:
            self.sent = None
        index = -1
        if percent > TOLERANCE:
            for i, step in enumerate(self.settings.steps):
                if step.weight <= percent + TOLERANCE:
                    index = i
        if index != self.step:
            self.step = index
            self.since = now

    @property
    def started(self) -> bool:
        """Whether the canary gets any traffic."""
        return self.observed is not None and self.observed > TOLERANCE

    @property
    def complete(self) -> bool:
        """Whether the canary gets all the traffic."""
        return self.observed is not None and self.observed >= 100 - TOLERANCE

    def next_weight(self) -> int | None:
        """The weight promote sets: the next step's, or 100 after the last step."""
        if self.complete:
            return None
        steps = self.settings.steps
        for step in steps[self.step + 1 :]:
            if self.observed is None or step.weight > self.observed + TOLERANCE:
                return step.weight
        return 100

    def due(self, now: datetime, failing: bool) -> int | None:
        """The weight to set now by itself, if the current step's wait is over."""
        if not self.started or self.complete or self.held or failing or self.step < 0:
            return None
        if self.sent is not None:
            return None
        step = self.settings.steps[self.step]
        if step.pause or step.wait is None or self.since is None:
            return None
        if now - self.since >= step.wait:
            return self.next_weight()
        return None

    def weights_params(self, canary_weight: int) -> tuple[str, dict[str, Any]]:
        """``(elbv2 operation, params)`` that set the canary to ``canary_weight`` percent."""
        s = self.settings
        forward = {
            "Type": "forward",
            "ForwardConfig": {
                "TargetGroups": [
                    {"TargetGroupArn": s.stable_target_group_arn, "Weight": 100 - canary_weight},
                    {"TargetGroupArn": s.canary_target_group_arn, "Weight": canary_weight},
                ]
            },
        }
        if s.rule_arn is not None:
            return "modify_rule", {"RuleArn": s.rule_arn, "Actions": [forward]}
        return "modify_listener", {"ListenerArn": s.listener_arn, "DefaultActions": [forward]}
