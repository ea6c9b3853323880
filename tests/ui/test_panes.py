"""The metrics, errors and probes panes as a person sees them, driven through Pilot.

Every assertion reads the screen itself (the compositor's rendered lines and the colour
of the cells), not a widget's internals: what is cut, wrapped or coloured there is what
the deployer sees at 2 a.m.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from rich.segment import Segment
from rich.style import Style as RichStyle
from textual.color import Color
from textual.strip import Strip

from engine.config import Settings, parse_config
from sources.model import (
    MetricPoint,
    MetricSample,
    ProbeSample,
    SentryIssue,
    SentrySample,
    SourceFailure,
)
from tests.fakes import (
    SIGNALS,
    T0,
    FakeSource,
    FrozenClock,
    bad_release_signals,
    mid_deploy_script,
    settings,
)
from tui.app import DeployWatchApp
from widgets.format import SPARK_BLOCKS
from widgets.signals import ISSUES_SHOWN, MetricsPane, ProbesPane
from widgets.tones import changed_span

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from textual.pilot import Pilot

    from sources.model import Item

SIZE = (200, 50)
WEB = (("demo", "web"),)
METRICS, ERRORS, PROBES = "#metrics-pane", "#errors-pane", "#probes-pane"
BLOCKS = set(SPARK_BLOCKS)
HALF = SPARK_BLOCKS.index("▄")
"""The highest block a value at or under a rule's threshold draws."""


# ----------------------------------------------------------------------------- builders


def metric(
    name: str,
    group: str | None,
    values: Sequence[float | None],
    *,
    unit: str,
    end: datetime = T0,
    step: float = 10,
) -> MetricSample:
    """A Datadog answer for one group: ``values`` every ``step`` s, the last at ``end``."""
    n = len(values)
    points = tuple(
        MetricPoint(end - timedelta(seconds=step * (n - 1 - i)), v) for i, v in enumerate(values)
    )
    return MetricSample(name, "demo/web", group, points, unit, end)


def issue(
    short_id: str, title: str, count: int, first_seen: datetime, release: str = "v2"
) -> SentryIssue:
    return SentryIssue(
        id=short_id,
        short_id=short_id,
        title=title,
        culprit="sandbox.service in _fail",
        level="error",
        count=count,
        user_count=3,
        first_seen=first_seen,
        last_seen=T0,
        first_release=release,
    )


def sentry(
    issues: Sequence[SentryIssue],
    counts: Sequence[float | None],
    *,
    at: datetime = T0,
    so_far: float | None = None,
    since: datetime = T0 - timedelta(minutes=3),
) -> SentrySample:
    """Sentry's answer: new ``issues`` since T0-3m, error ``counts`` one per complete
    minute (the newest ending at ``at``), ``so_far`` in the minute still filling."""
    n = len(counts)
    points = tuple(MetricPoint(at - timedelta(minutes=n - i), v) for i, v in enumerate(counts))
    return SentrySample(
        "demo/web", at, since, tuple(issues), "v2", tuple(issues), points, so_far, 60
    )


def probe(
    at: datetime,
    *,
    ok: bool = True,
    status: int | None = 200,
    latency: float | None = 21.0,
    ratio: float = 1.0,
    error: str | None = None,
    last_failure: datetime | None = None,
    reason: str | None = None,
    name: str = "web",
    attempts: int | None = 20,
) -> ProbeSample:
    return ProbeSample(
        name,
        "demo/web",
        "http://127.0.0.1:9/health",
        at,
        ok,
        status,
        latency,
        error,
        ratio,
        20,
        last_failure,
        reason,
        attempts,
    )


def down(source: str, error: str, reason: str, at: datetime) -> SourceFailure:
    """A whole signal source failing (Datadog and Sentry report ``key=None``)."""
    return SourceFailure(source=source, key=None, error=error, reason=reason, at=at)


def signal_settings(**changes: object) -> Settings:
    """The full signal config of the fakes for web alone, with tables replaced."""
    data: dict[str, object] = {
        "environment": {"name": "sandbox-demo"},
        "aws": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
        "service": [{"cluster": "demo", "service": "web"}],
        **SIGNALS,
        **changes,
    }
    return parse_config(data, Path("test.toml"))


def make_app(
    script: Sequence[Item], clock: FrozenClock, config: Settings | None = None
) -> tuple[DeployWatchApp, FakeSource]:
    source = FakeSource(list(script))
    config = config or settings(WEB, signals=True)
    return DeployWatchApp(config, [source], clock=clock), source


# ----------------------------------------------------------------------------- the screen


def screen_lines(app: DeployWatchApp) -> list[str]:
    """Every line of the screen as drawn (the compositor's own render)."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def pane_lines(app: DeployWatchApp, pane: str) -> list[str]:
    """The lines inside a pane's border, right-stripped."""
    region = app.screen.query_one(pane).region
    lines = screen_lines(app)[region.y + 1 : region.bottom - 1]
    return [line[region.x + 1 : region.right - 1].rstrip() for line in lines]


def pane_text(app: DeployWatchApp, pane: str) -> str:
    return "\n".join(pane_lines(app, pane))


def flowing(lines: Sequence[str]) -> str:
    """Wrapped lines read as one text (a wrap is not a cut)."""
    return " ".join(line.strip() for line in lines if line.strip())


def shows(app: DeployWatchApp, pane: str, needle: str) -> Callable[[], bool]:
    """A check for :func:`wait_for`: is ``needle`` in the pane?"""
    return lambda: needle in pane_text(app, pane)


def line_with(app: DeployWatchApp, pane: str, needle: str) -> str:
    """The first line of ``pane`` containing ``needle`` (fails the test if none)."""
    found = [line for line in pane_lines(app, pane) if needle in line]
    assert found, f"{needle!r} is not on screen in {pane}:\n{pane_text(app, pane)}"
    return found[0]


