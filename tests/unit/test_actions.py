"""Plans per deployment kind, the engine's refusals and audit trail, automatic actions."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from engine.actions import ActionEngine, ApiCall, Outcome, Verb, plan
from engine.audit import AuditLog
from engine.autopilot import AutoPilot, MttrClock
from engine.rules import Evidence, RuleState
from engine.store import ServiceState
from sources.model import LifecycleHook
from tests.fakes import T0, deployment, sample, service_deployment

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from sources.model import ServiceDeployment

KEY = "demo/web"


def state(
    *sds: ServiceDeployment, strategy: str = "ROLLING", controller: str = "ECS"
) -> ServiceState:
    s = sample(
        KEY,
        [
            deployment("web:2", rollout="IN_PROGRESS", running=2),
            deployment("web:1", status="ACTIVE", created=T0 - timedelta(minutes=30)),
        ],
        service_deployments=sds,
    )
    return ServiceState(KEY, "web", sample=replace(s, strategy=strategy, controller=controller))


def in_flight(**changes: Any) -> ServiceDeployment:
    return replace(service_deployment("IN_PROGRESS", source="web:1", target="web:2"), **changes)


def make_plan(verb: Verb, st: ServiceState, production: bool = False) -> Any:
    return plan(verb, st, environment="prod-eu" if production else "staging", production=production)


# ---- plans per kind ------------------------------------------------------------------


def test_rolling_rollback_stops_the_service_deployment() -> None:
    p = make_plan(Verb.ROLLBACK, state(in_flight()))
    assert p.enabled and p.kind == "ECS rolling"
    assert p.call == ApiCall(
        "ecs",
        "stop_service_deployment",
        {"serviceDeploymentArn": in_flight().arn, "stopType": "ROLLBACK"},
    )
    assert p.change == "web:2 → web:1"
    assert p.title == "Roll back web"


def test_rolling_without_service_deployment_rolls_forward_to_the_old_task_definition() -> None:
    p = make_plan(Verb.ROLLBACK, state())  # older than the service-deployments API
    assert p.enabled
    assert p.call is not None and p.call.operation == "update_service"
    assert p.call.params["taskDefinition"].endswith("task-definition/web:1")
    assert "roll forward to the old revision web:1" in p.effect


@pytest.mark.parametrize("verb", [Verb.PAUSE, Verb.RESUME, Verb.PROMOTE])
def test_rolling_cannot_pause_resume_or_promote_and_says_why(verb: Verb) -> None:
    p = make_plan(verb, state(in_flight()))
    assert not p.enabled and p.call is None
    assert p.disabled_reason and "ECS rolling has no" in p.disabled_reason


def test_no_rollback_while_ecs_already_rolls_back() -> None:
    rolling_back = replace(in_flight(), status="ROLLBACK_IN_PROGRESS")
    p = make_plan(Verb.ROLLBACK, state(rolling_back))
    assert not p.enabled and "already rolling back" in (p.disabled_reason or "")


def test_native_canary_with_a_waiting_hook_promotes_and_rolls_back_through_it() -> None:
    hook = LifecycleHook("hook-1", "AWAITING_ACTION")
    sd = in_flight(hooks=(hook,), lifecycle_stage="POST_TEST_TRAFFIC_SHIFT", strategy="CANARY")
    st = state(sd, strategy="CANARY")
    promote = make_plan(Verb.PROMOTE, st)
    assert promote.kind == "ECS canary" and promote.enabled
    assert promote.call == ApiCall(
        "ecs",
        "continue_service_deployment",
        {"serviceDeploymentArn": sd.arn, "hookId": "hook-1", "action": "CONTINUE"},
    )
    # A promote goes forward (old → new), as its effect says; a rollback goes back.
    assert promote.change == "web:1 → web:2" and "towards web:2" in promote.effect
    assert (promote.audit_target()["from"], promote.audit_target()["to"]) == ("web:1", "web:2")
    rollback = make_plan(Verb.ROLLBACK, st)
    assert rollback.call is not None and rollback.call.params["action"] == "ROLLBACK"
    assert rollback.change == "web:2 → web:1"
    pause = make_plan(Verb.PAUSE, st)
    assert not pause.enabled and "already paused at POST_TEST_TRAFFIC_SHIFT" in (
        pause.disabled_reason or ""
    )


def test_native_canary_without_a_waiting_hook_stops_to_roll_back() -> None:
    sd = in_flight(hooks=(LifecycleHook("h", "SUCCEEDED"),), lifecycle_stage="BAKE_TIME")
    st = state(sd, strategy="CANARY")
    assert make_plan(Verb.ROLLBACK, st).call == ApiCall(
        "ecs", "stop_service_deployment", {"serviceDeploymentArn": sd.arn, "stopType": "ROLLBACK"}
    )
    promote = make_plan(Verb.PROMOTE, st)
    assert not promote.enabled and "no lifecycle hook is waiting (stage BAKE_TIME)" in (
        promote.disabled_reason or ""
    )


def test_codedeploy_and_external_are_disabled_with_a_reason() -> None:
    for controller, words in (("CODE_DEPLOY", "CodeDeploy"), ("EXTERNAL", "external")):
        p = make_plan(Verb.ROLLBACK, state(in_flight(), controller=controller))
        assert not p.enabled and words in (p.disabled_reason or "")


@pytest.mark.parametrize(
    ("status", "termination_wait", "promote_wait"),
    [
        ("Ready", False, "READY_WAIT"),
        ("InProgress", True, "TERMINATION_WAIT"),
        ("InProgress", False, None),
    ],
)
def test_codedeploy_continue_and_stop(
    status: str, termination_wait: bool, promote_wait: str | None
) -> None:
    from sources.model import CodeDeployDeployment

    st = state(in_flight(), controller="CODE_DEPLOY")
    assert st.sample is not None
    cd = CodeDeployDeployment("d-ABC", status, termination_wait, T0)
    st = ServiceState(KEY, "web", sample=replace(st.sample, codedeploy=cd))
    promote = make_plan(Verb.PROMOTE, st)
    if promote_wait is None:
        assert not promote.enabled and "nothing waits" in (promote.disabled_reason or "")
    else:
        assert promote.call == ApiCall(
            "codedeploy",
            "continue_deployment",
            {"deploymentId": "d-ABC", "deploymentWaitType": promote_wait},
        )
    rollback = make_plan(Verb.ROLLBACK, st)
    assert rollback.call == ApiCall(
        "codedeploy", "stop_deployment", {"deploymentId": "d-ABC", "autoRollbackEnabled": True}
    )
    assert rollback.change == "web:2 → web:1"
    assert not make_plan(Verb.PAUSE, st).enabled
    assert st.sample is not None
    done_sample = replace(st.sample, codedeploy=replace(cd, status="Succeeded"))
    done = ServiceState(KEY, "web", sample=done_sample)
    assert not make_plan(Verb.ROLLBACK, done).enabled


def test_no_data_yet_is_disabled() -> None:
    p = make_plan(Verb.ROLLBACK, ServiceState(KEY, "web"))
    assert not p.enabled and p.disabled_reason == "no ECS data yet for this service"


# ---- the engine ----------------------------------------------------------------------


class Recorder:
    """An executor that records calls and answers (or fails) as told."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[ApiCall] = []
        self.fail = fail

    def __call__(self, call: ApiCall) -> Mapping[str, Any]:
        self.calls.append(call)
        if self.fail is not None:
            raise self.fail
        return {"serviceDeploymentArn": call.params.get("serviceDeploymentArn")}


