"""The deployment report: what a watch observed, in Markdown and JSON, never invented.

It follows the classic deployment-report template (date, version, strategy, duration,
status, downtime, error rate, p95, throughput, issues encountered, lessons learned) and
fills it only from what was measured: a figure the watch never saw is written as *not
measured*, never as 0. :class:`ReportBook` is fed by a face (the gate, the dashboard) while it
watches; :meth:`ReportBook.to_json`, :func:`render_markdown` and :func:`write_report`
write it out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.actions import IN_FLIGHT, deployment_kind
from engine.bake import BakeState
from engine.durations import span_words
from engine.rules import RuleState
from engine.text import clean
from engine.verdict import Verdict
from sources.ecs import revision_of

if TYPE_CHECKING:
    from collections.abc import Iterable

    from engine.audit import AuditLog
    from engine.controller import Controller, Snapshot, Update
    from sources.model import PipelineEvent, SentryIssue, ServiceDeployment

NOT_MEASURED = "not measured"


@dataclass
class MetricFigures:
    """One metric of one group, over the watch: first seen, peak while in flight, last."""

    unit: str
    first: float | None = None
    peak_in_flight: float | None = None
    last: float | None = None

    def add(self, value: float, in_flight: bool) -> None:
        if self.first is None:
            self.first = value
        if in_flight and (self.peak_in_flight is None or value > self.peak_in_flight):
            self.peak_in_flight = value
        self.last = value


@dataclass
class ReportBook:
    """What a face collects for the report while it watches.

    Args:
        controller: The watch.
        services: The watched service keys.
        started: When the watch began.
    """

    controller: Controller
    services: tuple[str, ...]
    started: datetime
    metrics: dict[tuple[str, str | None], MetricFigures] = field(default_factory=dict)
    breaches: dict[str, str] = field(default_factory=dict)
    """Per rule, the evidence of its worst moment (CRITICAL over WARN, first seen)."""
    breach_states: dict[str, RuleState] = field(default_factory=dict)
    downtime: timedelta = field(default_factory=timedelta)
    probes_seen: bool = False
    issues: dict[str, SentryIssue] = field(default_factory=dict)
    """Every new or release issue Sentry reported during the watch, by id."""
    gated: dict[str, ServiceDeployment] = field(default_factory=dict)
    """Per service, the deployment the watch was for: the first seen in flight."""
    gated_images: dict[str, str] = field(default_factory=dict)
    """Its image, as the PRIMARY deployment named it then."""
    _probe_down_since: datetime | None = None
    _seen_points: dict[tuple[str, str | None], datetime] = field(default_factory=dict)
    _folded: dict[tuple[str, str | None], object] = field(default_factory=dict)
    """The sample of each series last folded (the store keeps it until a newer one)."""

    def observe(self, snapshot: Snapshot, now: datetime) -> None:
        """Fold one snapshot (and the store's current signals) into the figures."""
        store = self.controller.store
        in_flight = any(
            snapshot.statuses.get(k) is not None and snapshot.statuses[k].in_flight
            for k in self.services
        )
        for name, groups in store.metrics.items():
            for group, sample in groups.items():
                ident = (name, group)
                if self._folded.get(ident) is sample:
                    continue  # folded at an earlier judgement: no new point in it
                self._folded[ident] = sample
                figures = self.metrics.setdefault(ident, MetricFigures(sample.unit or ""))
                seen = self._seen_points.get(ident)
                for point in sample.points:
                    if point.value is None or (seen is not None and point.at <= seen):
                        continue
                    figures.add(point.value, in_flight)
                    self._seen_points[ident] = point.at
        for ev in snapshot.evidence:
            if ev.state not in (RuleState.CRITICAL, RuleState.WARN):
                continue
            before = self.breach_states.get(ev.rule)
            if before is None or (before is RuleState.WARN and ev.state is RuleState.CRITICAL):
                self.breach_states[ev.rule] = ev.state
                self.breaches[ev.rule] = f"{ev.state.value}: {ev.summary()}"
        for key in self.services:
            ecs_sample = store.services[key].sample
            if ecs_sample is None:
                continue
            newest = ecs_sample.newest
            gated = self.gated.get(key)
            if gated is None and newest is not None and newest.status in IN_FLIGHT:
                self.gated[key] = newest
                primary = ecs_sample.primary
                if primary is not None and primary.images:
                    self.gated_images[key] = primary.images[0]
            elif gated is not None:
                # Follow the same deployment to its end (ECS lists the recent ones).
                for sd in ecs_sample.service_deployments:
                    if sd.arn == gated.arn:
                        self.gated[key] = sd
        if store.sentry is not None:
            for issue in (*store.sentry.release_issues, *store.sentry.new_issues):
                self.issues[issue.id] = issue  # the newest counts win
        down = [p for p in store.probes.values() if not p.ok]
        if store.probes:
            self.probes_seen = True
        if down and self._probe_down_since is None:
            self._probe_down_since = now
        elif not down and self._probe_down_since is not None:
            self.downtime += now - self._probe_down_since
            self._probe_down_since = None

    def follow(self) -> None:
        """Observe every judgement of the watch from now on (a face that has nothing
        else to do with its updates)."""

        def on_update(update: Update) -> None:
            if update.snapshot is not None:
                self.observe(update.snapshot, self.controller.clock())

        self.controller.listen(on_update)

    def close(self, now: datetime) -> None:
        """The watch ended: a probe still down counts until now."""
        if self._probe_down_since is not None:
            self.downtime += now - self._probe_down_since
            self._probe_down_since = None

    def _downtime(self, now: datetime) -> timedelta:
        """Probe downtime so far; a probe still down counts until ``now``."""
        if self._probe_down_since is None:
            return self.downtime
        return self.downtime + max(timedelta(0), now - self._probe_down_since)

    # ---- the document ---------------------------------------------------------------

    def to_json(
        self,
        *,
        outcome: str,
        code: int | None,
        why: str,
        ended: datetime,
        audit: AuditLog | None,
        audit_records: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The report as plain data (the Markdown is written from it).

        ``audit_records``: the audit log already read (off the event loop); else it is
        read from ``audit``."""
        store = self.controller.store
        snapshot = self.controller.snapshot
        services = []
        for key in self.services:
            state = store.services[key]
            sample = state.sample
            latest = sample.newest if sample is not None else None
            newest = self.gated.get(key, latest)
            primary = sample.primary if sample is not None else None
            started = (newest.started_at or newest.created_at) if newest else None
            finished = (newest.finished_at or newest.stopped_at) if newest else None
            services.append(
                {
                    "service": key,
                    "label": state.label,
                    "strategy": deployment_kind(sample).value,
                    "from": (
                        revision_of(newest.source_task_definitions[0])
                        if newest and newest.source_task_definitions
                        else None
                    ),
                    "to": revision_of(newest.target_task_definition)
                    if newest and newest.target_task_definition
                    else (primary.revision if primary else None),
                    "image": self.gated_images.get(key)
                    or (primary.images[0] if primary and primary.images else None),
                    "ecs_status": snapshot.statuses.get(key, state.status).value,
                    "then": (
                        f"{revision_of(latest.source_task_definitions[0]) if latest.source_task_definitions else '?'}"
                        f" → {revision_of(latest.target_task_definition)} ({latest.status})"
                        if latest is not None and newest is not None and latest.arn != newest.arn
                        else None
                    ),
                    "deployment_started": started.isoformat() if started else None,
                    "deployment_finished": finished.isoformat() if finished else None,
                    "deployment_duration_s": (finished - started).total_seconds()
                    if started and finished
                    else None,
                }
            )
        metrics = [
            {
                "metric": name,
                "group": group,
                "unit": figures.unit,
                "first": figures.first,
                "peak_in_flight": figures.peak_in_flight,
                "last": figures.last,
            }
            for (name, group), figures in sorted(
                self.metrics.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
            )
        ]
        sentry = store.sentry
        issues: list[dict[str, Any]] = [
            {
                "id": issue.short_id or issue.id,
                "title": clean(issue.title, 200),
                "count": issue.count,
                "first_seen": issue.first_seen.isoformat() if issue.first_seen else None,
                "release": issue.first_release,
            }
            for issue in self.issues.values()
        ]
        actions = []
        if audit_records is None and audit is not None:
            audit_records = audit.read()
        if audit_records is not None:
            started_iso = self.started.isoformat(timespec="milliseconds")
            kept: set[str] = set()
            for record in audit_records:
                if str(record.get("time", "")) < started_iso:
                    continue
                target: dict[str, Any] = record.get("target") or {}
                key = f"{target.get('cluster')}/{target.get('service')}"
                if target:
                    if key not in self.services:
                        continue
                    kept.add(str(record.get("id")))
                elif str(record.get("id")) not in kept:
                    continue  # a result of another service's action, or a cancellation
                actions.append(
                    {
                        k: record.get(k)
                        for k in (
                            "time",
                            "phase",
                            "id",
                            "operator",
                            "action",
                            "automatic",
                            "reason",
                            "evidence",
                            "call",
                            "ok",
                            "error",
                        )
                        if record.get(k) is not None
                    }
                )
        mttr = [
            {
                "service": v.key,
                "breach": v.breach.isoformat() if v.breach else None,
                "decided": v.decided.isoformat() if v.decided else None,
                "recovered": v.recovered.isoformat() if v.recovered else None,
            }
            for v in snapshot.mttr
        ]
        return {
            "report": "deploywatch deployment report",
            "environment": self.controller.settings.environment.name,
            "date": self.started.date().isoformat(),
            "watch_started": self.started.isoformat(timespec="seconds"),
            "watch_ended": ended.isoformat(timespec="seconds"),
            "watch_duration_s": round((ended - self.started).total_seconds(), 1),
            "status": outcome,
            "exit_code": code,
            "why": clean(why, 1000),
            "verdict": snapshot.verdict.value,
            "services": services,
            "downtime_s": round(self._downtime(ended).total_seconds(), 1)
            if self.probes_seen
            else None,
            "metrics": metrics,
            "breached_rules": [
                {"rule": rule, "evidence": clean(text, 1000)}
                for rule, text in self.breaches.items()
            ],
            "sentry_issues": issues if sentry is not None else None,
            "actions": actions,
            "mttr": mttr,
            "pipeline_events": pipeline_events(store.pipeline),
            "bake": [
                {
                    "service": view.key,
                    "window_s": view.window.total_seconds(),
                    "state": view.state.value,
                    "healthy_s": round(view.healthy_time(ended).total_seconds(), 1),
                    "signed_off": view.signed_off_at.isoformat(timespec="seconds")
                    if view.signed_off_at
                    else None,
                    "restarts": view.restarts,
                    "reason": clean(view.reason, 400) or None,
                }
                for view in snapshot.bakes
                if view.key in self.services
            ],
        }


def pipeline_events(events: Iterable[PipelineEvent]) -> list[dict[str, Any]]:
    """The pipelines' announcements the watch received while it watched (``deploywatch
    announce`` on the bus), oldest first, each field cleaned: they are outside text."""
    return [
        {
            "at": event.at.isoformat(timespec="seconds"),
            "service": clean(event.service, 200),
            "event": clean(event.event, 40),
            "version": clean(event.version, 200) or None,
            "commit": clean(event.commit, 100) or None,
            "url": clean(event.url, 2000) or None,
            "by": clean(event.by, 200) or None,
        }
        for event in events
    ]


def watch_outcome(snapshot: Snapshot) -> tuple[str, str]:
    """For a face with no exit code (the dashboard): the status word and why, from what
    the watch knows now."""
    statuses = snapshot.statuses
    rolled = sorted(k for k, s in statuses.items() if s.rolled_back)
    if rolled:
        return "ROLLED BACK", f"{', '.join(rolled)} rolled back"
    failed = sorted(k for k, s in statuses.items() if s.failed)
    if failed:
        return "FAILED", f"ECS says {', '.join(failed)} failed"
    if snapshot.verdict is Verdict.FAILING:
        return "FAILING", snapshot.report.headline
    if snapshot.bakes and all(b.state is BakeState.SIGNED_OFF for b in snapshot.bakes):
        return "SIGNED OFF", "every baked service stayed HEALTHY for its whole bake window"
    if any(s.in_flight for s in statuses.values()):
        return "IN PROGRESS", f"verdict {snapshot.verdict.value}: {snapshot.report.headline}"
    return "WATCHED", f"verdict {snapshot.verdict.value}: {snapshot.report.headline}"


def write_report(base: Path, data: dict[str, Any]) -> list[Path]:
    """Write ``base.json`` and ``base.md``, each whole or not at all (a partial file is
    renamed into place). Blocking: call it off the event loop.

    Raises:
        OSError: The directory or a file cannot be written.
    """
    if base.suffix in (".md", ".json"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in (
        (".json", json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"),
        (".md", render_markdown(data)),
    ):
        target = base.with_name(base.name + suffix)
        partial = target.with_name(target.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(target)
        written.append(target)
    return written


def default_report_base(environment: str, started: datetime) -> Path:
    """``$XDG_STATE_HOME/deploywatch/reports/<environment>-<start>`` (platformdirs' user
    state directory; the environment's name made safe for a file name)."""
    import platformdirs

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", environment)[:40] or "deploywatch"
    state = Path(platformdirs.user_state_dir("deploywatch", appauthor=False))
    return state / "reports" / f"{safe}-{started.strftime('%Y%m%dT%H%M%SZ')}"


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return NOT_MEASURED
    return f"{value:.4g}{unit}"


def _dur(seconds: float | None) -> str:
    return span_words(seconds, NOT_MEASURED)


def _cell(value: object) -> str:
    """Outside text in a Markdown table cell: cleaned, on one line, its pipes escaped."""
    return clean(value).replace("|", "\\|")


def render_markdown(data: dict[str, Any]) -> str:
    """The report in Markdown, after the classic deployment-report template."""
    lines = ["# Deployment Report", ""]
    lines.append(f"**Date**: {data['date']}  ")
    lines.append(f"**Environment**: {clean(data['environment'])}  ")
    for svc in data["services"]:
        change = f"{svc['from'] or '?'} → {svc['to'] or '?'}"
        lines.append(
            f"**Service**: {clean(svc['label'])} ({clean(svc['service'])}) — version {clean(change)}"
            + (f", image `{clean(svc['image'])}`" if svc["image"] else "")
            + "  "
        )
        lines.append(f"**Strategy**: {svc['strategy']}  ")
        lines.append(
            f"**Deployment**: started {svc['deployment_started'] or NOT_MEASURED}, "
            f"finished {svc['deployment_finished'] or NOT_MEASURED}, "
            f"duration {_dur(svc['deployment_duration_s'])}, ECS says {svc['ecs_status']}  "
        )
        if svc.get("then"):
            lines.append(f"**Then**: {clean(svc['then'])}  ")
    lines.append(
        f"**Watched**: {data['watch_started']} → {data['watch_ended']} "
        f"({_dur(data['watch_duration_s'])})"
    )
    lines += ["", "## Results", ""]
    code = f" (exit {data['exit_code']})" if data["exit_code"] is not None else ""
    lines.append(f"- Status: **{data['status']}**{code} — {data['why']}")
    lines.append(f"- Verdict at the end: {data['verdict']}")
    downtime = data["downtime_s"]
    lines.append(
        "- Downtime (time the health probes were failing): "
        + (f"{_dur(downtime)}" if downtime is not None else f"{NOT_MEASURED} (no probe configured)")
    )
    lines += ["", "## Metrics", ""]
    if data["metrics"]:
        lines.append("| metric | group | first seen | peak while in flight | last |")
        lines.append("|---|---|---|---|---|")
        for m in data["metrics"]:
            lines.append(
                f"| {clean(m['metric'])} | {clean(m['group'] or 'all')} | "
                f"{_value(m['first'], m['unit'])} | {_value(m['peak_in_flight'], m['unit'])} | "
                f"{_value(m['last'], m['unit'])} |"
            )
    else:
        lines.append(
            f"Error rate, p95 latency and throughput: {NOT_MEASURED} (no metric configured)."
        )
    lines += ["", "## Issues Encountered", ""]
    if data["breached_rules"]:
        lines.append("Rules that breached (their worst moment):")
        lines.append("")
        lines += [f"- {clean(b['rule'])}: {b['evidence']}" for b in data["breached_rules"]]
    else:
        lines.append("No rule breached.")
    issues = data["sentry_issues"]
    lines.append("")
    if issues is None:
        lines.append(f"Sentry: {NOT_MEASURED} (not configured).")
    elif issues:
        lines.append("New Sentry issues:")
        lines.append("")
        lines += [
            f"- {clean(i['id'])} {i['title']} — {i['count']} events, first seen {i['first_seen']}"
            f"{', release ' + clean(i['release']) if i['release'] else ''}"
            for i in issues
        ]
    else:
        lines.append("No new Sentry issue.")
    lines += ["", "## Actions", ""]
    if data["actions"]:
        lines.append("| time | phase | action | who | call / result |")
        lines.append("|---|---|---|---|---|")
        for a in data["actions"]:
            call = a.get("call") or {}
            what = (
                f"{call.get('client')}:{call.get('operation')}"
                if call
                else ("ok" if a.get("ok") else clean(str(a.get("error") or "")))
            )
            how = "automatic " if a.get("automatic") else ""
            lines.append(
                f"| {a.get('time', '')} | {a.get('phase', '')} | {how}{a.get('action') or ''} | "
                f"{clean(str(a.get('operator') or ''))} | {clean(what, 200)} |"
            )
    else:
        lines.append("None.")
    if data.get("bake"):
        lines += ["", "## Bake and sign-off", ""]
        for b in data["bake"]:
            line = (
                f"- {clean(b['service'])}: {b['state']}, HEALTHY {_dur(b['healthy_s'])} of a "
                f"{_dur(b['window_s'])} window"
            )
            if b["signed_off"]:
                line += f", signed off {b['signed_off']}"
            if b["restarts"]:
                line += f", restarted {b['restarts']} times"
            if b["reason"]:
                line += f" — {clean(b['reason'])}"
            lines.append(line)
    if data["mttr"]:
        lines += ["", "## MTTR", ""]
        for m in data["mttr"]:
            lines.append(
                f"- {clean(m['service'])}: breach {m['breach'] or 'none'} · decided "
                f"{m['decided'] or '—'} · recovered {m['recovered'] or 'not yet'}"
            )
    if data.get("pipeline_events"):
        lines += ["", "## Pipeline events", ""]
        lines.append("| time | service | event | version | commit | by | link |")
        lines.append("|---|---|---|---|---|---|---|")
        for p in data["pipeline_events"]:
            cells = [p["at"], p["service"], p["event"]]
            cells += [p.get(k) or "" for k in ("version", "commit", "by", "url")]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if data.get("history"):
        from engine.history import render_markdown as history_markdown

        lines += history_markdown(data["history"])
    lines += ["", "## Lessons Learned", "", "<!-- for people to write -->", ""]
    return "\n".join(lines)