def colour_of(app: DeployWatchApp, pane: str, needle: str, after: str = "") -> str:
    """The foreground colour (``#rrggbb``) of ``needle``'s first cell in ``pane``.

    With ``after``, looks on the first line containing ``after``, right of it.
    """
    region = app.screen.query_one(pane).region
    lines = screen_lines(app)
    for y in range(region.y, region.bottom):
        line = lines[y]
        start = region.x
        if after:
            anchor = line.find(after, region.x, region.right)
            if anchor < 0:
                continue
            start = anchor + len(after)
        x = line.find(needle, start, region.right)
        if x >= 0:
            colour = app.screen._compositor.get_style_at(x, y).color
            assert colour is not None and colour.triplet is not None
            return colour.triplet.hex
    raise AssertionError(f"{needle!r} is not on screen in {pane}:\n{pane_text(app, pane)}")


def theme(app: DeployWatchApp, variable: str) -> str:
    """A theme colour as ``#rrggbb``: ``error``, ``warning``, ``success``."""
    return Color.parse(app.get_css_variables()[variable]).hex.lower()


def spark_of(line: str) -> str:
    """The sparkline at the end of a row (its block characters)."""
    body = line.rstrip()
    start = len(body)
    while start > 0 and body[start - 1] in BLOCKS | {"·"}:
        start -= 1
    return body[start:]