def engine(tmp_path: Path, executor: Recorder, *, read_only: bool = False) -> ActionEngine:
    return ActionEngine(
        audit=AuditLog(tmp_path / "state" / "audit.jsonl"),
        executor=executor,
        read_only=read_only,
        operator=lambda: "alice",
        clock=lambda: T0,
    )


async def test_intent_is_on_disk_before_the_call_and_result_after(tmp_path: Path) -> None:
    seen_on_disk: list[list[dict[str, Any]]] = []
    log = tmp_path / "state" / "audit.jsonl"

    class Peek(Recorder):
        def __call__(self, call: ApiCall) -> Mapping[str, Any]:
            seen_on_disk.append([json.loads(line) for line in log.read_text().splitlines()])
            return super().__call__(call)

    rec = Peek()
    result = await engine(tmp_path, rec).request(make_plan(Verb.ROLLBACK, state(in_flight())))
    assert result.outcome is Outcome.DONE and len(rec.calls) == 1
    (before,) = seen_on_disk
    assert [e["phase"] for e in before] == ["intent"]
    intent = before[0]
    assert intent["operator"] == "alice" and intent["action"] == "rollback"
    assert intent["target"] == {
        "environment": "staging",
        "cluster": "demo",
        "service": "web",
        "kind": "ECS rolling",
        "from": "web:2",
        "to": "web:1",
    }
    assert intent["call"]["operation"] == "stop_service_deployment"
    entries = AuditLog(log).read()
    assert [e["phase"] for e in entries] == ["intent", "result"]
    assert entries[1]["id"] == intent["id"] and entries[1]["ok"] is True
    assert (log.stat().st_mode & 0o777) == 0o600


async def test_a_failing_call_is_reported_and_audited(tmp_path: Path) -> None:
    class AccessDenied(Exception):
        response = {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}

    rec = Recorder(fail=AccessDenied())
    e = engine(tmp_path, rec)
    result = await e.request(make_plan(Verb.ROLLBACK, state(in_flight())))
    assert result.outcome is Outcome.FAILED
    assert result.message == "AccessDeniedException: not allowed"
    phases = [(x["phase"], x.get("ok"), x.get("error")) for x in e.audit.read()]
    assert phases == [
        ("intent", None, None),
        ("result", False, "AccessDeniedException: not allowed"),
    ]


