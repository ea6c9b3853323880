"""The fleet: ``[[aws]]`` contexts, per-context polling and STALE, actions routed to the
service's context, and signal templates."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from engine import wiring
from engine.actions import ApiCall, Verb
from engine.audit import AuditLog
from engine.config import ConfigError, Settings, load_config, parse_config
from engine.contexts import FleetActions, source_name
from engine.controller import Controller
from sources.aws_actions import AwsActions
from sources.ecs import EcsSource
from sources.model import FleetChange
from tests.fakes import FrozenClock, deployment, sample, service_deployment
from tests.unit.test_ecs_mapping import ClientError, FakeEcsClient, raw_service

if TYPE_CHECKING:
    from sources.aws_session import AwsContextSpec

TWO = {
    "environment": {"name": "fleet"},
    "aws": [
        {"name": "prod-eu", "region": "eu-west-1", "profile": "prod-eu", "production": True},
        {
            "name": "staging",
            "region": "us-east-1",
            "role_arn": "arn:aws:iam::222222222222:role/deploywatch",
            "external_id": "xyz-123",
        },
    ],
    "service": [
        {"cluster": "demo", "service": "web", "context": "prod-eu"},
        {"cluster": "demo", "service": "web", "context": "staging"},
    ],
}


def two(**changes: Any) -> Settings:
    return parse_config({**TWO, **changes}, Path("fleet.toml"))


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, Path("fleet.toml"))
    return str(caught.value)


# ---- config: contexts --------------------------------------------------------------


def test_aws_array_of_tables_names_contexts_and_keys_do_not_collide() -> None:
    config = two()
    assert [c.name for c in config.aws_contexts] == ["prod-eu", "staging"]
    assert [ref.key for ref in config.services] == ["prod-eu:demo/web", "staging:demo/web"]
    assert config.aws.region == "eu-west-1"  # the first context stands in for [aws]
    staging = config.context_of(config.services[1])
    assert (staging.account, staging.region) == ("222222222222", "us-east-1")
    assert config.context_of(config.services[0]).sso_hint == "aws sso login --profile prod-eu"


def test_single_aws_table_keeps_plain_keys() -> None:
    config = parse_config(
        {"aws": {"region": "us-east-1"}, "service": [{"cluster": "demo", "service": "web"}]},
        Path("one.toml"),
    )
    assert config.aws_contexts == ()
    assert config.services[0].key == "demo/web"
    assert config.context_of(config.services[0]).region == "us-east-1"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"service": [{"cluster": "demo", "service": "web", "context": "nope"}]},
            "fleet.toml: service #1.context: expected the name of an [[aws]] context "
            "(have: prod-eu, staging), got 'nope'",
        ),
        (
            {"service": [{"cluster": "demo", "service": "web"}]},
            "fleet.toml: service #1.context: expected the name of its [[aws]] context "
            "(one of prod-eu, staging)",
        ),
        (
            {"aws": [{"name": "a", "region": "eu-west-1"}, {"name": "a"}]},
            "fleet.toml: aws #2.name: expected a unique name, but 'a' appears twice",
        ),
        (
            {"aws": [{"name": "a", "role_arn": "arn:aws:iam::12:role/x"}]},
            "fleet.toml: aws #1.role_arn:",
        ),
    ],
)
def test_context_mistakes_are_one_line_naming_the_key(
    change: dict[str, Any], expected: str
) -> None:
    assert error_of({**TWO, **change}).startswith(expected)


# ---- per-context polling and STALE -----------------------------------------------


def fake_factories(monkeypatch: pytest.MonkeyPatch, clients: dict[str, FakeEcsClient]) -> None:
    """Each context's clients come from ``clients`` by region."""

    def factory(spec: AwsContextSpec, **config: Any) -> Any:
        return lambda name: clients[spec.region]

    monkeypatch.setattr(wiring, "client_factory", factory)


