"""The bus's operator lock in the dashboard: who holds each service, and the takeover.

Each card says ``locked by alice@bastion-1 since 02:03`` (or ``yours since 02:03``) as
soon as the relay's retained lock arrives, and nothing once it is freed. A service
locked by someone else refuses the action keys; the takeover key opens a confirmation
that names the holder and the service and takes nothing but the service's name typed
exactly (in every environment: taking a colleague's lock mid-incident is never one
key). A confirmed takeover claims the lock over the holder (the relay grants it and
announces it, naming the previous holder) and is written to this machine's audit log;
a declined one is audited as declined.

Holder names come from the bus, so they are outside text: cleaned, shown literally.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rich.text import Text
from textual.widgets import Input, Static

from tui.screens.confirm import ConfirmBox, ConfirmScreen
from widgets.safe import LONG, clean

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
    from datetime import datetime

    from textual.app import ComposeResult

    from engine.actions import Plan


ANSWER_WAIT = 10.0
"""Seconds a takeover waits for the relay's answer before it is audited as unanswered."""


class HeldLock(Protocol):
    """A service's lock as the bus says it (``sources.bus.LockView``)."""

    @property
    def client(self) -> str: ...

    @property
    def holder(self) -> str: ...

    @property
    def since(self) -> datetime: ...

    @property
    def expires(self) -> datetime | None: ...


class LockState(Protocol):
    """What the dashboard reads of the operator lock (``sources.bus.LockClient``)."""

    @property
    def locks(self) -> Mapping[str, HeldLock]: ...

    @property
    def changed(self) -> asyncio.Event: ...

    def refusal(self, service: str) -> str | None: ...

    def mine(self, service: str) -> bool: ...

    async def claim(self, service: str, *, takeover: bool = False) -> None: ...


def lock_words(holder: str, since: datetime, *, mine: bool) -> str:
    """``locked by alice@bastion-1 since 02:03``, or ``yours since 02:03``."""
    when = since.strftime("%H:%M")
    return f"yours since {when}" if mine else f"locked by {clean(holder, 80)} since {when}"


def card_locks(lock: LockState) -> dict[str, tuple[str, bool]]:
    """Each locked service's words for its card and whether the lock is ours."""
    shown = {}
    for key, held in lock.locks.items():
        mine = lock.mine(key)
        shown[key] = (lock_words(held.holder, held.since, mine=mine), mine)
    return shown


class TakeoverScreen(ConfirmScreen):
    """Take over a service's lock: names the holder and the service, and confirms only
    on the service's name typed exactly (Enter alone, ``y`` or a wrong name never)."""

    def __init__(self, plan: Plan, refusal: str) -> None:
        super().__init__(plan)
        self.refusal = refusal
        """The lock taken over, in words (``web: locked by alice@bastion-1 since 02:03``)."""

    @property
    def typed(self) -> bool:
        return True

    def compose(self) -> ComposeResult:
        plan = self.plan
        yield Static("", id="confirm-small")
        with ConfirmBox(id="confirm-box") as box:
            box.border_title = Text(clean(f"Take over the lock of {plan.label}", 80))
            box.set_class(True, "-production")
            rows = [
                ("action", "take over the operator lock"),
                ("lock", clean(self.refusal, LONG)),
                (
                    "environment",
                    clean(plan.environment) + ("  PRODUCTION" if plan.production else ""),
                ),
                ("cluster", clean(plan.cluster)),
                ("service", clean(plan.service)),
                (
                    "does",
                    "the lock becomes yours; its holder can no longer act on this "
                    "service; the relay announces it naming them, and your audit log "
                    "records it. No AWS call is made.",
                ),
            ]
            target = Text()
            for i, (name, value) in enumerate(rows):
                if i:
                    target.append("\n")
                target.append(f"{name:<12}", "bold")
                target.append(f" {value}")
            yield Static(target, id="confirm-target")
            yield Static(self._type_help(), id="confirm-help")
            yield Input(placeholder=f"type {clean(plan.service, 60)}", id="confirm-input")

    def _type_help(self) -> Text:
        return Text.assemble(
            "Type ",
            (clean(self.plan.service), "bold"),
            " and press Enter to take its lock over; escape cancels.",
        )


@dataclass(frozen=True, slots=True)
class Notice:
    """What the dashboard says once a takeover was decided."""

    message: str
    title: str
    severity: str = "information"


