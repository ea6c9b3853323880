"""Every app a UI test builds stays inside the test: no real AWS call, no STS lookup,
no write to the user's own audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from engine.contexts import FleetActions
from sources.aws_actions import AwsActions

if TYPE_CHECKING:
    from engine.actions import ApiCall


@pytest.fixture(autouse=True)
def _no_real_aws_and_a_private_audit_log(monkeypatch: pytest.MonkeyPatch) -> None:
    # (The default audit path is already under the test's own folder: tests/conftest.py.)
    def refuse(self: AwsActions, call: ApiCall) -> dict[str, Any]:
        raise AssertionError(f"a UI test reached real AWS: {call.describe()}")

    monkeypatch.setattr(AwsActions, "__call__", refuse)
    monkeypatch.setattr(AwsActions, "resolve_operator", lambda self: "ui-test")
    # Each [[aws]] context's account is looked up from STS: never from a UI test.
    monkeypatch.setattr(FleetActions, "resolve_accounts", lambda self: {})
