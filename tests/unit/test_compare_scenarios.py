"""The comparison rules on the two rehearsals that prove them, over many seeds, at unit
level: the sandbox's own generator (each version's :class:`~sandbox.service.ServiceApp`
deciding every request, its seeded bursts included) and the sandbox Datadog's own
arithmetic (:func:`sandbox.datadog_api.evaluate` over the request records, 1 s buckets)
make the series; the product's config parser and :class:`~engine.compare.CompareBook`
judge them every 2 s as the points arrive, as the watch does.

``subtle-regression`` must be caught (the canary score CRITICAL) on every seed, and its
detection time is measured; ``noisy-but-fine`` must never be (zero false rollbacks) on
any seed. The real sandbox, through the real Datadog client, runs one seed of each in
``tests/integration/test_compare_sandbox.py``.
"""

from __future__ import annotations

import copy
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.compare import SCORE_RULE, CompareBook, build_comparebook
from engine.config import parse_config
from engine.rules import RuleBook, RuleState
from sandbox.datadog_api import evaluate, make_grid, parse_expression
from sandbox.requestlog import RequestRecord
from sandbox.runtime import compare_tables, metric_queries
from sandbox.scenario import load_scenario
from sandbox.service import Behaviour, ServiceApp
from tests.fakes import T0

SEEDS = range(12)
CANARY_SHARE = 0.5
"""Both rehearsals canary v2 at 50 % of the traffic."""
SECONDS = 120
"""How long v2 serves beside v1 (the real sandbox at speed 2 gives it 90 s)."""
JUDGE_EVERY = 2
"""The sandbox's Datadog poll interval (the watch judges at least this often)."""


def settings_for(name: str) -> Any:
    """The product's settings for a scenario's web service: its metrics and compares."""
    spec = load_scenario(name).service("web")
    assert spec.compare is not None
    lines = ['[[service]]\ncluster = "rehearsal"\nservice = "web"\n']
    lines.append('[datadog]\nhost = "http://127.0.0.1:9"\npoll_interval = 2\nwindow = "2m"\n')
    for metric, query, unit in metric_queries("web", spec.alerts.rollup_seconds):
        lines.append(f"[[metric]]\nname = {metric!r}\nquery = {query!r}\nunit = {unit!r}\n")
    lines += compare_tables("web", spec.compare)
    import tomllib

    return parse_config(tomllib.loads("\n".join(lines)), Path(f"{name}.toml"))


def records_for(name: str, seed: int, start: float) -> list[RequestRecord]:
    """Every request of both versions over :data:`SECONDS`, as the proxy logs them."""
    scenario = load_scenario(name)
    spec = scenario.service("web")
    per_version = spec.rate * CANARY_SHARE
    out = []
    for offset, version in enumerate(("v1", "v2")):
        data = copy.deepcopy(spec.version(version).behaviour)
        data["seed"] = 1000 * seed + int(data.get("seed") or 0) + offset
        if "bursts" in data:  # one schedule for both versions, another per seed
            data["bursts"] = {**data["bursts"], "seed": int(data["bursts"]["seed"]) + seed}
        app = ServiceApp("web", version, Behaviour.from_dict(data), sleep=lambda _s: None)
        count = int(SECONDS * per_version)
        for i in range(count):
            at = start + (i + 0.5 * offset) / per_version
            latency, failure = app.decide_at(at)
            status = 500 if failure is not None else 200
            out.append(RequestRecord(at + latency / 1000, "web", version, status, latency))
    return sorted(out, key=lambda r: r.time)


def rehearse(name: str, seed: int) -> list[tuple[float, RuleState, list[Any]]]:
    """Judge the rehearsal's series every :data:`JUDGE_EVERY` s: ``(seconds since v2
    began serving, canary score state, every comparison's evidence)``."""
    settings = settings_for(name)
    start = T0.timestamp()
    records = records_for(name, seed, start)
    grid = make_grid(start, start + SECONDS + 2, 1)
    points: list[tuple[float, str, str, float]] = []
    for metric in settings.metrics:
        if metric.name.endswith("throughput"):
            continue
        result = evaluate(parse_expression(metric.query), records, grid, 1)
        for tags, values in result.series.items():
            for i, value in enumerate(values):
                if value is not None:
                    points.append((grid.start_s + i, metric.name, tags[0], value))
    points.sort()
    book = RuleBook([])
    compare: CompareBook = build_comparebook(settings, book)
    out = []
    fed = 0
    for now_s in range(int(start) + JUDGE_EVERY, int(start) + SECONDS, JUDGE_EVERY):
        while fed < len(points) and points[fed][0] + 1 <= now_s:  # a closed bucket
            at, metric, group, value = points[fed]
            book.record(f"metric:{metric}", datetime.fromtimestamp(at, UTC), value, group)
            fed += 1
        now = datetime.fromtimestamp(now_s, UTC)
        compare.refresh_now(now)
        evidence = compare.evaluate(now)
        score = next(e for e in evidence if e.rule == SCORE_RULE)
        out.append((now_s - start, score.state, evidence))
    return out


