"""CodeDeploy and ELB lookups of the ECS source (a CodeDeploy group's newest deployment,
an ALB canary's weights)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sources.ecs.mapping import AlbTarget, EcsTarget, forward_weights, map_codedeploy
from sources.model import (
    AlbWeights,
    CodeDeployDeployment,
)


class AuxLookups:
    """The ECS source's CodeDeploy and ELB lookups: they run in a worker thread and make
    boto3 calls only, on clients built on first use."""

    _client_lock: threading.Lock
    _aux_clients: dict[str, Any]
    _aux_factory: Callable[[str], Any]

    def _alb_weights(self, alb: AlbTarget) -> AlbWeights:
        client = self.aux_client("elbv2")
        if alb.rule_arn is not None:
            rules = client.describe_rules(RuleArns=[alb.rule_arn]).get("Rules") or ()
            actions = rules[0].get("Actions") or () if rules else ()
        else:
            listeners = (
                client.describe_listeners(ListenerArns=[alb.listener_arn]).get("Listeners") or ()
            )
            actions = listeners[0].get("DefaultActions") or () if listeners else ()
        return forward_weights(actions, alb)

    def _codedeploy(self, target: EcsTarget, last: str | None) -> CodeDeployDeployment | None:
        """The newest deployment of the service's CodeDeploy group (in flight first);
        ``last``, the newest seen before, is followed to its end."""
        assert target.codedeploy is not None
        application, group = target.codedeploy
        client = self.aux_client("codedeploy")
        listed = client.list_deployments(
            applicationName=application,
            deploymentGroupName=group,
            includeOnlyStatuses=["Created", "Queued", "InProgress", "Baking", "Ready"],
        )
        ids = list(listed.get("deployments") or ())
        if not ids and last is not None:
            ids = [last]  # follow the last one to its end (Succeeded, Stopped...)
        if not ids:
            return None
        infos = client.batch_get_deployments(deploymentIds=ids[:25]).get("deploymentsInfo") or ()
        mapped = [map_codedeploy(info) for info in infos if isinstance(info, dict)]
        if not mapped:
            return None
        return max(mapped, key=lambda d: d.created_at or datetime.min.replace(tzinfo=UTC))

    def aux_client(self, name: str) -> Any:
        """The ``codedeploy`` or ``elbv2`` client, built on first use (worker thread)."""
        with self._client_lock:
            if name not in self._aux_clients:
                self._aux_clients[name] = self._aux_factory(name)
            return self._aux_clients[name]
