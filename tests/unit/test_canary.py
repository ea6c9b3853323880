"""The ALB canary driver: position from live weights, waits, pauses, holds, and plans."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from engine.actions import ApiCall, Verb, plan
from engine.canary import CanaryDriver
from engine.config import parse_config
from engine.store import ServiceState
from sources.model import AlbWeights
from tests.fakes import T0, deployment, sample

KEY = "demo/web"
STABLE = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-stable/1"
CANARY = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-canary/2"
LISTENER = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/3/4"


def driver() -> CanaryDriver:
    settings = parse_config(
        {
            "service": [
                {
                    "cluster": "demo",
                    "service": "web",
                    "canary": {
                        "listener_arn": LISTENER,
                        "stable_target_group_arn": STABLE,
                        "canary_target_group_arn": CANARY,
                        "steps": [
                            {"weight": 10, "wait": "30s"},
                            {"weight": 25, "pause": True},
                            {"weight": 50, "wait": "1m"},
                            {"weight": 100},
                        ],
                    },
                }
            ]
        },
        Path("t.toml"),
    )
    canary = settings.services[0].canary
    assert canary is not None
    return CanaryDriver(KEY, canary)


def words(d: CanaryDriver, now: datetime, *, failing: bool) -> str:
    """What the action bar says of the canary, with the default keys."""
    from engine.controller import canary_view
    from widgets.actionbar import KeyHints, canary_words

    return canary_words(canary_view(d.key, "web", d, failing=failing), now, KeyHints())


def weights(canary: int) -> AlbWeights:
    return AlbWeights(stable=100 - canary, canary=canary)


def test_not_started_waits_for_promote_and_never_advances_by_itself() -> None:
    d = driver()
    d.observe(weights(0), T0)
    assert not d.started and d.step == -1
    assert d.due(T0 + timedelta(hours=1), failing=False) is None
    assert d.next_weight() == 10
    assert "not started: P starts it" in words(d, T0, failing=False)


def test_wait_step_advances_after_its_wait_unless_failing_or_held() -> None:
    d = driver()
    d.observe(weights(10), T0)
    assert d.step == 0 and d.since == T0
    assert d.due(T0 + timedelta(seconds=29), failing=False) is None
    assert d.due(T0 + timedelta(seconds=30), failing=True) is None  # a FAILING rule holds it
    assert "held: a rule is FAILING" in words(d, T0, failing=True)
    d.held = True
    assert d.due(T0 + timedelta(seconds=30), failing=False) is None
    d.held = False
    assert d.due(T0 + timedelta(seconds=30), failing=False) == 25
    d.sent = 25  # sent, not yet seen: no second automatic step
    assert d.due(T0 + timedelta(seconds=60), failing=False) is None
    d.observe(weights(25), T0 + timedelta(seconds=31))
    assert d.sent is None and d.step == 1


def test_pause_step_waits_for_promote() -> None:
    d = driver()
    d.observe(weights(25), T0)
    assert d.due(T0 + timedelta(hours=1), failing=False) is None
    assert "paused: P promotes" in words(d, T0, failing=False)
    assert d.next_weight() == 50


def test_position_follows_weights_changed_by_hand() -> None:
    d = driver()
    d.observe(weights(50), T0)
    assert d.step == 2
    d.observe(weights(0), T0 + timedelta(seconds=5))
    assert d.step == -1 and not d.started
    d.observe(weights(100), T0 + timedelta(seconds=9))
    assert d.complete and d.next_weight() is None


def state() -> ServiceState:
    s = sample(KEY, [deployment("web:2")])
    return ServiceState(KEY, "web", sample=replace(s, alb=weights(25)))


def test_plans_rollback_promote_pause_resume() -> None:
    d = driver()
    st = state()
    assert st.sample is not None
    d.observe(st.sample.alb, T0)
    rollback = plan(Verb.ROLLBACK, st, environment="x", production=False, canary=d)
    assert rollback.kind == "ALB canary" and rollback.change == "canary 25% → canary 0%"
    assert rollback.call == ApiCall(
        "elbv2",
        "modify_listener",
        {
            "ListenerArn": LISTENER,
            "DefaultActions": [
                {
                    "Type": "forward",
                    "ForwardConfig": {
                        "TargetGroups": [
                            {"TargetGroupArn": STABLE, "Weight": 100},
                            {"TargetGroupArn": CANARY, "Weight": 0},
                        ]
                    },
                }
            ],
        },
    )
    promote = plan(Verb.PROMOTE, st, environment="x", production=False, canary=d)
    assert promote.to_revision == "canary 50%"
    pause = plan(Verb.PAUSE, st, environment="x", production=False, canary=d)
    assert pause.call == ApiCall("deploywatch", "hold_canary", {"service": KEY})
    assert pause.change == "canary 25%"  # traffic stays where it is
    resume = plan(Verb.RESUME, st, environment="x", production=False, canary=d)
    assert not resume.enabled and resume.disabled_reason == "the canary is not held"
    d.held = True
    resume = plan(Verb.RESUME, st, environment="x", production=False, canary=d)
    assert resume.enabled and resume.change == "canary 25%"
    assert not plan(Verb.PAUSE, st, environment="x", production=False, canary=d).enabled