async def take_over(
    lock: LockState,
    record: Callable[..., Awaitable[str | None]],
    plan: Plan,
    refusal: str,
    holder: str,
    confirmed: bool,
    wait: float | None = None,
) -> AsyncIterator[Notice]:
    """Carry out the operator's answer to a :class:`TakeoverScreen`: what to tell the
    operator, as it happens (the claim sent, then the relay's answer, each audited).

    Args:
        lock: The operator lock.
        record: The action engine's audit helper (``ActionEngine.record``).
        plan: Names the service (its target only; its verb is not used).
        refusal: The lock the confirmation named, in words.
        holder: Its holder (``user@host``), for the audit log.
        confirmed: Whether the operator typed the name (else declined).
        wait: Seconds to wait for the relay's answer (default :data:`ANSWER_WAIT`).
    """
    key = plan.key
    title = f"Take over the lock of {plan.label}"
    target = plan.audit_target()
    notices: list[Notice] = []
    claim = uuid.uuid4().hex[:12]  # ties the claim's and the answer's audit entries
    held = lock.locks.get(key)
    previous_client = held.client if held is not None else None
    sent: str | None = None
    if not confirmed:
        error = await record(
            "declined",
            action="takeover",
            service=key,
            holder=holder,
            target=target,
            reason="declined in the confirmation",
        )
        notices.append(Notice(f"{title}: cancelled, the lock stays {clean(holder, 80)}'s", title))
    elif lock.refusal(key) != refusal:
        # Freed, renewed by someone else or taken while the dialog was open: the
        # operator confirmed taking it from the holder it named, not from another.
        now = lock.refusal(key) or "it is free now"
        yield Notice(
            f"the lock changed while you confirmed: {now}", f"{title}: not sent", "warning"
        )
        return
    else:
        try:
            await lock.claim(key, takeover=True)
        except Exception as exc:  # not connected to the bus, the broker refused it...
            sent = clean(f"{type(exc).__name__}: {exc}", LONG)
        error = await record(
            "takeover",
            service=key,
            previous=holder,
            target=target,
            claim=claim,
            **({"error": f"not sent: {sent}"} if sent is not None else {}),
        )
        if sent is None:
            notices.append(
                Notice(
                    f"taken over from {clean(holder, 80)}: the card says yours once the relay"
                    " grants it",
                    title,
                )
            )
        else:
            notices.append(Notice(sent, f"{title}: not sent", "error"))
    if error is not None:
        notices.append(Notice(error, "Audit log", "error"))
    for notice in notices:
        yield notice
    if confirmed and sent is None:
        for notice in await takeover_answer(
            lock, record, plan, holder, previous_client, claim, wait
        ):
            yield notice


async def takeover_answer(
    lock: LockState,
    record: Callable[..., Awaitable[str | None]],
    plan: Plan,
    holder: str,
    previous_client: str | None,
    claim: str | None = None,
    wait: float | None = None,
) -> list[Notice]:
    """Wait for the relay's answer to a takeover just sent, and audit it: ``takeover
    granted`` (the lock is ours: since and until when, as the relay says), ``takeover
    refused`` (someone else holds it now) or ``takeover unanswered`` (no answer within
    :data:`ANSWER_WAIT` seconds: is the relay up?).

    Args:
        lock: The operator lock.
        record: The action engine's audit helper.
        plan: Names the service.
        holder: The holder taken over from (``user@host``).
        previous_client: That holder's bus client id (its lock, unanswered, stays).
        claim: The id the ``takeover`` entry carries (ties both entries together).
        wait: Seconds to wait (default :data:`ANSWER_WAIT`).
    """
    key = plan.key
    title = f"Take over the lock of {plan.label}"
    wait = ANSWER_WAIT if wait is None else wait
    deadline = time.monotonic() + wait
    held = None
    while True:
        held = lock.locks.get(key)
        if lock.mine(key):
            break
        if held is not None and held.client != previous_client:
            break  # a third operator's: the relay gave it to them, not to us
        left = deadline - time.monotonic()
        if left <= 0:
            held = None
            break
        # Polled as well: the dashboard's own follower clears the same event.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lock.changed.wait(), min(left, 0.25))
    fields = {"service": key, "previous": holder, "target": plan.audit_target(), "claim": claim}
    if held is not None and lock.mine(key):
        expires = held.expires
        error = await record(
            "takeover granted",
            since=held.since.isoformat(),
            expires=expires.isoformat() if expires is not None else None,
            **fields,
        )
        notices = [Notice(f"the relay granted it: {plan.key} is yours", title)]
    elif held is not None:
        error = await record("takeover refused", holder=held.holder, **fields)
        notices = [
            Notice(
                f"the relay gave it to {clean(held.holder, 80)}",
                f"{title}: refused",
                "warning",
            )
        ]
    else:
        error = await record("takeover unanswered", waited_s=wait, **fields)
        notices = [
            Notice(
                f"no answer from the relay within {wait:g}s (is it up?); the card says "
                "whose lock it is",
                f"{title}: unanswered",
                "warning",
            )
        ]
    if error is not None:
        notices.append(Notice(error, "Audit log", "error"))
    return notices


__all__ = [
    "ANSWER_WAIT",
    "LockState",
    "Notice",
    "TakeoverScreen",
    "card_locks",
    "lock_words",
    "take_over",
    "takeover_answer",
]
