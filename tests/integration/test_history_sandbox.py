"""The history source against the sandbox through real boto3: ECS's service-deployments
API, paged through ``nextToken`` within its bound, mapped into outcomes (web completed,
api rolled back by its circuit breaker) and figures; STALE when ECS fails."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from engine.config import load_config
from engine.history import BY_BREAKER, COMPLETED, build_history_source, figures, rows
from sources.history import HistorySample, HistorySource
from sources.model import SourceFailure
from tests.integration.conftest import wait_until

if TYPE_CHECKING:
    from sandbox.runtime import Sandbox
    from tests.conftest import StartSandbox

pytestmark = pytest.mark.integration


def settled(sandbox: Sandbox) -> bool:
    """web completed v2 and api's breaker rollback finished."""
    client = sandbox.client()
    for service, status in (("web", "SUCCESSFUL"), ("api", "ROLLBACK_SUCCESSFUL")):
        listed = client.list_service_deployments(
            cluster=sandbox.scenario.cluster, service=service, maxResults=1
        )["serviceDeployments"]
        if not listed or listed[0]["status"] != status:
            return False
    return True


async def test_history_of_the_demo_through_real_boto3(
    sandbox_world: StartSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = await asyncio.to_thread(sandbox_world, "demo", 16.0)  # only the end matters
    for name, value in sandbox.client_env().items():
        monkeypatch.setenv(name, value)
    assert await asyncio.to_thread(wait_until, lambda: settled(sandbox), 120, 0.1)
    settings = await asyncio.to_thread(load_config, sandbox.config_path)
    source = build_history_source(settings)
    history = await source.fetch()
    web = history.services["demo/web"]
    api = history.services["demo/api"]
    assert web[0].status == "SUCCESSFUL"
    assert (web[0].from_revision, web[0].to_revision) == ("web:1", "web:2")
    assert web[0].duration is not None and web[0].duration > 0
    assert api[0].status == "ROLLBACK_SUCCESSFUL" and api[0].breaker_triggered
    listed = rows(history, [], {"demo/web": "web", "demo/api": "api"}, history.at)
    newest = {r.label: r.outcome for r in listed if r.entry is web[0] or r.entry is api[0]}
    assert newest == {"web": COMPLETED, "api": BY_BREAKER}
    figs = {f.name: f for f in figures(listed, settings.history)}
    assert figs["rollback"].value is not None and figs["rollback"].value > 0
    assert figs["MTTR"].value is not None  # the breaker's rollback start → its end

    # Pages of one deployment: nextToken is followed, but never past the bound.
    paged = HistorySource(
        source.targets, source.client, source.aux_client, per_service=50, max_pages=1, page_size=1
    )
    one = await paged.fetch()
    assert [e.id for e in one.services["demo/web"]] == [web[0].id]
    assert "demo/web" in one.more
    all_pages = HistorySource(
        source.targets, source.client, source.aux_client, per_service=50, max_pages=20, page_size=1
    )
    every = await all_pages.fetch()
    assert [e.id for e in every.services["demo/web"]] == [e.id for e in web]
    assert "demo/web" not in every.more


async def test_history_goes_stale_when_ecs_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.config import parse_config

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    settings = parse_config(
        {
            "aws": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
            "ecs": {"connect_timeout": 0.5, "read_timeout": 0.5},
            "service": [{"cluster": "demo", "service": "web"}],
        },
        __import__("pathlib").Path("t.toml"),
    )
    source = build_history_source(settings)
    source.interval = 0.5
    stream = source.stream()
    try:
        item = await asyncio.wait_for(anext(stream), 30)
    finally:
        await stream.aclose()
    assert isinstance(item, SourceFailure) and not isinstance(item, HistorySample)
    assert item.source == "history"
    assert item.reason in ("unavailable", "timeout")