async def wait_for(pilot: Pilot[None], check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the app run until ``check()`` holds (the caller asserts it afterwards).

    The screen repaints on a 0.1 s coalescing timer and re-judges every second;
    polling keeps the tests fast on an idle machine and patient on a loaded one.
    """
    deadline = time.monotonic() + timeout
    await pilot.pause()
    while not check() and time.monotonic() < deadline:
        await pilot.pause(0.05)


# ----------------------------------------------------------------------------- metrics


async def test_metrics_pane_says_no_data_before_any_sample() -> None:
    app, _ = make_app([], FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "NO DATA" in pane_text(app, METRICS))
        error_rate = line_with(app, METRICS, "error_rate")
        assert "> 5%" in error_rate and "> 10% → rollback" in error_rate
        assert error_rate.endswith("NO DATA")
        assert line_with(app, METRICS, "p95_ms").endswith("NO DATA")
        assert pane_text(app, METRICS).count("waiting for Datadog…") == 2
        assert not any(BLOCKS & set(line) for line in pane_lines(app, METRICS))  # no made-up line
        assert "STALE" not in pane_text(app, METRICS)


async def test_metric_row_shows_value_unit_sparkline_and_thresholds() -> None:
    rising = [0.5, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.2]
    app, _ = make_app([metric("error_rate", "version:v2", rising, unit="%")], FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "4.2%" in pane_text(app, METRICS))
        header = line_with(app, METRICS, "error_rate")
        # Every rule's threshold is marked next to the metric, the action spelled out.
        assert "> 5%" in header and "> 10% → rollback" in header
        assert header.endswith("OK")
        assert colour_of(app, METRICS, "OK", after="rollback") == theme(app, "success")
        row = line_with(app, METRICS, "4.2%")
        assert row.split()[0] == "v2"  # "version:" is not repeated on every line
        spark = spark_of(row)
        assert len(spark) == len(rising)  # one cell per point: no history is made up
        levels = [SPARK_BLOCKS.index(c) for c in spark]
        assert levels == sorted(levels) and levels[0] < levels[-1]  # it rises as the data does
        # The threshold is on the scale: 4.2% under a 5% limit does not fill its cell.
        assert spark[-1] != SPARK_BLOCKS[-1]
        assert colour_of(app, METRICS, spark[-1], after="4.2%") == theme(app, "success")


async def test_metric_state_follows_values_across_thresholds() -> None:
    """p95 (a warn rule, > 300ms for 1m) goes OK → pending → WARN; error_rate (critical,
    > 5% for 1m) goes CRITICAL; each state in its colour, the breaching value in red."""
    clock = FrozenClock()
    app, source = make_app(
        [
            metric("p95_ms", "version:v2", [120.0] * 6, unit="ms"),
            metric("error_rate", "version:v2", [0.4] * 6, unit="%"),
        ],
        clock,
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "120ms" in pane_text(app, METRICS))
        assert line_with(app, METRICS, "p95_ms").endswith("OK")
        assert colour_of(app, METRICS, "120ms") != theme(app, "error")

        # Over the threshold for 20 s of a 1 m window: still OK, but visibly on its way.
        clock.advance(30)
        source.push(
            metric("p95_ms", "version:v2", [120.0] * 4 + [350.0] * 3, unit="ms", end=clock.now)
        )
        await wait_for(pilot, lambda: "350ms" in pane_text(app, METRICS))
        assert "OK (pending 20s of 1m)" in line_with(app, METRICS, "p95_ms")
        assert colour_of(app, METRICS, "350ms") == theme(app, "error")

        # Held for longer than the window: WARN, in the warning colour.
        clock.advance(60)
        source.push(metric("p95_ms", "version:v2", [350.0] * 10, unit="ms", end=clock.now))
        await wait_for(pilot, lambda: line_with(app, METRICS, "p95_ms").endswith("WARN"))
        assert line_with(app, METRICS, "p95_ms").endswith("WARN")
        assert colour_of(app, METRICS, "WARN") == theme(app, "warning")

        # error_rate crosses 5 % and stays there past its window: CRITICAL, in red.
        source.push(
            metric("error_rate", "version:v2", [0.4] * 2 + [7.5] * 8, unit="%", end=clock.now)
        )
        await wait_for(pilot, lambda: "CRITICAL" in line_with(app, METRICS, "error_rate"))
        assert line_with(app, METRICS, "error_rate").endswith("CRITICAL")
        assert colour_of(app, METRICS, "CRITICAL") == theme(app, "error")
        assert colour_of(app, METRICS, "7.5%") == theme(app, "error")
        # Every rule of the metric shows its own state, not only the worst one: 7.5 %
        # breaks the 5 % rule, not the 10 % rollback rule.
        row = line_with(app, METRICS, "error_rate")
        assert "> 5% CRITICAL  > 10% → rollback OK  · CRITICAL" in row, row
        assert colour_of(app, METRICS, "OK", after="rollback") == theme(app, "success")


async def test_new_data_after_a_quiet_spell_waits_for_its_judgement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A value and its state appear together, also after a quiet spell: the panes'
    longest wait counts from when the data began to wait, not from when the panes were
    last shown (then 350ms was painted beside the OK of the 120ms before it)."""
    monkeypatch.setattr("engine.controller.COALESCE", 0.4)  # the judgement lags the data
    monkeypatch.setattr("tui.screens.dashboard.PANES_MAX_WAIT", 2.0)
    clock = FrozenClock()
    app, source = make_app([metric("p95_ms", "version:v2", [120.0] * 6, unit="ms")], clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: line_with(app, METRICS, "p95_ms").endswith("OK"))
        await pilot.pause(2.2)  # quiet for longer than the panes' longest wait
        clock.advance(90)
        source.push(metric("p95_ms", "version:v2", [350.0] * 10, unit="ms", end=clock.now))
        deadline = time.monotonic() + 10
        while "350ms" not in pane_text(app, METRICS) and time.monotonic() < deadline:
            await pilot.pause(0.01)
        assert line_with(app, METRICS, "p95_ms").endswith("WARN"), pane_text(app, METRICS)


async def test_metrics_go_stale_with_age_and_reason_and_recover() -> None:
    clock = FrozenClock()
    app, source = make_app(
        [
            metric("error_rate", "version:v2", [0.3] * 6, unit="%"),
            metric("p95_ms", "version:v2", [120.0] * 6, unit="ms"),
        ],
        clock,
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: line_with(app, METRICS, "p95_ms").endswith("OK"))
        before = pane_lines(app, METRICS)
        assert "120ms" in "\n".join(before) and "NO DATA" not in "\n".join(before)
        assert not app.screen.query_one(MetricsPane).stale.display

        source.push(down("datadog", "no answer within 10s", "timeout", clock.now))
        # The pane's STALE line, not only a rule row saying STALE (they can land apart).
        await wait_for(pilot, lambda: pane_lines(app, METRICS)[0].strip().startswith("STALE"))
        stale = pane_lines(app, METRICS)[0]
        assert stale.strip() == "STALE 0s  timeout: no answer within 10s"
        assert colour_of(app, METRICS, "STALE") == theme(app, "warning")
        # The failed fetch is not a sample: the last good values and sparklines stay
        # below it, and the rules fed by the failing source say STALE at once (old data
        # is no evidence that all is well).
        after = [line for line in pane_lines(app, METRICS)[1:] if line]
        assert [line.replace("STALE", "OK") for line in after] == [line for line in before if line]
        assert line_with(app, METRICS, "error_rate").endswith("STALE")

        clock.advance(7)  # the 1 s tick ages the mark
        await wait_for(pilot, lambda: "STALE 7s" in pane_text(app, METRICS))
        assert "STALE 7s  timeout: no answer within 10s" in pane_text(app, METRICS)

        # Long past the rules' freshness bound, the rows still say STALE; the values stay.
        clock.advance(130)
        await wait_for(pilot, lambda: "STALE 2m17s" in pane_lines(app, METRICS)[0])
        assert line_with(app, METRICS, "error_rate").endswith("STALE")
        assert line_with(app, METRICS, "p95_ms").endswith("STALE")
        assert "120ms" in pane_text(app, METRICS) and "0.3%" in pane_text(app, METRICS)

        # The first good answer clears every mark.
        source.push(metric("error_rate", "version:v2", [0.3] * 6, unit="%", end=clock.now))
        source.push(metric("p95_ms", "version:v2", [118.0] * 6, unit="ms", end=clock.now))
        await wait_for(pilot, lambda: "STALE" not in pane_text(app, METRICS))
        assert "STALE" not in pane_text(app, METRICS)
        assert not app.screen.query_one(MetricsPane).stale.display
        assert line_with(app, METRICS, "p95_ms").endswith("OK")
        assert "118ms" in pane_text(app, METRICS)


async def test_metrics_stale_age_keeps_growing_while_retries_fail() -> None:
    clock = FrozenClock()
    app, source = make_app([metric("p95_ms", "version:v2", [120.0] * 6, unit="ms")], clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "120ms" in pane_text(app, METRICS))
        for _ in range(3):  # the source retries every 10 s and fails each time
            clock.advance(10)
            source.push(down("datadog", "no answer within 10s", "timeout", clock.now))
        clock.advance(5)
        await wait_for(pilot, lambda: "STALE 35s" in pane_text(app, METRICS), timeout=3)
        # The data shown is 35 s old, whatever the number of retries since.
        assert "STALE 35s" in pane_text(app, METRICS)


async def test_old_and_new_versions_side_by_side_on_one_scale() -> None:
    app, _ = make_app(
        [
            metric("p95_ms", "version:v2", [240.0] * 8, unit="ms"),
            metric("p95_ms", "version:v1", [120.0] * 8, unit="ms"),
        ],
        FrozenClock(),
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "240ms" in pane_text(app, METRICS))
        lines = pane_lines(app, METRICS)
        header = lines.index(line_with(app, METRICS, "p95_ms"))
        v1, v2 = lines[header + 1], lines[header + 2]  # old above new, in version order
        assert v1.split()[:2] == ["v1", "120ms"]
        assert v2.split()[:2] == ["v2", "240ms"]
        # Values and sparklines line up in columns, to compare at a glance ...
        assert v1.index("120ms") == v2.index("240ms")
        assert len(v1) == len(v2) and v1.index(spark_of(v1)) == v2.index(spark_of(v2))
        # ... on one scale (the 300ms threshold included): twice the latency, higher cells.
        assert len(set(spark_of(v1))) == 1 and len(set(spark_of(v2))) == 1
        assert SPARK_BLOCKS.index(spark_of(v2)[0]) > SPARK_BLOCKS.index(spark_of(v1)[0])
        assert spark_of(v2)[0] != SPARK_BLOCKS[-1]  # under the threshold: not a full cell


async def test_a_value_under_the_threshold_never_draws_more_than_half_a_cell() -> None:
    """p95 at 290ms under a 300ms rule, then over it: the threshold sits at half height
    on the scale, whatever the values around it."""
    clock = FrozenClock()
    values = [120.0, 200.0, 290.0, 290.0, 310.0, 450.0, 700.0]
    app, _ = make_app([metric("p95_ms", "version:v2", values, unit="ms")], clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "700ms" in pane_text(app, METRICS))
        spark = spark_of(line_with(app, METRICS, "700ms"))
        levels = [SPARK_BLOCKS.index(c) for c in spark]
        assert len(levels) == len(values)
        under, over = levels[:4], levels[4:]
        assert max(under) <= HALF < min(over), spark  # 290ms is no near-full bar
        assert spark[-1] == SPARK_BLOCKS[-1]  # twice the threshold and more: full
        # Only the points that breach are red.
        error = theme(app, "error")
        assert colour_of(app, METRICS, spark[2], after="700ms  ") != error  # 290ms
        assert colour_of(app, METRICS, spark[4:], after="700ms  ") == error  # 310ms on


async def test_a_cell_of_many_points_is_their_mean_not_their_spike() -> None:
    """Six hours of a 2 % baseline with a lone 12 % blip now and then, more points than
    cells: each cell is the mean of its points (about 2 %), drawn low and not red — not
    a row of red bars that a maximum per cell would draw. A sustained breach at the end
    still draws red and over half."""
    rng = random.Random(3)
    values: list[float | None] = [12.0 if rng.random() < 0.05 else 2.0 for _ in range(2000)]
    values += [9.0] * 200  # the last stretch breaches the 5 % rule
    app, _ = make_app([metric("error_rate", "version:v2", values, unit="%")], FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "9%" in pane_text(app, METRICS))
        row = line_with(app, METRICS, "9%")
        spark = spark_of(row)
        assert len(spark) < len(values)  # many points a cell
        error = theme(app, "error")
        x = row.index(spark)
        region = app.screen.query_one(METRICS).region
        y = region.y + 1 + pane_lines(app, METRICS).index(row)
        colours = [
            app.screen._compositor.get_style_at(region.x + 1 + x + i, y).color
            for i in range(len(spark))
        ]
        reds = [c is not None and c.triplet is not None and c.triplet.hex == error for c in colours]
        # The baseline cells: low (2 % of a 10 % scale) and not red.
        baseline = spark[: len(spark) * 2000 // 2200 - 1]
        assert {SPARK_BLOCKS.index(c) for c in baseline} <= {0, 1, 2}, spark
        assert not any(reds[: len(baseline)]), spark
        # The breaching stretch: over half, and red.
        assert SPARK_BLOCKS.index(spark[-1]) > HALF and reds[-1]


async def test_no_placeholder_row_once_the_groups_arrive() -> None:
    clock = FrozenClock()
    nothing_yet = MetricSample("p95_ms", "demo/web", None, (), "ms", T0)
    app, source = make_app([nothing_yet], clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "NO DATA" in line_with(app, METRICS, "p95_ms"))
        clock.advance(2)
        source.push(metric("p95_ms", "version:v1", [120.0] * 6, unit="ms", end=clock.now))
        await wait_for(pilot, lambda: "120ms" in pane_text(app, METRICS))
        rows = [line.split()[0] for line in pane_lines(app, METRICS) if line.startswith("   ")]
        assert rows == ["waiting", "v1"]  # error_rate has had no answer; p95_ms only v1


async def test_a_drained_old_version_does_not_blind_the_rule() -> None:
    # v2 took over 2m20s ago: v1 has not reported since; v2 is fresh and healthy.
    old: list[float | None] = [100.0] * 6 + [None] * 14
    new: list[float | None] = [None] * 6 + [110.0] * 14
    app, _ = make_app(
        [
            metric("p95_ms", "version:v1", old, unit="ms"),
            metric("p95_ms", "version:v2", new, unit="ms"),
        ],
        FrozenClock(),
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "110ms" in pane_text(app, METRICS))
        assert line_with(app, METRICS, "p95_ms").endswith("OK")
        # v1's newest point is 2m20s old, past the 2m freshness: "?" and its age, never
        # its old 100ms as if current.
        v1 = line_with(app, METRICS, "v1")
        assert v1.split()[:5] == ["v1", "?", "(last", "2m20s", "ago)"], v1
        assert "100ms" not in pane_text(app, METRICS)
        assert spark_of(v1).endswith("·" * 14)  # its silence is drawn, not hidden


async def test_a_version_that_stops_getting_traffic_shows_question_mark_and_age() -> None:
    """v2 rolled back: Datadog has nothing new for it. Its old 33ms stays on screen
    while fresh, then turns into ``?`` with the age of its last point, which keeps
    ageing with the clock (no new answer needed)."""
    clock = FrozenClock()
    app, source = make_app(
        [
            metric("p95_ms", "version:v1", [120.0] * 6, unit="ms"),
            metric("p95_ms", "version:v2", [33.0] * 6, unit="ms"),
        ],
        clock,
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "33ms" in pane_text(app, METRICS))
        assert line_with(app, METRICS, "v2").split()[:2] == ["v2", "33ms"]

        # 2m10s on, v1 still reports, v2 does not (its last point is where it was).
        clock.advance(130)
        source.push(metric("p95_ms", "version:v1", [121.0] * 6, unit="ms", end=clock.now))
        # (The clock's move is judged at once; v1's new answer a moment later.)
        await wait_for(
            pilot,
            lambda: "?" in line_with(app, METRICS, "v2") and "121ms" in pane_text(app, METRICS),
        )
        v2 = line_with(app, METRICS, "v2")
        assert v2.split()[:5] == ["v2", "?", "(last", "2m10s", "ago)"], v2
        assert "33ms" not in pane_text(app, METRICS)
        assert line_with(app, METRICS, "v1").split()[:2] == ["v1", "121ms"]

        clock.advance(20)  # no new data at all: the age moves by itself
        await wait_for(pilot, lambda: "2m30s" in line_with(app, METRICS, "v2"), timeout=3)
        assert "? (last 2m30s ago)" in line_with(app, METRICS, "v2")

        # v2 back with a fresh point: its value again.
        source.push(metric("p95_ms", "version:v2", [40.0] * 6, unit="ms", end=clock.now))
        await wait_for(pilot, lambda: "40ms" in pane_text(app, METRICS))
        assert line_with(app, METRICS, "v2").split()[:2] == ["v2", "40ms"]


LONG_METRIC = "checkout_payment_gateway_error_rate_eu_west"
LONG_GROUP = "version:2026.11.22-hotfix-4711"
LONG_PROBE = "checkout-gateway-health-eu-west-1"


def shown_whole_or_marked(lines: Sequence[str], label: str) -> bool:
    """Is ``label`` on one line, or cut with a visible ``…``?"""
    if any(label in line for line in lines):
        return True
    return any(label[:k] + "…" in line for line in lines for k in range(4, len(label)))


def long_label_settings() -> Settings:
    return signal_settings(
        metric=[
            {"name": LONG_METRIC, "query": "avg:x{service:web} by {version}", "unit": "%"},
        ],
        probe=[{"name": LONG_PROBE, "url": "http://127.0.0.1:9/health"}],
        rule=[
            {
                "name": "gateway errors",
                "subject": f"metric:{LONG_METRIC}",
                "op": ">",
                "threshold": 5,
                "for": "1m",
            },
            {
                "name": "gateway errors: roll back",
                "subject": f"metric:{LONG_METRIC}",
                "op": ">",
                "threshold": 10,
                "for": "2m",
                "action": "rollback",
            },
        ],
    )


def long_label_script() -> list[Item]:
    reason = "expected 200, got 503: upstream payment gateway refused the connection"
    return [
        metric(LONG_METRIC, "version:v1", [0.2] * 6, unit="%"),
        metric(LONG_METRIC, LONG_GROUP, [1.0, 2.0, 3.0, 6.0, 7.0, 8.3], unit="%"),
        probe(
            T0,
            ok=False,
            status=503,
            latency=12.0,
            ratio=0.5,
            last_failure=T0,
            reason=reason,
            name=LONG_PROBE,
        ),
    ]


async def test_long_labels_are_never_cut_silently() -> None:
    app, _ = make_app(long_label_script(), FrozenClock(), long_label_settings())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "8.3%" in pane_text(app, METRICS))
        await wait_for(pilot, lambda: "✗" in pane_text(app, PROBES))
        metrics = pane_lines(app, METRICS)
        assert shown_whole_or_marked(metrics, LONG_METRIC), "\n".join(metrics)
        assert shown_whole_or_marked(metrics, LONG_GROUP.split(":", 1)[1]), "\n".join(metrics)
        text = flowing(metrics)
        # What follows a long label is still all there: thresholds, state, value, line.
        assert "> 5%" in text and "> 10% → rollback" in text and "OK" in text
        assert "8.3%" in text and "0.2%" in text
        assert sum(c in BLOCKS for c in text) == 12  # both sparklines, every cell
        probes = pane_lines(app, PROBES)
        assert shown_whole_or_marked(probes, LONG_PROBE), "\n".join(probes)
        text = flowing(probes)
        assert "✗ 503" in text and "50.0% of 20 attempts" in text
        assert "upstream payment gateway refused the connection" in text


async def test_long_group_labels_keep_the_sparklines_in_one_column() -> None:
    app, _ = make_app(long_label_script(), FrozenClock(), long_label_settings())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "8.3%" in pane_text(app, METRICS))
        v1 = line_with(app, METRICS, "0.2%")
        new = line_with(app, METRICS, "8.3%")
        assert spark_of(new), "the new version's sparkline is not on its value's line"
        assert len(v1) == len(new) and v1.index(spark_of(v1)) == new.index(spark_of(new))


