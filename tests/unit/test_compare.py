"""Comparison rules: the Mann-Whitney judgement, its numbers and edge cases, the canary
score, which groups are compared, the config, and the watch running the test off the
event loop only when a point changed."""

from __future__ import annotations

import asyncio
import math
import random
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.audit import AuditLog
from engine.compare import (
    SCORE_RULE,
    CompareBook,
    CompareEvidence,
    CompareRule,
    Direction,
    Judgement,
    Outcome,
    describe,
    judge_samples,
    score_of,
)
from engine.config import ConfigError, parse_config
from engine.controller import Controller
from engine.rules import NoDataPolicy, RuleBook, RuleState
from engine.verdict import Verdict
from sources.model import MetricPoint, MetricSample
from tests.fakes import SIGNALS, T0, FrozenClock, healthy_script

SEC = timedelta(seconds=1)
V1, V2 = "version:v1", "version:v2"


def rule(**kw: Any) -> CompareRule:
    base: dict[str, Any] = dict(name="p95", subject="metric:p95_ms", unit="ms", min_samples=10)
    base.update(kw)
    return CompareRule(**base)


def uniform(seed: int, low: float, high: float, n: int = 30) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(n)]


# --------------------------------------------------------------------------- the judgement


def test_a_shift_past_the_allowed_ratio_fails_with_its_numbers() -> None:
    j = judge_samples(rule(), uniform(1, 70, 95), uniform(2, 115, 150), (V1, V2))
    assert j.outcome is Outcome.FAIL and not j.severe
    assert j.baseline_stat is not None and 80 < j.baseline_stat < 85
    assert j.canary_stat is not None and 128 < j.canary_stat < 136
    assert j.ratio == pytest.approx(j.canary_stat / j.baseline_stat)
    assert j.p_value is not None and j.p_value < 0.001
    assert (j.baseline_n, j.canary_n) == (30, 30)
    assert describe(rule(), j) == (
        f"p95 v2 {j.canary_stat:.0f} ms vs v1 {j.baseline_stat:.3g} ms ×1.6 > ×1.1, "
        "p<0.001, 30/30 samples"
    )


def test_the_one_liner_reads_like_the_issue() -> None:
    j = Judgement(Outcome.FAIL, V1, V2, 82.0, 131.0, 131 / 82, 0.003, 30, 30)
    assert describe(rule(), j) == "p95 v2 131 ms vs v1 82 ms ×1.6 > ×1.1, p=0.003, 30/30 samples"
    ok = Judgement(Outcome.PASS, V1, V2, 82.0, 84.0, 84 / 82, 0.41, 30, 28)
    assert describe(rule(), ok) == "p95 v2 84 ms vs v1 82 ms ×1.02 ≤ ×1.1, p=0.41, 28/30 samples"
    near = Judgement(Outcome.FAIL, V1, V2, 91.2, 110.0, 110 / 91.2, 0.044, 48, 26)
    assert describe(rule(allowed_increase=1.2), near).startswith(
        "p95 v2 110 ms vs v1 91.2 ms ×1.21 > ×1.2, p=0.044, "
    )
    errors = rule(name="errors", unit="%")
    bad = Judgement(Outcome.FAIL, V1, V2, 0.2, 2.1, 10.5, 0.0004, 60, 60, severe=True)
    assert (
        describe(errors, bad)
        == "errors v2 2.1% vs v1 0.2% ×10.5 > ×2 critical, p<0.001, 60/60 samples"
    )


def test_a_shift_past_the_critical_ratio_is_severe() -> None:
    j = judge_samples(rule(), uniform(1, 40, 60), uniform(2, 110, 150), (V1, V2))
    assert j.outcome is Outcome.FAIL and j.severe


def test_a_zero_baseline_fails_but_proves_no_critical_effect() -> None:
    base = [0.0] * 30
    canary = [0.0] * 20 + [10.0] * 10
    j = judge_samples(rule(statistic="mean", unit="%"), base, canary, (V1, V2))
    assert j.ratio == math.inf and j.outcome is Outcome.FAIL and not j.severe
    assert "×∞ > ×1.1," in describe(rule(unit="%"), j)


def test_a_significant_shift_within_the_allowed_ratio_passes() -> None:
    j = judge_samples(rule(), uniform(1, 80, 90, 200), uniform(2, 84, 94, 200), (V1, V2))
    assert j.p_value is not None and j.p_value < 0.05
    assert j.ratio is not None and j.ratio < 1.1 and j.outcome is Outcome.PASS


