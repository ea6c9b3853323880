"""Build sources from settings. The only place that knows both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from engine.rules import NoDataPolicy, Rule, RuleBook, Severity
from sources.aws_session import AwsContextSpec, client_factory
from sources.datadog import DatadogQuery, DatadogSource
from sources.discovery import Discovery
from sources.ecs import AlbTarget, EcsSource, EcsTarget
from sources.probes import Probe, ProbeSource
from sources.sentry import SentrySource

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from engine.config import AwsContext, ServiceRef, Settings
    from engine.store import Store
    from sources.model import Source


SMOKE_FRESH_FOR = timedelta(hours=24)
"""How long a smoke suite's last result is evidence (it stands until the next run)."""


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


def build_sources(
    settings: Settings, store: Store | None = None, clock: Callable[[], datetime] = utc_now
) -> list[Source]:
    """One source per kind of upstream configured.

    Args:
        settings: The config.
        store: Where Sentry learns the deployment's start and release as ECS reports
            them (without it: the start of this session, and the configured release).
        clock: Current UTC time.
    """
    sources: list[Source] = (
        list(ecs_sources(settings)) if settings.aws_contexts else [_ecs_source(settings)]
    )
    if settings.datadog is not None and settings.metrics:
        dd = settings.datadog
        sources.append(
            DatadogSource.from_env(
                [
                    DatadogQuery(m.name, m.query, settings.service_key(m.service), m.unit or None)
                    for m in settings.metrics
                ],
                site=dd.site,
                host=dd.host,
                interval=dd.poll_interval,
                window=dd.window,
                clock=clock,
            )
        )
    if settings.sentry is not None:
        sources.append(_sentry_source(settings, store, clock))
    if settings.probes:
        sources.append(
            ProbeSource(
                [
                    Probe(
                        name=p.name,
                        url=p.url,
                        method=p.method,
                        headers=dict(p.headers),
                        expect_status=p.expect_status,
                        body_contains=p.body_contains,
                        json_path=p.json_path,
                        json_value=p.json_value,
                        timeout=p.timeout.total_seconds(),
                        interval=p.interval.total_seconds(),
                        service=settings.service_key(p.service),
                        window=p.window,
                    )
                    for p in settings.probes
                ],
                clock=clock,
            )
        )
    return sources


def _sentry_source(
    settings: Settings, store: Store | None, clock: Callable[[], datetime]
) -> Source:
    sentry = settings.sentry
    assert sentry is not None
    key = settings.service_key(sentry.service)
    session_start = clock()
    # Until ECS names the deployment, "new" means new since this session began, an
    # hour back at most: a fresh deploywatch in mid-deploy still sees the new issues.
    fallback = session_start - timedelta(hours=1)

    def since() -> datetime:
        started = store.deployment_start(key) if store is not None else None
        return started or fallback

    def release() -> str | None:
        if sentry.release:
            return sentry.release
        return store.new_release(key) if store is not None else None

    return SentrySource.from_env(
        base_url=sentry.base_url,
        org=sentry.org,
        projects=tuple(sentry.projects),
        environment=sentry.environment,
        since=since,
        release=release,
        service=key,
        interval=sentry.poll_interval,
        clock=clock,
    )


def context_spec(context: AwsContext) -> AwsContextSpec:
    """How to reach a context's account and region (sources know no config)."""
    return AwsContextSpec(
        region=context.region,
        profile=context.profile,
        endpoint_url=context.endpoint_url,
        role_arn=context.role_arn,
        role_session_name=context.role_session_name,
        external_id=context.external_id,
    )


def ecs_sources(settings: Settings) -> list[EcsSource]:
    """One ECS poller per ``[[aws]]`` context that has services: each polls, fails
    and recovers on its own (one context's expired token never touches another)."""
    ecs = settings.ecs
    by_context: dict[str, list[ServiceRef]] = {}
    for ref in settings.services:
        by_context.setdefault(settings.context_of(ref).name, []).append(ref)
    sources = []
    for context in settings.aws_contexts:
        refs = by_context.get(context.name)
        if not refs:
            continue
        make = client_factory(
            context_spec(context),
            connect_timeout=ecs.connect_timeout,
            read_timeout=ecs.read_timeout,
            retries={"total_max_attempts": 2, "mode": "standard"},
            max_pool_connections=max(10, ecs.max_concurrency),
        )
        sources.append(_ecs_source(settings, refs, context, make))
    return sources


