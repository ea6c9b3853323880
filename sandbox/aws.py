"""moto's server on 127.0.0.1, extended in-process with what moto 5.2.5 lacks.

moto dispatches an ``X-Amz-Target`` action to the snake_case method of the same name on
its response class, and serializes the returned ``ActionResult`` from botocore's own
service model. Adding methods to :class:`moto.ecs.responses.EC2ContainerServiceResponse`
therefore adds API operations with the exact wire shapes of real ECS:

- ``ListServiceDeployments``, ``DescribeServiceDeployments``, ``StopServiceDeployment``,
  ``ContinueServiceDeployment`` (a PAUSE lifecycle hook's CONTINUE / ROLLBACK),
  ``DescribeServiceRevisions`` (answered by the :class:`~sandbox.ecs_sim.Scheduler`);
- ``CreateService`` / ``UpdateService`` are wrapped so the scheduler sees them (it then
  owns ``deploymentConfiguration``, ``deployments``, counts, events, task definition);
- every ECS request runs under the scheduler's lock, so no response is serialized from a
  half-applied scheduler tick.

:class:`moto.codedeploy.responses.CodeDeployResponse` gets the same treatment for
CodeDeploy blue/green of ECS services (:mod:`sandbox.codedeploy_sim`): ``CreateDeployment``
is wrapped so the simulation adopts the deployment; ``GetDeployment`` /
``BatchGetDeployments`` answer its live status; ``ContinueDeployment``,
``StopDeployment``, ``ListDeploymentTargets``, ``GetDeploymentTarget`` and
``BatchGetDeploymentTargets`` are added. CodeDeploy requests run under the scheduler's
lock too.

:class:`moto.elbv2.responses.ELBV2Response` (the ALB of a weighted canary,
:mod:`sandbox.alb_sim`): every elbv2 request runs under the scheduler's lock, so the
proxy never reads half-applied weights; ``ModifyListener`` and ``ModifyRule`` check
their forward actions as ELB does (moto skips it for ``ModifyListener``): every target
group exists, at most five per action, weights 0..999.

moto's backends are process-global, so one process serves one scheduler at a time.

:class:`MotoServer` serves moto's WSGI app on the sandbox's own :class:`WsgiServer`,
wrapped in a :class:`~sandbox.faults.FaultMiddleware` (endpoint ``aws``) when given a
fault source, so that the AWS endpoint can answer 429, hang, reset... like the others.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import moto.codedeploy.responses as codedeploy_responses
from moto.codedeploy.models import codedeploy_backends
from moto.codedeploy.responses import CodeDeployResponse
from moto.core.responses import ActionResult, BaseResponse
from moto.ecs.exceptions import InvalidParameterException, ServiceNotFoundException
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.elbv2.exceptions import ActionTargetGroupNotFoundError
from moto.elbv2.exceptions import ValidationError as ElbValidationError
from moto.elbv2.models import elbv2_backends
from moto.elbv2.responses import ELBV2Response
from moto.moto_api import state_manager
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from sandbox.ecs_sim import ServiceDeploymentNotFound
from sandbox.httpserver import WsgiServer

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from sandbox.codedeploy_sim import CodeDeploySim
    from sandbox.ecs_sim import Scheduler
    from sandbox.faults import FaultSource

DESCRIBE_LIMIT = 20
"""``DescribeServiceDeployments`` accepts at most 20 ARNs."""

_scheduler: Scheduler | None = None
_codedeploy: CodeDeploySim | None = None
_originals: dict[str, Any] = {}
_restore: list[tuple[Any, str, Any]] = []
"""What the patches replaced, in order (undone when the last scheduler leaves)."""
_MISSING = object()


def quiet_logs() -> None:
    """Silence moto's and werkzeug's per-request logging."""
    for name in ("werkzeug", "moto", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)


class MotoServer:
    """moto's server app on 127.0.0.1, on a free port, optionally obeying faults.

    Several servers may serve the same (process-global) moto backend: the sandbox runs
    one public server that obeys the ``aws`` faults and one internal server, without
    faults, for its own timeline (a scripted fault must not eat the scenario's deploys).

    Args:
        faults: Fault source; requests then go through a
            :class:`~sandbox.faults.FaultMiddleware` for ``fault_endpoint`` first.
        fault_endpoint: Endpoint name in the fault registry.
        name: Short name of the server thread.
    """

    def __init__(
        self,
        faults: FaultSource | None = None,
        fault_endpoint: str = "aws",
        name: str = "moto",
    ) -> None:
        app: WSGIApplication = DomainDispatcherApplication(create_backend_app)
        self._server = WsgiServer(app, name=name)
        if faults is not None:
            from sandbox.faults import FaultMiddleware

            middleware = FaultMiddleware(app, faults, fault_endpoint)
            self._server = WsgiServer(middleware, name=name, on_stop=[middleware.close])
        self._url: str | None = None

    def start(self) -> str:
        """Start serving and return the endpoint URL (``http://127.0.0.1:PORT``)."""
        quiet_logs()
        self._server.start()
        self._url = self._server.url
        return self._url

    @property
    def url(self) -> str:
        """The endpoint URL.

        Raises:
            RuntimeError: The server was not started.
        """
        if self._url is None:
            raise RuntimeError("MotoServer.start() was not called")
        return self._url

    def stop(self) -> None:
        """Stop serving and join the server thread."""
        if self._url is not None:
            self._server.stop()
            self._url = None


def _active(response: Any) -> Scheduler | None:
    scheduler = _scheduler
    if scheduler is None or not scheduler.handles(response.current_account, response.region):
        return None
    return scheduler


def _call_action(self: Any) -> Any:
    scheduler = _scheduler
    if scheduler is None:
        return _originals["call_action"](self)
    with scheduler.lock:
        return _originals["call_action"](self)


def _create_service(self: Any) -> Any:
    scheduler = _active(self)
    if scheduler is not None:
        scheduler.check_request(dict(self._get_params()), creating=True)
    result = _originals["create_service"](self)
    if scheduler is not None:
        scheduler.on_create_service(
            result.result["service"], self._get_param("deploymentConfiguration")
        )
    return result


def _update_service(self: Any) -> Any:
    params = dict(self._get_params())
    scheduler = _active(self)
    if scheduler is not None:
        scheduler.check_request(params, creating=False)
    result = _originals["update_service"](self)
    if scheduler is not None:
        scheduler.on_update_service(result.result["service"], params)
    return result


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _list_service_deployments(self: Any) -> ActionResult:
    scheduler = _active(self)
    if scheduler is None:
        raise ServiceNotFoundException
    created = self._get_param("createdAt") or {}
    max_results = self._get_param("maxResults")
    if max_results is None:
        max_results = 20
    if not 1 <= int(max_results) <= 100:
        raise InvalidParameterException("maxResults must be between 1 and 100.")
    token = self._get_param("nextToken")
    try:
        offset = int(token) if token else 0
    except ValueError:
        raise InvalidParameterException("The nextToken is not valid.") from None
    briefs = scheduler.list_service_deployments(
        cluster=self._get_param("cluster") or "default",
        service=self._get_param("service"),
        statuses=self._get_param("status"),
        created_after=_timestamp(created.get("after")),
        created_before=_timestamp(created.get("before")),
    )
    page = briefs[offset : offset + int(max_results)]
    result: dict[str, Any] = {"serviceDeployments": page}
    if offset + len(page) < len(briefs):
        result["nextToken"] = str(offset + len(page))
    return ActionResult(result)


def _describe_service_deployments(self: Any) -> ActionResult:
    arns = list(self._get_param("serviceDeploymentArns") or [])
    if not arns or len(arns) > DESCRIBE_LIMIT:
        raise InvalidParameterException(
            f"serviceDeploymentArns must hold between 1 and {DESCRIBE_LIMIT} ARNs."
        )
    scheduler = _active(self)
    if scheduler is None:
        return ActionResult(
            {"serviceDeployments": [], "failures": [{"arn": a, "reason": "MISSING"} for a in arns]}
        )
    found, failures = scheduler.describe_service_deployments(arns)
    return ActionResult({"serviceDeployments": found, "failures": failures})


def _stop_service_deployment(self: Any) -> ActionResult:
    arn = self._get_param("serviceDeploymentArn")
    scheduler = _active(self)
    if scheduler is None:
        raise ServiceDeploymentNotFound(f"Service deployment {arn} not found.")
    stop_type = self._get_param("stopType") or "ROLLBACK"
    return ActionResult({"serviceDeploymentArn": scheduler.stop_service_deployment(arn, stop_type)})


def _continue_service_deployment(self: Any) -> ActionResult:
    arn = self._get_param("serviceDeploymentArn")
    hook = self._get_param("hookId")
    action = self._get_param("action")
    if not arn or not hook or not action:
        raise InvalidParameterException("serviceDeploymentArn, hookId and action are required.")
    scheduler = _active(self)
    if scheduler is None:
        raise ServiceDeploymentNotFound(f"Service deployment {arn} not found.")
    return ActionResult(
        {"serviceDeploymentArn": scheduler.continue_service_deployment(arn, hook, action)}
    )


def _describe_service_revisions(self: Any) -> ActionResult:
    arns = list(self._get_param("serviceRevisionArns") or [])
    if not arns or len(arns) > DESCRIBE_LIMIT:
        raise InvalidParameterException(
            f"serviceRevisionArns must hold between 1 and {DESCRIBE_LIMIT} ARNs."
        )
    scheduler = _active(self)
    if scheduler is None:
        return ActionResult(
            {"serviceRevisions": [], "failures": [{"arn": a, "reason": "MISSING"} for a in arns]}
        )
    found, failures = scheduler.describe_service_revisions(arns)
    return ActionResult({"serviceRevisions": found, "failures": failures})


def _cd_active(response: Any) -> CodeDeploySim | None:
    sim = _codedeploy
    if sim is None or not sim.scheduler.handles(response.current_account, response.region):
        return None
    return sim


def _cd_call_action(self: Any) -> Any:
    scheduler = _scheduler
    if scheduler is None:
        return _originals["cd_call_action"](self)
    with scheduler.lock:
        return _originals["cd_call_action"](self)


def _cd_create_deployment(self: Any) -> Any:
    sim = _cd_active(self)
    if sim is not None:
        sim.check_create(self._get_param("applicationName"), self._get_param("deploymentGroupName"))
    result = _originals["cd_create_deployment"](self)
    if sim is not None:
        sim.on_create(result.result["deploymentId"])
    return result


def _cd_deployment_info(deployment: Any) -> dict[str, Any]:
    info: dict[str, Any] = _originals["cd_deployment_info"](deployment)
    sim = _codedeploy
    return sim.overlay(info) if sim is not None else info


def _cd_required(self: Any) -> CodeDeploySim:
    from sandbox.codedeploy_sim import CodeDeployError

    sim = _cd_active(self)
    if sim is None:
        raise CodeDeployError(
            "DeploymentDoesNotExistException", "The sandbox simulates no CodeDeploy here."
        )
    return sim


def _cd_continue_deployment(self: Any) -> ActionResult:
    sim = _cd_required(self)
    sim.continue_deployment(
        self._get_param("deploymentId"), self._get_param("deploymentWaitType") or "READY_WAIT"
    )
    return ActionResult({})


def _cd_stop_deployment(self: Any) -> ActionResult:
    sim = _cd_required(self)
    status, message = sim.stop_deployment(
        self._get_param("deploymentId"), bool(self._get_param("autoRollbackEnabled"))
    )
    return ActionResult({"status": status, "statusMessage": message})


def _cd_list_deployment_targets(self: Any) -> ActionResult:
    sim = _cd_required(self)
    return ActionResult({"targetIds": sim.target_ids(self._get_param("deploymentId"))})


def _cd_get_deployment_target(self: Any) -> ActionResult:
    sim = _cd_required(self)
    target = sim.target(self._get_param("deploymentId"), self._get_param("targetId"))
    return ActionResult({"deploymentTarget": target})


def _cd_batch_get_deployment_targets(self: Any) -> ActionResult:
    sim = _cd_required(self)
    deployment_id = self._get_param("deploymentId")
    targets = [sim.target(deployment_id, t) for t in self._get_param("targetIds") or []]
    return ActionResult({"deploymentTargets": targets})


def _elb_call_action(self: Any) -> Any:
    scheduler = _scheduler
    if scheduler is None:
        return _originals["elb_call_action"](self)
    with scheduler.lock:
        return _originals["elb_call_action"](self)


def check_forward_actions(self: Any, actions: list[dict[str, Any]], member: str) -> None:
    """Refuse forward actions ELB refuses: unknown target groups, more than five of
    them, weights outside 0..999.

    Args:
        self: The elbv2 response handler.
        actions: The request's actions.
        member: The request member, e.g. ``"defaultActions"`` (for the message).
    """
    from sandbox.alb_sim import MAX_TARGET_GROUPS, MAX_WEIGHT

    known = set(elbv2_backends[self.current_account][self.region].target_groups)
    for i, action in enumerate(actions, start=1):
        if action.get("Type") != "forward":
            continue
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
        if len(groups) > MAX_TARGET_GROUPS:
            raise ElbValidationError(
                f"A forward action can have at most {MAX_TARGET_GROUPS} target groups"
            )
        arns = [g.get("TargetGroupArn") for g in groups]
        if action.get("TargetGroupArn"):
            arns.append(action["TargetGroupArn"])
        for arn in arns:
            if arn not in known:
                raise ActionTargetGroupNotFoundError(str(arn))
        for j, group in enumerate(groups, start=1):
            weight = int(group.get("Weight", 1))
            if not 0 <= weight <= MAX_WEIGHT:
                raise ElbValidationError(
                    f"1 validation error detected: Value '{weight}' at "
                    f"'{member}.{i}.member.forwardConfig.targetGroups.{j}.member.weight' "
                    f"failed to satisfy constraint: Member must have value between 0 and "
                    f"{MAX_WEIGHT}"
                )


def _elb_modify_listener(self: Any) -> Any:
    check_forward_actions(self, list(self._get_param("DefaultActions") or []), "defaultActions")
    return _originals["elb_modify_listener"](self)


def _elb_modify_rule(self: Any) -> Any:
    check_forward_actions(self, list(self._get_param("Actions") or []), "actions")
    return _originals["elb_modify_rule"](self)


def _patch_once() -> None:
    if _originals:
        return
    cls: Any = EC2ContainerServiceResponse
    _originals["call_action"] = BaseResponse.call_action
    _originals["create_service"] = cls.create_service
    _originals["update_service"] = cls.update_service
    _set(cls, "call_action", _call_action)
    _set(cls, "create_service", _create_service)
    _set(cls, "update_service", _update_service)
    _set(cls, "list_service_deployments", _list_service_deployments)
    _set(cls, "describe_service_deployments", _describe_service_deployments)
    _set(cls, "stop_service_deployment", _stop_service_deployment)
    _set(cls, "continue_service_deployment", _continue_service_deployment)
    _set(cls, "describe_service_revisions", _describe_service_revisions)
    cd: Any = CodeDeployResponse
    _originals["cd_call_action"] = BaseResponse.call_action
    _originals["cd_create_deployment"] = cd.create_deployment
    _originals["cd_deployment_info"] = codedeploy_responses._deployment_info
    _set(cd, "call_action", _cd_call_action)
    _set(cd, "create_deployment", _cd_create_deployment)
    _set(cd, "continue_deployment", _cd_continue_deployment)
    _set(cd, "stop_deployment", _cd_stop_deployment)
    _set(cd, "list_deployment_targets", _cd_list_deployment_targets)
    _set(cd, "get_deployment_target", _cd_get_deployment_target)
    _set(cd, "batch_get_deployment_targets", _cd_batch_get_deployment_targets)
    _set(codedeploy_responses, "_deployment_info", _cd_deployment_info)
    elb: Any = ELBV2Response
    _originals["elb_call_action"] = BaseResponse.call_action
    _originals["elb_modify_listener"] = elb.modify_listener
    _originals["elb_modify_rule"] = elb.modify_rule
    _set(elb, "call_action", _elb_call_action)
    _set(elb, "modify_listener", _elb_modify_listener)
    _set(elb, "modify_rule", _elb_modify_rule)
    # moto advances a task one lifecycle state per describe_tasks; the scheduler owns
    # task states, so freeze moto's own progression.
    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 2**62})


