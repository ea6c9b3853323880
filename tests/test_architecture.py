"""The import direction of DESIGN.md, checked for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "package", ["sources", "sources.ecs", "sources.poll", "engine.store", "engine.controller"]
)
def test_plain_layers_do_not_import_textual(package: str) -> None:
    loaded = modules_after(f"import {package}")
    assert not any(m == "textual" or m.startswith("textual.") for m in loaded)


def test_app_import_loads_no_heavy_sdk_before_first_paint() -> None:
    loaded = modules_after("import tui.app, engine.wiring, tui.__main__")
    heavy = {"boto3", "botocore", "datadog_api_client", "sentry_sdk", "moto"}
    assert not heavy & {m.split(".")[0] for m in loaded}


def test_import_linter_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is part of the test extra"
    result = subprocess.run(
        [lint], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_controller_tests_run_without_textual() -> None:
    """The deployment watch's own tests pass in a process where Textual is never
    imported (the snapshot plugin, which imports it, is left out)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:textual-snapshot",
            "-p",
            "no:cacheprovider",
            "tests/unit/test_controller.py",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
        env={**os.environ, "DEPLOYWATCH_ASSERT_NO_TEXTUAL": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