def test_a_large_but_unproven_shift_is_marginal() -> None:
    base = [10.0, 200.0] * 5 + [10.0]
    canary = [20.0, 190.0] * 5 + [20.0]
    j = judge_samples(rule(min_samples=5), base, canary, (V1, V2))
    assert j.ratio == pytest.approx(2.0) and j.p_value is not None and j.p_value > 0.05
    assert j.outcome is Outcome.MARGINAL


def test_ties_and_all_equal_series_pass_with_p_one() -> None:
    same = judge_samples(rule(), [80.0] * 20, [80.0] * 20, (V1, V2))
    assert (same.outcome, same.p_value, same.ratio) == (Outcome.PASS, 1.0, 1.0)
    zeros = judge_samples(rule(statistic="mean"), [0.0] * 20, [0.0] * 20, (V1, V2))
    assert (zeros.outcome, zeros.ratio) == (Outcome.PASS, 1.0)
    ties = judge_samples(rule(), [80.0] * 15 + [90.0] * 15, [80.0] * 10 + [140.0] * 20, (V1, V2))
    assert ties.outcome is Outcome.FAIL and ties.p_value is not None and ties.p_value < 0.01


def test_too_few_samples_is_no_data_and_says_how_many() -> None:
    j = judge_samples(rule(), uniform(1, 70, 90, 30), uniform(2, 200, 300, 9), (V1, V2))
    assert j.outcome is Outcome.NO_DATA and j.ratio is None
    assert j.reason == "too few samples: 9/30, need 10 per side in 5m"


def test_decrease_direction_fails_a_drop_and_passes_a_rise() -> None:
    down = rule(name="throughput", unit="req/s", direction=Direction.DECREASE)
    drop = judge_samples(down, uniform(1, 90, 110), uniform(2, 40, 60), (V1, V2))
    assert drop.outcome is Outcome.FAIL and drop.severe is False
    assert "×0.5 < ×0.9," in describe(down, drop)
    rise = judge_samples(down, uniform(1, 90, 110), uniform(2, 190, 210), (V1, V2))
    assert rise.outcome is Outcome.PASS


def test_either_direction_fails_both_ways() -> None:
    either = rule(direction=Direction.EITHER)
    assert judge_samples(either, uniform(1, 90, 110), uniform(2, 40, 60)).outcome is Outcome.FAIL
    assert judge_samples(either, uniform(1, 90, 110), uniform(2, 150, 170)).outcome is Outcome.FAIL
    assert judge_samples(either, uniform(1, 90, 110), uniform(2, 90, 110)).outcome is Outcome.PASS


@settings(max_examples=25, derandomize=True, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    low=st.floats(0, 1000),
    spread=st.floats(0.1, 1000),
    n=st.integers(10, 60),
)
def test_identical_distributions_fail_no_more_often_than_chance(
    seed: int, low: float, spread: float, n: int
) -> None:
    """At 0.95, two samples of one distribution fail at most 5 % of the time; with the
    allowed ratio on top, less. 200 pairs: the bound is 5 % plus three standard errors."""
    rng = random.Random(seed)
    loose = rule(allowed_increase=1.0)  # the test alone decides
    fails = 0
    for _ in range(200):
        a = [low + rng.random() * spread for _ in range(n)]
        b = [low + rng.random() * spread for _ in range(n)]
        fails += judge_samples(loose, a, b).outcome is Outcome.FAIL
    assert fails <= 200 * 0.05 + 3 * math.sqrt(200 * 0.05 * 0.95)


# --------------------------------------------------------------------------- the score


def test_score_weights_and_critical_comparisons() -> None:
    a, b, c = rule(name="a", weight=2.0), rule(name="b"), rule(name="c", critical=True)
    weighted = score_of([(a, Outcome.PASS, False), (b, Outcome.FAIL, False)])
    assert weighted is not None and weighted[0] == pytest.approx(200 / 3) and not weighted[1]
    assert score_of([(a, Outcome.MARGINAL, False), (b, Outcome.PASS, False)]) == (100.0, False)
    assert score_of([(a, Outcome.PASS, False), (c, Outcome.FAIL, False)]) == (0.0, True)
    assert score_of([(a, Outcome.PASS, False), (b, Outcome.FAIL, True)]) == (0.0, True)
    assert score_of([]) is None


def feed(book: RuleBook, subject: str, group: str, values: list[float], start: int = 0) -> None:
    for i, value in enumerate(values):
        book.record(subject, T0 + (start + i) * SEC, value, group)


