"""The ECS source and the app against the sandbox, through real boto3 on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from engine.config import load_config
from engine.store import EcsStatus, Store
from sources.ecs import EcsSource, EcsTarget
from sources.model import EcsServiceSample, SourceFailure
from sources.poll import Backoff
from tests.conftest import ecs_client
from tui.app import DeployWatchApp
from widgets.deployments import DeploymentsPane

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.conftest import StartSandboxProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SECRET = "dw-test-secret-9f8e7d6c"
"""The sandbox accepts any credentials; a distinctive one proves it never reaches the screen."""

TARGETS = [EcsTarget("demo/web", "demo", "web"), EcsTarget("demo/api", "demo", "api")]


@pytest.fixture(autouse=True)
def sandbox_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "sandbox")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def source_for(endpoint: str, interval: float = 0.2) -> EcsSource:
    return EcsSource(TARGETS, region="us-east-1", endpoint_url=endpoint, poll_interval=interval)


async def watch(
    source: EcsSource, store: Store, done: Callable[[Store], bool], timeout: float
) -> list[EcsStatus]:
    """Feed the store until ``done``; returns api's status history."""
    history: list[EcsStatus] = []
    deadline = time.monotonic() + timeout
    stream = source.stream()
    try:
        async for item in stream:
            store.ingest(item)
            status = store.services["demo/api"].status
            if not history or history[-1] is not status:
                history.append(status)
            if done(store) or time.monotonic() > deadline:
                break
    finally:
        await stream.aclose()
    return history


async def test_source_follows_completion_breaker_and_rollback(
    sandbox_process: StartSandboxProcess,
) -> None:
    sandbox = sandbox_process("demo", speed=8.0)
    store = Store([(t.key, t.service) for t in TARGETS])

    def finished(s: Store) -> bool:
        return (
            s.services["demo/web"].status is EcsStatus.COMPLETED
            and s.services["demo/api"].status is EcsStatus.ROLLBACK_SUCCESSFUL
        )

    history = await watch(source_for(sandbox.aws_endpoint), store, finished, timeout=60)
    assert finished(store), (store.services["demo/web"].status, history)
    web = store.services["demo/web"].sample
    api = store.services["demo/api"].sample
    assert web is not None and api is not None
    # web: one PRIMARY deployment on revision 2, all tasks running, a SUCCESSFUL record.
    assert [(d.status, d.revision, d.rollout_state) for d in web.deployments] == [
        ("PRIMARY", "web:2", "COMPLETED")
    ]
    assert web.running == web.desired == 4
    assert web.service_deployments[0].status == "SUCCESSFUL"
    assert web.deployments[0].images == ("registry.local/web:v2",)
    # api: the breaker tripped (FAILED was seen), then ECS rolled back to revision 1.
    assert EcsStatus.IN_PROGRESS in history
    assert EcsStatus.ROLLBACK_IN_PROGRESS in history or EcsStatus.FAILED in history
    newest = api.service_deployments[0]
    assert newest.circuit_breaker is not None and newest.circuit_breaker.status == "TRIGGERED"
    assert newest.target_task_definition is not None and newest.target_task_definition.endswith(
        "api:2"
    )
    assert api.deployments[0].revision == "api:1"
    events = store.take_events()  # every event the store took, in order
    messages = [e.message for key, e in events if key == "demo/api"]
    assert any("deployment failed: tasks failed to start" in m for m in messages)
    assert any("has reached a steady state" in e.message for k, e in events if k == "demo/web")
    # Events are never delivered twice.
    ids = [(key, e.id) for key, e in events]
    assert len(ids) == len(set(ids))


async def test_operator_rollback_is_followed_to_rollback_successful(
    sandbox_process: StartSandboxProcess,
) -> None:
    sandbox = sandbox_process("demo", speed=2.0)
    client = await asyncio.to_thread(ecs_client, sandbox.aws_endpoint)
    store = Store([(t.key, t.service) for t in TARGETS])
    source = source_for(sandbox.aws_endpoint)
    await watch(source, store, lambda s: s.services["demo/web"].status is EcsStatus.IN_PROGRESS, 30)
    web = store.services["demo/web"].sample
    assert web is not None and web.service_deployments
    in_flight = web.service_deployments[0]
    assert in_flight.status in ("PENDING", "IN_PROGRESS")
    await asyncio.to_thread(
        client.stop_service_deployment, serviceDeploymentArn=in_flight.arn, stopType="ROLLBACK"
    )

    def rolled_back(s: Store) -> bool:
        # ECS may report the rollback successful a poll before the stopped deployment's
        # last task has drained: followed until both are seen.
        sample = s.services["demo/web"].sample
        return (
            s.services["demo/web"].status is EcsStatus.ROLLBACK_SUCCESSFUL
            and sample is not None
            and [d.revision for d in sample.deployments] == ["web:1"]
        )

    await watch(source, store, rolled_back, timeout=60)
    assert rolled_back(store)
    web = store.services["demo/web"].sample
    assert web is not None
    assert [d.revision for d in web.deployments] == ["web:1"]
    assert web.running == 4