async def test_one_context_expired_is_stale_with_the_fix_never_the_other(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    eu, us = FakeEcsClient(), FakeEcsClient()
    fake_factories(monkeypatch, {"eu-west-1": eu, "us-east-1": us})
    config = two()
    sources = [s for s in wiring.build_sources(config) if isinstance(s, EcsSource)]
    assert [(source_name(s), s.region) for s in sources] == [
        ("ecs:prod-eu", "eu-west-1"),
        ("ecs:staging", "us-east-1"),
    ]
    controller = Controller(
        config,
        clock=FrozenClock(),
        executor=lambda call: {},
        audit=AuditLog(tmp_path / "audit.jsonl"),
        operator=lambda: "tester",
    )
    eu.fail = ClientError("ExpiredTokenException", 400, message="The security token expired")
    for source in sources:
        for item in await source.poll_once():
            controller.ingest(item)
    prod, staging = (controller.store.services[k] for k in ("prod-eu:demo/web", "staging:demo/web"))
    assert prod.stale and prod.failure is not None
    assert prod.failure.error.startswith("fix: aws sso login --profile prod-eu · ")
    assert "ExpiredTokenException" in prod.failure.error
    assert not staging.stale and staging.sample is not None
    assert us.calls and "describe_services" in us.calls  # polled as if nothing happened
    eu.fail = None  # the operator logged in again
    for item in await sources[0].poll_once():
        controller.ingest(item)
    assert not prod.stale and prod.sample is not None


# ---- actions go to the service's context -----------------------------------------


class Recording:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, operation: str) -> Any:
        def call(**params: Any) -> dict[str, Any]:
            self.calls.append((operation, params))
            return {"ResponseMetadata": {"HTTPStatusCode": 200}}

        return call


def in_flight(key: str) -> Any:
    return sample(
        key,
        [
            deployment("web:2", running=1, pending=1, rollout="IN_PROGRESS"),
            deployment("web:1", status="ACTIVE", running=3, rollout="COMPLETED"),
        ],
        service_deployments=[service_deployment("IN_PROGRESS", source="web:1", target="web:2")],
    )


async def test_rollback_is_sent_with_the_service_context_and_names_account_and_region(
    tmp_path: Path,
) -> None:
    config = two()
    eu, us = Recording(), Recording()
    fleet = FleetActions(
        {
            "prod-eu": AwsActions(region="eu-west-1", client_factory=lambda name: eu),
            "staging": AwsActions(region="us-east-1", client_factory=lambda name: us),
        },
        "prod-eu",
    )
    controller = Controller(
        config,
        clock=FrozenClock(),
        executor=fleet,
        audit=AuditLog(tmp_path / "audit.jsonl"),
        operator=lambda: "tester",
    )
    controller.ingest(in_flight("staging:demo/web"))
    planned = controller.plan(Verb.ROLLBACK, "staging:demo/web")
    assert planned.enabled, planned.effect
    assert (planned.cluster, planned.service) == ("demo", "web")
    assert planned.where == "staging · account 222222222222 · us-east-1"
    assert planned.call is not None and planned.call.context == "staging"
    assert planned.audit_target()["account"] == "222222222222"
    prod = controller.plan(Verb.ROLLBACK, "prod-eu:demo/web")
    assert prod.production and prod.where == "prod-eu · account ? · eu-west-1"
    result = await controller.act(planned)
    assert result.outcome.value == "done", result.message
    assert eu.calls == []
    assert [op for op, _ in us.calls] == ["stop_service_deployment"]


def test_a_call_for_an_unknown_context_is_never_sent_elsewhere() -> None:
    sent = Recording()
    fleet = FleetActions({"a": AwsActions(region="us-east-1", client_factory=lambda n: sent)}, "a")
    with pytest.raises(ValueError, match="no \\[\\[aws\\]\\] context named 'b'"):
        fleet(ApiCall("ecs", "update_service", {}, context="b"))
    assert sent.calls == []


# ---- templates ---------------------------------------------------------------------

