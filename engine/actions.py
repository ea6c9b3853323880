"""Actions: the one place where a plan is executed — refused in read-only mode, audited
before and after every API call, never two at once on the same service.

No Textual here. A :class:`Plan` is pure data computed from the store's latest ECS
sample (:mod:`engine.plans`, re-exported here); the :class:`ActionEngine` executes a
plan's :class:`ApiCall` through an injected executor (``sources.aws_actions.AwsActions``
in the app, a recorder in unit tests).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from engine.audit import AuditError, AuditLog
from engine.plans import (
    IN_FLIGHT,
    ROLLING_BACK,
    ApiCall,
    DeploymentKind,
    Plan,
    Verb,
    deployment_kind,
    plan,
)
from sources.redact import public_text

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from engine.rules import Evidence


__all__ = [
    "ACTION_ERROR_LEN",
    "ACTION_TIMEOUT",
    "IN_FLIGHT",
    "ROLLING_BACK",
    "ActionEngine",
    "ActionResult",
    "ApiCall",
    "DeploymentKind",
    "Outcome",
    "Plan",
    "Verb",
    "deployment_kind",
    "plan",
]

ACTION_TIMEOUT = 20.0
"""Seconds an API call may take before the action is reported as failed."""


class Outcome(StrEnum):
    """How an action ended."""

    DONE = "done"
    FAILED = "failed"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What came of a request: shown on screen and written to the audit log."""

    plan: Plan
    outcome: Outcome
    message: str
    automatic: bool
    at: datetime
    action_id: str
    audit_error: str | None = None
    """Why an entry of this action is missing from the audit log (also in ``message``)."""


@dataclass
class ActionEngine:
    """Executes plans: the only path from a key, the palette or a rule to an API call.

    Nothing the audit log does raises out of it: an intent that cannot be written
    refuses the action (nothing is sent); any other entry that cannot be written is
    reported in the result's message or returned as an error string.

    Args:
        audit: Where every intent, result, refusal and decision is written.
        executor: Performs an :class:`ApiCall` (blocking; run in a thread).
        read_only: Refuse every action (``--read-only`` or the environment's setting).
        operator: Who acts (AWS caller identity, or ``$USER``).
        clock: UTC now.
    """

    audit: AuditLog
    executor: Callable[[ApiCall], Mapping[str, Any]]
    read_only: bool
    operator: Callable[[], str]
    clock: Callable[[], datetime]
    timeout: float = ACTION_TIMEOUT
    local: dict[str, Callable[[ApiCall], Mapping[str, Any]]] = field(default_factory=dict)
    """Handlers of ``deploywatch`` calls (our own automation, e.g. holding a canary)."""
    _busy: set[str] = field(default_factory=set)

    async def request(
        self,
        plan: Plan,
        *,
        automatic: bool = False,
        reason: str = "operator request",
        evidence: Sequence[Evidence] = (),
    ) -> ActionResult:
        """Execute ``plan`` unless refused; never raises, whatever the API or the audit log do.

        The intent entry is whole on disk before the call is sent; if it cannot be
        written the action is refused and nothing is sent.
        """
        action_id = uuid.uuid4().hex[:12]
        entry: dict[str, Any] = {
            "id": action_id,
            "operator": self.operator(),
            "action": plan.verb.value,
            "automatic": automatic,
            "target": plan.audit_target(),
            "reason": reason,
            "evidence": [e.summary() for e in evidence],
        }
        refusal = self._refusal(plan)
        if refusal is not None:
            error = await self._write({"phase": "refused", **entry, "error": refusal})
            if error is not None:
                refusal = f"{refusal} (and the audit log could not be written: {error})"
            return self._done(plan, Outcome.REFUSED, refusal, automatic, action_id, error)
        assert plan.call is not None
        call = plan.call
        entry["call"] = {
            "client": call.client,
            "operation": call.operation,
            "params": dict(call.params),
        }
        self._busy.add(plan.key)
        try:
            error = await self._write({"phase": "intent", **entry})
            if error is not None:
                message = f"not sent: the audit log could not be written ({error})"
                return self._done(plan, Outcome.REFUSED, message, automatic, action_id, error)
            try:
                if call.client == "deploywatch":
                    response = self.local[call.operation](call)
                else:
                    response = await asyncio.wait_for(
                        asyncio.to_thread(self.executor, call), timeout=self.timeout
                    )
            except Exception as exc:  # every failure is reported and audited
                failure = _error_text(exc)
                error = await self._write(
                    {"phase": "result", "id": action_id, "ok": False, "error": failure}
                )
                outcome, message = Outcome.FAILED, failure
            else:
                error = await self._write(
                    {"phase": "result", "id": action_id, "ok": True, "response": dict(response)}
                )
                outcome, message = Outcome.DONE, plan.effect
            if error is not None:
                message = (
                    f"{message} — the call WAS sent, but its result could not be written "
                    f"to the audit log ({error})"
                )
            return self._done(plan, outcome, message, automatic, action_id, error)
        finally:
            self._busy.discard(plan.key)

    async def record(self, phase: str, **fields: Any) -> str | None:
        """Audit an operator decision that sends nothing (e.g. cancelling a countdown).

        Returns:
            ``None`` once written, else why the audit log could not be written.
        """
        entry = {"phase": phase, "id": uuid.uuid4().hex[:12], "operator": self.operator(), **fields}
        return await self._write(entry)

    async def declined(
        self, plan: Plan, reason: str = "declined in the confirmation"
    ) -> str | None:
        """Audit a confirmation the operator declined (nothing was sent).

        Returns:
            ``None`` once written, else why the audit log could not be written.
        """
        return await self.record(
            "declined", action=plan.verb.value, target=plan.audit_target(), reason=reason
        )

    async def _write(self, entry: dict[str, Any]) -> str | None:
        """Write one entry off the loop; ``None``, or why it is not in the log."""
        try:
            await asyncio.to_thread(self.audit.write, entry)
        except AuditError as exc:
            return str(exc)
        except Exception as exc:  # whatever else fails in the log, the caller is told
            return f"cannot write the audit log {self.audit.path}: {_error_text(exc)}"
        return None

    def _refusal(self, plan: Plan) -> str | None:
        if self.read_only:
            return f"read-only: {plan.verb.value} of {plan.label} refused"
        if not plan.enabled:
            return plan.disabled_reason or "this action is not possible now"
        if plan.key in self._busy:
            return f"another action on {plan.label} is still being sent"
        return None

    def _done(
        self,
        plan: Plan,
        outcome: Outcome,
        message: str,
        automatic: bool,
        action_id: str,
        audit_error: str | None = None,
    ) -> ActionResult:
        result = ActionResult(
            plan, outcome, message, automatic, self.clock(), action_id, audit_error
        )
        return result


def _error_text(exc: BaseException) -> str:
    """An action's failure in words: secrets scrubbed, then cut (it reaches the screen,
    the audit log and the gate's output)."""
    return public_text(_raw_error_text(exc), limit=ACTION_ERROR_LEN)


ACTION_ERROR_LEN = 500
"""Bound on an action's error text (an AWS message is rarely longer)."""


def _raw_error_text(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return (
            "no answer from the API in time; the call may still take effect — check the deployment"
        )
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error") or {}
        code, message = err.get("Code"), err.get("Message")
        if code:
            return f"{code}: {message}" if message else str(code)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
