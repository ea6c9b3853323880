"""The smoke runner against the real sandbox: its ``[[smoke]]`` suite (pytest, JUnit XML)
run through :func:`engine.smoke.run_smoke` from the config the sandbox writes, against a
real service behind its proxy — it passes on a clean rollout and fails checkout on the
bad release."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from engine.config import load_config
from engine.smoke import SmokeState, run_smoke
from tests.fakes import FrozenClock
from tests.integration.conftest import wait_until

if TYPE_CHECKING:
    from sandbox.runtime import Sandbox
    from tests.conftest import StartSandbox

pytestmark = pytest.mark.integration

SPEED = 16.0
"""Only the order matters here (the rollout completes, then the suite runs against the
version that serves): the rollouts are waited out at 16 times real time."""


def rolled_out(sandbox: Sandbox, service: str, version: str) -> bool:
    """Whether ECS says the deployment to ``version`` completed and only it runs."""
    answer: Any = sandbox.client().describe_services(
        cluster=sandbox.scenario.cluster, services=[service]
    )
    deployments = answer["services"][0]["deployments"]
    return (
        len(deployments) == 1
        and deployments[0]["rolloutState"] == "COMPLETED"
        and deployments[0]["taskDefinition"].endswith(f"{service}:{2 if version == 'v2' else 1}")
    )


async def run_web_smoke(sandbox: Sandbox) -> Any:
    settings = await asyncio.to_thread(load_config, sandbox.config_path)
    (entry,) = settings.smoke
    assert entry.name == "web-smoke" and entry.on == ("completed", "key")
    assert [r.subject for r in settings.rules if r.subject.startswith("smoke:")] == [
        "smoke:web-smoke"
    ]
    return await run_smoke(
        entry, service=settings.service_key("web"), trigger="key", clock=FrozenClock()
    )


async def test_the_sandbox_smoke_suite_passes_on_a_clean_rollout(
    sandbox_world: StartSandbox,
) -> None:
    sandbox = await asyncio.to_thread(sandbox_world, "clean-rollout", SPEED)
    assert await asyncio.to_thread(wait_until, lambda: rolled_out(sandbox, "web", "v2"), 90, 0.1), (
        "clean-rollout never completed"
    )
    run = await run_web_smoke(sandbox)
    assert run.state is SmokeState.PASSED, run.summary(run.started)
    assert {c.name: c.outcome for c in run.cases} == {
        "test_health": "passed",
        "test_cart": "passed",
        "test_checkout": "passed",
    }


async def test_the_sandbox_smoke_suite_fails_checkout_on_the_bad_release(
    sandbox_world: StartSandbox,
) -> None:
    sandbox = await asyncio.to_thread(sandbox_world, "bad-release", SPEED)
    assert await asyncio.to_thread(wait_until, lambda: rolled_out(sandbox, "web", "v2"), 90, 0.1), (
        "bad-release never completed"
    )
    run = await run_web_smoke(sandbox)
    assert run.state is SmokeState.FAILED, run.summary(run.started)
    outcomes = {c.name: c for c in run.cases}
    assert outcomes["test_health"].outcome == "passed"
    checkout = outcomes["test_checkout"]
    assert checkout.outcome == "failed"
    assert checkout.message is not None and "answered 500 PaymentGatewayError" in checkout.message