FLEET_SIGNALS = {
    "datadog": {"host": "http://127.0.0.1:9"},
    "metric": [
        {
            "name": "{context}-{service}-errors",
            "query": "sum:errors{service:{service},env:{context}} by {version}",
            "unit": "%",
            "services": "*",
        }
    ],
    "probe": [
        {
            "name": "{context}-{service}",
            "url": "https://{service}.{context}.example.com/health",
            "headers": {"X-Cluster": "{cluster}"},
            "services": ["web*"],
        }
    ],
    "rule": [
        {
            "name": "{context} {service} errors",
            "subject": "metric:{context}-{service}-errors",
            "op": ">",
            "threshold": 5,
            "for": "1m",
            "action": "rollback",
            "services": "*",
        }
    ],
}


def test_templates_write_one_block_per_matched_service() -> None:
    config = two(**FLEET_SIGNALS)
    assert [(m.name, m.query, m.service) for m in config.metrics] == [
        (
            "prod-eu-web-errors",
            "sum:errors{service:web,env:prod-eu} by {version}",
            "prod-eu:demo/web",
        ),
        (
            "staging-web-errors",
            "sum:errors{service:web,env:staging} by {version}",
            "staging:demo/web",
        ),
    ]
    assert [(p.url, p.headers) for p in config.probes] == [
        ("https://web.prod-eu.example.com/health", {"X-Cluster": "demo"}),
        ("https://web.staging.example.com/health", {"X-Cluster": "demo"}),
    ]
    assert {r.name: config.rule_service(r) for r in config.rules} == {
        "prod-eu web errors": "prod-eu:demo/web",
        "staging web errors": "staging:demo/web",
    }


def test_a_pattern_selects_services_by_name() -> None:
    services = [{"cluster": "c", "service": n} for n in ("web-a", "web-b", "api")]
    config = parse_config(
        {
            "service": services,
            "probe": [{"name": "{service}", "url": "http://{service}.local/", "services": "web-*"}],
        },
        Path("t.toml"),
    )
    assert [(p.name, p.service) for p in config.probes] == [
        ("web-a", "c/web-a"),
        ("web-b", "c/web-b"),
    ]


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            {"name": "{service}", "url": "http://{host}/", "services": "*"},
            "t.toml: probe #1.url: expected only the placeholders {service}, {cluster} or "
            "{context}, got '{host}'",
        ),
        (
            {"name": "p", "url": "http://{service}/", "services": "*"},
            "t.toml: probe #1.name: expected a placeholder such as {service} in a template's "
            "name (it matches 2 services), got 'p'",
        ),
        (
            {"name": "{service}", "url": "http://x/", "services": "nothing-*"},
            "t.toml: probe #1.services: expected a pattern that matches a [[service]], "
            "got 'nothing-*'",
        ),
        (
            {"name": "{service}", "url": "http://x/", "services": 7},
            't.toml: probe #1.services: expected "*", a pattern such as "web-*" or a list '
            "of them, got 7",
        ),
        (
            {"name": "{service}", "url": "http://x/", "services": "*", "service": "c/a"},
            "t.toml: probe #1.service: expected either service or services (a template), not both",
        ),
    ],
)
def test_template_mistakes_name_the_key(table: dict[str, Any], expected: str) -> None:
    data = {
        "service": [{"cluster": "c", "service": "a"}, {"cluster": "c", "service": "b"}],
        "probe": [table],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, Path("t.toml"))
    assert str(caught.value) == expected


# ---- discovery -------------------------------------------------------------------


class Pages:
    def __init__(self, pages: list[dict[str, Any]], calls: list[str], name: str) -> None:
        self.pages, self.calls, self.name = pages, calls, name

    def paginate(self, **kwargs: Any) -> Any:
        self.calls.append(f"{self.name} {kwargs.get('cluster', '')}".strip())
        return iter(self.pages)


