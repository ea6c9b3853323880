"""The fleet rehearsal: two AWS accounts in two regions, a few hundred ECS services.

moto keeps accounts apart by the access key of each request (the keys an
``sts:AssumeRole`` hands out belong to the role's account) and regions apart by the
region the request is signed for. The world here:

* ``prod-eu``: account ``123456789012`` (the sandbox's own keys), ``eu-west-1``, through
  a profile of its own, served by one moto endpoint that obeys the fault
  ``aws:prod-eu`` (e.g. ``expired_token``: that account's credentials expired);
* ``staging-us``: account ``222222222222``, ``us-east-1``, reached by assuming the role
  ``arn:aws:iam::222222222222:role/deploywatch``, served by a second endpoint (same
  moto backend) that obeys ``aws:staging-us``.

Both have a cluster ``shop`` with services ``web-000`` … (the same names in both
accounts: the keys must not collide) and ``api``; ``prod-eu`` also has ``ops``.
:meth:`FleetWorld.config_text` is a deploywatch config that discovers all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.aws import MotoServer, reset_ecs_backend
from sandbox.faults import FaultRegistry

if TYPE_CHECKING:
    from types import TracebackType

ACCOUNT_A = "123456789012"
ACCOUNT_B = "222222222222"
ROLE_B = f"arn:aws:iam::{ACCOUNT_B}:role/deploywatch"
SANDBOX_KEYS = {"aws_access_key_id": "sandbox", "aws_secret_access_key": "sandbox"}


@dataclass
class FleetWorld:
    """Two moto endpoints over one backend, seeded with two accounts' services.

    Args:
        folder: Where the AWS config and credentials files and the deploywatch config
            are written (the profile ``prod-eu`` lives there, not in ``~/.aws``).
        services: ``web-NNN`` services per account.
    """

    folder: Path
    services: int = 150
    faults: FaultRegistry = field(default_factory=FaultRegistry)
    endpoints: dict[str, str] = field(default_factory=dict)
    _servers: list[MotoServer] = field(default_factory=list)
    _internal: str = ""
    """An endpoint without faults, for the world's own calls (seeding, changes)."""

    def __enter__(self) -> FleetWorld:
        for context in ("prod-eu", "staging-us"):
            server = MotoServer(self.faults, fault_endpoint=f"aws:{context}", name=context)
            self._servers.append(server)
            self.endpoints[context] = server.start()
        internal = MotoServer(name="fleet-internal")
        self._servers.append(internal)
        self._internal = internal.start()
        self._write_aws_files()
        self.seed()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop both endpoints (held requests are dropped)."""
        self.faults.close()
        for server in self._servers:
            server.stop()

    # ---- the accounts ----------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """The variables that point boto3 at this world's profile files."""
        return {
            "AWS_CONFIG_FILE": str(self.folder / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.folder / "aws-credentials"),
            "AWS_ACCESS_KEY_ID": SANDBOX_KEYS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": SANDBOX_KEYS["aws_secret_access_key"],
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def _write_aws_files(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "aws-config").write_text("[profile prod-eu]\nregion = eu-west-1\n")
        credentials = self.folder / "aws-credentials"
        credentials.write_text(
            "[prod-eu]\naws_access_key_id = sandbox\naws_secret_access_key = sandbox\n"
        )
        credentials.chmod(0o600)

    def client(self, context: str, name: str = "ecs") -> Any:
        """A boto3 client into one context's account and region (no faults: the
        internal path, like the sandbox's own timeline)."""
        import boto3

        endpoint = self._internal
        if context == "prod-eu":
            return boto3.session.Session().client(
                name, endpoint_url=endpoint, region_name="eu-west-1", **SANDBOX_KEYS
            )
        sts = boto3.session.Session().client(
            "sts", endpoint_url=endpoint, region_name="us-east-1", **SANDBOX_KEYS
        )
        creds = sts.assume_role(RoleArn=ROLE_B, RoleSessionName="sandbox")["Credentials"]
        return boto3.session.Session().client(
            name,
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )

    def seed(self) -> None:
        """Clusters, a task definition and the services of both accounts (moto's state
        is process-global: whatever an earlier world left there is forgotten first)."""
        for account, region in ((ACCOUNT_A, "eu-west-1"), (ACCOUNT_B, "us-east-1")):
            reset_ecs_backend(account, region)
        layout = {
            "prod-eu": {"shop": [*self.web_names(), "api"], "ops": ["metrics-relay"]},
            "staging-us": {"shop": [*self.web_names(), "api"]},
        }
        for context, clusters in layout.items():
            ecs = self.client(context)
            task = ecs.register_task_definition(
                family="app",
                containerDefinitions=[
                    {"name": "app", "image": "registry.local/app:v1", "memory": 128}
                ],
            )["taskDefinition"]["taskDefinitionArn"]
            for cluster, names in clusters.items():
                ecs.create_cluster(clusterName=cluster)
                for name in names:
                    self.create_service(context, cluster, name, task, client=ecs)

    def web_names(self) -> list[str]:
        """``web-000`` … one per service asked for."""
        return [f"web-{n:03}" for n in range(self.services)]

    def create_service(
        self, context: str, cluster: str, name: str, task: str | None = None, client: Any = None
    ) -> None:
        """A service appears in one account (as a deploy pipeline would create it)."""
        ecs = client or self.client(context)
        if task is None:
            task = ecs.list_task_definitions(familyPrefix="app")["taskDefinitionArns"][0]
        ecs.create_service(
            cluster=cluster,
            serviceName=name,
            taskDefinition=task,
            desiredCount=1,
            deploymentConfiguration={
                "deploymentCircuitBreaker": {"enable": True, "rollback": True}
            },
        )

    def delete_service(self, context: str, cluster: str, name: str) -> None:
        """A service leaves one account."""
        self.client(context).delete_service(cluster=cluster, service=name, force=True)

    # ---- deploywatch's side --------------------------------------------------------

    def config_text(self, *, interval: float = 5.0) -> str:
        """A deploywatch config that watches both accounts by discovery alone."""
        return f"""\
[environment]
name = "fleet-rehearsal"

[ecs]
poll_interval = 1
discover_interval = {interval:g}

[[aws]]
name = "prod-eu"
profile = "prod-eu"
region = "eu-west-1"
endpoint_url = "{self.endpoints["prod-eu"]}"
production = true

[[aws]]
name = "staging-us"
role_arn = "{ROLE_B}"
role_session_name = "deploywatch-rehearsal"
external_id = "rehearsal"
region = "us-east-1"
endpoint_url = "{self.endpoints["staging-us"]}"

[[service]]
context = "prod-eu"
cluster = "*"
service = "*"

[[service]]
context = "staging-us"
cluster = "shop"
service = "*"
"""

    def write_config(self, *, interval: float = 5.0) -> Path:
        """The config, written to ``deploywatch.toml`` in the folder."""
        path = self.folder / "deploywatch.toml"
        path.write_text(self.config_text(interval=interval))
        return path
