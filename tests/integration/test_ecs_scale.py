"""The ECS source on a large fleet: what it costs in AWS calls, and when every service
is on screen.

An in-process moto with the sandbox's ECS extensions (service deployments, revisions)
serves 300 services behind a middleware that adds a little latency to every call and
counts the calls per operation. The scheduler does not tick: a deployment that is
started stays in flight, so a fleet "mid-deploy" holds still while it is counted.

Nothing here asserts on time (the figures are printed); the assertions are on call
counts and on what the samples say:

- every service has a sample after one ``describe_services`` per 10 services, before
  any detail call could have served it, and no sample ever shows a status its details
  would contradict (a provisional sample reads NO DATA, never STEADY);
- a steady fleet costs one ``describe_services`` per 10 services per poll, and nothing
  else;
- a fleet mid-deploy costs, per poll, one ``describe_service_deployments`` per 20
  services in flight (plus, once, one ``list_service_deployments`` per service whose
  deployments changed and the new revisions, 20 per call).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from engine.store import EcsStatus, ecs_status
from sources.ecs import EcsSource, EcsTarget
from sources.model import EcsServiceSample, SourceFailure
from tests.conftest import ecs_client

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REGION = "us-east-1"
CLUSTER = "scale"
SERVICES = 300
DEPLOYING = 50
LATENCY_S = 0.02
"""Added to every AWS call, so that calls in flight overlap as they would against AWS."""
CONCURRENCY = 8


class CallCounter:
    """WSGI middleware: sleep, answer, then record the call's operation.

    The record is a list (``append`` and slicing are atomic), so that the test reads it
    on the event loop without taking a lock.
    """

    def __init__(self, app: WSGIApplication, latency: float) -> None:
        self.app = app
        self.latency = latency
        self.calls: list[str] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        time.sleep(self.latency)
        body = list(self.app(environ, start_response))
        self.calls.append(str(environ.get("HTTP_X_AMZ_TARGET", "?")).rsplit(".", 1)[-1])
        return body

    def counts(self) -> Counter[str]:
        """Calls per operation so far."""
        return Counter(self.calls[:])

    def take(self) -> Counter[str]:
        """Calls per operation since the last ``take``, and start counting afresh."""
        taken = self.calls[:]
        del self.calls[: len(taken)]
        return Counter(taken)


@dataclass
class Fleet:
    """The services, the endpoint that serves them, and its call counter."""

    endpoint: str
    counter: CallCounter
    client: Any
    names: list[str]

    def source(self) -> EcsSource:
        """The real ECS source over every service of the fleet."""
        return EcsSource(
            [EcsTarget(f"{CLUSTER}/{name}", CLUSTER, name) for name in self.names],
            region=REGION,
            endpoint_url=self.endpoint,
            poll_interval=3600,  # one poll per stream() here
            max_concurrency=CONCURRENCY,
        )


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    """300 steady services (one completed deployment each) in an in-process moto."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from sandbox.aws import (
        install_ecs_extensions,
        quiet_logs,
        reset_ecs_backend,
        uninstall_ecs_extensions,
    )
    from sandbox.ecs_sim import DEFAULT_ACCOUNT, SandboxClock, Scheduler
    from sandbox.httpserver import WsgiServer

    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "sandbox")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sandbox")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    quiet_logs()
    scheduler = Scheduler(SandboxClock(1.0), account_id=DEFAULT_ACCOUNT, region=REGION)
    install_ecs_extensions(scheduler)
    reset_ecs_backend(DEFAULT_ACCOUNT, REGION)
    counter = CallCounter(DomainDispatcherApplication(create_backend_app), LATENCY_S)
    server = WsgiServer(counter, name="moto-scale")
    server.start()
    try:
        client = ecs_client(server.url, REGION)
        client.create_cluster(clusterName=CLUSTER)
        for version in (1, 2):
            client.register_task_definition(
                family="web",
                containerDefinitions=[
                    {"name": "web", "image": f"registry.local/web:v{version}", "memory": 128}
                ],
            )
        names = [f"svc-{i:04d}" for i in range(SERVICES)]

        def create(name: str) -> None:
            client.create_service(
                cluster=CLUSTER, serviceName=name, taskDefinition="web:1", desiredCount=2
            )
            scheduler.settle(CLUSTER, name)

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(create, names))
        counter.take()
        yield Fleet(server.url, counter, client, names)
    finally:
        server.stop()
        uninstall_ecs_extensions(scheduler)
        reset_ecs_backend(DEFAULT_ACCOUNT, REGION)


def describe_calls(services: int) -> int:
    """``describe_services`` calls for ``services`` services."""
    return math.ceil(services / 10)


