"""The sandbox's Datadog, through the real datadog-api-client, against a scripted run.

Two real service processes (v1 clean, v2 failing 15 % of requests) sit behind the
weighted proxy; the traffic generator sends a few hundred requests; the Datadog answers
must match what the proxy's request log holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ApiException
from datadog_api_client.v1.api.metrics_api import MetricsApi as MetricsApiV1
from datadog_api_client.v2.api.metrics_api import MetricsApi as MetricsApiV2
from datadog_api_client.v2.model.metrics_data_source import MetricsDataSource
from datadog_api_client.v2.model.metrics_timeseries_query import MetricsTimeseriesQuery
from datadog_api_client.v2.model.query_formula import QueryFormula
from datadog_api_client.v2.model.timeseries_formula_query_request import (
    TimeseriesFormulaQueryRequest,
)
from datadog_api_client.v2.model.timeseries_formula_request import TimeseriesFormulaRequest
from datadog_api_client.v2.model.timeseries_formula_request_attributes import (
    TimeseriesFormulaRequestAttributes,
)
from datadog_api_client.v2.model.timeseries_formula_request_queries import (
    TimeseriesFormulaRequestQueries,
)
from datadog_api_client.v2.model.timeseries_formula_request_type import (
    TimeseriesFormulaRequestType,
)

from sandbox.datadog_api import DatadogServer, percentile
from sandbox.proxy import WeightedProxy
from sandbox.requestlog import RequestLog
from sandbox.service import ServiceProcess
from sandbox.traffic import TrafficGenerator

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

V2_ERROR_RATIO = 0.15
TARGET_REQUESTS = 600
KEYS = {"DD-API-KEY": "sandbox-api-key", "DD-APPLICATION-KEY": "sandbox-app-key"}


@dataclass(frozen=True)
class Run:
    """A finished scripted traffic run and the Datadog serving its log."""

    log: RequestLog
    datadog: DatadogServer
    from_s: int
    to_s: int


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    """Run ~600 requests through the proxy to v1 (0 % errors) and v2 (15 % errors)."""
    log = RequestLog()
    latency = {"base_ms": 3, "jitter_ms": 6, "p95_shift_ms": 20, "tail_ratio": 0.1}
    v1 = ServiceProcess("web", "v1", {"latency": latency}).start(wait=False)
    v2 = ServiceProcess(
        "web",
        "v2",
        {"error_ratio": V2_ERROR_RATIO, "exceptions": ["ValueError"], "latency": latency},
    ).start(wait=False)
    try:
        v1.wait_ready()
        v2.wait_ready()
        from_s = int(time.time()) - 1
        with WeightedProxy(
            "web", log, lambda: {"v1": 1.0, "v2": 1.0}, {"v1": v1.url, "v2": v2.url}
        ) as proxy:
            traffic = TrafficGenerator(proxy.url, 200, max_requests=TARGET_REQUESTS).start()
            try:
                assert traffic.wait_for(TARGET_REQUESTS, timeout=20)
            finally:
                traffic.stop()
        to_s = int(time.time()) + 1
    finally:
        v1.stop()
        v2.stop()
    with DatadogServer(log) as datadog:
        yield Run(log, datadog, from_s, to_s)


def _config(url: str, api_key: str | None = "k", app_key: str | None = "a") -> Any:
    config: Any = cast("Any", Configuration)(host=url)
    if api_key is not None:
        config.api_key["apiKeyAuth"] = api_key
    if app_key is not None:
        config.api_key["appKeyAuth"] = app_key
    return config


def _v1(run: Run, query: str, **config: Any) -> Any:
    with ApiClient(_config(run.datadog.url, **config)) as client:
        return cast("Any", MetricsApiV1)(client).query_metrics(
            _from=run.from_s, to=run.to_s, query=query
        )


def _v2(run: Run, queries: dict[str, str], formulas: list[str], interval_ms: int) -> Any:
    body = TimeseriesFormulaQueryRequest(
        data=TimeseriesFormulaRequest(
            type=TimeseriesFormulaRequestType.TIMESERIES_REQUEST,
            attributes=TimeseriesFormulaRequestAttributes(
                _from=run.from_s * 1000,
                to=run.to_s * 1000,
                interval=interval_ms,
                queries=cast("Any", TimeseriesFormulaRequestQueries)(
                    [
                        MetricsTimeseriesQuery(
                            data_source=MetricsDataSource.METRICS, query=q, name=name
                        )
                        for name, q in queries.items()
                    ]
                ),
                formulas=[QueryFormula(formula=f) for f in formulas],
            ),
        )
    )
    with ApiClient(_config(run.datadog.url)) as client:
        return cast("Any", MetricsApiV2)(client).query_timeseries_data(body)


def _by_version(response: Any) -> dict[str, list[list[Any]]]:
    out = {}
    for series in response.to_dict()["series"]:
        (tag,) = series["tag_set"]
        out[tag.removeprefix("version:")] = series["pointlist"]
    return out


def test_counts_and_error_rate_match_the_request_log(run: Run) -> None:
    errors = _by_version(
        _v1(run, "sum:sandbox.errors{service:web} by {version}.as_count().rollup(sum, 60)")
    )
    requests = _by_version(
        _v1(run, "sum:sandbox.requests{service:web} by {version}.as_count().rollup(sum, 60)")
    )
    assert set(requests) == {"v1", "v2"}
    for version in ("v1", "v2"):
        recs = run.log.query(version=version)
        total = sum(v for _, v in requests[version] if v is not None)
        failed = sum(v for _, v in errors[version] if v is not None)
        assert total == len(recs)
        assert failed == sum(r.is_error for r in recs)
        # Per bucket too: each point is exactly the log's count in that minute.
        for ts, value in requests[version]:
            in_bucket = run.log.query(ts / 1000, ts / 1000 + 60, version=version)
            assert value == (len(in_bucket) or None)
    rate_v2 = 100 * sum(v or 0 for _, v in errors["v2"]) / sum(v or 0 for _, v in requests["v2"])
    rate_v1 = 100 * sum(v or 0 for _, v in errors["v1"]) / sum(v or 0 for _, v in requests["v1"])
    print(f"measured error rate v1={rate_v1:.2f}% v2={rate_v2:.2f}%")
    assert abs(rate_v2 - 100 * V2_ERROR_RATIO) <= 3
    assert rate_v1 <= 0.5


def test_error_rate_gauge_and_formula(run: Run) -> None:
    # The gauge is a per-second ratio (like an agent's): each point must be exactly the
    # log's ratio in that second. Averaging the gauge over a long rollup is an average of
    # ratios, dragged by the run's half-empty first and last seconds, so the overall
    # figure comes from the count formula instead, as a Datadog user would write it.
    gauge = _by_version(_v1(run, "avg:sandbox.error_rate{*} by {version}.rollup(avg, 1)"))
    formula = _by_version(
        _v1(
            run,
            "sum:sandbox.errors{*} by {version}.as_count().rollup(sum, 3600) / "
            "sum:sandbox.requests{*} by {version}.as_count().rollup(sum, 3600) * 100",
        )
    )
    for version, expected in (("v1", 0.0), ("v2", 100 * V2_ERROR_RATIO)):
        busy_seconds = 0
        for ts, value in gauge[version]:
            recs = run.log.query(ts / 1000, ts / 1000 + 1, version=version)
            if not recs:
                assert value is None
                continue
            assert value == pytest.approx(100 * sum(r.is_error for r in recs) / len(recs))
            if len(recs) >= 40:  # even spreading: within 1/n of the ratio
                busy_seconds += 1
                assert abs(value - expected) <= 3, (ts, value, len(recs))
        formula_values = [v for _, v in formula[version] if v is not None]
        print(f"{version}: {busy_seconds} busy seconds, formula {formula_values}")
        assert busy_seconds >= 1
        assert formula_values
        assert all(abs(v - expected) <= 3 for v in formula_values)


def test_v1_and_v2_agree(run: Run) -> None:
    v1 = _by_version(
        _v1(
            run,
            "sum:sandbox.errors{*} by {version}.as_count().rollup(sum, 60) / "
            "sum:sandbox.requests{*} by {version}.as_count().rollup(sum, 60) * 100",
        )
    )
    response = _v2(
        run,
        {
            "a": "sum:sandbox.errors{*} by {version}.as_count()",
            "b": "sum:sandbox.requests{*} by {version}.as_count()",
            "c": "avg:sandbox.latency.p95{service:web} by {version}",
        },
        ["a / b * 100", "c"],
        interval_ms=60_000,
    ).to_dict()
    attrs = response["data"]["attributes"]
    assert response["data"]["type"] == "timeseries_response"
    times = attrs["times"]
    v2: dict[str, list[Any]] = {}
    for series, values in zip(attrs["series"], attrs["values"], strict=True):
        assert len(values) == len(times)
        if series["query_index"] == 0:
            (tag,) = series["group_tags"]
            v2[tag.removeprefix("version:")] = values
        else:
            assert series["query_index"] == 1
            assert series["unit"][0]["name"] == "millisecond"
    assert set(v2) == {"v1", "v2"}
    for version, points in v1.items():
        assert [ts for ts, _ in points] == [float(t) for t in times]
        assert [v for _, v in points] == pytest.approx(v2[version])


def test_latency_percentiles_match_the_request_log(run: Run) -> None:
    for stat in ("p50", "p95", "p99"):
        response = _v1(run, f"{stat}:sandbox.latency{{service:web}} by {{version}}.rollup(avg, 60)")
        for version, points in _by_version(response).items():
            for ts, value in points:
                recs = run.log.query(ts / 1000, ts / 1000 + 60, version=version)
                if not recs:
                    assert value is None
                    continue
                expected = percentile(sorted(r.latency_ms for r in recs), float(stat[1:]))
                assert value == pytest.approx(expected)
    # The gauge flavour exists too and is in the same range.
    p95 = _by_version(_v1(run, "max:sandbox.latency.p95{*} by {version}.rollup(max, 60)"))
    assert all(v is None or v > 0 for pts in p95.values() for _, v in pts)


def test_v1_raw_shape_with_gaps(run: Run) -> None:
    # Start 30 s before the run: the first points have no data (null), like Datadog's.
    params = {
        "from": str(run.from_s - 30),
        "to": str(run.to_s),
        "query": "sum:sandbox.requests{service:web,version:v2}.as_rate()",
    }
    resp = httpx.get(f"{run.datadog.url}/api/v1/query", params=params, headers=KEYS)
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["res_type"] == "time_series"
    assert body["from_date"] == (run.from_s - 30) * 1000
    (series,) = body["series"]
    assert series["metric"] == "sandbox.requests"
    assert series["scope"] == "service:web,version:v2"
    assert series["tag_set"] == []
    assert series["expression"] == "sum:sandbox.requests{service:web,version:v2}.as_rate()"
    assert series["interval"] == 1
    assert series["length"] == len(series["pointlist"])
    assert series["start"] == series["pointlist"][0][0]
    assert series["end"] == series["pointlist"][-1][0] + 1000 - 1
    assert series["unit"][0]["name"] == "request" and series["unit"][1]["name"] == "second"
    assert series["pointlist"][0][1] is None
    assert any(v is not None and v > 0 for _, v in series["pointlist"])
    for name in ("Limit", "Period", "Remaining", "Reset", "Name"):
        assert f"X-RateLimit-{name}" in resp.headers


def test_forbidden_without_keys(run: Run) -> None:
    resp = httpx.get(
        f"{run.datadog.url}/api/v1/query",
        params={"from": run.from_s, "to": run.to_s, "query": "sum:sandbox.requests{*}"},
    )
    assert resp.status_code == 403
    assert resp.json() == {"errors": ["Forbidden"]}
    assert "X-RateLimit-Limit" in resp.headers
    with pytest.raises(ApiException) as info:
        _v1(run, "sum:sandbox.requests{*}", app_key=None)
    assert info.value.status == 403


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("abs(sum:sandbox.requests{*})", "abs"),
        ("sum:sandbox.cpu{*}", "unknown metric"),
        ("sum:sandbox.requests{service:web OR version:v2}", "OR"),
        ("sum:sandbox.requests{region:eu}", "unknown tag"),
        ("sum:sandbox.requests{*}.timeshift(3600)", "timeshift"),
        ("p95:sandbox.requests{*}", "aggregator"),
    ],
)
def test_unsupported_query_is_a_clear_400(run: Run, query: str, words: str) -> None:
    with pytest.raises(ApiException) as info:
        _v1(run, query)
    assert info.value.status == 400
    resp = httpx.get(
        f"{run.datadog.url}/api/v1/query",
        params={"from": run.from_s, "to": run.to_s, "query": query},
        headers=KEYS,
    )
    errors = resp.json()["errors"]
    assert len(errors) == 1 and words in errors[0]


def test_v2_rejects_other_data_sources(run: Run) -> None:
    body = {
        "data": {
            "type": "timeseries_request",
            "attributes": {
                "from": run.from_s * 1000,
                "to": run.to_s * 1000,
                "queries": [{"data_source": "logs", "query": "*", "name": "a"}],
            },
        }
    }
    resp = httpx.post(f"{run.datadog.url}/api/v2/query/timeseries", json=body, headers=KEYS)
    assert resp.status_code == 400
    assert "data_source" in resp.json()["errors"][0]


def test_rate_limit_is_announced_and_enforced() -> None:
    log = RequestLog()
    log.record("web", "v1", 200, 12.0)
    with DatadogServer(log, rate_limit=3, rate_period_s=60) as datadog:
        now = int(time.time())
        params: dict[str, str | int] = {
            "from": now - 60,
            "to": now + 1,
            "query": "sum:sandbox.requests{*}",
        }
        remaining = []
        for _ in range(3):
            resp = httpx.get(f"{datadog.url}/api/v1/query", params=params, headers=KEYS)
            assert resp.status_code == 200
            assert resp.headers["X-RateLimit-Limit"] == "3"
            assert resp.headers["X-RateLimit-Period"] == "60"
            assert resp.headers["X-RateLimit-Name"] == "metrics_query"
            assert 1 <= int(resp.headers["X-RateLimit-Reset"]) <= 60
            remaining.append(int(resp.headers["X-RateLimit-Remaining"]))
        assert remaining == [2, 1, 0]
        resp = httpx.get(f"{datadog.url}/api/v1/query", params=params, headers=KEYS)
        assert resp.status_code == 429
        assert resp.headers["X-RateLimit-Remaining"] == "0"
        assert "Rate limit" in resp.json()["errors"][0]
        with ApiClient(_config(datadog.url)) as client, pytest.raises(ApiException) as info:
            cast("Any", MetricsApiV1)(client).query_metrics(
                _from=now - 60, to=now + 1, query="sum:sandbox.requests{*}"
            )
        assert info.value.status == 429
        # The v2 endpoint has its own budget.
        resp = httpx.post(
            f"{datadog.url}/api/v2/query/timeseries",
            json={
                "data": {
                    "type": "timeseries_request",
                    "attributes": {
                        "from": (now - 60) * 1000,
                        "to": (now + 1) * 1000,
                        "queries": [
                            {
                                "data_source": "metrics",
                                "query": "sum:sandbox.requests{*}",
                                "name": "a",
                            }
                        ],
                    },
                }
            },
            headers=KEYS,
        )
        assert resp.status_code == 200
        assert resp.headers["X-RateLimit-Name"] == "timeseries_query"