# ----------------------------------------------------------------------------- errors


async def test_errors_pane_lists_new_issues_with_count_first_seen_and_title() -> None:
    clock = FrozenClock()
    issues = [
        issue("WEB-7", "CheckoutFailedError: payment declined", 1204, T0 - timedelta(seconds=85)),
        issue("WEB-8", "KeyError: 'currency'", 3, T0 - timedelta(seconds=20)),
    ]
    app, source = make_app([], clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "waiting for Sentry…" in pane_text(app, ERRORS))
        assert pane_lines(app, ERRORS)[0].strip() == "waiting for Sentry…"

        source.push(sentry(issues, [0, 0, 4, 9]))
        await wait_for(pilot, lambda: "new issues" in pane_text(app, ERRORS))
        text = pane_text(app, ERRORS)
        assert "release v2: 2 unresolved" in text
        # The window said plainly, with its age: not a bare time beside a later clock.
        said = "2 new issues since the deployment began 3m ago (01:57:00 UTC)"
        assert said in flowing(pane_lines(app, ERRORS)), text
        assert colour_of(app, ERRORS, "2 new issues") == theme(app, "error")
        lines = pane_lines(app, ERRORS)
        first = lines.index(line_with(app, ERRORS, "CheckoutFailedError"))
        assert lines[first].split() == ["1,204", "x", "CheckoutFailedError:", "payment", "declined"]
        assert lines[first + 1].strip() == "first seen 01:58:35 · v2"
        assert line_with(app, ERRORS, "KeyError").split()[:2] == ["3", "x"]
        assert "first seen 01:59:40 · v2" in text
        # The "new issues" rule (warn, > 0) says what it makes of it.
        assert "new issues WARN" in text
        assert colour_of(app, ERRORS, "WARN") == theme(app, "warning")


