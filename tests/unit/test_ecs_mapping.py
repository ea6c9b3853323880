"""ECS sample mapping and error classification, at unit level."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.store import EcsStatus, ecs_status
from sources.ecs import (
    NOT_IMPLEMENTED_POLLS,
    EcsSource,
    EcsTarget,
    classify,
    map_service,
    map_service_deployment,
)
from sources.model import (
    EcsServiceSample,
    SourceAuthError,
    SourceBadResponse,
    SourceFailure,
    SourceRateLimited,
    SourceTimeout,
    SourceUnavailable,
)
from sources.poll import MAX_SERVER_WAIT_S

AT = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
TD = "arn:aws:ecs:us-east-1:123456789012:task-definition/"


def raw_service(**overrides: Any) -> dict[str, Any]:
    service: dict[str, Any] = {
        "serviceName": "web",
        "serviceArn": "arn:aws:ecs:us-east-1:123456789012:service/demo/web",
        "status": "ACTIVE",
        "desiredCount": 4,
        "runningCount": 3,
        "pendingCount": 1,
        "taskDefinition": TD + "web:2",
        "deploymentConfiguration": {
            "deploymentCircuitBreaker": {"enable": True, "rollback": False},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
        },
        "deployments": [
            {
                "id": "ecs-svc/1",
                "status": "PRIMARY",
                "taskDefinition": TD + "web:2",
                "desiredCount": 4,
                "runningCount": 2,
                "pendingCount": 1,
                "failedTasks": 0,
                "rolloutState": "IN_PROGRESS",
                "rolloutStateReason": "ECS deployment ecs-svc/1 in progress.",
                "createdAt": AT,
                "updatedAt": AT,
            },
            # An entry missing its counts: they must stay unknown, never zero.
            {"id": "ecs-svc/0", "status": "ACTIVE", "taskDefinition": TD + "web:1"},
        ],
        "events": [],
    }
    service.update(overrides)
    return service


def test_map_service_keeps_unknown_counts_unknown() -> None:
    sample = map_service(
        raw_service(),
        key="demo/web",
        at=AT,
        new_events=(),
        service_deployments=(),
        images={TD + "web:2": ("registry.local/web:v2",)},
    )
    primary, active = sample.deployments
    assert (primary.revision, primary.running, primary.desired, primary.pending) == (
        "web:2",
        2,
        4,
        1,
    )
    assert primary.images == ("registry.local/web:v2",)
    assert primary.rollout_state == "IN_PROGRESS"
    assert (active.revision, active.running, active.desired, active.failed) == (
        "web:1",
        None,
        None,
        None,
    )
    assert active.rollout_state is None
    assert sample.circuit_breaker is not None and sample.circuit_breaker.enabled
    assert not sample.circuit_breaker.rollback


def test_map_service_deployment_resolves_revisions_and_breaker() -> None:
    raw = {
        "serviceDeploymentArn": "arn:aws:ecs:us-east-1:1:service-deployment/demo/api/abc",
        "status": "ROLLBACK_IN_PROGRESS",
        "statusReason": "circuit breaker",
        "targetServiceRevision": {"arn": "rev-new", "requestedTaskCount": 4},
        "sourceServiceRevisions": [{"arn": "rev-old"}],
        "deploymentCircuitBreaker": {"status": "TRIGGERED", "failureCount": 3, "threshold": 3},
        "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": True, "rollback": True}},
        "rollback": {"reason": "breaker tripped", "startedAt": AT},
        "createdAt": AT,
        "startedAt": AT,
    }
    sd = map_service_deployment(raw, {"rev-new": TD + "api:8", "rev-old": TD + "api:7"})
    assert sd.target_task_definition == TD + "api:8"
    assert sd.source_task_definitions == (TD + "api:7",)
    assert sd.circuit_breaker is not None
    assert (
        sd.circuit_breaker.status,
        sd.circuit_breaker.failure_count,
        sd.circuit_breaker.threshold,
    ) == ("TRIGGERED", 3, 3)
    assert sd.circuit_breaker.rollback
    assert sd.rollback_reason == "breaker tripped"
    assert sd.finished_at is None


def test_map_service_deployment_reads_the_stage_split_and_waiting_hook() -> None:
    raw = {
        "serviceDeploymentArn": "arn:aws:ecs:us-east-1:1:service-deployment/demo/web/abc",
        "status": "IN_PROGRESS",
        "targetServiceRevision": {"arn": "rev-new", "requestedProductionTrafficWeight": 20.0},
        "sourceServiceRevisions": [{"arn": "rev-old", "requestedProductionTrafficWeight": 80.0}],
        "deploymentConfiguration": {"strategy": "CANARY"},
        "lifecycleStage": "PRODUCTION_TRAFFIC_SHIFT",
        "lifecycleHookDetails": [{"hookId": "ecs-pause-1", "status": "AWAITING_ACTION"}],
    }
    sd = map_service_deployment(raw, {"rev-new": TD + "web:2", "rev-old": TD + "web:1"})
    assert (sd.strategy, sd.lifecycle_stage, sd.traffic_weight) == (
        "CANARY",
        "PRODUCTION_TRAFFIC_SHIFT",
        20.0,
    )
    assert sd.awaiting_hook is not None and sd.awaiting_hook.hook_id == "ecs-pause-1"
    for odd in (None, "20", True, -1, 101, float("nan")):
        raw["targetServiceRevision"] = {"arn": "rev-new", "requestedProductionTrafficWeight": odd}
        assert map_service_deployment(raw, {}).traffic_weight is None, odd


class ClientError(Exception):
    """Shaped like botocore's ClientError (only ``.response`` matters)."""

    def __init__(
        self,
        code: str,
        status: int,
        headers: dict[str, str] | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(code)
        self.response = {
            "Error": {"Code": code, "Message": f"{code} happened" if message is None else message},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
        }


class ReadTimeoutError(Exception):
    pass


class EndpointConnectionError(Exception):
    pass


class NoCredentialsError(Exception):
    pass


class ResponseParserError(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (
            ClientError("ThrottlingException", 400, {"retry-after": "3"}),
            SourceRateLimited,
            "rate limited",
        ),
        (ClientError("ExpiredTokenException", 400), SourceAuthError, "auth"),
        (ClientError("AccessDeniedException", 400), SourceAuthError, "auth"),
        (ClientError("InternalFailure", 503), SourceUnavailable, "http 503"),
        (ReadTimeoutError("read timeout"), SourceTimeout, "timeout"),
        (EndpointConnectionError("refused"), SourceUnavailable, "unavailable"),
        (NoCredentialsError("none"), SourceAuthError, "auth"),
        (ResponseParserError("garbage"), SourceBadResponse, "bad response"),
    ],
)
def test_classify(exc: Exception, kind: type, reason: str) -> None:
    error = classify(exc)
    assert isinstance(error, kind)
    assert error.reason == reason


