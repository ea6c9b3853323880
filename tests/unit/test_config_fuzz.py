"""Hostile configs (Hypothesis): every file either loads into settings whose rules can
all breach and whose sources can be built, or is refused with one line naming the file
and the key — never another exception, never a traceback from the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tomllib
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from engine.config import ConfigError, Settings, load_config
from engine.wiring import build_rulebook, build_sources

ROOT = Path(__file__).parents[2]
EXAMPLE: dict[str, Any] = tomllib.loads((ROOT / "deploywatch.example.toml").read_text())
MINIMAL: dict[str, Any] = {"service": [{"cluster": "prod", "service": "web"}]}

# ------------------------------------------------------------------- writing TOML


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes, plus DEL, which TOML wants escaped too."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{toml_string(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(type(value))


def dump(document: dict[str, Any]) -> str:
    """The document as TOML: one top-level key per line, tables written inline."""
    return "".join(f"{toml_string(str(k))} = {toml_value(v)}\n" for k, v in document.items())


# -------------------------------------------------------------- hostile documents

HOSTILE_TEXT = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp"]), max_size=6),
    st.sampled_from(["", " ", "web", "prod/web", "api", "ctrl+q", "ctrl+p", "q", "?", "0s"]),
    st.sampled_from(["5m", "1e300h", "99999999999999h", "-1s", "nan", "inf", "\x1b[2J"]),
)
SCALARS = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN and the infinities included
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0, -0.0, 1e-300]),
    HOSTILE_TEXT,
    st.dates(),
    st.datetimes(),
    st.times(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(HOSTILE_TEXT, inner, max_size=3)
    ),
    max_leaves=6,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in the document a value sits (tables and arrays included)."""
    found: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [copy(v) for v in node]
    return node


@st.composite
def hostile_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config with a few values replaced, keys removed or unknown keys added."""
    document: dict[str, Any] = copy(draw(st.sampled_from([EXAMPLE, MINIMAL])))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        places = paths(document)
        if not places:  # everything deleted: a stray top-level key
            document[draw(HOSTILE_TEXT)] = draw(VALUES)
            continue
        where = draw(st.sampled_from(places))
        parent = document
        for step in where[:-1]:
            parent = parent[step]
        last = where[-1]
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[last] = draw(VALUES)
        elif action == "delete" and isinstance(parent, dict):
            del parent[last]
        elif isinstance(parent[last], dict):
            parent[last][draw(HOSTILE_TEXT)] = draw(VALUES)
    return document


# ------------------------------------------------------------------------- checks


def check_settings(loaded: Settings) -> None:
    """What a config that loads must be: rules that can breach, sources that start."""
    for rule in loaded.rules:
        assert math.isfinite(rule.threshold) and not isinstance(rule.threshold, bool)
        assert timedelta(0) <= rule.window <= timedelta(days=3)
        if rule.service is not None:
            assert loaded.service_key(rule.service) is not None
        if rule.action != "none":
            assert loaded.rule_service(rule) is not None
    assert timedelta(seconds=1) <= loaded.actions.countdown <= timedelta(minutes=10)
    for probe in loaded.probes:
        assert probe.timeout > timedelta(0) and probe.interval > timedelta(0)
    build_rulebook(loaded)
    build_sources(loaded)  # what `run` does at start: no ValueError left for later


def check_error(message: str, path: Path) -> None:
    assert message.startswith(f"{path}: "), message
    assert message.isprintable(), message  # one line, no control character
    assert len(message) < 1000


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(document=hostile_documents())
@example(document={**EXAMPLE, "rule": [{**EXAMPLE["rule"][0], "threshold": math.nan}]})
@example(document={**EXAMPLE, "actions": {"countdown": 1e20}})
def test_load_config_loads_a_sane_config_or_says_one_line(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    path = tmp_path / "deploywatch.toml"
    path.write_text(dump(document), encoding="utf-8")
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        check_error(str(exc), path)
        event("refused")
    else:
        check_settings(loaded)
        event("loaded")


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_arbitrary_bytes_never_escape_as_another_exception(
    tmp_path: Path, content: bytes | str
) -> None:
    path = tmp_path / "deploywatch.toml"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(content)
    try:
        check_settings(load_config(path))
    except ConfigError as exc:
        check_error(str(exc), path)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(document=hostile_documents())
@example(document={**EXAMPLE, "keys": {"freeze": "ctrl+q"}})
def test_check_config_cli_exits_2_with_one_line(tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / "deploywatch.toml"
    path.write_text(dump(document), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "tui", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in result.stderr
    if result.returncode == 0:
        assert result.stderr == "" and result.stdout.startswith(f"{path}: ok (")
    else:
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        check_error(result.stderr.removeprefix("deploywatch: ").rstrip("\n"), path)
