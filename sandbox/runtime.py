"""The running sandbox: moto + scheduler + scenario timeline, and the product's config file.

:class:`Sandbox` builds the scenario's world through the real AWS API (boto3 against its
own moto endpoint), brings it to steady state, writes ``deploywatch.toml`` pointing at
127.0.0.1, and plays the scenario's timeline: each ``deploy`` is a
``register_task_definition`` + ``update_service``, the calls a CI pipeline makes.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from sandbox.aws import (
    MotoServer,
    install_ecs_extensions,
    reset_ecs_backend,
    uninstall_ecs_extensions,
)
from sandbox.ecs_sim import DEFAULT_ACCOUNT, SandboxClock, Scheduler
from sandbox.scenario import Scenario, ServiceSpec, TimelineAction, load_scenario

if TYPE_CHECKING:
    from types import TracebackType

log = logging.getLogger(__name__)

CREDENTIALS_ENV = {"AWS_ACCESS_KEY_ID": "sandbox", "AWS_SECRET_ACCESS_KEY": "sandbox"}
"""Credentials the sandbox accepts; clients take them from the environment, never the file."""

CONFIG_NAME = "deploywatch.toml"


def ecs_client(endpoint: str, region: str) -> Any:
    """Return a boto3 ECS client for the sandbox endpoint, with the sandbox credentials.

    Args:
        endpoint: The moto endpoint URL.
        region: AWS region.
    """
    return boto3.session.Session().client(
        "ecs",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=CREDENTIALS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


def register_version(client: Any, service: ServiceSpec, version: str) -> str:
    """Register the task definition of one version of a service, as a pipeline would.

    Args:
        client: boto3 ECS client.
        service: The scenario service.
        version: Version label, e.g. ``"v2"``.

    Returns:
        The new task definition ARN.
    """
    spec = service.version(version)
    answer = client.register_task_definition(
        family=service.name,
        requiresCompatibilities=["EC2"],
        networkMode="bridge",
        containerDefinitions=[
            {
                "name": service.name,
                "image": spec.image,
                "essential": True,
                "memory": 512,
                "portMappings": [{"containerPort": 8080, "hostPort": 0}],
            }
        ],
    )
    return str(answer["taskDefinition"]["taskDefinitionArn"])


def config_text(scenario: Scenario, endpoint: str, region: str) -> str:
    """Return the product's config file (TOML) for a scenario served at ``endpoint``.

    Args:
        scenario: The running scenario.
        endpoint: The AWS endpoint URL (loopback).
        region: AWS region.
    """
    lines = [
        f'# Written by the deploywatch sandbox for scenario "{scenario.name}". '
        "Points at 127.0.0.1 only.",
        "[environment]",
        f'name = "sandbox-{scenario.name}"',
        "production = false",
        "",
        "[aws]",
        f'region = "{region}"',
        f'endpoint_url = "{endpoint}"',
        "",
        "[ecs]",
        "poll_interval = 1.0",
    ]
    for service in scenario.services:
        lines += [
            "",
            "[[service]]",
            f'cluster = "{scenario.cluster}"',
            f'service = "{service.name}"',
        ]
    return "\n".join(lines) + "\n"


class Sandbox:
    """A rehearsal world on 127.0.0.1, as a context manager.

    Only one ``Sandbox`` can run per process (moto's state is process-global).

    Args:
        scenario: Bundled scenario name (``"demo"``) or path to a scenario ``.toml``.
        speed: Sandbox seconds per real second.
        workdir: Where ``deploywatch.toml`` is written; a temporary directory (removed
            on stop) when not given.
        region: AWS region of the simulated world.
    """

    def __init__(
        self,
        scenario: str,
        speed: float = 1.0,
        workdir: Path | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.scenario = load_scenario(scenario)
        self.speed = speed
        self.region = region
        self._workdir = workdir
        self._own_workdir = False
        self.clock = SandboxClock(speed)
        self.scheduler = Scheduler(self.clock, account_id=DEFAULT_ACCOUNT, region=region)
        self._server = MotoServer()
        self._stop = threading.Event()
        self._timeline: threading.Thread | None = None
        self._started = False
        self._endpoint: str | None = None
        self.ready_at = 0.0
        """Sandbox time at which the world was in steady state; timeline offsets count from it."""
        self.timeline_errors: list[str] = []

    # ------------------------------------------------------------------ properties

    @property
    def aws_endpoint(self) -> str:
        """The AWS endpoint URL, e.g. ``http://127.0.0.1:54321``."""
        if self._endpoint is None:
            raise RuntimeError("the sandbox is not running")
        return self._endpoint

    @property
    def workdir(self) -> Path:
        """The directory holding ``deploywatch.toml``."""
        if self._workdir is None:
            raise RuntimeError("the sandbox is not running")
        return self._workdir

    @property
    def config_path(self) -> Path:
        """Path of the written ``deploywatch.toml``."""
        return self.workdir / CONFIG_NAME

    def now(self) -> float:
        """Return sandbox seconds since the world reached steady state."""
        return self.clock.now() - self.ready_at

    def client(self) -> Any:
        """Return a new boto3 ECS client for this sandbox."""
        return ecs_client(self.aws_endpoint, self.region)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Sandbox:
        """Start moto, build the world, write the config, start scheduler and timeline.

        Returns:
            self
        """
        if self._started:
            return self
        self._started = True
        try:
            install_ecs_extensions(self.scheduler)
            reset_ecs_backend(DEFAULT_ACCOUNT, self.region)
            for spec in self.scenario.services:
                self.scheduler.register_profile(self.scenario.cluster, spec)
            self._endpoint = self._server.start()
            self._build_world()
            self.scheduler.start()
            self.ready_at = self.clock.now()
            self._write_config()
            self._timeline = threading.Thread(target=self._play, name="timeline", daemon=True)
            self._timeline.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _build_world(self) -> None:
        client = self.client()
        cluster = self.scenario.cluster
        client.create_cluster(clusterName=cluster)
        for spec in self.scenario.services:
            task_definition = register_version(client, spec, spec.initial_version)
            client.create_service(
                cluster=cluster,
                serviceName=spec.name,
                taskDefinition=task_definition,
                desiredCount=spec.desired_count,
                launchType="EC2",
                deploymentController={"type": "ECS"},
                deploymentConfiguration=spec.deployment.to_api(),
            )
            self.scheduler.settle(cluster, spec.name)

    def _write_config(self) -> None:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="deploywatch-sandbox-"))
            self._own_workdir = True
        self._workdir.mkdir(parents=True, exist_ok=True)
        text = config_text(self.scenario, self.aws_endpoint, self.region)
        tmp = self.config_path.with_suffix(".toml.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.config_path)

    def _play(self) -> None:
        client = self.client()
        for action in self.scenario.timeline:
            while not self._stop.is_set():
                remaining = action.at - self.now()
                if remaining <= 0:
                    break
                self._stop.wait(min(self.clock.real_seconds(remaining), 0.5))
            if self._stop.is_set():
                return
            try:
                self._perform(client, action)
            except Exception as exc:  # keep the rest of the story going, but say so
                log.exception("timeline action %s failed", action)
                self.timeline_errors.append(f"{action}: {exc}")

    def _perform(self, client: Any, action: TimelineAction) -> None:
        if action.action == "deploy":
            spec = self.scenario.service(action.service)
            task_definition = register_version(client, spec, action.version)
            client.update_service(
                cluster=self.scenario.cluster, service=spec.name, taskDefinition=task_definition
            )
            log.info("deployed %s %s (%s)", spec.name, action.version, task_definition)
        else:  # pragma: no cover - the loader refuses unknown actions
            raise ValueError(f"unknown action {action.action!r}")

    def timeline_done(self) -> bool:
        """Return whether every timeline action has been performed."""
        return self._timeline is not None and not self._timeline.is_alive()

    def stop(self) -> None:
        """Stop the timeline, the scheduler and moto; remove a temporary workdir."""
        self._stop.set()
        if self._timeline is not None:
            self._timeline.join(timeout=10)
            self._timeline = None
        self.scheduler.stop()
        uninstall_ecs_extensions(self.scheduler)
        self._server.stop()
        self._endpoint = None
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self._own_workdir = False

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
