"""Rehearsals (``deploywatch demo``, the config ``deploywatch sandbox`` prints) are audited
in a log of their own, never in the real audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from engine.audit import default_audit_path
from engine.config import load_config
from sandbox.runtime import SandboxUrls, config_text, rehearsal_audit_path
from sandbox.scenario import list_scenarios, load_scenario
from tui.app import DeployWatchApp

if TYPE_CHECKING:
    from pathlib import Path

URLS = SandboxUrls(
    aws="http://127.0.0.1:1",
    datadog="http://127.0.0.1:2",
    sentry="http://127.0.0.1:3",
    proxies={},
)


@pytest.mark.parametrize("scenario", [name for name, _ in list_scenarios()])
def test_every_sandbox_config_writes_to_the_rehearsal_log(
    scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    spec = load_scenario(scenario)
    urls = SandboxUrls(
        aws=URLS.aws,
        datadog=URLS.datadog,
        sentry=URLS.sentry,
        proxies={s.name: f"http://127.0.0.1:{4 + i}" for i, s in enumerate(spec.services)},
    )
    path = tmp_path / "deploywatch.toml"
    path.write_text(config_text(spec, urls, "us-east-1"), encoding="utf-8")
    settings = load_config(path)
    rehearsal = tmp_path / "state" / "deploywatch" / "rehearsal-audit.jsonl"
    assert rehearsal_audit_path() == rehearsal
    assert settings.actions.audit_log == rehearsal
    assert settings.actions.audit_log != default_audit_path()
    # The app the demo builds from that config audits there.
    app = DeployWatchApp(settings, sources=[])
    assert app.controller.actions.audit.path == rehearsal
