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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rich.text import Text
from textual.widgets import Input, Static

from tui.screens.confirm import ConfirmBox, ConfirmScreen
from widgets.safe import LONG, clean

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable, Mapping
    from datetime import datetime

    from textual.app import ComposeResult

    from engine.actions import Plan


class HeldLock(Protocol):
    """A service's lock as the bus says it (``sources.bus.LockView``)."""

    @property
    def holder(self) -> str: ...

    @property
    def since(self) -> datetime: ...


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
) -> list[Notice]:
    """Carry out the operator's answer to a :class:`TakeoverScreen`.

    Args:
        lock: The operator lock.
        record: The action engine's audit helper (``ActionEngine.record``).
        plan: Names the service (its target only; its verb is not used).
        refusal: The lock the confirmation named, in words.
        holder: Its holder (``user@host``), for the audit log.
        confirmed: Whether the operator typed the name (else declined).

    Returns:
        What to tell the operator.
    """
    key = plan.key
    title = f"Take over the lock of {plan.label}"
    target = plan.audit_target()
    notices: list[Notice] = []
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
        notices.append(
            Notice(f"the lock changed while you confirmed: {now}", f"{title}: not sent", "warning")
        )
        return notices
    else:
        sent: str | None = None
        try:
            await lock.claim(key, takeover=True)
        except Exception as exc:  # not connected to the bus, the broker refused it...
            sent = clean(f"{type(exc).__name__}: {exc}", LONG)
        error = await record(
            "takeover",
            service=key,
            previous=holder,
            target=target,
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
    return notices


__all__ = ["LockState", "Notice", "TakeoverScreen", "card_locks", "lock_words", "take_over"]
