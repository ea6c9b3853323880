"""One verdict for the whole deployment, with the evidence that drives it.

Order of precedence, most serious first: FAILING (a critical rule breached, or ECS
itself says the deployment failed, is rolling back, or its rollback failed), DEGRADED (a
warning rule breached), ROLLED BACK (ECS rolled a deployment back and it is over: the old
revision serves, nothing to do now but look), NO DATA (some rule cannot be judged, or ECS
has not answered, or its latest answer for a service failed), HEALTHY (every rule has
fresh data and is OK, and ECS answers and is not failing).

HEALTHY is never a default: it is earned by evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from engine.rules import RuleState
from engine.store import EcsStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from engine.rules import Evidence


class Verdict(Enum):
    """The banner's word."""

    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    FAILING = "FAILING"
    ROLLED_BACK = "ROLLED BACK"
    NO_DATA = "NO DATA"


_ECS_FAILING = frozenset(
    {
        EcsStatus.FAILED,
        EcsStatus.ROLLBACK_REQUESTED,
        EcsStatus.ROLLBACK_IN_PROGRESS,
        EcsStatus.ROLLBACK_FAILED,
    }
)
_ECS_WORDS = {
    EcsStatus.FAILED: "the deployment FAILED",
    EcsStatus.ROLLBACK_REQUESTED: "a rollback was requested",
    EcsStatus.ROLLBACK_IN_PROGRESS: "ECS is rolling the deployment back",
    EcsStatus.ROLLBACK_SUCCESSFUL: "ECS rolled the deployment back",
    EcsStatus.ROLLBACK_FAILED: "the rollback FAILED",
}


@dataclass(frozen=True, slots=True)
class Report:
    """The verdict, the lines that explain it, and the rules behind it."""

    verdict: Verdict
    reasons: tuple[str, ...]
    """Human lines, most serious first: the evidence of each driving rule."""
    driving: tuple[Evidence, ...]
    """The rules that set the verdict (empty when ECS alone did, or all is well)."""

    @property
    def headline(self) -> str:
        """The first reason, or a plain statement when there is none."""
        if self.reasons:
            return self.reasons[0]
        return {
            Verdict.HEALTHY: "every rule has fresh data and is OK",
            Verdict.NO_DATA: "nothing to judge yet",
        }.get(self.verdict, "")


def judge(
    evidence: Iterable[Evidence],
    ecs: Mapping[str, EcsStatus],
    rolled_back: Mapping[str, str] | None = None,
    stale: Mapping[str, str] | None = None,
) -> Report:
    """Combine rule evidence and ECS's own status into one verdict.

    Args:
        evidence: Every rule's current evidence.
        ecs: Each service's deployment status, by service key.
        rolled_back: For a service that ECS rolled back, how and when in words
            (``rolled back to web:1 at 02:04:10 by the circuit breaker``).
        stale: For a service whose latest ECS fetch failed, why (its status is then
            the last one known: it can still say FAILING, never vouch for HEALTHY).

    Returns:
        The report.
    """
    evidence = list(evidence)
    ecs_bad = [(k, s) for k, s in ecs.items() if s in _ECS_FAILING]
    critical = [e for e in evidence if e.state is RuleState.CRITICAL]
    warn = [e for e in evidence if e.state is RuleState.WARN]
    blind = [e for e in evidence if e.state in (RuleState.NO_DATA, RuleState.STALE)]
    ecs_blind = [k for k, s in ecs.items() if s is EcsStatus.NO_DATA]
    ecs_stale = [(k, why) for k, why in (stale or {}).items() if k in ecs and k not in ecs_blind]

    ecs_lines = tuple(f"ECS {key}: {_ECS_WORDS[status]}" for key, status in ecs_bad)
    words = rolled_back or {}
    rolled_lines = tuple(
        f"ECS {key}: {words.get(key) or 'ECS rolled the deployment back'}"
        for key, status in ecs.items()
        if status is EcsStatus.ROLLBACK_SUCCESSFUL
    )
    if critical or ecs_bad:
        lines = tuple(e.summary() for e in critical) + ecs_lines
        lines += tuple(e.summary() for e in warn) + rolled_lines
        return Report(Verdict.FAILING, lines, tuple(critical))
    if warn:
        lines = tuple(e.summary() for e in warn) + rolled_lines
        return Report(Verdict.DEGRADED, lines, tuple(warn))
    if rolled_lines:
        lines = rolled_lines + tuple(e.summary() for e in blind)
        return Report(Verdict.ROLLED_BACK, lines, ())
    if blind or ecs_blind or ecs_stale or not ecs:
        lines = tuple(e.summary() for e in blind)
        lines += tuple(f"ECS {key}: no answer yet" for key in ecs_blind)
        lines += tuple(f"ECS {key}: STALE, {why}" for key, why in ecs_stale)
        return Report(Verdict.NO_DATA, lines, tuple(blind))
    return Report(Verdict.HEALTHY, (), ())