async def test_an_endpoint_without_the_service_deployments_api_answering_500_html(
    sandbox_process: StartSandboxProcess,
) -> None:
    """Like a plain moto server or an older ECS-compatible endpoint: the service-deployments
    operations answer 500 with an HTML page. After a few identical failures the API is
    taken as unsupported and the cards work from describe_services; no endless STALE, and
    never the page itself on screen."""
    sandbox = sandbox_process("demo", speed=2.0)
    switched = await asyncio.to_thread(
        httpx.post,
        sandbox.fault_control_url,
        json={"endpoint": "aws", "fault": "unimplemented"},
    )
    switched.raise_for_status()
    store = Store([(t.key, t.service) for t in TARGETS])
    source = source_for(sandbox.aws_endpoint)
    source.backoff = Backoff(base=0.2, cap=0.5)
    failures: list[SourceFailure] = []

    def degraded(s: Store) -> bool:
        samples = [s.services[t.key].sample for t in TARGETS]
        return all(
            sample is not None and not sample.service_deployments_supported for sample in samples
        ) and not any(s.services[t.key].stale for t in TARGETS)

    stream = source.stream()
    deadline = time.monotonic() + 45
    try:
        async for item in stream:
            store.ingest(item)
            if isinstance(item, SourceFailure):
                failures.append(item)
            if degraded(store) or time.monotonic() > deadline:
                break
    finally:
        await stream.aclose()
    assert degraded(store), [f.error for f in failures]
    for target in TARGETS:
        sample = store.services[target.key].sample
        assert sample is not None and sample.deployments, target.key
        assert sample.service_deployments == ()
    # Before the API was dropped the cards said why, in one line: status and page title.
    assert failures, "the endpoint never answered 500"
    assert {(f.reason, f.error) for f in failures} == {("http 500", "500 Internal Server Error")}


async def test_unreachable_endpoint_is_stale_per_service_never_zero() -> None:
    # Nothing listens on port 9 of loopback: connection refused, quickly.
    source = EcsSource(
        TARGETS,
        region="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        poll_interval=0.2,
        connect_timeout=0.5,
        read_timeout=0.5,
    )
    items = await source.poll_once()
    assert {i.key for i in items if isinstance(i, SourceFailure)} == {"demo/web", "demo/api"}
    assert not any(isinstance(i, EcsServiceSample) for i in items)
    assert all(i.reason == "unavailable" for i in items if isinstance(i, SourceFailure))


async def test_dashboard_over_real_sandbox_shows_final_states(
    sandbox_process: StartSandboxProcess,
) -> None:
    sandbox = sandbox_process("demo", speed=8.0)
    settings = load_config(sandbox.config_path)
    app = DeployWatchApp(settings, [source_for(sandbox.aws_endpoint, interval=0.3)])
    async with app.run_test(size=(200, 50)) as pilot:
        deadline = time.monotonic() + 60
        texts: dict[str, str] = {}
        while time.monotonic() < deadline:
            await pilot.pause(0.3)
            cards = app.screen.query_one(DeploymentsPane)
            texts = {key: cards.card_text(key).plain for key in cards.keys}
            if "COMPLETED" in texts.get("demo/web", "") and "ROLLBACK_SUCCESSFUL" in texts.get(
                "demo/api", ""
            ):
                break
        assert "COMPLETED" in texts["demo/web"] and "web:2" in texts["demo/web"]
        assert "ROLLBACK_SUCCESSFUL" in texts["demo/api"]
        assert "api:2 → back to api:1" in texts["demo/api"]
        assert "STALE" not in texts["demo/web"] + texts["demo/api"]
        # No credentials ever reach the screen.
        assert os.environ["AWS_SECRET_ACCESS_KEY"] == SECRET
        screen = "".join(texts.values()) + app.screen.query_one("#topbar").render().__str__()
        assert SECRET not in screen and "AKIA" not in screen
