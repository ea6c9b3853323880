"""The bus's announcements in words: one short line each, for people (a chat bridge
forwards the ``announce`` topic).

The relay (``engine/relay.py``) and the gate on the bus (``engine/gatebus.py``) say the
same things the same way: a verdict change with its evidence, an action sent and its
result, a bake signed off or failed, a gate started and ended. Every line goes through
:func:`~engine.text.clean`: the evidence and the action's messages carry outside text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.bake import BakeState
from engine.durations import span_words
from engine.text import LONG, clean
from engine.verdict import Verdict

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import timedelta

    from engine.actions import ActionResult, Plan
    from engine.bake import BakeView


def _line(text: str) -> str:
    return clean(text, LONG)


def verdict_text(env: str, verdict: Verdict, reasons: Sequence[str]) -> str:
    """``production: FAILING — error rate [version:v2] 14.8% > 5% …`` (the first reason
    is the evidence; a HEALTHY verdict needs none)."""
    text = f"{env}: {verdict.value}"
    if reasons and verdict is not Verdict.HEALTHY:
        text += f" — {reasons[0]}"
    return _line(text)


def action_text(result: ActionResult) -> str:
    """``web: rollback done (web:2 → web:1) — UpdateService accepted``."""
    plan = result.plan
    return _line(
        f"{plan.label}: {plan.verb.value} {result.outcome.value}"
        f" ({plan.from_revision} → {plan.to_revision}) — {result.message}"
    )


def sent_text(plan: Plan) -> str:
    """``web: rollback sent (web:2 → web:1)``: the call is on its way."""
    return _line(
        f"{plan.label}: {plan.verb.value} sent ({plan.from_revision} → {plan.to_revision})"
    )


def bake_text(env: str, view: BakeView) -> str | None:
    """A bake's end: ``production: web signed off at 09:01:55 UTC: HEALTHY for 10s
    after completing`` or ``production: web bake FAILED: …``; ``None`` for the other
    states (a chat hears the end, not every pause)."""
    if view.state is BakeState.SIGNED_OFF and view.signed_off_at is not None:
        return _line(
            f"{env}: {view.label} signed off at {view.signed_off_at.strftime('%H:%M:%S UTC')}: "
            f"HEALTHY for {span_words(view.window)} after completing"
        )
    if view.state is BakeState.FAILED:
        return _line(f"{env}: {view.label} bake FAILED: {view.reason}")
    return None


def gate_started_text(
    env: str, services: Sequence[str], *, bake: str, timeout: timedelta, act: bool
) -> str:
    """``production: deploywatch gate started: watching web, api (bake 30m, timeout
    1h00m, read-only)``."""
    how = "acting on rules" if act else "read-only"
    return _line(
        f"{env}: deploywatch gate started: watching {', '.join(services)} "
        f"(bake {bake}, timeout {span_words(timeout)}, {how})"
    )


def gate_exit_text(env: str, words: str, code: int, why: str) -> str:
    """``production: deploywatch gate SIGNED OFF (exit 0) — web completed and HEALTHY
    for 30m: signed off``."""
    return _line(f"{env}: deploywatch gate {words} (exit {code}) — {why}")


__all__ = [
    "action_text",
    "bake_text",
    "gate_exit_text",
    "gate_started_text",
    "sent_text",
    "verdict_text",
]