@pytest.mark.parametrize("name", ["subtle-regression", "noisy-but-fine"])
def test_the_rehearsals_write_compare_rules_the_product_accepts(name: str) -> None:
    settings = settings_for(name)
    assert [c.name for c in settings.compares] == ["web p95", "web errors"]
    assert all(c.action == "rollback" and c.service == "web" for c in settings.compares)


def test_subtle_regression_is_caught_on_every_seed() -> None:
    detections = []
    for seed in SEEDS:
        judged = rehearse("subtle-regression", seed)
        caught = next((t for t in judged if t[1] is RuleState.CRITICAL), None)
        assert caught is not None, f"seed {seed}: never caught; last {judged[-1]}"
        detections.append(caught[0])
        lines = [e.summary() for e in caught[2] if e.state is RuleState.CRITICAL]
        if seed == 0:
            print(f"\nseed 0 caught at {caught[0]:.0f} s: " + " | ".join(lines))
        # Caught, and it stays caught (no flapping back to OK while v2 is bad).
        after = [t[1] for t in judged if t[0] >= caught[0] + 10]
        assert after.count(RuleState.CRITICAL) >= 0.9 * len(after), (seed, after)
    print(
        f"subtle-regression over {len(detections)} seeds: caught {statistics.median(detections):.0f} s "
        f"(median; {min(detections):.0f}–{max(detections):.0f} s) after v2 began serving"
    )
    # Not before min_samples points a side (20 s), and well within the canary step.
    assert all(20 <= d <= 45 for d in detections), detections


def test_noisy_but_fine_is_never_caught_on_any_seed() -> None:
    critical = warn = judgements = 0
    for seed in SEEDS:
        judged = rehearse("noisy-but-fine", seed)
        judgements += len(judged)
        critical += sum(1 for t in judged if t[1] is RuleState.CRITICAL)
        warn += sum(1 for t in judged if t[1] is RuleState.WARN)
        bad = [t for t in judged if t[1] is RuleState.CRITICAL]
        assert not bad, f"seed {seed}: {[e.summary() for e in bad[0][2]]}"
        # The series do carry the shared bursts (the rehearsal is noisy, not quiet).
        assert any(
            e.judgement is not None
            and e.judgement.canary_stat is not None
            and e.rule == "web errors"
            and e.judgement.canary_stat > 0.5
            for t in judged
            for e in t[2]
        ), f"seed {seed}: no burst in the error rate"
    print(
        f"\nnoisy-but-fine over {len(SEEDS)} seeds: {critical} CRITICAL (false rollbacks: 0), "
        f"{warn} marginal of {judgements} judgements"
    )


def test_bursts_are_shared_by_versions_with_one_seed_and_change_with_it() -> None:
    from sandbox.service import BurstSpec

    spec = BurstSpec(period_s=15, chance=0.4, length_s=4, error_ratio=0.25, latency_ms=250, seed=5)
    start = T0.timestamp()
    moments = [start + 0.5 * i for i in range(2400)]
    on = [spec.active(t) for t in moments]
    assert on == [BurstSpec(**{**spec.__dict__}).active(t) for t in moments]
    assert 0.05 < sum(on) / len(on) < 0.2  # 40 % of periods, 4 s of 15
    other = BurstSpec(**{**spec.__dict__, "seed": 6})
    assert on != [other.active(t) for t in moments]
    with pytest.raises(ValueError, match="length_s must be at most period_s"):
        BurstSpec(period_s=2, length_s=3)
    with pytest.raises(ValueError, match="unknown bursts key"):
        Behaviour.from_dict({"bursts": {"period": 3}})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[service.compare]\naction = "explode"', "service[0].compare.action: none, pause"),
        ("[service.compare]\nconfidence = 1.5", "service[0].compare.confidence"),
        ("[service.compare]\nwindw = 60", "service[0].compare.windw: unknown key"),
    ],
)
def test_scenario_compare_errors_name_the_key(table: str, message: str, tmp_path: Path) -> None:
    from sandbox.scenario import ScenarioError, parse_scenario

    text = (
        'description = "d"\ncluster = "c"\n\n[[service]]\nname = "web"\ndesired_count = 2\n'
        f'initial_version = "v1"\n\n{table}\n\n[service.versions.v1]\n'
    )
    with pytest.raises(ScenarioError) as error:
        parse_scenario(tmp_path / "t.toml", text)
    assert message in str(error.value)
