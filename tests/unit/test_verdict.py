"""The verdict: earned by evidence, never a default; ECS's own failure always wins."""

from __future__ import annotations

from datetime import timedelta

from engine.rules import Rule, RuleBook, RuleState, Severity
from engine.store import EcsStatus, Store
from engine.verdict import Verdict, judge
from sources.model import MetricPoint, MetricSample, ProbeSample, SourceFailure
from tests.fakes import T0, deployment, sample, service_deployment

MIN = timedelta(minutes=1)
ERR = Rule("error rate", "metric:error_rate", ">", 5.0, 2 * MIN, Severity.CRITICAL, unit="%")
LAT = Rule("p95", "metric:p95_ms", ">", 300.0, 2 * MIN, Severity.WARN, unit="ms")
AVAIL = Rule("availability", "probe:web.availability", "<", 99.5, MIN, Severity.CRITICAL, unit="%")


def store(*rules: Rule) -> Store:
    return Store([("demo/web", "web")], RuleBook(rules))


def metric(name: str, group: str | None, values: list[float], start: int = 0) -> MetricSample:
    points = tuple(
        MetricPoint(T0 + timedelta(seconds=10 * (start + i)), v) for i, v in enumerate(values)
    )
    return MetricSample(name, "demo/web", group, points, "%", points[-1].at)


def healthy_ecs(s: Store) -> None:
    s.ingest(
        sample(
            "demo/web",
            [deployment("web:2")],
            service_deployments=[service_deployment("SUCCESSFUL", source="web:1", target="web:2")],
        )
    )


def report(s: Store, at: timedelta) -> tuple[Verdict, list[str]]:
    evidence = s.rules.evaluate(T0 + at, s.source_error)
    ecs = {k: st.status for k, st in s.services.items()}
    r = judge(evidence, ecs)
    return r.verdict, list(r.reasons)


def test_healthy_needs_fresh_ok_data_for_every_rule() -> None:
    s = store(ERR, LAT)
    healthy_ecs(s)
    s.ingest(metric("error_rate", "version:v2", [0.5] * 13))
    verdict, reasons = report(s, timedelta(seconds=120))
    assert verdict is Verdict.NO_DATA  # p95 was never seen
    assert any(r.startswith("p95 —") for r in reasons)
    s.ingest(metric("p95_ms", "version:v2", [120.0] * 13))
    assert report(s, timedelta(seconds=120))[0] is Verdict.HEALTHY


def test_bad_release_fails_with_the_error_rate_as_evidence() -> None:
    s = store(ERR, LAT)
    healthy_ecs(s)
    s.ingest(metric("p95_ms", "version:v2", [120.0] * 13))
    s.ingest(metric("error_rate", "version:v1", [0.2] * 13))
    s.ingest(metric("error_rate", "version:v2", [15.0] * 13))
    verdict, reasons = report(s, timedelta(seconds=120))
    assert verdict is Verdict.FAILING
    assert reasons[0].startswith("error rate [version:v2] 15% > 5% for 2m · 13 samples")


def test_warning_alone_is_degraded() -> None:
    s = store(ERR, LAT)
    healthy_ecs(s)
    s.ingest(metric("error_rate", None, [0.2] * 13))
    s.ingest(metric("p95_ms", "version:v2", [700.0] * 13))
    verdict, reasons = report(s, timedelta(seconds=120))
    assert verdict is Verdict.DEGRADED and reasons[0].startswith("p95 [version:v2] 700ms > 300ms")


def test_ecs_rolled_back_is_never_healthy_even_with_green_rules() -> None:
    s = store(ERR)
    s.ingest(metric("error_rate", None, [0.2] * 13))
    s.ingest(
        sample(
            "demo/web",
            [deployment("web:1")],
            service_deployments=[
                service_deployment("ROLLBACK_SUCCESSFUL", source="web:1", target="web:2")
            ],
        )
    )
    verdict, reasons = report(s, timedelta(seconds=120))
    # A calm state of its own: it was bad, ECS rolled it back, the old revision serves.
    assert verdict is Verdict.ROLLED_BACK
    assert reasons == ["ECS demo/web: ECS rolled the deployment back"]


def test_rolled_back_gives_way_to_failing_and_degraded_and_says_how() -> None:
    from engine.rules import Evidence

    def ev(state: RuleState) -> Evidence:
        return Evidence("r", state, 1.0, 0.5, ">", timedelta(seconds=10), 3, T0, None)

    rolled = {"demo/web": EcsStatus.ROLLBACK_SUCCESSFUL}
    words = {"demo/web": "rolled back to web:1 at 02:04:10 by the circuit breaker"}
    calm = judge([ev(RuleState.OK)], rolled, words)
    assert calm.verdict is Verdict.ROLLED_BACK
    assert calm.headline == "ECS demo/web: rolled back to web:1 at 02:04:10 by the circuit breaker"
    assert judge([ev(RuleState.CRITICAL)], rolled, words).verdict is Verdict.FAILING
    assert judge([ev(RuleState.WARN)], rolled, words).verdict is Verdict.DEGRADED
    in_progress = {"demo/web": EcsStatus.ROLLBACK_IN_PROGRESS}
    assert judge([ev(RuleState.OK)], in_progress).verdict is Verdict.FAILING  # act-now state


def test_a_failing_source_is_stale_never_ok_never_critical() -> None:
    s = store(ERR)
    healthy_ecs(s)
    s.ingest(metric("error_rate", None, [15.0] * 13))
    assert report(s, timedelta(seconds=120))[0] is Verdict.FAILING
    # Datadog starts failing; three minutes later the data is old.
    s.ingest(SourceFailure("datadog", None, "HTTP 503: upstream unavailable", "http 503", T0))
    verdict, reasons = report(s, timedelta(seconds=120) + 3 * MIN)
    assert verdict is Verdict.NO_DATA
    assert "http 503: HTTP 503: upstream unavailable" in reasons[0]
    assert (
        s.rules.evaluate(T0 + timedelta(seconds=120) + 3 * MIN, s.source_error)[0].state
        is RuleState.STALE
    )


def test_probe_availability_and_ecs_failed_tasks_feed_rules() -> None:
    failed = Rule("tasks failing", "ecs:failed_tasks", ">=", 1, MIN, Severity.WARN)
    s = Store([("demo/web", "web")], RuleBook([AVAIL, failed], scope={"tasks failing": "demo/web"}))
    for i in range(7):
        at = T0 + timedelta(seconds=10 * i)
        s.ingest(
            ProbeSample(
                "web",
                "demo/web",
                "http://127.0.0.1/health",
                at,
                False,
                503,
                3.0,
                "expected 200, got 503",
                0.5,
                20,
            )
        )
        s.ingest(sample("demo/web", [deployment("web:2", failed=2, rollout="IN_PROGRESS")], at=at))
    evidence = {e.rule: e for e in s.rules.evaluate(T0 + timedelta(seconds=60), s.source_error)}
    assert (
        evidence["availability"].state is RuleState.CRITICAL
        and evidence["availability"].value == 50.0
    )
    assert (
        evidence["tasks failing"].state is RuleState.WARN
        and evidence["tasks failing"].group == "demo/web"
    )
    assert s.take_dirty_panes() == {"probes"}
    assert s.services["demo/web"].status is EcsStatus.IN_PROGRESS