async def test_every_service_is_sampled_after_describe_services_then_detailed(
    fleet: Fleet,
) -> None:
    source = fleet.source()
    keys = {f"{CLUSTER}/{name}" for name in fleet.names}
    sampled: set[str] = set()
    detailed: set[str] = set()
    statuses: set[EcsStatus] = set()
    at_sampled: Counter[str] | None = None
    took_sampled = took_detailed = 0.0
    started = time.monotonic()
    stream = source.stream()
    try:
        async for item in stream:
            assert not isinstance(item, SourceFailure), item
            assert isinstance(item, EcsServiceSample)
            sampled.add(item.key)
            statuses.add(ecs_status(item))
            if item.service_deployments:
                detailed.add(item.key)
            if at_sampled is None and sampled == keys:
                at_sampled = fleet.counter.counts()
                took_sampled = time.monotonic() - started
            if detailed == keys:
                took_detailed = time.monotonic() - started
                break
    finally:
        await stream.aclose()
    first = fleet.counter.take()
    print(
        f"\n{SERVICES} services, +{LATENCY_S * 1000:.0f} ms/call: every service sampled in "
        f"{took_sampled:.2f} s ({dict(at_sampled or {})}), detailed in {took_detailed:.2f} s "
        f"({dict(first)})"
    )
    # Every service was on screen once its batch was described: the detail calls made by
    # then are the few that started while the last batches were in flight.
    assert at_sampled is not None
    assert at_sampled["DescribeServices"] == describe_calls(SERVICES)
    assert sum(at_sampled.values()) - at_sampled["DescribeServices"] < CONCURRENCY
    # Provisional samples read NO DATA until the service deployments are known; none
    # read STEADY (what a rolled-back service would wrongly read without them).
    assert statuses == {EcsStatus.NO_DATA, EcsStatus.COMPLETED}
    # The first poll lists each service once and describes 20 per call across services;
    # the images come with the revisions.
    assert first["DescribeServices"] == describe_calls(SERVICES)
    assert first["ListServiceDeployments"] == SERVICES
    assert first["DescribeServiceDeployments"] == math.ceil(SERVICES / 20)
    assert first["DescribeServiceRevisions"] == math.ceil(SERVICES / 20)
    assert first["DescribeTaskDefinition"] == 0

    # Steady: one describe_services per 10 services, nothing else; complete samples.
    started = time.monotonic()
    items = await source.poll_once()
    took = time.monotonic() - started
    steady = fleet.counter.take()
    print(f"steady poll: {took:.2f} s, {dict(steady)}")
    assert steady == Counter({"DescribeServices": describe_calls(SERVICES)})
    samples = [i for i in items if isinstance(i, EcsServiceSample)]
    assert {s.key for s in samples} == keys
    for sample in samples:
        assert ecs_status(sample) is EcsStatus.COMPLETED
        assert sample.service_deployments[0].status == "SUCCESSFUL"
        assert sample.deployments[0].images == ("registry.local/web:v1",)


async def test_mid_deploy_fleet_costs_one_describe_per_20_services_in_flight(
    fleet: Fleet,
) -> None:
    source = fleet.source()
    await source.poll_once()
    fleet.counter.take()
    deploying = fleet.names[:DEPLOYING]

    def deploy() -> None:
        for name in deploying:
            fleet.client.update_service(cluster=CLUSTER, service=name, taskDefinition="web:2")

    await asyncio.to_thread(deploy)
    fleet.counter.take()

    # The poll that sees the new deployments lists those services once; only the new
    # service deployments and revisions are described (the old ones are settled).
    started = time.monotonic()
    items = await source.poll_once()
    changed = fleet.counter.take()
    print(
        f"\npoll after {DEPLOYING} deployments started: {time.monotonic() - started:.2f} s, "
        f"{dict(changed)}"
    )
    assert changed["DescribeServices"] == describe_calls(SERVICES)
    assert changed["ListServiceDeployments"] == DEPLOYING
    assert changed["DescribeServiceDeployments"] == math.ceil(DEPLOYING / 20)
    assert changed["DescribeServiceRevisions"] == math.ceil(DEPLOYING / 20)
    assert changed["DescribeTaskDefinition"] == 0

    # Mid-deploy: the in-flight service deployments are described again, 20 per call;
    # nothing is listed, and the steady services cost nothing beyond describe_services.
    started = time.monotonic()
    items = await source.poll_once()
    took = time.monotonic() - started
    in_flight = fleet.counter.take()
    print(f"mid-deploy poll: {took:.2f} s, {dict(in_flight)}")
    assert in_flight == Counter(
        {
            "DescribeServices": describe_calls(SERVICES),
            "DescribeServiceDeployments": math.ceil(DEPLOYING / 20),
        }
    )
    samples = {i.key: i for i in items if isinstance(i, EcsServiceSample)}
    assert len(samples) == SERVICES
    for name in fleet.names:
        sample = samples[f"{CLUSTER}/{name}"]
        newest = sample.service_deployments[0]
        if name in deploying:
            assert ecs_status(sample) is EcsStatus.IN_PROGRESS
            assert newest.status in ("PENDING", "IN_PROGRESS")
            assert newest.target_task_definition is not None
            assert newest.target_task_definition.endswith("web:2")
            primary = next(d for d in sample.deployments if d.status == "PRIMARY")
            assert primary.images == ("registry.local/web:v2",)
        else:
            assert ecs_status(sample) is EcsStatus.COMPLETED
            assert newest.status == "SUCCESSFUL"
