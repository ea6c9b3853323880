"""boto3 clients for one AWS context: a profile or the default chain, optionally a
role assumed on top of it, one region, an optional endpoint.

An assumed role's credentials are botocore's refreshable credentials: they are
fetched on first use and fetched again before they expire, so a long deployment
window never runs into ``ExpiredToken`` by itself. Everything here blocks (network,
files): call it from a worker thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True, slots=True)
class AwsContextSpec:
    """How to reach one account and region."""

    region: str
    profile: str | None = None
    endpoint_url: str | None = None
    role_arn: str | None = None
    role_session_name: str = "deploywatch"
    external_id: str | None = None


def session(spec: AwsContextSpec) -> Any:
    """A ``boto3.session.Session`` for the context (blocking: reads profiles).

    Raises:
        botocore.exceptions.NoCredentialsError: A role to assume but no credentials
            to assume it with.
    """
    import boto3
    from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
    from botocore.exceptions import NoCredentialsError

    base = boto3.session.Session(profile_name=spec.profile, region_name=spec.region)
    if spec.role_arn is None:
        return base
    source = base.get_credentials()
    if source is None:
        raise NoCredentialsError()
    extra: dict[str, Any] = {"RoleSessionName": spec.role_session_name}
    if spec.external_id is not None:
        extra["ExternalId"] = spec.external_id
    core = base._session  # botocore's session: its client factory for the STS call

    def sts_client(name: str, **kwargs: Any) -> Any:
        kwargs.setdefault("region_name", spec.region)
        if spec.endpoint_url is not None:
            kwargs.setdefault("endpoint_url", spec.endpoint_url)
        return core.create_client(name, **kwargs)

    fetcher = AssumeRoleCredentialFetcher(
        client_creator=sts_client,
        source_credentials=source,
        role_arn=spec.role_arn,
        extra_args=extra,
    )
    credentials = DeferredRefreshableCredentials(
        refresh_using=fetcher.fetch_credentials, method="assume-role"
    )
    assumed = boto3.session.Session(region_name=spec.region)
    assumed._session._credentials = credentials
    return assumed


def client_factory(spec: AwsContextSpec, **config: Any) -> Callable[[str], Any]:
    """A ``name → client`` factory for the context (clients share one session, so an
    assumed role is assumed once and refreshed for all of them); ``config`` are
    ``botocore.config.Config`` arguments (timeouts, retries)."""
    lock = threading.Lock()
    made: list[Any] = []

    def make(name: str) -> Any:
        from botocore.config import Config

        with lock:
            if not made:
                made.append(session(spec))
        return made[0].client(
            name,
            endpoint_url=spec.endpoint_url,
            config=Config(user_agent_appid="deploywatch", **config),
        )

    return make