async def test_errors_pane_never_drops_issues_silently() -> None:
    many = [
        issue(f"WEB-{i}", f"Error{i}: something broke", 100 - i, T0 - timedelta(seconds=i))
        for i in range(ISSUES_SHOWN + 3)
    ]
    app, _ = make_app([sentry(many, [5, 6])], FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "new issues" in pane_text(app, ERRORS))
        top = pane_text(app, ERRORS)
        app.screen.query_one(ERRORS).scroll_end(animate=False)  # the pane scrolls
        await wait_for(pilot, lambda: "more" in pane_text(app, ERRORS))
        text = top + "\n" + pane_text(app, ERRORS)
        assert f"{ISSUES_SHOWN + 3} new issues" in text
        shown = [i for i in range(ISSUES_SHOWN + 3) if f"Error{i}: something broke" in text]
        assert shown == list(range(ISSUES_SHOWN))  # most frequent first
        assert "and 3 more" in text


async def test_error_count_sparkline_shows_the_trend_and_the_latest_count() -> None:
    config = signal_settings(
        rule=[
            {
                "name": "error burst",
                "subject": "sentry:errors",
                "op": ">",
                "threshold": 20,
                "for": "0s",
            }
        ]
    )
    counts: list[float | None] = [0, 0, 1, 2, None, 4, 9, 18, 35]
    app, _ = make_app([sentry([], counts)], FrozenClock(), config)
    async with app.run_test(size=SIZE) as pilot:
        # The counts paint as they land; the rule is judged once the burst is in.
        await wait_for(pilot, lambda: "error burst CRITICAL" in pane_text(app, ERRORS))
        # The last complete minute, and every error since the deployment began (3m ago:
        # the buckets of 02:57, 02:58 and 02:59).
        said = "errors: 35 in the last full minute · 62 since the deploy began"
        assert said in flowing(pane_lines(app, ERRORS))
        assert colour_of(app, ERRORS, "35") == theme(app, "error")  # over the 20 a minute
        spark = spark_of(line_with(app, ERRORS, "per minute"))
        assert len(spark) == len(counts)
        assert spark[4] == "·"  # a bucket Sentry did not answer is a gap, not a zero
        levels = [SPARK_BLOCKS.index(c) for c in spark if c != "·"]
        assert levels == sorted(levels)
        # The rule's threshold (20) sits at half height: 18 stays under it, 35 rises over.
        assert levels[-2] <= HALF < levels[-1]
        # The bucket over the rule's threshold is in red; the quiet ones are not.
        assert colour_of(app, ERRORS, spark[-1], after="per minute") == theme(app, "error")
        assert colour_of(app, ERRORS, spark[0], after="per minute") != theme(app, "error")
        assert "error burst CRITICAL" in pane_text(app, ERRORS)


