"""The bake window: how long a finished deployment must stay healthy to be signed off.

After ECS says a deployment this watch saw in flight has completed, its service bakes:
healthy time is counted while the verdict is HEALTHY and nothing is being done about
it. Time with NO DATA, DEGRADED or an action in flight does not count (it pauses the
bake); a FAILING verdict fails the bake, or restarts it when so configured. A new
deployment of the service starts everything again. When the healthy time reaches the
bake window the service is *signed off*, with the moment it happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class BakeState(StrEnum):
    """Where one service's bake stands."""

    WAITING = "waiting"
    """No completed deployment of ours yet (in flight, or none seen)."""
    BAKING = "baking"
    """Completed and HEALTHY: healthy time is running."""
    PAUSED = "paused"
    """Completed, but not healthy now (NO DATA, DEGRADED, an action in flight)."""
    SIGNED_OFF = "signed off"
    FAILED = "failed"
    """FAILING during the bake (with ``bake_on_failing = "fail"``)."""


@dataclass(frozen=True, slots=True)
class BakeView:
    """One service's bake, as a face shows it."""

    key: str
    label: str
    state: BakeState
    window: timedelta
    baked: timedelta
    """Healthy time counted up to :attr:`since` (plus ``now - since`` while BAKING)."""
    since: datetime | None
    """When the current healthy run began (BAKING only)."""
    signed_off_at: datetime | None
    restarts: int
    """How often a FAILING verdict restarted the bake."""
    reason: str
    """Why it is paused or failed, in words ("" otherwise)."""

    def healthy_time(self, now: datetime) -> timedelta:
        """Healthy time counted by ``now``."""
        if self.state is BakeState.BAKING and self.since is not None:
            return min(self.window, self.baked + max(timedelta(0), now - self.since))
        return self.baked

    def left(self, now: datetime) -> timedelta:
        """Healthy time still needed."""
        return max(timedelta(0), self.window - self.healthy_time(now))


@dataclass
class Bake:
    """One service's bake window."""

    key: str
    window: timedelta
    restart_on_failing: bool = False
    state: BakeState = BakeState.WAITING
    baked: timedelta = timedelta(0)
    since: datetime | None = None
    signed_off_at: datetime | None = None
    restarts: int = 0
    reason: str = ""
    deployment: str | None = None
    """The deployment being baked (a new one starts everything again, even when it
    began and finished between two looks)."""

    def reset(self) -> None:
        """A new deployment: start again."""
        self.state = BakeState.WAITING
        self.baked = timedelta(0)
        self.since = None
        self.signed_off_at = None
        self.reason = ""

    def step(
        self,
        now: datetime,
        *,
        done: bool,
        healthy: bool,
        failing: bool,
        why: str,
        deployment: str | None = None,
    ) -> None:
        """Account for the time since the last step, then take the new situation in.

        Args:
            done: The service's deployment of ours has completed (not in flight).
            healthy: The verdict is HEALTHY and no action is pending or in flight.
            failing: The verdict is FAILING.
            why: In words, why it is not healthy (for PAUSED / FAILED).
            deployment: Which deployment completed (its id).
        """
        if deployment != self.deployment:
            self.reset()
            self.deployment = deployment
        if not done:
            if self.state is not BakeState.WAITING or self.baked:
                self.reset()
            return
        if self.state in (BakeState.SIGNED_OFF, BakeState.FAILED):
            return  # final until a new deployment
        if self.state is BakeState.BAKING and self.since is not None:
            self.baked += max(timedelta(0), now - self.since)
        self.since = None
        if failing:
            if self.restart_on_failing:
                self.restarts += 1
                self.baked = timedelta(0)
                self.state, self.reason = BakeState.PAUSED, f"restarted: {why}"
            else:
                self.state, self.reason = BakeState.FAILED, why
            return
        if self.baked >= self.window and healthy:
            self.state, self.signed_off_at, self.reason = BakeState.SIGNED_OFF, now, ""
            return
        if healthy:
            self.state, self.since, self.reason = BakeState.BAKING, now, ""
        else:
            self.state, self.reason = BakeState.PAUSED, why

    def due(self) -> datetime | None:
        """When a running bake reaches its window (the watch wakes then)."""
        if self.state is BakeState.BAKING and self.since is not None:
            return self.since + max(timedelta(0), self.window - self.baked)
        return None

    def view(self, label: str) -> BakeView:
        return BakeView(
            key=self.key,
            label=label,
            state=self.state,
            window=self.window,
            baked=self.baked,
            since=self.since,
            signed_off_at=self.signed_off_at,
            restarts=self.restarts,
            reason=self.reason,
        )