def two_metric_book(**kw: Any) -> tuple[RuleBook, CompareBook]:
    book = RuleBook([])
    p95 = rule(window=timedelta(seconds=60), **kw)
    errors = rule(name="errors", subject="metric:errors", unit="%", window=timedelta(seconds=60))
    return book, CompareBook((p95, errors), book)


def test_one_failing_comparison_of_two_is_marginal_two_fail_the_canary() -> None:
    book, compare = two_metric_book()
    now = T0 + 60 * SEC
    feed(book, "metric:p95_ms", V1, uniform(1, 70, 90, 60))
    feed(book, "metric:p95_ms", V2, uniform(2, 120, 150, 30), start=30)
    feed(book, "metric:errors", V1, uniform(3, 0.1, 0.3, 60))
    feed(book, "metric:errors", V2, uniform(4, 0.1, 0.3, 30), start=30)
    compare.refresh_now(now)
    evidence = {e.rule: e for e in compare.evaluate(now)}
    assert evidence["p95"].state is RuleState.WARN  # score 50: marginal
    assert evidence["errors"].state is RuleState.OK
    assert evidence[SCORE_RULE].state is RuleState.WARN and evidence[SCORE_RULE].value == 50
    assert evidence[SCORE_RULE].summary().startswith("canary score 50/100 (fail < 50, pass ≥ 75")
    feed(book, "metric:errors", V2, uniform(5, 1.0, 3.0, 5), start=60)
    feed(book, "metric:p95_ms", V2, uniform(6, 120, 150, 5), start=60)
    feed(book, "metric:p95_ms", V1, uniform(7, 70, 90, 5), start=60)
    feed(book, "metric:errors", V1, uniform(8, 0.1, 0.3, 5), start=60)
    # errors v2 now: 30 points at ~0.2 and 5 at ~2: not enough yet ...
    later = T0 + 95 * SEC
    feed(book, "metric:errors", V2, uniform(9, 1.0, 3.0, 30), start=65)
    feed(book, "metric:errors", V1, uniform(10, 0.1, 0.3, 30), start=65)
    feed(book, "metric:p95_ms", V2, uniform(11, 120, 150, 30), start=65)
    feed(book, "metric:p95_ms", V1, uniform(12, 70, 90, 30), start=65)
    compare.refresh_now(later)
    evidence = {e.rule: e for e in compare.evaluate(later)}
    assert evidence["p95"].state is RuleState.CRITICAL
    assert evidence["errors"].state is RuleState.CRITICAL
    assert evidence[SCORE_RULE].state is RuleState.CRITICAL
    assert evidence["errors"].summary().startswith("errors v2 ")


def test_a_fail_outvoted_by_a_passing_score_is_ok_and_says_so() -> None:
    book = RuleBook([])
    rules = (
        rule(name="p95", window=timedelta(seconds=60)),
        rule(name="a", subject="metric:a", window=timedelta(seconds=60), weight=3.0),
    )
    compare = CompareBook(rules, book)
    feed(book, "metric:p95_ms", V1, uniform(1, 70, 90, 60))
    feed(book, "metric:p95_ms", V2, uniform(2, 120, 150, 60))
    feed(book, "metric:a", V1, uniform(3, 10, 20, 60))
    feed(book, "metric:a", V2, uniform(4, 10, 20, 60))
    now = T0 + 60 * SEC
    compare.refresh_now(now)
    evidence = {e.rule: e for e in compare.evaluate(now)}
    assert evidence[SCORE_RULE].value == 75 and evidence[SCORE_RULE].state is RuleState.OK
    assert evidence["p95"].state is RuleState.OK
    assert evidence["p95"].reason == "Fail outvoted: canary score 75 passes"


@pytest.mark.parametrize(
    ("policy", "state", "score_state"),
    [
        (NoDataPolicy.NO_DATA, RuleState.NO_DATA, RuleState.NO_DATA),
        (NoDataPolicy.OK, RuleState.OK, RuleState.OK),
        (NoDataPolicy.BREACH, RuleState.CRITICAL, RuleState.CRITICAL),
    ],
)
def test_too_few_samples_follows_the_no_data_policy(
    policy: NoDataPolicy, state: RuleState, score_state: RuleState
) -> None:
    book = RuleBook([])
    compare = CompareBook((rule(no_data=policy, window=timedelta(seconds=60)),), book)
    feed(book, "metric:p95_ms", V1, uniform(1, 70, 90, 60))
    feed(book, "metric:p95_ms", V2, uniform(2, 300, 400, 5), start=55)
    now = T0 + 60 * SEC
    compare.refresh_now(now)
    evidence = {e.rule: e for e in compare.evaluate(now)}
    assert evidence["p95"].state is state
    assert evidence[SCORE_RULE].state is score_state
    assert "too few samples: 5/60, need 10 per side in 1m" in evidence["p95"].summary()


