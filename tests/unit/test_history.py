"""Deployment history: outcomes in words, who acted (joined from the audit log), and the
figures against their targets; the report's section."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from engine.audit import AuditLog
from engine.config import HistorySettings
from engine.history import (
    BY_BREAKER,
    BY_OPERATOR,
    BY_RULE,
    COMPLETED,
    IN_PROGRESS,
    STOPPED,
    acts_from_audit,
    figures,
    render_markdown,
    rows,
    to_json,
)
from engine.report import render_markdown as report_markdown
from sources.history import HistoryEntry, HistorySample, codedeploy_entry
from tests.fakes import T0


def entry(
    status: str,
    *,
    minutes_ago: float,
    took: float | None,
    breaker: bool = False,
    rollback_started: float | None = None,
    to: str = "web:2",
) -> HistoryEntry:
    begun = T0 - timedelta(minutes=minutes_ago)
    return HistoryEntry(
        service="demo/web",
        id=f"arn:sd/{status}/{minutes_ago}",
        kind="ROLLING",
        status=status,
        from_revision="web:1",
        to_revision=to,
        created_at=begun,
        started_at=begun,
        finished_at=begun + timedelta(seconds=took) if took is not None else None,
        breaker_triggered=breaker,
        rollback_started=(begun + timedelta(seconds=rollback_started))
        if rollback_started is not None
        else None,
    )


def audit_log(tmp_path: Path) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl")
    at = T0 - timedelta(minutes=100) + timedelta(seconds=120)
    target = {"cluster": "demo", "service": "web", "from": "web:2", "to": "web:1"}
    log.write(
        {
            "time": at.isoformat(),
            "phase": "intent",
            "id": "a1",
            "operator": "alice",
            "action": "rollback",
            "automatic": False,
            "target": target,
        }
    )
    log.write({"time": at.isoformat(), "phase": "result", "id": "a1", "ok": True})
    later = T0 - timedelta(minutes=50) + timedelta(seconds=60)
    log.write(
        {
            "time": later.isoformat(),
            "phase": "intent",
            "id": "a2",
            "operator": "ci",
            "action": "rollback",
            "automatic": True,
            "target": target,
        }
    )
    log.write({"time": later.isoformat(), "phase": "result", "id": "a2", "ok": True})
    # Another service's action joins nothing here.
    log.write(
        {
            "time": later.isoformat(),
            "phase": "intent",
            "id": "a3",
            "operator": "bob",
            "action": "rollback",
            "target": {"cluster": "demo", "service": "api"},
        }
    )
    return log


def sample() -> HistorySample:
    return HistorySample(
        T0,
        {
            "demo/web": (
                entry("IN_PROGRESS", minutes_ago=1, took=None),
                entry("ROLLBACK_SUCCESSFUL", minutes_ago=50, took=200),  # a rule, at +60s
                entry("ROLLBACK_SUCCESSFUL", minutes_ago=100, took=300),  # alice, at +120s
                entry(
                    "ROLLBACK_SUCCESSFUL",
                    minutes_ago=150,
                    took=400,
                    breaker=True,
                    rollback_started=100,
                ),
                entry("STOPPED", minutes_ago=200, took=100),
                *(entry("SUCCESSFUL", minutes_ago=300 + i, took=60.0 * (i + 1)) for i in range(5)),
            )
        },
        frozenset({"demo/web"}),
    )


def test_outcomes_and_who_acted_from_the_audit_log(tmp_path: Path) -> None:
    acts = acts_from_audit(audit_log(tmp_path).read())
    listed = rows(sample(), acts, {"demo/web": "web"}, T0)
    assert [r.outcome for r in listed] == [
        IN_PROGRESS,
        BY_RULE,
        BY_OPERATOR,
        BY_BREAKER,
        STOPPED,
        *[COMPLETED] * 5,
    ]
    assert listed[1].who == ("rule rollback (ci)",)
    assert listed[2].who == ("alice rollback",)
    assert listed[3].who == ()
    # MTTR: decision (audit intent; the breaker's rollback start) → rollback finished.
    assert [r.mttr for r in listed[1:4]] == [140.0, 180.0, 300.0]


def test_figures_against_their_targets(tmp_path: Path) -> None:
    acts = acts_from_audit(audit_log(tmp_path).read())
    listed = rows(sample(), acts, {"demo/web": "web"}, T0)
    figs = {f.name: f for f in figures(listed, HistorySettings())}
    # 9 finished: 5 completed, 3 rolled back, 1 stopped (the one in flight is not counted).
    assert figs["success"].value is not None and round(figs["success"].value, 1) == 55.6
    assert figs["success"].met is False and figs["success"].samples == 9
    assert figs["rollback"].value is not None and round(figs["rollback"].value, 1) == 33.3
    assert figs["rollback"].met is False
    assert figs["deploy median"].value == 180.0 and figs["deploy median"].met is True
    assert figs["deploy p90"].value == 276.0
    assert figs["MTTR"].value is not None and round(figs["MTTR"].value) == 207
    assert figs["MTTR"].met is True
    assert figs["success"].text() == "success 55.6% (target > 95%)"
    assert figs["deploy median"].text() == "deploy median 3m00s (target < 30m00s)"
    assert figs["MTTR"].text() == "MTTR 3m27s (target < 5m00s)"


def test_nothing_finished_is_not_measured_never_zero() -> None:
    listed = rows(
        HistorySample(T0, {"demo/web": (entry("IN_PROGRESS", minutes_ago=1, took=None),)}),
        [],
        {},
        T0,
    )
    figs = figures(listed, HistorySettings())
    assert all(f.value is None and f.met is None for f in figs)
    assert figs[0].text() == "success not measured (target > 95%)"


def test_codedeploy_rollbacks_and_outcomes() -> None:
    rolled = codedeploy_entry(
        "demo/web",
        {
            "deploymentId": "d-1",
            "status": "Stopped",
            "rollbackInfo": {"rollbackDeploymentId": "d-2"},
            "createTime": T0,
        },
    )
    done = codedeploy_entry("demo/web", {"deploymentId": "d-3", "status": "Succeeded"})
    listed = rows(HistorySample(T0, {"demo/web": (rolled, done)}), [], {}, T0)
    assert [r.outcome for r in listed] == ["rolled back", COMPLETED]


def test_the_report_has_a_history_section_only_when_known(tmp_path: Path) -> None:
    acts = acts_from_audit(audit_log(tmp_path).read())
    history = sample()
    listed = rows(history, acts, {"demo/web": "web"}, T0)
    data = to_json(listed, figures(listed, HistorySettings()), history)
    text = "\n".join(render_markdown(data))
    assert "## Deployment history" in text
    assert "- success 55.6% (target > 95%): **misses its target** (9 measured)" in text
    assert "| web | " in text and "rolled back by an operator | alice rollback |" in text
    assert "Older deployments not listed for: demo/web." in text
    base = {
        "date": "2026-01-01",
        "environment": "prod",
        "services": [],
        "watch_started": "a",
        "watch_ended": "b",
        "watch_duration_s": 1,
        "status": "SIGNED OFF",
        "exit_code": 0,
        "why": "ok",
        "verdict": "HEALTHY",
        "downtime_s": None,
        "metrics": [],
        "breached_rules": [],
        "sentry_issues": None,
        "actions": [],
        "mttr": [],
    }
    assert "Deployment history" not in report_markdown(base)
    assert "## Deployment history" in report_markdown({**base, "history": data})