def _ecs_source(
    settings: Settings,
    refs: Sequence[ServiceRef] | None = None,
    context: AwsContext | None = None,
    make: Callable[[str], Any] | None = None,
) -> EcsSource:
    ecs = settings.ecs
    aws = context or settings.aws
    refs = settings.services if refs is None else refs
    return EcsSource(
        [
            EcsTarget(
                ref.key,
                ref.cluster,
                ref.service,
                (ref.codedeploy.application, ref.codedeploy.deployment_group)
                if ref.codedeploy is not None
                else None,
                AlbTarget(
                    ref.canary.listener_arn,
                    ref.canary.rule_arn,
                    ref.canary.stable_target_group_arn,
                    ref.canary.canary_target_group_arn,
                )
                if ref.canary is not None
                else None,
            )
            for ref in refs
            if not ref.discovers
        ],
        region=aws.region,
        profile=aws.profile,
        endpoint_url=aws.endpoint_url,
        poll_interval=ecs.poll_interval,
        connect_timeout=ecs.connect_timeout,
        read_timeout=ecs.read_timeout,
        max_concurrency=ecs.max_concurrency,
        context=context.name if context is not None else None,
        auth_hint=context.sso_hint if context is not None else None,
        client_factory=(lambda: make("ecs")) if make is not None else None,
        aux_factory=make,
        discover=[
            Discovery(
                ref.key,
                ref.cluster,
                ref.service,
                ref.only_active.total_seconds() if ref.only_active is not None else None,
            )
            for ref in refs
            if ref.discovers
        ],
        discover_interval=ecs.discover_interval,
        discover_limit=ecs.max_services,
    )


def normalize_subject(subject: str) -> str:
    """``probe:web`` means its availability: ``probe:web.availability``."""
    if subject.startswith("probe:") and "." not in subject:
        return f"{subject}.availability"
    return subject


def _unit_and_freshness(settings: Settings, subject: str) -> tuple[str, timedelta]:
    """A rule's unit, and how old its newest point may be before it is no data.

    Freshness follows the source's own pace: three missed polls (plus Datadog's
    usual ingestion lag) is silence, not a slow answer.
    """
    kind, _, name = subject.partition(":")
    if kind == "metric":
        unit = next((m.unit for m in settings.metrics if m.name == name), "")
        interval = settings.datadog.poll_interval if settings.datadog else 15.0
        return unit, timedelta(seconds=max(120.0, 3 * interval + 60))
    if kind == "probe":
        probe_name, _, attribute = name.partition(".")
        probe = next(p for p in settings.probes if p.name == probe_name)
        span = 3 * probe.interval + probe.timeout
        return ("ms" if attribute == "latency" else "%"), max(span, timedelta(seconds=15))
    if kind == "sentry":
        interval = settings.sentry.poll_interval if settings.sentry else 30.0
        return "", timedelta(seconds=3 * interval + 10)
    if kind == "smoke":
        # A suite's result stands until its next run: no poll ages it.
        return "", SMOKE_FRESH_FOR
    return "", timedelta(seconds=3 * settings.ecs.poll_interval + 10)


def freshness(settings: Settings, subject: str) -> timedelta:
    """How old a subject's newest point may be before its rules say no data
    (``metric:error_rate``, ``probe:web.latency`` ...): what a pane calls silent."""
    return _unit_and_freshness(settings, normalize_subject(subject))[1]


def build_rulebook(settings: Settings) -> RuleBook:
    """The rule book of a config: one Rule per ``[[rule]]``, scoped as configured."""
    rules: list[Rule] = []
    scope: dict[str, str] = {}
    for r in settings.rules:
        subject = normalize_subject(r.subject)
        unit, fresh = _unit_and_freshness(settings, subject)
        rules.append(
            Rule(
                name=r.name,
                subject=subject,
                op=r.op,
                threshold=r.threshold,
                window=r.window,
                severity=Severity(r.severity),
                action=r.action,
                no_data=NoDataPolicy(r.no_data),
                fresh_for=fresh,
                unit=unit,
            )
        )
        group = settings.service_key(r.service) if subject.startswith("ecs:") else r.group
        if group is not None:
            scope[r.name] = group
    return RuleBook(rules, scope)