async def test_error_counts_say_the_last_full_minute_and_the_whole_deployment() -> None:
    """An error storm that began inside the minute still filling: the last complete
    minute is honestly 0, and the count since the deployment began holds everything —
    each number labelled, never a bare "errors/1m 0 · 131 so far"."""
    clock = FrozenClock()
    began = T0 - timedelta(seconds=50)
    app, source = make_app([sentry([], [0, 0, 0], so_far=131, since=began)], clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "errors:" in pane_text(app, ERRORS))
        said = "errors: 0 in the last full minute · 131 since the deploy began"
        assert said in flowing(pane_lines(app, ERRORS))
        assert "since the deployment began 50s ago (01:59:10 UTC)" in pane_text(app, ERRORS)

        # Twelve minutes on: 42 in the last full minute, 12 minutes' worth in all.
        clock.advance(12 * 60)
        counts = [0.0] * 3 + [40.0] * 10 + [42.0]  # the newest complete minute: 42
        source.push(sentry([], counts, at=clock.now, so_far=7, since=began))
        await wait_for(pilot, lambda: "42 in" in pane_text(app, ERRORS))
        # Buckets reaching past 01:59:10: 01:59 and the 11 after it (0 + 10 x 40 + 42),
        # and the 7 of the minute still filling.
        said = "errors: 42 in the last full minute · 449 since the deploy began"
        assert said in flowing(pane_lines(app, ERRORS))
        assert "since the deployment began 12m ago (01:59:10 UTC)" in pane_text(app, ERRORS)


async def test_the_deployment_age_moves_with_the_clock() -> None:
    clock = FrozenClock()
    app, _ = make_app([sentry([], [0, 0])], clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, shows(app, ERRORS, "began 3m ago"))
        clock.advance(120)  # no new answer from Sentry: the age moves by itself
        await wait_for(pilot, shows(app, ERRORS, "began 5m ago"), timeout=3)
        assert "since the deployment began 5m ago (01:57:00 UTC)" in pane_text(app, ERRORS)


async def test_errors_go_stale_on_sentry_failure_and_recover() -> None:
    clock = FrozenClock()
    found = issue("WEB-7", "CheckoutFailedError: payment declined", 131, T0 - timedelta(seconds=85))
    app, source = make_app([sentry([found], [0, 22])], clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "1 new issue" in pane_text(app, ERRORS))
        before = pane_lines(app, ERRORS)

        source.push(down("sentry", "HTTP 502 from sentry.io", "unavailable", clock.now))
        await wait_for(pilot, lambda: "STALE" in pane_text(app, ERRORS))
        lines = pane_lines(app, ERRORS)
        assert lines[0].strip() == "STALE 0s  unavailable: HTTP 502 from sentry.io"
        assert colour_of(app, ERRORS, "STALE") == theme(app, "warning")
        # The last good answer stays below the mark, the error not counted as data.
        assert "131 x CheckoutFailedError: payment declined" in pane_text(app, ERRORS)
        assert lines[1].strip() == before[0].strip()

        clock.advance(5)
        await wait_for(pilot, lambda: "STALE 5s" in pane_text(app, ERRORS))
        assert "STALE 5s" in pane_text(app, ERRORS)

        clock.advance(1)
        source.push(sentry([], [0, 22, 3], at=clock.now))
        await wait_for(pilot, lambda: "STALE" not in pane_text(app, ERRORS))
        text = pane_text(app, ERRORS)
        assert "STALE" not in text
        assert "0 new issues" in text and "CheckoutFailedError" not in text
        assert colour_of(app, ERRORS, "0 new issues") == theme(app, "success")