class FleetClient(FakeEcsClient):
    """Clusters of services, listed in pages of two (like ECS's paginators)."""

    def __init__(self, clusters: dict[str, list[str]]) -> None:
        super().__init__()
        self.clusters = clusters
        self.services = {
            name: raw_service(serviceName=name, serviceArn=f"{ARN}service/{c}/{name}")
            for c, names in clusters.items()
            for name in names
        }
        self.listing: list[str] = []
        self.list_fail: Exception | None = None

    def get_paginator(self, name: str) -> Pages:
        if self.list_fail is not None:
            raise self.list_fail
        if name == "list_clusters":
            arns = [f"{ARN}cluster/{c}" for c in self.clusters]
            return Pages(
                [{"clusterArns": arns[i : i + 2]} for i in range(0, len(arns), 2)],
                self.listing,
                name,
            )
        listing = self

        class Services(Pages):
            def paginate(self, **kwargs: Any) -> Any:
                listing.listing.append(f"list_services {kwargs['cluster']}")
                arns = [
                    f"{ARN}service/{kwargs['cluster']}/{s}"
                    for s in listing.clusters[kwargs["cluster"]]
                ]
                return iter([{"serviceArns": arns[i : i + 2]} for i in range(0, len(arns), 2)])

        return Services([], self.listing, name)


ARN = "arn:aws:ecs:us-east-1:123456789012:"


def discovery_settings(**entry: Any) -> Settings:
    return parse_config(
        {
            "aws": [{"name": "eu", "region": "eu-west-1", "profile": "eu"}],
            "service": [{"context": "eu", **entry}],
        },
        Path("fleet.toml"),
    )


async def discover(
    monkeypatch: pytest.MonkeyPatch, client: FleetClient, config: Settings, tmp_path: Path
) -> tuple[EcsSource, Controller]:
    monkeypatch.setattr(wiring, "client_factory", lambda spec, **kw: lambda name: client)
    (source,) = [s for s in wiring.build_sources(config) if isinstance(s, EcsSource)]
    controller = Controller(
        config,
        clock=FrozenClock(),
        executor=lambda call: {},
        audit=AuditLog(tmp_path / "audit.jsonl"),
        operator=lambda: "tester",
    )
    return source, controller


async def poll(source: EcsSource, controller: Controller) -> None:
    for item in await source.poll_once():
        controller.ingest(item)


