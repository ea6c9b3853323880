"""The watch's side of ``[[aws]]`` contexts: plans that name their account and region,
and the actions executor that sends each call with its service's credentials."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine.wiring import context_spec
from sources.aws_actions import AwsActions
from sources.aws_session import client_factory

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import datetime

    from engine.actions import ApiCall, Plan
    from engine.config import AwsContext, Settings
    from engine.controller import Controller
    from sources.model import FleetChange


def fleet_plan(planned: Plan, context: AwsContext, account: str | None) -> Plan:
    """``planned`` for a service of a named context: its call is sent with that
    context's credentials, and the confirmation names the account and region."""
    call = replace(planned.call, context=context.name) if planned.call is not None else None
    return replace(
        planned,
        call=call,
        context=context.name,
        account=context.account or account,
        region=context.region,
    )


class ContextLabels(Mapping[str, tuple[str, bool]]):
    """Each service's context name and production flag, as the cards show them (a live
    view: services discovery adds are in it as soon as the watch knows them)."""

    def __init__(self, contexts: Mapping[str, AwsContext]) -> None:
        self._contexts = contexts

    def __getitem__(self, key: str) -> tuple[str, bool]:
        context = self._contexts[key]
        return context.name, context.production

    def __iter__(self) -> Iterator[str]:
        return iter(self._contexts)

    def __len__(self) -> int:
        return len(self._contexts)


def note_fleet(contexts: dict[str, AwsContext], settings: Settings, change: FleetChange) -> None:
    """Services discovery found in a named context act with that context's credentials."""
    if change.context is None:
        return
    context = next((c for c in settings.aws_contexts if c.name == change.context), None)
    if context is None:
        return
    for found in change.added:
        contexts[found.key] = context
    for key in change.removed:
        contexts.pop(key, None)


def source_name(source: Any) -> str:
    """A source's name, with its context when it has one (``ecs:prod-eu``): each
    context's poller is a consumer of its own."""
    context = getattr(source, "context", None)
    name = str(source.name)
    return f"{name}:{context}" if context else name


class FleetActions:
    """Sends each call with the credentials of its context (blocking; run in a thread).

    A call naming a context that is not configured is an error, never sent with
    another context's credentials.
    """

    def __init__(self, executors: Mapping[str, AwsActions], default: str) -> None:
        self.executors = dict(executors)
        self.default = default

    def __call__(self, call: ApiCall) -> dict[str, Any]:
        name = call.context or self.default
        executor = self.executors.get(name)
        if executor is None:
            raise ValueError(f"no [[aws]] context named {name!r}: nothing sent")
        return executor(call)

    def resolve_operator(self) -> str:
        """The caller identity of the first context (looked up once), else ``$USER``."""
        return self.executors[self.default].resolve_operator()

    @property
    def operator(self) -> str:
        """The identity known so far (never blocks)."""
        return self.executors[self.default].operator

    def resolve_accounts(self) -> dict[str, str]:
        """Each context's account id from its caller identity (blocking); a context
        whose credentials fail is left out."""
        accounts = {}
        for name, executor in self.executors.items():
            try:
                account = executor.client("sts").get_caller_identity().get("Account")
            except Exception:  # expired or missing credentials: the account stays "?"
                continue
            if account:
                accounts[name] = str(account)
        return accounts


def build_actions(settings: Settings) -> AwsActions | FleetActions:
    """The actions executor of a config: one AWS client set, or one per context."""
    if not settings.aws_contexts:
        aws = settings.aws
        return AwsActions(region=aws.region, profile=aws.profile, endpoint_url=aws.endpoint_url)
    executors = {}
    for context in settings.aws_contexts:
        make = client_factory(
            context_spec(context),
            connect_timeout=3,
            read_timeout=10,
            retries={"total_max_attempts": 2, "mode": "standard"},
        )
        executors[context.name] = AwsActions(
            region=context.region,
            profile=context.profile,
            endpoint_url=context.endpoint_url,
            client_factory=make,
        )
    return FleetActions(executors, settings.aws_contexts[0].name)


def headless_watch(
    settings: Settings, *, clock: Callable[[], datetime], act: bool, face: str
) -> tuple[Controller, AwsActions | FleetActions]:
    """The watch a face without a screen runs (the gate, the relay): the config's
    actions executor (one per ``[[aws]]`` context), the config's audit log, and
    read-only unless the face may act.

    Returns:
        The controller and its executor (``resolve_operator()`` it before acting).
    """
    import os

    from engine.audit import AuditLog, default_audit_path
    from engine.controller import Controller

    aws = build_actions(settings)
    controller = Controller(
        settings,
        clock=clock,
        executor=aws,
        audit=AuditLog(settings.actions.audit_log or default_audit_path()),
        operator=lambda: aws.operator or os.environ.get("USER", face),
        read_only=not act,
    )
    return controller, aws