async def test_read_only_refuses_every_verb_in_the_engine_and_audits_it(tmp_path: Path) -> None:
    rec = Recorder()
    e = engine(tmp_path, rec, read_only=True)
    hook = LifecycleHook("h", "AWAITING_ACTION")
    st = state(in_flight(hooks=(hook,)), strategy="CANARY")
    for verb in Verb:
        result = await e.request(make_plan(verb, st), automatic=verb is Verb.ROLLBACK)
        assert result.outcome is Outcome.REFUSED
        assert result.message.startswith("read-only:")
    assert rec.calls == []
    entries = e.audit.read()
    assert [x["phase"] for x in entries] == ["refused"] * 4
    assert {x["action"] for x in entries} == {v.value for v in Verb}


async def test_disabled_plan_is_refused_not_sent(tmp_path: Path) -> None:
    rec = Recorder()
    result = await engine(tmp_path, rec).request(make_plan(Verb.PAUSE, state(in_flight())))
    assert result.outcome is Outcome.REFUSED and rec.calls == []


async def test_unwritable_audit_log_means_nothing_is_sent(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the directory should be")
    rec = Recorder()
    result = await engine(tmp_path, rec).request(make_plan(Verb.ROLLBACK, state(in_flight())))
    assert result.outcome is Outcome.REFUSED and "audit log" in result.message
    assert rec.calls == []


# ---- automatic actions -----------------------------------------------------------------


def evidence(state_: RuleState, since_s: float = 60, action: str = "rollback") -> Evidence:
    return Evidence(
        rule="error rate rollback",
        state=state_,
        value=14.8,
        threshold=10,
        op=">",
        window=timedelta(minutes=1),
        samples=12,
        since=T0 - timedelta(seconds=since_s),
        breached_for=timedelta(seconds=since_s),
        unit="%",
        action=action,
    )


def test_countdown_fires_once_after_the_delay() -> None:
    pilot = AutoPilot({"error rate rollback": KEY}, timedelta(seconds=10))
    crit = [evidence(RuleState.CRITICAL)]
    fired = []
    for second in range(0, 30):
        fired += pilot.update(T0 + timedelta(seconds=second), crit, lambda k, v: True)
    assert len(fired) == 1
    assert fired[0].key == KEY and fired[0].verb is Verb.ROLLBACK
    assert fired[0].due == T0 + timedelta(seconds=10)


def test_cancelled_countdown_never_fires_until_the_rule_recovers() -> None:
    pilot = AutoPilot({"error rate rollback": KEY}, timedelta(seconds=10))
    crit = [evidence(RuleState.CRITICAL)]
    assert pilot.update(T0, crit, lambda k, v: True) == []
    assert [c.key for c in pilot.cancel()] == [KEY]
    assert all(
        pilot.update(T0 + timedelta(seconds=s), crit, lambda k, v: True) == [] for s in range(60)
    )
    # Recovery, then a new breach: a new countdown.
    pilot.update(T0 + timedelta(seconds=61), [evidence(RuleState.OK)], lambda k, v: True)
    assert pilot.update(T0 + timedelta(seconds=62), crit, lambda k, v: True) == []
    assert len(pilot.pending()) == 1


def test_no_countdown_when_not_critical_or_no_action_or_cannot_act() -> None:
    pilot = AutoPilot({"error rate rollback": KEY}, timedelta(seconds=0))
    assert pilot.update(T0, [evidence(RuleState.WARN)], lambda k, v: True) == []
    assert pilot.update(T0, [evidence(RuleState.CRITICAL, action="none")], lambda k, v: True) == []
    assert pilot.update(T0, [evidence(RuleState.CRITICAL)], lambda k, v: False) == []
    assert pilot.pending() == []


def test_mttr_clock_records_breach_decision_and_recovery() -> None:
    clock = MttrClock({"error rate rollback": KEY})
    clock.observe([evidence(RuleState.CRITICAL, since_s=90)])
    clock.decided(KEY, T0 + timedelta(seconds=15))
    clock.recovered(KEY, T0 + timedelta(seconds=75))
    text = clock.services[KEY].describe(T0 + timedelta(seconds=100))
    assert text == "breach 01:58:30 · decided +1m45s · recovered +2m45s"


def test_an_aws_error_echoing_a_secret_is_scrubbed_before_it_is_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from engine.actions import _error_text

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY")

    class Boom(Exception):
        response = {
            "Error": {
                "Code": "AccessDenied",
                "Message": "bad signature for wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY " + "x" * 900,
            }
        }

    text = _error_text(Boom())
    assert text.startswith("AccessDenied: bad signature for ")
    assert "wJalrXUtnFEMIK7" not in text and len(text) <= 500
