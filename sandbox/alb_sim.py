"""An ALB with weighted target groups in front of a service, on moto's elbv2.

moto 5.2.5 stores load balancers, target groups, listeners and rules (forward actions
with ``ForwardConfig.TargetGroups[].Weight`` included) but routes nothing. For a
scenario service with an ``[service.alb]`` table, :class:`AlbCanary`:

- builds, through boto3 against the sandbox's own endpoint, an internal application
  load balancer ``<service>-alb`` on the default VPC's subnets, two ``ip`` target groups
  (stable ``<service>-stable``, canary ``<service>-canary``), an HTTP:80 listener, and,
  with ``weights_on = "rule"``, a listener rule (priority 10, ``path-pattern`` ``/*``:
  every path) whose forward action holds the weights while the default action answers a
  fixed 404. The initial weights are stable ``100 - canary_weight`` / canary
  ``canary_weight``;
- tells which ECS service fills which target group: the stable group is the front
  service's ``loadBalancers`` entry, the canary group that of the canary service;
- is the proxy's split source (:meth:`weights`): the CURRENT weights of the forward
  action, read from moto's backend under the scheduler's lock (the elbv2 API runs under
  that lock too, see :mod:`sandbox.aws`), times each target group's RUNNING tasks, by
  version. A target group without a RUNNING task gets nothing, like a target group
  without healthy targets; inside a target group the share follows the task mix (a
  rolling deploy of the stable service splits the stable share between its versions).

So ``elbv2.modify_listener(DefaultActions=...)`` or ``elbv2.modify_rule(Actions=...)``
moves the proxy's traffic from its next weights read on (the proxy reuses an answer
for at most half a second).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from moto.elbv2.models import elbv2_backends

if TYPE_CHECKING:
    from sandbox.ecs_sim import Scheduler
    from sandbox.scenario import AlbSpec, ServiceSpec

log = logging.getLogger(__name__)

LISTENER_PORT = 80
RULE_PRIORITY = 10
TARGET_PORT = 8080
MAX_TARGET_GROUPS = 5
"""ALB allows at most five target groups in one forward action."""
MAX_WEIGHT = 999
"""ALB target group weights are 0..999."""


@dataclass(frozen=True)
class AlbArns:
    """What the sandbox built for one service's ALB (and writes into the product config)."""

    load_balancer_arn: str
    dns_name: str
    listener_arn: str
    rule_arn: str | None
    """The listener rule holding the weights (``weights_on = "rule"``), else ``None``."""
    stable_target_group_arn: str
    canary_target_group_arn: str

    def to_dict(self) -> dict[str, str | None]:
        """The ARNs as the ``--json`` line carries them."""
        return {
            "load_balancer_arn": self.load_balancer_arn,
            "dns_name": self.dns_name,
            "listener_arn": self.listener_arn,
            "rule_arn": self.rule_arn,
            "stable_target_group_arn": self.stable_target_group_arn,
            "canary_target_group_arn": self.canary_target_group_arn,
        }


def forward_action(weights: list[tuple[str, int]]) -> dict[str, Any]:
    """An ALB ``forward`` action with weighted target groups.

    Args:
        weights: ``(target group ARN, weight)`` pairs, in order.
    """
    return {
        "Type": "forward",
        "ForwardConfig": {
            "TargetGroups": [{"TargetGroupArn": arn, "Weight": w} for arn, w in weights],
        },
    }


def forward_weights(actions: list[dict[str, Any]]) -> dict[str, float] | None:
    """Target group ARN -> weight of the first ``forward`` action in ``actions``.

    A forward action naming one ``TargetGroupArn`` (no ``ForwardConfig``) weighs 1.

    Returns:
        The weights, or ``None`` when no action forwards (fixed response, redirect).
    """
    for action in actions:
        if action.get("Type") != "forward":
            continue
        config = action.get("ForwardConfig") or {}
        groups = config.get("TargetGroups") or []
        if groups:
            weights: dict[str, float] = {}
            for group in groups:
                arn = str(group["TargetGroupArn"])
                weights[arn] = weights.get(arn, 0.0) + float(group.get("Weight", 1))
            return weights
        if action.get("TargetGroupArn"):
            return {str(action["TargetGroupArn"]): 1.0}
    return None