async def test_errors_stale_age_moves_while_nothing_else_changes() -> None:
    clock = FrozenClock()
    app, source = make_app([sentry([], [0, 0])], clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "0 new issues" in pane_text(app, ERRORS))
        source.push(down("sentry", "HTTP 502 from sentry.io", "unavailable", clock.now))
        await wait_for(pilot, lambda: "STALE 0s" in pane_text(app, ERRORS))
        for seconds in (7, 14, 21):
            clock.advance(7)
            await wait_for(pilot, shows(app, ERRORS, f"STALE {seconds}s"), timeout=3)
            assert f"STALE {seconds}s" in pane_text(app, ERRORS)


# ----------------------------------------------------------------------------- probes


async def test_probe_shows_status_latency_ratio_and_last_failure() -> None:
    app, source = make_app([], FrozenClock())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "waiting for the first round…" in pane_text(app, PROBES))
        assert pane_lines(app, PROBES)[0].split() == [
            "web",
            "waiting",
            "for",
            "the",
            "first",
            "round…",
        ]
        source.push(
            probe(
                T0,
                latency=1234.0,
                ratio=0.95,
                last_failure=T0 - timedelta(seconds=70),
                reason="expected 200, got 503",
            )
        )
        await wait_for(pilot, lambda: "✓" in pane_text(app, PROBES))
        lines = pane_lines(app, PROBES)
        assert lines[0].split() == ["web", "✓", "200", "1,234ms", "95.0%", "of", "20", "attempts"]
        assert lines[1].strip() == "last failure 01:58:50: expected 200, got 503"
        assert colour_of(app, PROBES, "✓ 200") == theme(app, "success")


async def test_probe_ratio_counts_the_attempts_made_not_the_window() -> None:
    """Two rounds into a window of 20, one failed: 50 % of 2 attempts, not "of 20"."""
    clock = FrozenClock()
    app, source = make_app([probe(T0, ratio=1.0, attempts=1)], clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "100.0%" in pane_text(app, PROBES))
        assert pane_lines(app, PROBES)[0].split()[-4:] == ["100.0%", "of", "1", "attempt"]
        clock.advance(5)
        failed = probe(
            clock.now, ok=False, status=503, ratio=0.5, attempts=2, last_failure=clock.now,
            reason="expected 200, got 503",
        )  # fmt: skip
        source.push(failed)
        await wait_for(pilot, lambda: "50.0%" in pane_text(app, PROBES))
        assert pane_lines(app, PROBES)[0].split()[-4:] == ["50.0%", "of", "2", "attempts"]
        assert "of 20" not in pane_text(app, PROBES)


async def test_probe_going_down_then_recovering() -> None:
    clock = FrozenClock()
    app, source = make_app([probe(T0 - timedelta(seconds=5)), probe(T0)], clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "✓" in pane_text(app, PROBES))
        assert "last failure" not in pane_text(app, PROBES)
        assert colour_of(app, PROBES, "100.0%") == theme(app, "success")

        # Down: every round for 40 s fails; the availability rule (< 99.5 % for 30 s) fires.
        ratio = 1.0
        for step in range(1, 9):
            clock.advance(5)
            ratio -= 0.05
            source.push(
                probe(
                    clock.now,
                    ok=False,
                    status=None,
                    latency=None,
                    ratio=ratio,
                    error="timed out after 2s",
                    last_failure=clock.now,
                    reason="timed out after 2s",
                )
            )
            if step == 1:
                await wait_for(pilot, lambda: "✗" in pane_text(app, PROBES))
                assert colour_of(app, PROBES, "95.0%") != theme(app, "error")  # pending
        await wait_for(pilot, lambda: "60.0%" in pane_text(app, PROBES))
        lines = pane_lines(app, PROBES)
        assert lines[0].split() == ["web", "✗", "---", "—", "60.0%", "of", "20", "attempts"]
        assert lines[1].strip() == "last failure 02:00:40: timed out after 2s"
        assert colour_of(app, PROBES, "✗ ---") == theme(app, "error")
        assert colour_of(app, PROBES, "60.0%") == theme(app, "error")  # the breach

        # Back up: the status turns green at once; the ratio heals as the window rolls.
        clock.advance(5)
        source.push(
            probe(
                clock.now,
                ratio=0.65,
                last_failure=T0 + timedelta(seconds=40),
                reason="timed out after 2s",
            )
        )
        await wait_for(pilot, lambda: "✓" in pane_text(app, PROBES))
        lines = pane_lines(app, PROBES)
        assert lines[0].split() == ["web", "✓", "200", "21ms", "65.0%", "of", "20", "attempts"]
        assert lines[1].strip() == "last failure 02:00:40: timed out after 2s"  # still told
        assert colour_of(app, PROBES, "✓ 200") == theme(app, "success")
        assert colour_of(app, PROBES, "65.0%") == theme(app, "error")

        clock.advance(60)
        source.push(
            probe(
                clock.now,
                ratio=1.0,
                last_failure=T0 + timedelta(seconds=40),
                reason="timed out after 2s",
            )
        )
        await wait_for(pilot, lambda: "100.0%" in pane_text(app, PROBES))
        assert colour_of(app, PROBES, "100.0%") == theme(app, "success")


