"""The fleet rehearsal through real boto3: two accounts in two regions (moto keeps them
apart), discovery, one context STALE with expired credentials and its recovery, and
actions sent to the right account."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from engine.actions import ApiCall, Verb
from engine.audit import AuditLog
from engine.config import Settings, load_config
from engine.contexts import FleetActions, build_actions
from engine.controller import Controller
from engine.wiring import build_sources
from sandbox.faults import Fault
from sandbox.fleet import ACCOUNT_A, ACCOUNT_B, FleetWorld
from sources.ecs import NOT_IMPLEMENTED_POLLS, EcsSource
from tests.fakes import wait_until
from tui.app import DeployWatchApp
from widgets.deployments import DeploymentsPane

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

PER_ACCOUNT = 100
"""``web-NNN`` services per account (plus ``api``, and ``ops/metrics-relay`` in prod-eu)."""


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FleetWorld]:
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with FleetWorld(tmp_path, services=PER_ACCOUNT) as fleet:
        for name, value in fleet.environment().items():
            monkeypatch.setenv(name, value)
        yield fleet


def watch(config: Settings, path: Path) -> tuple[list[EcsSource], Controller]:
    sources = [s for s in build_sources(config) if isinstance(s, EcsSource)]
    controller = Controller(
        config,
        clock=lambda: datetime.now(UTC),
        executor=build_actions(config),
        audit=AuditLog(path / "audit.jsonl"),
        operator=lambda: "rehearsal",
    )
    return sources, controller


async def poll(sources: list[EcsSource], controller: Controller, rounds: int = 1) -> None:
    for _ in range(rounds):
        for source in sources:
            for item in await source.poll_once():
                controller.ingest(item)


async def settle(sources: list[EcsSource], controller: Controller) -> None:
    """Poll until every discovered service has its sample: plain moto has no
    service-deployments API, and the source takes it as unsupported only after
    ``NOT_IMPLEMENTED_POLLS`` polls where it answered so (a call that times out on a
    loaded machine does not count)."""
    deadline = time.monotonic() + 120  # bounded in time and in count
    for _ in range(20 * NOT_IMPLEMENTED_POLLS):
        if time.monotonic() > deadline:
            break
        await poll(sources, controller)
        services = controller.store.services
        if controller.store.discovered and all(
            services[key].sample is not None for key in controller.store.discovered
        ):
            return
    missing = [k for k in controller.store.discovered if services[k].sample is None]
    failures = [services[k].failure for k in missing]
    why = {f.error for f in failures if f is not None}
    raise AssertionError(
        f"the fleet never had a sample for every service ({len(missing)} missing, "
        f"{len(controller.store.discovered)} discovered; failures: {sorted(why)[:3]})"
    )


def stale(controller: Controller, context: str) -> list[str]:
    return sorted(
        k for k, s in controller.store.services.items() if k.startswith(f"{context}:") and s.stale
    )


async def test_discovery_finds_both_accounts_and_follows_services_that_come_and_go(
    world: FleetWorld, tmp_path: Path
) -> None:
    config = await asyncio.to_thread(lambda: load_config(world.write_config()))
    sources, controller = watch(config, tmp_path)
    assert [(s.context, s.region) for s in sources] == [
        ("prod-eu", "eu-west-1"),
        ("staging-us", "us-east-1"),
    ]
    await settle(sources, controller)
    found = controller.store.discovered
    prod = [k for k in found if k.startswith("prod-eu:")]
    staging = [k for k in found if k.startswith("staging-us:")]
    assert len(prod) == PER_ACCOUNT + 2 and len(staging) == PER_ACCOUNT + 1
    assert "prod-eu:ops/metrics-relay" in prod and "staging-us:ops/metrics-relay" not in found
    both = controller.store.services
    assert both["prod-eu:shop/web-007"].sample is not None, both["prod-eu:shop/web-007"].failure
    assert both["staging-us:shop/web-007"].sample is not None, both[
        "staging-us:shop/web-007"
    ].failure
    await asyncio.to_thread(world.create_service, "staging-us", "shop", "web-new")
    await asyncio.to_thread(world.delete_service, "prod-eu", "shop", "web-001")
    await poll(sources, controller)
    assert "staging-us:shop/web-new" in found
    assert both["staging-us:shop/web-new"].sample is not None
    assert "prod-eu:shop/web-001" not in found
    assert controller.store.take_removed() == {"prod-eu:shop/web-001"}


async def test_expired_credentials_make_one_context_stale_never_the_other_then_recover(
    world: FleetWorld, tmp_path: Path
) -> None:
    config = await asyncio.to_thread(lambda: load_config(world.write_config()))
    sources, controller = watch(config, tmp_path)
    await settle(sources, controller)
    await asyncio.to_thread(world.faults.set, "aws:prod-eu", Fault(kind="expired_token"))
    await poll(sources, controller)
    assert len(stale(controller, "prod-eu")) == PER_ACCOUNT + 3  # its services and its entry
    assert stale(controller, "staging-us") == [], controller.store.services[
        "staging-us:shop/api"
    ].failure
    failure = controller.store.services["prod-eu:shop/web-000"].failure
    assert failure is not None
    assert failure.error.startswith("fix: aws sso login --profile prod-eu · ")
    assert "ExpiredTokenException" in failure.error
    assert len(controller.store.discovered) == 2 * PER_ACCOUNT + 3  # nothing forgotten
    await asyncio.to_thread(world.faults.clear, "aws:prod-eu")  # `aws sso login` done
    await poll(sources, controller)
    assert stale(controller, "prod-eu") == []


async def test_actions_go_to_the_service_account_and_name_it(
    world: FleetWorld, tmp_path: Path
) -> None:
    config = await asyncio.to_thread(lambda: load_config(world.write_config()))
    sources, controller = watch(config, tmp_path)
    await settle(sources, controller)
    fleet = controller.actions.executor
    assert isinstance(fleet, FleetActions)
    accounts = await asyncio.to_thread(fleet.resolve_accounts)
    assert accounts == {"prod-eu": ACCOUNT_A, "staging-us": ACCOUNT_B}
    controller.accounts.update(accounts)
    planned = controller.plan(Verb.ROLLBACK, "prod-eu:shop/web-003")
    assert planned.where == f"prod-eu · account {ACCOUNT_A} · eu-west-1"
    assert planned.production
    staging = controller.plan(Verb.ROLLBACK, "staging-us:shop/web-003")
    assert staging.where == f"staging-us · account {ACCOUNT_B} · us-east-1"
    params = {"cluster": "shop", "service": "web-003", "desiredCount": 3}
    await asyncio.to_thread(fleet, ApiCall("ecs", "update_service", params, context="staging-us"))

    def desired(context: str) -> Any:
        answer = world.client(context).describe_services(cluster="shop", services=["web-003"])
        return answer["services"][0]["desiredCount"]

    assert await asyncio.to_thread(desired, "staging-us") == 3
    assert await asyncio.to_thread(desired, "prod-eu") == 1


async def test_the_dashboard_shows_both_contexts_one_stale(world: FleetWorld) -> None:
    config = await asyncio.to_thread(lambda: load_config(world.write_config()))
    app = DeployWatchApp(config)
    async with app.run_test(size=(140, 36)) as pilot:
        pane = app.screen.query_one(DeploymentsPane)

        def top() -> str:
            return "  ".join(str(app.screen.query_one(f"#context-{n}").render()) for n in (0, 1))

        await wait_until(pilot, lambda: "prod-eu 102 svc" in top(), timeout=120)
        await wait_until(pilot, lambda: "staging-us 101 svc" in top(), timeout=120)
        # Plain moto has no service-deployments API: the source takes it as unsupported
        # after a few polls that say so (until then those services are STALE).
        await wait_until(pilot, lambda: "STALE" not in top(), timeout=120)
        await asyncio.to_thread(world.faults.set, "aws:prod-eu", Fault(kind="expired_token"))
        await wait_until(pilot, lambda: "prod-eu 102 svc · 102 STALE" in top(), timeout=120)
        # The failing listing (every discover_interval) says why on the entry's card.
        await wait_until(pilot, lambda: "prod-eu:*/*" in pane.keys, timeout=120)
        assert "aws sso login --profile prod-eu" in pane.card_text("prod-eu:*/*").plain
        assert "staging-us 101 svc" in top() and "staging-us 101 svc ·" not in top()
        await pilot.press("slash", *"staging web-05")
        assert pane.keys == [f"staging-us:shop/web-05{n}" for n in range(10)]
        if path := os.environ.get("DEPLOYWATCH_FLEET_SCREENSHOT"):
            await pilot.press("escape")
            await wait_until(pilot, lambda: len(pane.keys) > 200)
            svg = app.export_screenshot(title="deploywatch: two AWS contexts, one STALE")
            await asyncio.to_thread(Path(path).write_text, svg)