def test_one_version_only_is_nothing_to_compare() -> None:
    book = RuleBook([])
    compare = CompareBook((rule(),), book)
    feed(book, "metric:p95_ms", V1, uniform(1, 70, 90, 60))
    now = T0 + 60 * SEC
    compare.refresh_now(now)
    evidence = {e.rule: e for e in compare.evaluate(now)}
    assert evidence["p95"].state is RuleState.NO_DATA
    assert evidence["p95"].summary() == "p95: one version only: nothing to compare"


def test_a_failing_source_makes_the_comparison_stale() -> None:
    book = RuleBook([])
    compare = CompareBook((rule(),), book)
    feed(book, "metric:p95_ms", V1, uniform(1, 70, 90, 60))
    feed(book, "metric:p95_ms", V2, uniform(2, 70, 90, 60))
    now = T0 + 60 * SEC
    compare.refresh_now(now)
    (p95, _score) = compare.evaluate(now, lambda _s, _g: "http 503")
    assert p95.state is RuleState.STALE and p95.summary() == "p95 · STALE · http 503"


# --------------------------------------------------------------------------- the groups


def test_the_baseline_is_the_group_whose_points_began_first() -> None:
    book = RuleBook([])
    compare = CompareBook((rule(),), book)
    feed(book, "metric:p95_ms", "version:v10", uniform(1, 70, 90, 30), start=30)
    feed(book, "metric:p95_ms", "version:v9", uniform(2, 70, 90, 60))
    assert compare.pair(compare.rules[0], T0 + 60 * SEC) == ("version:v9", "version:v10")
    tied = CompareBook((rule(subject="metric:b"),), book)
    feed(book, "metric:b", "version:v10", uniform(1, 70, 90, 10))
    feed(book, "metric:b", "version:v9", uniform(2, 70, 90, 10))
    assert tied.pair(tied.rules[0], T0 + 10 * SEC) == ("version:v9", "version:v10")


def test_named_groups_win_and_a_third_group_is_left_alone() -> None:
    book = RuleBook([])
    compare = CompareBook((rule(baseline="version:v2", canary="version:v1"),), book)
    for group in ("version:v1", "version:v2", "version:v3"):
        feed(book, "metric:p95_ms", group, uniform(1, 70, 90, 10))
    assert compare.pair(compare.rules[0], T0 + 10 * SEC) == ("version:v2", "version:v1")
    auto = CompareBook((rule(subject="metric:x"),), book)
    feed(book, "metric:x", "version:v1", uniform(1, 70, 90, 30))
    feed(book, "metric:x", "version:v2", uniform(1, 70, 90, 20), start=10)
    feed(book, "metric:x", "version:v3", uniform(1, 70, 90, 10), start=20)
    assert auto.pair(auto.rules[0], T0 + 30 * SEC) == ("version:v1", "version:v3")


# --------------------------------------------------------------------------- off the loop, once


async def test_refresh_runs_the_test_in_a_thread_only_for_new_points() -> None:
    book = RuleBook([])
    compare = CompareBook((rule(),), book)
    feed(book, "metric:p95_ms", V1, uniform(1, 70, 90, 30))
    feed(book, "metric:p95_ms", V2, uniform(2, 70, 90, 30))
    threads: list[str] = []

    async def run(func: Any, work: Any) -> Any:
        def call() -> Any:
            threads.append(threading.current_thread().name)
            return func(work)

        return await asyncio.to_thread(call)

    now = T0 + 30 * SEC
    assert await compare.refresh(now, run) == 1
    assert await compare.refresh(now, run) == 0  # nothing new: not judged again
    assert await compare.refresh(now + SEC / 2, run) == 0
    feed(book, "metric:p95_ms", V2, [80.0], start=30)
    assert await compare.refresh(now + SEC, run) == 1
    assert len(threads) == 2 and threading.main_thread().name not in threads
    assert compare.trackers["p95"].computed == 2


# --------------------------------------------------------------------------- the config


def config(**compare: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "service": [{"cluster": "demo", "service": "web"}],
        "datadog": SIGNALS["datadog"],
        "metric": SIGNALS["metric"],
        "compare": [{"name": "p95 vs v1", "subject": "metric:p95_ms", **compare}],
    }
    return data