async def test_many_probes_scroll_and_long_reasons_wrap_in_place() -> None:
    """40 probes, some with a long last-failure reason: the pane scrolls to the last
    probe, every reason is there in full (wrapped), and no row overlaps the next."""
    names = [f"p{i:02d}" for i in range(40)]
    config = signal_settings(
        probe=[{"name": n, "url": f"http://127.0.0.1:9/{n}", "service": "web"} for n in names],
        rule=[],
    )
    reason = "connection reset by peer " * 6 + "(end)"
    rounds = [
        probe(T0, name=n, last_failure=T0, reason=reason if i % 3 == 0 else "expected 200, got 503")
        for i, n in enumerate(names)
    ]
    app, _ = make_app(rounds, FrozenClock(), config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "✓" in pane_text(app, PROBES))
        pane = app.screen.query_one(ProbesPane)
        for i, name in enumerate(names):
            pane.scroll_to_region(pane.row_region(name), animate=False, immediate=True)
            await pilot.pause()
            view = pane.scrollable_content_region  # the rows, not the scrollbar beside them
            lines = [line[view.x : view.right] for line in screen_lines(app)[view.y : view.bottom]]
            at = next(k for k, line in enumerate(lines) if line.split()[:1] == [name])
            after = lines[at + 1 :]
            stop = next(
                (
                    k
                    for k, line in enumerate(after)
                    if line.split()[:1] != [] and line.split()[0] in names
                ),
                len(after),
            )
            row = " ".join(" ".join(lines[at : at + 1 + stop]).split())
            expected = reason if i % 3 == 0 else "expected 200, got 503"
            assert row.endswith(f"last failure 02:00:00: {' '.join(expected.split())}"), row
        assert "p39" in pane_text(app, PROBES)


def test_changed_span_covers_every_cell_that_differs() -> None:
    """The repaint of a changed line covers each cell that changed (random lines)."""
    rng = random.Random(7)
    styles = [RichStyle(bold=True), RichStyle(color="red"), RichStyle()]

    def line(n: int) -> Strip:
        segments, left = [], n
        while left:
            k = rng.randint(1, min(4, left))
            left -= k
            text = "".join(rng.choice("ab ") for _ in range(k))
            segments.append(Segment(text, rng.choice(styles)))
        return Strip(segments)

    def cells(strip: Strip, width: int) -> list[tuple[str, RichStyle | None] | None]:
        out: list[tuple[str, RichStyle | None] | None] = [
            (char, segment.style) for segment in strip for char in segment.text
        ]
        return out + [None] * (width - len(out))

    for _ in range(3000):
        a, b = line(rng.randint(1, 12)), line(rng.randint(1, 12))
        if rng.random() < 0.5:  # the same width, one cell changed
            before = cells(a, a.cell_length)
            x = rng.randrange(a.cell_length)
            changed = [*before[:x], (rng.choice("ab "), rng.choice(styles)), *before[x + 1 :]]
            b = Strip([Segment(c, s) for c, s in (cell for cell in changed if cell)])
        width = max(a.cell_length, b.cell_length)
        start, end = changed_span(a, b)
        pairs = zip(cells(a, width), cells(b, width), strict=True)
        differ = [x for x, (p, q) in enumerate(pairs) if p != q]
        assert all(start <= x < end for x in differ), (a, b, start, end)


# ----------------------------------------------------------------------------- together


async def test_breaching_values_are_highlighted_in_their_panes() -> None:
    script = [*mid_deploy_script()[:1], *bad_release_signals()]
    app, _ = make_app(script, FrozenClock(), settings(signals=True))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "CRITICAL" in pane_text(app, METRICS))
        error, success = theme(app, "error"), theme(app, "success")
        # Metrics: the breaching rule's row and the breaching group's value, in red ...
        head = app.screen.query_one(MetricsPane).rows.text_of("error_rate").plain
        assert head.splitlines()[0].endswith(
            "· CRITICAL"
        )  # the row may wrap: every rule says its state
        assert colour_of(app, METRICS, "CRITICAL") == error
        assert colour_of(app, METRICS, "14.8%") == error
        assert colour_of(app, METRICS, "█", after="14.8%") == error
        # ... and the healthy ones are not: v1 of the same metric, and p95 entirely.
        assert colour_of(app, METRICS, "0.2%") != error
        assert colour_of(app, METRICS, "▁", after="0.2%") == success
        assert colour_of(app, METRICS, "OK", after="p95_ms") == success
        assert colour_of(app, METRICS, "120ms") != error
        assert colour_of(app, METRICS, "135ms") != error
        # Errors: the new issue and its count; probes: the success ratio under target.
        assert colour_of(app, ERRORS, "1 new issue") == error
        assert colour_of(app, ERRORS, "131 x") == error
        assert colour_of(app, PROBES, "95.0%") == error
        assert colour_of(app, PROBES, "✓ 200") == success  # the last round itself passed


def test_a_native_canary_card_shows_its_stage_split_and_waiting_hook() -> None:
    from dataclasses import replace

    from engine.store import ServiceState
    from tests.fakes import canary_at_its_hook, deployment, sample
    from widgets.deployments import CardText

    key = "canary/web"
    sd = canary_at_its_hook()
    [hook] = sd.hooks
    deployments = [deployment("web:2", rollout="IN_PROGRESS"), deployment("web:1", status="ACTIVE")]

    def card(sd: object) -> str:
        state = ServiceState(key, "web", sample=sample(key, deployments, service_deployments=[sd]))  # type: ignore[list-item]
        return CardText(state, T0, lambda _tone: "").build().plain

    text = card(sd)
    assert "deployment IN_PROGRESS  web:1 → web:2" in text
    lines = [line.strip() for line in text.splitlines()]
    at = lines.index("stage PRODUCTION_TRAFFIC_SHIFT · traffic web:1 80% / web:2 20%")
    assert lines[at + 1] == "hook waiting: P promotes, R rolls back (else ROLLBACK at 02:05:00)"
    # Promoted: the hook no longer waits; the split moves with the deployment.
    moved = card(replace(sd, hooks=(replace(hook, status="SUCCEEDED"),), traffic_weight=100.0))
    assert "traffic web:1 0% / web:2 100%" in moved and "hook waiting" not in moved
    # Over: no stage, no split, no hook (a stage of a finished deployment says nothing).
    done = card(replace(sd, status="SUCCESSFUL", finished_at=T0))
    assert "stage " not in done and "traffic " not in done and "hook waiting" not in done