def test_classify_keeps_retry_after() -> None:
    error = classify(ClientError("ThrottlingException", 400, {"retry-after": "3"}))
    assert isinstance(error, SourceRateLimited)
    assert error.retry_after == 3.0


class FakeEcsClient:
    """Answers like boto3's ECS client, from canned dicts; can be told to fail."""

    def __init__(self) -> None:
        self.services = {"web": raw_service()}
        self.fail: Exception | None = None
        self.calls: list[str] = []
        self.events: list[dict[str, Any]] = []

    def describe_services(self, cluster: str, services: list[str]) -> dict[str, Any]:
        self.calls.append("describe_services")
        if self.fail:
            raise self.fail
        found = []
        failures = []
        for name in services:
            if name in self.services:
                found.append({**self.services[name], "events": list(self.events)})
            else:
                failures.append(
                    {
                        "arn": f"arn:aws:ecs:us-east-1:1:service/{cluster}/{name}",
                        "reason": "MISSING",
                    }
                )
        return {"services": found, "failures": failures}

    def describe_task_definition(self, taskDefinition: str) -> dict[str, Any]:
        self.calls.append("describe_task_definition")
        family = taskDefinition.rsplit("/", 1)[-1].replace(":", ":v")
        return {"taskDefinition": {"containerDefinitions": [{"image": f"registry.local/{family}"}]}}

    def list_service_deployments(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("list_service_deployments")
        raise ClientError("UnknownOperationException", 400)


async def test_source_maps_missing_service_and_dedupes_events() -> None:
    client = FakeEcsClient()
    source = EcsSource(
        [EcsTarget("demo/web", "demo", "web"), EcsTarget("demo/gone", "demo", "gone")],
        region="us-east-1",
        client_factory=lambda: client,
    )
    client.events = [
        {"id": "b", "createdAt": datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC), "message": "second"},
        {"id": "a", "createdAt": datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), "message": "first"},
    ]
    items = await source.poll_once()
    web = next(i for i in items if isinstance(i, EcsServiceSample))
    gone = next(i for i in items if isinstance(i, SourceFailure))
    assert [e.message for e in web.new_events] == ["first", "second"]
    assert gone.key == "demo/gone" and "MISSING" in gone.error and gone.reason == "not found"
    # The unsupported service-deployments API is noticed once, then not called again.
    assert not web.service_deployments_supported
    client.events.insert(
        0, {"id": "c", "createdAt": datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC), "message": "third"}
    )
    items = await source.poll_once()
    web = next(i for i in items if isinstance(i, EcsServiceSample))
    assert [e.message for e in web.new_events] == ["third"]
    assert client.calls.count("list_service_deployments") == 1
    # Task definitions are immutable: described once.
    assert client.calls.count("describe_task_definition") == 2


