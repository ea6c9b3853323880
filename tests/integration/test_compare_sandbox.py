"""The comparison rules against the real sandbox, through the real Datadog client:
``deploywatch gate --act --json`` (the real CLI in a child process) on the two
rehearsals that prove them.

- ``subtle-regression``: v2's p95 ×1.5 and errors ×10, under every threshold: the
  ``[[compare]]`` rules fail the canary score and their rollback action rolls it back,
  while no threshold rule ever drives the verdict.
- ``noisy-but-fine``: both versions share seeded bursts of errors and latency: no
  comparison ever fails the canary, nothing is rolled back, the gate signs it off.

More seeds of both run at unit level (``tests/unit/test_compare_scenarios.py``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.test_gate import gate

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import StartSandboxProcess

pytestmark = pytest.mark.integration

THRESHOLD_RULES = ("web error rate", "web p95 latency", "web availability")
COMPARISONS = ("web p95", "web errors")


def records(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def at(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["at"])


@pytest.mark.timeout(330)
def test_subtle_regression_is_caught_by_the_comparison_not_the_thresholds(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    sandbox = sandbox_process("subtle-regression", speed=2.0)
    code, lines = gate(sandbox, tmp_path, "--act", "--json", "--timeout", "4m", limit=300)
    log = records(lines)
    assert code == 3, lines[-5:]
    assert log[-1]["event"] == "summary" and "rolled back" in log[-1]["text"]
    verdicts = [r for r in log if r["event"] == "verdict"]
    for record in verdicts:  # no threshold rule ever drove the verdict (once judged)
        if record["verdict"] == "NO DATA":
            continue
        for reason in record["reasons"]:
            assert not reason.startswith(THRESHOLD_RULES), reason
    failing = next(r for r in verdicts if r["verdict"] == "FAILING")
    caught = [r for r in failing["reasons"] if r.startswith(COMPARISONS)]
    assert caught, failing
    assert any(" vs v1 " in r and ", p" in r and " samples" in r for r in caught), caught
    countdowns = [r for r in log if r["event"] == "countdown"]
    assert countdowns and all(c["rule"] in COMPARISONS for c in countdowns)
    assert countdowns[0]["verb"] == "rollback"
    started = next(r for r in log if r["event"] == "state" and r["status"] == "IN_PROGRESS")
    print(
        f"\nsubtle-regression: FAILING {(at(failing) - at(started)).total_seconds():.0f} s after "
        f"the deployment was seen in flight: {caught[0]}"
    )


@pytest.mark.timeout(400)
def test_noisy_but_fine_is_never_rolled_back(
    sandbox_process: StartSandboxProcess, tmp_path: Path
) -> None:
    sandbox = sandbox_process("noisy-but-fine", speed=2.0)
    code, lines = gate(
        sandbox, tmp_path, "--act", "--json", "--bake", "10s", "--timeout", "5m", limit=360
    )
    log = records(lines)
    assert not [r for r in log if r["event"] in ("countdown", "action")], lines
    assert code == 0, lines[-5:]
    assert "signed off" in log[-1]["text"]
    verdicts = [r["verdict"] for r in log if r["event"] == "verdict"]
    assert "FAILING" not in verdicts
    print(f"\nnoisy-but-fine: verdicts {' → '.join(verdicts)}; no countdown, no action")