class AlbCanary:
    """One service's ALB: built once through the API, then the proxy's split source.

    Args:
        scheduler: The ECS scheduler (its lock, its task mix, moto's account/region).
        cluster: The ECS cluster of both services.
        service: The front service (its ``alb`` is set).
    """

    def __init__(self, scheduler: Scheduler, cluster: str, service: ServiceSpec) -> None:
        if service.alb is None:
            raise ValueError(f"service {service.name!r} has no [service.alb]")
        self.scheduler = scheduler
        self.cluster = cluster
        self.service = service
        self.spec: AlbSpec = service.alb
        self._arns: AlbArns | None = None

    @property
    def arns(self) -> AlbArns:
        """The ARNs (after :meth:`build`)."""
        if self._arns is None:
            raise RuntimeError("AlbCanary.build() was not called")
        return self._arns

    @property
    def source_name(self) -> str:
        """What the proxy splits by: ``alb-listener`` or ``alb-rule``."""
        return f"alb-{self.spec.weights_on}"

    def build(self, elbv2: Any, ec2: Any) -> AlbArns:
        """Create the load balancer, target groups, listener (and rule).

        Args:
            elbv2: boto3 ``elbv2`` client on the sandbox's internal endpoint.
            ec2: boto3 ``ec2`` client on the same endpoint.

        Returns:
            The ARNs.
        """
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        vpc = str(vpcs[0]["VpcId"])
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
        by_zone: dict[str, str] = {}
        for subnet in subnets:
            by_zone.setdefault(str(subnet["AvailabilityZone"]), str(subnet["SubnetId"]))
        balancer = elbv2.create_load_balancer(
            Name=self.spec.load_balancer,
            Subnets=sorted(by_zone.values())[:2],
            Scheme="internal",
            Type="application",
            IpAddressType="ipv4",
            Tags=[{"Key": "sandbox:service", "Value": self.service.name}],
        )["LoadBalancers"][0]

        def target_group(name: str) -> str:
            group = elbv2.create_target_group(
                Name=name,
                Protocol="HTTP",
                Port=TARGET_PORT,
                VpcId=vpc,
                TargetType="ip",
                HealthCheckPath="/health",
            )["TargetGroups"][0]
            return str(group["TargetGroupArn"])

        stable = target_group(self.spec.stable_target_group)
        canary = target_group(self.spec.canary_target_group)
        weighted = forward_action(
            [(stable, 100 - self.spec.canary_weight), (canary, self.spec.canary_weight)]
        )
        rule_arn: str | None = None
        if self.spec.weights_on == "rule":
            default: dict[str, Any] = {
                "Type": "fixed-response",
                "FixedResponseConfig": {
                    "StatusCode": "404",
                    "ContentType": "text/plain",
                    "MessageBody": "no route",
                },
            }
        else:
            default = weighted
        listener = elbv2.create_listener(
            LoadBalancerArn=balancer["LoadBalancerArn"],
            Protocol="HTTP",
            Port=LISTENER_PORT,
            DefaultActions=[default],
        )["Listeners"][0]
        if self.spec.weights_on == "rule":
            rule = elbv2.create_rule(
                ListenerArn=listener["ListenerArn"],
                Priority=RULE_PRIORITY,
                Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/*"]}}],
                Actions=[weighted],
            )["Rules"][0]
            rule_arn = str(rule["RuleArn"])
        self._arns = AlbArns(
            load_balancer_arn=str(balancer["LoadBalancerArn"]),
            dns_name=str(balancer.get("DNSName", "")),
            listener_arn=str(listener["ListenerArn"]),
            rule_arn=rule_arn,
            stable_target_group_arn=stable,
            canary_target_group_arn=canary,
        )
        return self._arns

    def load_balancers(self, service: str) -> list[dict[str, Any]]:
        """The ``loadBalancers`` of ``create_service`` for the front or the canary service.

        Args:
            service: The front service's or the canary service's name.
        """
        arns = self.arns
        group = (
            arns.canary_target_group_arn
            if service == self.spec.canary_service
            else arns.stable_target_group_arn
        )
        return [{"targetGroupArn": group, "containerName": service, "containerPort": TARGET_PORT}]

    def _services_by_group(self) -> dict[str, str]:
        arns = self.arns
        return {
            arns.stable_target_group_arn: self.service.name,
            arns.canary_target_group_arn: self.spec.canary_service,
        }

    def target_group_weights(self) -> dict[str, float] | None:
        """Target group ARN -> weight of the forward action now in moto.

        Returns:
            ``None`` when the listener or rule is gone or no longer forwards.
        """
        arns = self.arns
        backend = elbv2_backends[self.scheduler.account_id][self.scheduler.region]
        with self.scheduler.lock:
            balancer = backend.load_balancers.get(arns.load_balancer_arn)
            listener = balancer.listeners.get(arns.listener_arn) if balancer else None
            if listener is None:
                return None
            if arns.rule_arn is None:
                actions = list(listener.default_actions)
            else:
                rule = listener.rules.get(arns.rule_arn)
                if rule is None:
                    return None
                actions = list(rule.actions)
            return forward_weights([dict(a.data) for a in actions])

    def weights(self) -> dict[str, float]:
        """Version -> share of the traffic: forward weights times live tasks.

        Each target group's weight is split between the versions of the RUNNING tasks of
        the ECS service behind it, in proportion to their counts; a target group with no
        RUNNING task (or one no sandbox service fills) gets nothing.
        """
        with self.scheduler.lock:
            by_group = self.target_group_weights()
            if not by_group:
                return {}
            services = self._services_by_group()
            result: dict[str, float] = {}
            for group, weight in by_group.items():
                service = services.get(group)
                if weight <= 0 or service is None:
                    continue
                mix = self.scheduler.task_mix(self.cluster, service)
                running = sum(mix.values())
                for version, count in mix.items():
                    if running > 0 and count > 0:
                        result[version] = result.get(version, 0.0) + weight * count / running
            return result