async def test_source_failure_is_per_batch_and_never_raises() -> None:
    client = FakeEcsClient()
    client.fail = ClientError("ThrottlingException", 400, {"retry-after": "2"})
    source = EcsSource(
        [EcsTarget("demo/web", "demo", "web")], region="us-east-1", client_factory=lambda: client
    )
    (item,) = await source.poll_once()
    assert isinstance(item, SourceFailure)
    assert item.reason == "rate limited" and item.retry_in == 2.0


async def test_a_huge_throttling_wait_is_capped_and_said() -> None:
    client = FakeEcsClient()
    client.fail = ClientError("ThrottlingException", 400, {"retry-after": "100000"})
    source = EcsSource(
        [EcsTarget("demo/web", "demo", "web")], region="us-east-1", client_factory=lambda: client
    )
    (item,) = await source.poll_once()
    assert isinstance(item, SourceFailure) and item.reason == "rate limited"
    assert item.retry_in == MAX_SERVER_WAIT_S
    assert item.error.startswith("waiting 300s (server asked 100000s) · throttled:")


@pytest.mark.parametrize("offset", [100, 150])
async def test_an_aws_secret_echoed_in_an_error_leaves_no_prefix(
    offset: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    client = FakeEcsClient()
    client.fail = ClientError(
        "ValidationException", 400, message="x" * offset + secret + " is odd " + "y" * 300
    )
    source = EcsSource(
        [EcsTarget("demo/web", "demo", "web")], region="us-east-1", client_factory=lambda: client
    )
    (item,) = await source.poll_once()
    assert isinstance(item, SourceFailure)
    leaked = [secret[:n] for n in range(4, len(secret) + 1) if secret[:n] in repr(item)]
    assert leaked == [] and len(item.error) <= 240


async def test_stream_backs_off_after_failure_and_recovers() -> None:
    client = FakeEcsClient()
    client.fail = EndpointConnectionError("refused")
    source = EcsSource(
        [EcsTarget("demo/web", "demo", "web")],
        region="us-east-1",
        poll_interval=0.2,
        client_factory=lambda: client,
    )
    source.backoff.base = 0.2
    source.backoff.cap = 0.4
    seen: list[str] = []
    stream = source.stream()
    async for item in stream:
        seen.append(type(item).__name__)
        if len(seen) == 2:
            client.fail = None
        if seen.count("EcsServiceSample") == 2:
            break
    await stream.aclose()
    assert seen == ["SourceFailure", "SourceFailure", "EcsServiceSample", "EcsServiceSample"]
    # The successful round reset the back-off before the next poll.
    assert source.backoff.failures == 0


REV = "arn:aws:ecs:us-east-1:123456789012:service-revision/demo/web/"
SD = "arn:aws:ecs:us-east-1:123456789012:service-deployment/demo/web/"


def deployment(
    number: int, status: str, rollout: str, revision: int, running: int = 4
) -> dict[str, Any]:
    """A ``describe_services`` deployment entry of the fake service."""
    return {
        "id": f"ecs-svc/{number}",
        "status": status,
        "taskDefinition": TD + f"web:{revision}",
        "desiredCount": 4,
        "runningCount": running,
        "pendingCount": 0,
        "failedTasks": 0,
        "rolloutState": rollout,
        "createdAt": AT,
        "updatedAt": AT,
    }


def service_deployment(number: int, status: str, target: int, source: int | None) -> dict[str, Any]:
    """A ``describe_service_deployments`` entry of the fake service."""
    raw: dict[str, Any] = {
        "serviceDeploymentArn": SD + str(number),
        "status": status,
        "targetServiceRevision": {"arn": REV + str(target)},
        "sourceServiceRevisions": [{"arn": REV + str(source)}] if source else [],
        "createdAt": datetime(2026, 11, 22, 2, number, tzinfo=UTC),
    }
    return raw


class FakeDeploymentsClient(FakeEcsClient):
    """A fake ECS that also answers the service-deployments API (newest first)."""

    def __init__(self) -> None:
        super().__init__()
        self.service_deployments: list[dict[str, Any]] = []
        self.described: list[list[str]] = []

    def list_service_deployments(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("list_service_deployments")
        briefs = self.service_deployments[: kwargs["maxResults"]]
        return {
            "serviceDeployments": [
                {"serviceDeploymentArn": sd["serviceDeploymentArn"]} for sd in briefs
            ]
        }

    def describe_service_deployments(self, serviceDeploymentArns: list[str]) -> dict[str, Any]:
        self.calls.append("describe_service_deployments")
        self.described.append(list(serviceDeploymentArns))
        by_arn = {sd["serviceDeploymentArn"]: sd for sd in self.service_deployments}
        return {"serviceDeployments": [by_arn[a] for a in serviceDeploymentArns if a in by_arn]}

    def describe_service_revisions(self, serviceRevisionArns: list[str]) -> dict[str, Any]:
        self.calls.append("describe_service_revisions")
        revisions = []
        for arn in serviceRevisionArns:
            number = arn.rsplit("/", 1)[-1]
            revisions.append(
                {
                    "serviceRevisionArn": arn,
                    "taskDefinition": TD + f"web:{number}",
                    "containerImages": [
                        {"containerName": "web", "image": f"registry.local/web:v{number}"}
                    ],
                }
            )
        return {"serviceRevisions": revisions}


HTML_500 = (
    "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
    "<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was"
    " unable to complete your request.</p>\n"
)


class NoDeploymentsApi(FakeDeploymentsClient):
    """An ECS-compatible endpoint without the service-deployments API: it fails the
    calls with ``error`` (while ``failing``) instead of ``UnknownOperationException``."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.failing = True
        self.services["web"] = raw_service(
            deployments=[
                deployment(2, "PRIMARY", "IN_PROGRESS", 2, running=1),
                deployment(1, "ACTIVE", "COMPLETED", 1, running=3),
            ]
        )

    def list_service_deployments(self, **kwargs: Any) -> dict[str, Any]:
        if self.failing:
            self.calls.append("list_service_deployments")
            raise self.error
        return super().list_service_deployments(**kwargs)


@pytest.mark.parametrize(
    ("error", "words"),
    [
        # botocore's code for an answer it could not read: "500", the page as message.
        (ClientError("500", 500, message=HTML_500), "500 Internal Server Error"),
        (ClientError("NotImplementedException", 501), "HTTP 501: NotImplementedException happened"),
        (ClientError("InternalFailure", 500), "HTTP 500: InternalFailure happened"),
    ],
)
async def test_a_not_implemented_service_deployments_api_is_dropped_after_3_polls(
    error: Exception, words: str
) -> None:
    client = NoDeploymentsApi(error)
    source = EcsSource(
        [EcsTarget("demo/web", "demo", "web")], region="us-east-1", client_factory=lambda: client
    )
    for _ in range(NOT_IMPLEMENTED_POLLS - 1):
        (item,) = await source.poll_once()
        assert isinstance(item, SourceFailure) and item.error == words
        assert "\n" not in item.error and "<" not in item.error
    # The third identical failure: the API is unsupported here; the card works from
    # describe_services, as for UnknownOperationException.
    (item,) = await source.poll_once()
    assert isinstance(item, EcsServiceSample), item
    assert not item.service_deployments_supported and item.service_deployments == ()
    assert [d.revision for d in item.deployments] == ["web:2", "web:1"]
    asked = client.calls.count("list_service_deployments")
    (item,) = await source.poll_once()
    assert isinstance(item, EcsServiceSample)
    assert client.calls.count("list_service_deployments") == asked


async def test_a_passing_internal_failure_does_not_drop_the_api() -> None:
    client = NoDeploymentsApi(ClientError("InternalFailure", 500))
    source = EcsSource(
        [EcsTarget("demo/web", "demo", "web")], region="us-east-1", client_factory=lambda: client
    )
    for failing in (True, True, False, True, True, False):
        client.failing = failing
        (item,) = await source.poll_once()
        assert isinstance(item, SourceFailure if failing else EcsServiceSample), item
    assert isinstance(item, EcsServiceSample) and item.service_deployments_supported


async def test_first_sample_never_reads_steady_for_a_rolled_back_service() -> None:
    # ECS rolled web:2 back: describe_services shows one COMPLETED deployment of web:1;
    # only the service deployment says ROLLBACK_SUCCESSFUL.
    client = FakeDeploymentsClient()
    client.services["web"] = raw_service(
        runningCount=4, pendingCount=0, deployments=[deployment(3, "PRIMARY", "COMPLETED", 1)]
    )
    client.services["api"] = raw_service(
        serviceName="api",
        serviceArn="arn:aws:ecs:us-east-1:123456789012:service/demo/api",
        deployments=[
            deployment(5, "PRIMARY", "FAILED", 2, running=0),
            deployment(4, "ACTIVE", "COMPLETED", 1),
        ],
    )
    client.service_deployments = [service_deployment(2, "ROLLBACK_SUCCESSFUL", 2, 1)]
    source = EcsSource(
        [EcsTarget("demo/web", "demo", "web"), EcsTarget("demo/api", "demo", "api")],
        region="us-east-1",
        client_factory=lambda: client,
    )
    seen: dict[str, list[EcsServiceSample]] = {"demo/web": [], "demo/api": []}
    stream = source.stream()
    async for item in stream:
        assert isinstance(item, EcsServiceSample), item
        seen[item.key].append(item)
        if all(len(samples) == 2 for samples in seen.values()):
            break
    await stream.aclose()
    provisional, full = seen["demo/web"]
    # Provisional: ECS's counts and events, no deployments to misjudge: NO DATA.
    assert ecs_status(provisional) is EcsStatus.NO_DATA
    assert (provisional.running, provisional.desired) == (4, 4)
    assert provisional.deployments == () and provisional.service_deployments == ()
    assert ecs_status(full) is EcsStatus.ROLLBACK_SUCCESSFUL
    assert full.deployments[0].images == ("registry.local/web:v1",)
    # A deployment ECS itself calls FAILED is shown at once.
    assert ecs_status(seen["demo/api"][0]) is EcsStatus.FAILED
    assert ecs_status(seen["demo/api"][1]) is EcsStatus.ROLLBACK_SUCCESSFUL


async def test_details_are_fetched_only_when_they_can_have_changed() -> None:
    client = FakeDeploymentsClient()
    client.services["web"] = raw_service(
        runningCount=4, pendingCount=0, deployments=[deployment(1, "PRIMARY", "COMPLETED", 1)]
    )
    client.service_deployments = [service_deployment(1, "SUCCESSFUL", 1, None)]
    source = EcsSource(
        [EcsTarget("demo/web", "demo", "web")], region="us-east-1", client_factory=lambda: client
    )

    async def poll() -> tuple[EcsServiceSample, list[str]]:
        client.calls.clear()
        (item,) = await source.poll_once()
        assert isinstance(item, EcsServiceSample), item
        return item, [c for c in client.calls if c != "describe_services"]

    sample, calls = await poll()
    # The images come with the service revision: no describe_task_definition.
    assert calls == [
        "list_service_deployments",
        "describe_service_deployments",
        "describe_service_revisions",
    ]
    assert ecs_status(sample) is EcsStatus.COMPLETED
    assert sample.deployments[0].images == ("registry.local/web:v1",)
    # Steady: describe_services only.
    assert (await poll())[1] == []
    # A new deployment: listed once; only the new service deployment is described.
    client.services["web"]["deployments"] = [
        deployment(2, "PRIMARY", "IN_PROGRESS", 2, running=1),
        deployment(1, "ACTIVE", "COMPLETED", 1),
    ]
    client.service_deployments.insert(0, service_deployment(2, "IN_PROGRESS", 2, 1))
    sample, calls = await poll()
    assert calls == [
        "list_service_deployments",
        "describe_service_deployments",
        "describe_service_revisions",
    ]
    assert client.described[-1] == [SD + "2"]
    assert ecs_status(sample) is EcsStatus.IN_PROGRESS
    # In flight: the unsettled one is described again, nothing listed.
    assert (await poll())[1] == ["describe_service_deployments"]
    client.service_deployments[0]["status"] = "SUCCESSFUL"
    sample, calls = await poll()
    assert calls == ["describe_service_deployments"]
    assert sample.service_deployments[0].status == "SUCCESSFUL"
    # The old deployment drains after the service deployment succeeded: nothing to fetch.
    client.services["web"]["deployments"][0]["rolloutState"] = "COMPLETED"
    assert (await poll())[1] == []
    client.services["web"]["deployments"] = [deployment(2, "PRIMARY", "COMPLETED", 2)]
    sample, calls = await poll()
    assert calls == []
    assert ecs_status(sample) is EcsStatus.COMPLETED
    assert [sd.status for sd in sample.service_deployments] == ["SUCCESSFUL", "SUCCESSFUL"]


async def test_an_unreachable_ecs_fails_a_large_fleet_without_asking_every_batch() -> None:
    client = FakeEcsClient()
    client.fail = EndpointConnectionError("refused")
    names = [f"svc-{i:03d}" for i in range(300)]
    source = EcsSource(
        [EcsTarget(f"demo/{name}", "demo", name) for name in names],
        region="us-east-1",
        client_factory=lambda: client,
        max_concurrency=4,
    )
    items = await source.poll_once()
    assert len(items) == 300
    assert all(isinstance(i, SourceFailure) and i.reason == "unavailable" for i in items)
    # Once `max_concurrency` calls in a row found ECS unreachable, the rest are not made.
    assert client.calls.count("describe_services") < 30
