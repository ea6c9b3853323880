"""A comparison rule on the metrics pane: one line under the pair of sparklines it
judged, with its outcome and numbers; the banner says it in one line. Read from the
screen itself."""

from __future__ import annotations

import random
from pathlib import Path

from engine.config import parse_config
from tests.fakes import SIGNALS, T0, FrozenClock
from tests.ui.test_panes import (
    METRICS,
    line_with,
    make_app,
    metric,
    pane_lines,
    pane_text,
    screen_lines,
    wait_for,
)
from widgets.signals import MetricsPane, VerdictBanner


def compare_settings() -> object:
    data = {
        "aws": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
        "service": [{"cluster": "demo", "service": "web"}],
        **SIGNALS,
        "compare": [{"name": "p95 vs old", "subject": "metric:p95_ms", "min_samples": 10}],
    }
    return parse_config(data, Path("t.toml"))


def shifted() -> list[object]:
    rng = random.Random(7)
    v1 = [rng.uniform(75, 90) for _ in range(30)]
    v2 = [rng.uniform(120, 140) for _ in range(30)]
    return [
        metric("p95_ms", "version:v1", v1, unit="ms"),
        metric("p95_ms", "version:v2", v2, unit="ms"),
    ]


def flowing(lines: list[str]) -> str:
    return " ".join(line.strip() for line in lines)


async def test_the_comparison_shows_under_the_sparklines_it_judged() -> None:
    app, _ = make_app(shifted(), FrozenClock(T0), compare_settings())  # type: ignore[arg-type]
    async with app.run_test(size=(160, 50)) as pilot:
        # scipy loads in a thread first (seconds on a loaded machine): a patient wait.
        await wait_for(pilot, lambda: "Fail     p95" in pane_text(app, METRICS), timeout=30)
        lines = pane_lines(app, METRICS)
        head = lines.index(line_with(app, METRICS, "p95_ms"))
        assert lines[head + 1].split()[0] == "v1" and lines[head + 2].split()[0] == "v2"
        assert lines[head + 3].strip().startswith("Fail     p95 vs old v2 ")
        judged = flowing(lines[head + 3 : head + 6])  # wrapped in a narrow pane, not cut
        assert " vs v1 " in judged and "> ×1.1, p<0.001, 30/30 samples" in judged
        # The comparison's ratio is no threshold: the head shows only the rules'.
        assert "1.1" not in lines[head]
        banner = app.screen.query_one(VerdictBanner).render().plain
        assert "FAILING" in banner and "p95 vs old v2 " in banner


async def test_at_80x24_the_compact_layout_still_fits() -> None:
    app, _ = make_app(shifted(), FrozenClock(T0), compare_settings())  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        rows = app.screen.query_one(MetricsPane).rows
        await wait_for(pilot, lambda: "Fail     p95" in rows.text_of("p95_ms").plain, timeout=30)
        assert "Fail     p95 vs old v2 " in rows.text_of("p95_ms").plain
        banner = app.screen.query_one(VerdictBanner).render().plain
        assert banner.strip().startswith("FAILING") and "\n" not in banner.strip()
        lines = screen_lines(app)
        assert len(lines) == 24 and lines[-1].lstrip().startswith("q Quit"), lines[-1]
        metrics = app.screen.query_one(METRICS).region
        assert metrics.height >= 3 and metrics.bottom <= 23