def test_config_defaults_are_kayentas() -> None:
    settings = parse_config(config(), Path("t.toml"))
    (c,) = settings.compares
    assert (c.confidence, c.allowed_increase, c.critical_increase) == (0.95, 1.1, 2.0)
    assert (c.direction, c.statistic, c.no_data, c.window) == (
        "increase",
        "median",
        "no_data",
        timedelta(minutes=5),
    )
    assert (settings.judge.pass_score, settings.judge.marginal_score) == (75, 50)


@pytest.mark.parametrize(
    ("compare", "message"),
    [
        ({"subject": "metric:nope"}, "compare #1.subject: expected the name of a [[metric]]"),
        ({"critical_increase": 1.05}, "critical_increase of at least allowed_increase"),
        ({"confidence": 1.0}, "compare #1.confidence"),
        ({"direction": "up"}, "compare #1.direction"),
        ({"baseline": "version:v1", "canary": "version:v1"}, "two different groups"),
        ({"name": "canary score"}, "compare #1.name: expected a name no other"),
        ({"min_samples": 2}, "compare #1.min_samples"),
    ],
)
def test_config_errors_are_one_line(compare: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config(**compare), Path("t.toml"))
    assert message in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- in the watch


def p95_sample(group: str, values: list[float], start: int) -> MetricSample:
    points = tuple(MetricPoint(T0 + (start + i) * SEC, v) for i, v in enumerate(values))
    return MetricSample("p95_ms", "demo/web", group, points, "ms", T0 + 60 * SEC)


async def test_the_watch_judges_comparisons_and_counts_down_their_rollback(
    tmp_path: Path,
) -> None:
    data = config(action="rollback", window="1m", min_samples=20, critical=True, service="demo/web")
    settings = parse_config(data, Path("t.toml"))
    clock = FrozenClock(T0 + 60 * SEC)
    controller = Controller(
        settings,
        clock=clock,
        executor=lambda _call: {"ok": True},
        audit=AuditLog(tmp_path / "audit.jsonl"),
        operator=lambda: "tester",
    )
    for item in healthy_script()[:1]:
        controller.ingest(item)
    controller.ingest(p95_sample(V1, uniform(1, 70, 90, 60), 0))
    controller.ingest(p95_sample(V2, uniform(2, 120, 150, 40), 20))
    task = asyncio.create_task(controller.run())
    try:
        for _ in range(200):
            if any(isinstance(e, CompareEvidence) for e in controller.snapshot.evidence):
                break
            await asyncio.sleep(0.05)
        snapshot = controller.snapshot
        evidence = {e.rule: e for e in snapshot.evidence}
        assert evidence["p95 vs v1"].state is RuleState.CRITICAL
        assert snapshot.verdict is Verdict.FAILING
        assert snapshot.report.headline.startswith("p95 vs v1 v2 ")
        assert "ms ×1.7 > ×1.1, p<0.001, 40/60 samples" in snapshot.report.headline
        assert [c.rule for c in snapshot.countdowns] == ["p95 vs v1"]
        assert controller.compare.trackers["p95 vs v1"].computed == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_points_that_arrive_while_the_test_runs_are_judged_next_round(
    tmp_path: Path,
) -> None:
    settings = parse_config(config(window="1m", min_samples=20), Path("t.toml"))
    controller = Controller(
        settings,
        clock=FrozenClock(T0 + 60 * SEC),
        executor=lambda _call: {"ok": True},
        audit=AuditLog(tmp_path / "audit.jsonl"),
        operator=lambda: "tester",
    )
    compare = controller.compare
    original = compare.refresh
    calls = 0

    async def refresh(now: Any, run: Any = None) -> int:
        nonlocal calls
        calls += 1
        judged = await original(now, run)
        if calls == 1:  # the points land while the first (empty) round's test runs
            controller.ingest(p95_sample(V1, uniform(1, 70, 90, 60), 0))
            controller.ingest(p95_sample(V2, uniform(2, 120, 150, 40), 20))
        return judged

    compare.refresh = refresh  # type: ignore[method-assign]
    task = asyncio.create_task(controller.run())
    try:
        for _ in range(200):
            if compare.trackers["p95 vs v1"].computed >= 2:
                break
            await asyncio.sleep(0.05)
        assert compare.trackers["p95 vs v1"].computed == 2
        for _ in range(100):
            if controller.snapshot.verdict is not Verdict.NO_DATA:
                break
            await asyncio.sleep(0.05)
        evidence = {e.rule: e for e in controller.snapshot.evidence}
        assert evidence["p95 vs v1"].state is RuleState.CRITICAL  # alone: score 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
