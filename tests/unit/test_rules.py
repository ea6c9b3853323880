"""Rule semantics: the window, resets, gaps, policies and the evidence they carry."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from engine.rules import NoDataPolicy, Rule, RuleBook, RuleState, Series, Severity
from tests.fakes import T0

MIN = timedelta(minutes=1)
SEC = timedelta(seconds=1)


def rule(**kw: object) -> Rule:
    base: dict[str, object] = dict(
        name="error rate",
        subject="metric:error_rate",
        op=">",
        threshold=5.0,
        window=5 * MIN,
        severity=Severity.CRITICAL,
        unit="%",
    )
    base.update(kw)
    return Rule(**base)  # type: ignore[arg-type]


def feed(book: RuleBook, subject: str, values: list[float], step: float = 10.0) -> None:
    for i, value in enumerate(values):
        book.record(subject, T0 + timedelta(seconds=i * step), value)


def at(index: int, step: float = 10.0) -> timedelta:
    return timedelta(seconds=index * step)


def test_breach_fires_only_after_the_whole_window() -> None:
    book = RuleBook([rule()])
    feed(book, "metric:error_rate", [14.0] * 30)  # 0 s .. 290 s
    (ev,) = book.evaluate(T0 + at(29))
    assert ev.state is RuleState.OK
    assert ev.reason == "pending 4m50s of 5m"
    book.record("metric:error_rate", T0 + at(30), 15.0)  # 300 s: held for 5 m
    (ev,) = book.evaluate(T0 + at(30))
    assert ev.state is RuleState.CRITICAL
    assert ev.value == 15.0 and ev.since == T0 and ev.breached_for == 5 * MIN
    assert ev.samples == 31
    assert ev.summary().startswith("error rate 15% > 5% for 5m · 31 samples · since 02:00:00")


def test_one_good_point_resets_the_streak() -> None:
    book = RuleBook([rule()])
    feed(book, "metric:error_rate", [14.0] * 20 + [1.0] + [14.0] * 20)
    (ev,) = book.evaluate(T0 + at(40))
    assert ev.state is RuleState.OK
    assert ev.since == T0 + at(21)


def test_a_gap_is_never_data() -> None:
    book = RuleBook((rule(fresh_for=MIN),))
    feed(book, "metric:error_rate", [14.0] * 40)  # breached at 300 s
    assert book.evaluate(T0 + at(39))[0].state is RuleState.CRITICAL
    (ev,) = book.evaluate(T0 + at(39) + 2 * MIN)  # source went quiet
    assert ev.state is RuleState.NO_DATA and ev.value is None
    assert "last point 2m ago" in ev.reason
    (ev,) = book.evaluate(T0 + at(39) + 2 * MIN, lambda _s, _g: "timeout: no answer within 5s")
    assert ev.state is RuleState.STALE and "timeout" in ev.reason
    # Data comes back: the streak starts again from scratch, no instant CRITICAL.
    book.record("metric:error_rate", T0 + at(39) + 3 * MIN, 14.0)
    (ev,) = book.evaluate(T0 + at(39) + 3 * MIN)
    assert ev.state is RuleState.OK and ev.reason.startswith("pending 0s")


def test_never_seen_subject_is_no_data() -> None:
    (ev,) = RuleBook((rule(),)).evaluate(T0)
    assert ev.state is RuleState.NO_DATA and ev.samples == 0 and "never seen" in ev.reason


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (NoDataPolicy.NO_DATA, RuleState.NO_DATA),
        (NoDataPolicy.OK, RuleState.OK),
        (NoDataPolicy.BREACH, RuleState.CRITICAL),
    ],
)
def test_no_data_policy_is_explicit(policy: NoDataPolicy, expected: RuleState) -> None:
    (ev,) = RuleBook((rule(no_data=policy),)).evaluate(T0)
    assert ev.state is expected


@pytest.mark.parametrize(
    ("op", "threshold", "values", "state"),
    [
        ("<", 99.5, [99.0] * 13, RuleState.WARN),  # availability < 99.5 % for 2 m
        ("<", 99.5, [99.9] * 13, RuleState.OK),
        (">=", 80.0, [80.0] * 13, RuleState.WARN),
        ("<=", 0.0, [0.0] * 13, RuleState.WARN),
        (">", 2000.0, [2000.0] * 13, RuleState.OK),  # equal is not above
    ],
)
def test_operators(op: str, threshold: float, values: list[float], state: RuleState) -> None:
    book = RuleBook((rule(op=op, threshold=threshold, window=2 * MIN, severity=Severity.WARN),))
    feed(book, "metric:error_rate", values)
    assert book.evaluate(T0 + at(12))[0].state is state


def test_series_is_bounded_in_time_and_count() -> None:
    series = Series(keep=MIN, max_points=50)
    for i in range(1000):
        series.add(T0 + timedelta(seconds=i), float(i))
    assert len(series.points) == 50
    series = Series(keep=MIN)
    for i in range(1000):
        series.add(T0 + timedelta(seconds=i), float(i))
    assert len(series.points) == 61  # the last minute, inclusive
    series.add(T0, -1.0)  # late point: ignored, never reorders
    assert series.latest is not None and series.latest.value == 999.0


def test_worst_first_and_unknown_subjects_ignored() -> None:
    book = RuleBook(
        (rule(), rule(name="cpu", subject="metric:cpu", severity=Severity.WARN, threshold=80))
    )
    feed(book, "metric:cpu", [90.0] * 40)
    assert not book.record("metric:nobody-reads-this", T0, 1.0)
    states = [e.state for e in book.evaluate(T0 + at(39))]
    assert states == [RuleState.WARN, RuleState.NO_DATA]


def test_grouped_subject_is_judged_per_group_and_scoped() -> None:
    book = RuleBook([rule()])
    for i in range(40):
        book.record("metric:error_rate", T0 + at(i), 0.2, group="version:v1")
        book.record("metric:error_rate", T0 + at(i), 15.0, group="version:v2")
    (ev,) = book.evaluate(T0 + at(39))
    assert ev.state is RuleState.CRITICAL and ev.group == "version:v2"
    assert ev.summary().startswith("error rate [version:v2] 15% > 5%")
    scoped = RuleBook([rule()], scope={"error rate": "version:v1"})
    for i in range(40):
        scoped.record("metric:error_rate", T0 + at(i), 0.2, group="version:v1")
        scoped.record("metric:error_rate", T0 + at(i), 15.0, group="version:v2")
    (ev,) = scoped.evaluate(T0 + at(39))
    assert ev.state is RuleState.OK and ev.group == "version:v1"


def test_a_group_that_stops_reporting_loses_its_breach_and_its_say() -> None:
    """After a rollback v2 gets no traffic: its last (breaching) points must not keep
    the rule CRITICAL, and the reporting group (v1) decides."""
    book = RuleBook([rule(window=MIN)])
    for i in range(12):  # 2 minutes: v2 breaching, v1 fine
        book.record("metric:error_rate", T0 + at(i), 15.0, group="version:v2")
        book.record("metric:error_rate", T0 + at(i), 0.1, group="version:v1")
    (ev,) = book.evaluate(T0 + at(11))
    assert ev.state is RuleState.CRITICAL and ev.group == "version:v2"
    for i in range(12, 20):  # v2 is gone; v1 keeps reporting
        book.record("metric:error_rate", T0 + at(i), 0.1, group="version:v1")
    (ev,) = book.evaluate(T0 + at(19))
    assert ev.state is RuleState.OK and ev.group == "version:v1"
    # Alone, a silent group is NO DATA — never CRITICAL on its old points.
    solo = RuleBook([rule(window=MIN)])
    for i in range(12):
        solo.record("metric:error_rate", T0 + at(i), 15.0)
    (ev,) = solo.evaluate(T0 + at(11) + 2 * MIN - timedelta(seconds=1))
    assert ev.state is RuleState.NO_DATA and ev.samples == 0


def test_sparse_points_keep_their_streak_until_the_window_has_held() -> None:
    """10 s buckets under a 20 s window, each bucket known 2 s after it ends (a canary
    with few requests, rolled up): between two points the window may hold none, but the
    newest point still stands for its bucket. That is no gap: the streak goes on, and
    the rule fires once 20 s have held (before, it went NO DATA and restarted)."""
    book = RuleBook([rule(window=timedelta(seconds=20)), rule(name="slow", window=30 * SEC)])
    states: dict[str, list[RuleState]] = {"error rate": [], "slow": []}
    fired: dict[str, float] = {}
    for tenth in range(0, 600, 5):  # judged every 0.5 s for a minute
        now = T0 + timedelta(seconds=tenth / 10)
        bucket = (tenth / 10 - 2) // 10 - 1  # the newest bucket that ended 2 s ago
        if bucket >= 0:
            book.record("metric:error_rate", T0 + timedelta(seconds=bucket * 10), 15.0)
        if tenth < 120:
            continue
        for ev in book.evaluate(now):
            states[ev.rule].append(ev.state)
            assert ev.samples >= 1, ev.summary()  # the bucket reaching into the window
            if ev.state is RuleState.CRITICAL:
                fired.setdefault(ev.rule, tenth / 10)
    for name, seen in states.items():
        assert RuleState.NO_DATA not in seen, (name, seen)
    assert fired == {"error rate": 20.0, "slow": 30.0}
    # A group that stops reporting still goes NO DATA: one bucket past the window.
    (ev, _) = book.evaluate(T0 + timedelta(seconds=50 + 10 + 20 + 1))
    assert ev.state is RuleState.NO_DATA and ev.value is None


def test_a_failing_source_makes_its_rules_stale_at_once_and_keeps_the_streak() -> None:
    book = RuleBook([rule(window=MIN)])
    feed(book, "metric:error_rate", [14.0] * 5)  # 0..40 s breaching
    (ev,) = book.evaluate(T0 + at(4), lambda _s, _g: "timeout: no answer")
    assert ev.state is RuleState.STALE and ev.value is None
    assert "timeout: no answer" in ev.reason
    # The source answers again: the breach began at 0 s, not after the outage.
    book.record("metric:error_rate", T0 + at(6), 14.0)
    (ev,) = book.evaluate(T0 + at(6))
    assert ev.state is RuleState.CRITICAL and ev.since == T0


@pytest.mark.parametrize("fresh_for", [timedelta(minutes=2), timedelta(minutes=20)])
def test_the_moment_a_rule_loses_its_data_is_a_moment_the_watch_wakes(
    fresh_for: timedelta,
) -> None:
    """A breach whose points stop must turn NO DATA at a moment ``next_change`` names
    (the watch sleeps until then): by freshness, or by the newest point's bucket leaving
    the window, whichever comes first."""
    book = RuleBook([rule(window=2 * MIN, fresh_for=fresh_for)])
    feed(book, "metric:error_rate", [14.0] * 18)  # 0 s .. 170 s, 10 s buckets
    now = T0 + at(17)
    (ev,) = book.evaluate(now)
    assert ev.state is RuleState.CRITICAL
    for _ in range(20):  # bounded: each wake moves time forward
        wake = book.next_change(now)
        assert wake is not None, "the rule can still change by the clock alone"
        now = wake
        (ev,) = book.evaluate(now)
        if ev.state is not RuleState.CRITICAL:
            break
    assert ev.state is RuleState.NO_DATA
    # ...and no later than it should: just after the point's bucket left the window
    # (170 s + 10 s + 2 m) or its freshness ended (170 s + 2 m).
    assert now - (T0 + at(17)) <= min(fresh_for, 10 * SEC + 2 * MIN) + SEC


def test_a_re_read_window_records_like_each_point_alone() -> None:
    """A source that re-reads its whole window each time: only new points go in, and
    the series, the streak and the evidence are what point-by-point recording gives."""
    one_by_one, batched = RuleBook([rule()]), RuleBook([rule()])
    window: list[tuple[datetime, float | None]] = []
    for i in range(60):
        value = None if i % 7 == 3 else (9.0 if 20 <= i < 52 else 1.0)
        window = [*window, (T0 + at(i), value)][-30:]  # the last 30 points, re-read
        if i % 5 == 4:  # the newest bucket re-read with a new value
            window[-1] = (window[-1][0], 8.0)
        for when, reading in window:
            if reading is not None:
                one_by_one.record("metric:error_rate", when, reading)
        batched.record_points("metric:error_rate", window)
        now = T0 + at(i)
        assert one_by_one.evaluate(now) == batched.evaluate(now)
    key = ("metric:error_rate", None)
    assert list(batched.series[key].points) == list(one_by_one.series[key].points)
    batched.record_points("metric:unknown", window)  # no rule reads it: nothing kept
    assert ("metric:unknown", None) not in batched.series
