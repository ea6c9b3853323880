"""Config validation: a broken file names the file, the key and what was expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import ConfigError, load_config

GOOD = """
[environment]
name = "production"
production = true

[aws]
region = "eu-west-1"
profile = "prod"

[[service]]
cluster = "prod"
service = "web"
label = "web"

[[service]]
cluster = "prod"
service = "api"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deploywatch.toml"
    path.write_text(text)
    return path


def test_good_config_is_frozen_and_complete(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, GOOD))
    assert settings.environment.production is True
    assert settings.aws.profile == "prod"
    assert [s.key for s in settings.services] == ["prod/web", "prod/api"]
    assert settings.ecs.poll_interval == 5.0
    with pytest.raises(Exception, match="frozen"):
        settings.environment.name = "x"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace('service = "api"', ""),
            "service #2.service: expected a value (it is required)",
        ),
        (GOOD.replace('service = "api"', 'servce = "api"'), "service #2.servce: unknown key"),
        (
            GOOD.replace("production = true", 'production = "maybe"'),
            "environment.production: expected",
        ),
        (
            GOOD + "\n[ecs]\npoll_interval = 0\n",
            "ecs.poll_interval: expected input should be greater than or equal to 0.2, got 0",
        ),
        (
            GOOD.replace(
                'region = "eu-west-1"', 'region = "eu-west-1"\nendpoint_url = "localhost:5000"'
            ),
            "aws.endpoint_url: expected an http:// or https:// URL",
        ),
        ("[environment]\nname = 'x'\n", "service: expected a value (it is required)"),
        (
            GOOD + GOOD.split("[[service]]", 1)[1].join(["[[service]]", ""]),
            "expected unique services, but prod/web appears twice",
        ),
        ("[environment\nname = 'x'", "expected valid TOML"),
    ],
)
def test_broken_config_says_file_key_and_expectation(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")


def test_check_config_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('cluster = "prod"\nservice = "api"', 'cluster = "prod"'))
    result = subprocess.run(
        [sys.executable, "-m", "tui", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}: service #2.service" in lines[0]


def test_check_config_cli_accepts_the_example() -> None:
    example = Path(__file__).parents[2] / "deploywatch.example.toml"
    result = subprocess.run(
        [sys.executable, "-m", "tui", "check-config", str(example)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def example() -> str:
    return (Path(__file__).parents[2] / "deploywatch.example.toml").read_text()


def test_seed_rules_are_expressible_as_written(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, example()))
    rules = {r.name: r for r in settings.rules}
    error = rules["error rate"]
    assert (error.op, error.threshold, error.window.total_seconds()) == (">", 5, 300)
    assert rules["p95 latency"].window.total_seconds() == 600
    assert (rules["availability"].op, rules["availability"].threshold) == ("<", 99.5)
    assert rules["cpu"].severity == "warn" and rules["cpu"].window.total_seconds() == 900
    assert rules["error rate: roll back"].action == "rollback"
    assert rules["new tasks failing"].no_data == "ok"
    assert settings.service_key("web") == "prod/web"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'subject = "metric:p95_ms"',
            'subject = "metric:p95"',
            "rule 'p95 latency': subject 'metric:p95' to name a [[metric]] (have: cpu, error_rate, p95_ms)",
        ),
        (
            'for = "10m"',
            'for = "10 minutes"',
            'rule #2.for: expected a duration such as "30s", "5m" or "1h", got \'10 minutes\'',
        ),
        ('op = "<"', 'op = "=<"', "rule #3.op: expected input should be '>', '>=', '<' or '<='"),
        ('subject = "metric:cpu"', 'subject = "cpu"', "rule #4.subject: expected metric:<name>"),
        (
            'url = "https://web.example.com/health"',
            'url = "web.example.com/health"',
            "probe #1.url: expected an http:// or https:// URL",
        ),
        (
            'service = "web"\nop = ">="',
            'service = "webb"\nop = ">="',
            "rule 'new tasks failing': service = one of the [[service]] keys",
        ),
        ("[datadog]", "[datadogg]", "datadogg: unknown key"),
    ],
)
def test_broken_signal_config(tmp_path: Path, old: str, new: str, expected: str) -> None:
    text = example()
    assert old in text
    path = write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
