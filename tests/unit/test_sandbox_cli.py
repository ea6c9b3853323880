"""What ``deploywatch sandbox`` prints: every endpoint, the DSNs and every credential."""

from __future__ import annotations

import pytest

from sandbox.__main__ import describe


def test_the_banner_names_every_endpoint_dsn_and_credential() -> None:
    info = {
        "scenario": "demo",
        "description": "two services",
        "speed": 1.0,
        "region": "us-east-1",
        "cluster": "demo",
        "config": "/tmp/x/deploywatch.toml",
        "audit_log": "/tmp/x/rehearsal-audit.jsonl",
        "aws": "http://127.0.0.1:1",
        "datadog": "http://127.0.0.1:2",
        "sentry": "http://127.0.0.1:3",
        "sentry_org": "sandbox",
        "sentry_projects": {"web": "http://key@127.0.0.1:3/1"},
        "faults": "http://127.0.0.1:4/faults",
        "fault_endpoints": ["aws", "datadog", "sentry"],
        "services": {},
        "env": {
            "AWS_ACCESS_KEY_ID": "sandbox",
            "AWS_SECRET_ACCESS_KEY": "sandbox",
            "DD_API_KEY": "dd-key",
            "DD_APP_KEY": "dd-app",
            "SENTRY_AUTH_TOKEN": "sentry-token",
        },
    }
    text = "\n".join(describe(info))
    assert "DSN web" in text and "http://key@127.0.0.1:3/1" in text
    for name in ("AWS_ACCESS_KEY_ID", "DD_API_KEY", "DD_APP_KEY", "SENTRY_AUTH_TOKEN"):
        assert f"export {name}=" in text


def test_without_the_sandbox_extra_demo_and_sandbox_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from tui.__main__ import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "werkzeug" else real(name, *a),
    )
    for command in (["demo"], ["sandbox"]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "werkzeug missing" in err
        assert "pipx install 'deploywatch[sandbox]'" in err