def _set(target: Any, name: str, value: Any) -> None:
    """Patch ``target.name``, remembering what was there (see :func:`_unpatch`)."""
    _restore.append((target, name, target.__dict__.get(name, _MISSING)))
    setattr(target, name, value)


def _unpatch() -> None:
    """Plain moto again: every patched attribute as it was, moto's own task progression."""
    while _restore:
        target, name, before = _restore.pop()
        if before is _MISSING:
            delattr(target, name)
        else:
            setattr(target, name, before)
    _originals.clear()
    state_manager.unset_transition("ecs::task")


def install_ecs_extensions(scheduler: Scheduler) -> None:
    """Route moto's ECS API through ``scheduler`` (one scheduler per process).

    Args:
        scheduler: The scheduler that owns the simulated services.

    Raises:
        RuntimeError: Another scheduler is installed.
    """
    global _scheduler
    if _scheduler is not None and _scheduler is not scheduler:
        raise RuntimeError("another sandbox scheduler is already installed in this process")
    _patch_once()
    _scheduler = scheduler


def install_codedeploy_extensions(sim: CodeDeploySim) -> None:
    """Route moto's CodeDeploy API through ``sim`` (after :func:`install_ecs_extensions`).

    Args:
        sim: The CodeDeploy simulation over the installed scheduler.

    Raises:
        RuntimeError: ``sim`` does not drive the installed scheduler.
    """
    global _codedeploy
    if _scheduler is not sim.scheduler:
        raise RuntimeError("install the scheduler of this CodeDeploy simulation first")
    _patch_once()
    _codedeploy = sim


def uninstall_ecs_extensions(scheduler: Scheduler) -> None:
    """Detach ``scheduler`` (and its CodeDeploy simulation); plain moto behaviour again."""
    global _scheduler, _codedeploy
    if _scheduler is scheduler:
        _scheduler = None
    if _codedeploy is not None and _codedeploy.scheduler is scheduler:
        _codedeploy = None
    if _scheduler is None:
        # Another test (or bench) in this process may want plain moto: the extensions'
        # service-deployment calls would otherwise answer "service not found".
        _unpatch()


def reset_ecs_backend(account_id: str, region: str) -> None:
    """Forget every ECS, CodeDeploy and ELB resource of one account and region (moto's
    state is global)."""
    from moto.ecs.models import ecs_backends

    ecs_backends[account_id][region].reset()
    codedeploy_backends[account_id][region].reset()
    elbv2_backends[account_id][region].reset()
