"""Build sources from settings. The only place that knows both."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sources.ecs import EcsSource, EcsTarget
from tui.engine.rules import NoDataPolicy, Rule, RuleBook, Severity

if TYPE_CHECKING:
    from sources.model import Source
    from tui.config import Settings


def build_sources(settings: Settings) -> list[Source]:
    """One source per kind of upstream configured."""
    ecs = settings.ecs
    return [
        EcsSource(
            [EcsTarget(ref.key, ref.cluster, ref.service) for ref in settings.services],
            region=settings.aws.region,
            profile=settings.aws.profile,
            endpoint_url=settings.aws.endpoint_url,
            poll_interval=ecs.poll_interval,
            connect_timeout=ecs.connect_timeout,
            read_timeout=ecs.read_timeout,
            max_concurrency=ecs.max_concurrency,
        )
    ]


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
    return "", timedelta(seconds=3 * settings.ecs.poll_interval + 10)


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