async def test_discovery_finds_every_cluster_and_follows_services_that_come_and_go(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client = FleetClient({"shop": ["web-a", "web-b", "api", "web-c"], "ops": ["web-x"]})
    config = discovery_settings(cluster="*", service="web-*")
    source, controller = await discover(monkeypatch, client, config, tmp_path)
    store = controller.store
    await poll(source, controller)
    assert sorted(store.discovered) == [
        "eu:ops/web-x",
        "eu:shop/web-a",
        "eu:shop/web-b",
        "eu:shop/web-c",
    ]
    assert all(store.services[k].sample is not None for k in store.discovered)
    assert client.listing == ["list_clusters", "list_services ops", "list_services shop"]
    assert controller.contexts["eu:shop/web-b"].name == "eu"  # actions go to its context
    planned = controller.plan(Verb.ROLLBACK, "eu:shop/web-b")
    assert (planned.cluster, planned.service, planned.region) == ("shop", "web-b", "eu-west-1")
    client.clusters["shop"] = ["web-a", "web-d"]  # web-b and web-c deleted, web-d created
    client.services["web-d"] = raw_service(serviceName="web-d")
    await poll(source, controller)
    assert sorted(store.discovered) == ["eu:ops/web-x", "eu:shop/web-a", "eu:shop/web-d"]
    assert store.take_removed() == {"eu:shop/web-b", "eu:shop/web-c"}
    assert "eu:shop/web-b" not in controller.contexts
    assert {t.key for t in source.targets} == set(store.discovered)


async def test_a_failed_listing_keeps_the_services_and_marks_the_entry_stale(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client = FleetClient({"shop": ["web", "api"]})
    config = discovery_settings(cluster="shop", service="*")
    source, controller = await discover(monkeypatch, client, config, tmp_path)
    await poll(source, controller)
    store = controller.store
    assert sorted(store.discovered) == ["eu:shop/api", "eu:shop/web"]
    assert client.listing == ["list_services shop"]  # a named cluster is not listed
    client.list_fail = ClientError("ExpiredTokenException", 400)
    await poll(source, controller)
    entry = store.services["eu:shop/*"]
    assert entry.failure is not None
    assert entry.failure.error.startswith("fix: aws sso login --profile eu")
    assert sorted(store.discovered) == ["eu:shop/api", "eu:shop/web"]  # nothing forgotten
    client.list_fail = None
    await poll(source, controller)
    assert entry.failure is None


async def test_discovery_is_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    client = FleetClient({"shop": [f"svc-{n}" for n in range(9)]})
    config = parse_config(
        {
            "ecs": {"max_services": 5},
            "aws": [{"name": "eu", "region": "eu-west-1"}],
            "service": [{"context": "eu", "cluster": "shop", "service": "*"}],
        },
        Path("fleet.toml"),
    )
    source, _ = await discover(monkeypatch, client, config, tmp_path)
    items = await source.poll_once()
    change = items[0]
    assert isinstance(change, FleetChange) and change.truncated
    assert len(change.added) == 5 and len(source.targets) == 5


def test_discovery_entries_in_the_config() -> None:
    config = discovery_settings(cluster="*", service="*", only_active="15m")
    (entry,) = config.services
    assert entry.discovers and entry.display == "*/* (discovery)"
    assert error_of(
        {"service": [{"cluster": "c", "service": "web", "only_active": "15m"}]}
    ).startswith("fleet.toml: service #1: expected only_active on a discovery entry")


def test_the_example_fleet_config_is_under_60_lines_and_loads() -> None:
    path = Path(__file__).parents[2] / "deploywatch.fleet.example.toml"
    assert len(path.read_text().splitlines()) < 60
    config = load_config(path)
    assert len(config.services) == 200
    assert len({ref.key for ref in config.services}) == 200
    assert len(config.metrics) == len(config.probes) == 200
    assert len(config.rules) == 400
    assert {c.name for c in config.aws_contexts} == {"prod-eu", "staging-us"}
    assert config.rule_service(config.rules[-1]) == "staging-us:shop/web-099"


def test_one_service_table_may_list_names_and_contexts() -> None:
    config = two(
        service=[{"cluster": "shop", "services": ["a", "b"], "context": ["prod-eu", "staging"]}]
    )
    assert [r.key for r in config.services] == [
        "prod-eu:shop/a",
        "staging:shop/a",
        "prod-eu:shop/b",
        "staging:shop/b",
    ]
    assert error_of({**TWO, "service": [{"cluster": "c", "services": "a"}]}) == (
        "fleet.toml: service #1.services: expected a list of service names, got 'a'"
    )


def test_a_wrong_subject_among_many_metrics_names_a_few_of_them() -> None:
    names = [f"s{n:02}" for n in range(20)]
    message = error_of(
        {
            "datadog": {},
            "service": [{"cluster": "c", "services": names}],
            "metric": [{"name": "{service}", "query": "avg:x{service:{service}}", "services": "*"}],
            "rule": [
                {"name": "r", "subject": "metric:nope", "op": ">", "threshold": 1, "for": "1m"}
            ],
        }
    )
    assert "(have: s00, s01, s02, s03, s04, s05, s06, s07 and 12 more)" in message


def test_an_error_in_an_expanded_table_names_the_table_as_written() -> None:
    data: dict[str, Any] = {
        **TWO,
        "service": [{"cluster": "shop", "services": ["a", "b"], "context": ["prod-eu", "staging"]}],
        "rule": [
            {
                "name": "ok",
                "subject": "ecs:failed_tasks",
                "op": ">",
                "threshold": 1,
                "for": "1m",
                "service": "prod-eu:shop/a",
            },
            {
                "name": "{context} {service}",
                "subject": "ecs:failed_tasks",
                "op": ">",
                "threshold": 1,
                "for": "1m",
                "services": "*",
                "severity": "bad",
            },
        ],
    }
    assert error_of(data).startswith(
        "fleet.toml: rule #2 (for prod-eu:shop/a).severity: expected input should be"
    )
    data["rule"][1]["severity"] = "warn"
    data["service"].append({"cluster": "shop", "service": "c", "context": "nope"})
    assert error_of(data).startswith("fleet.toml: service #2 (for nope:c).context: expected")
