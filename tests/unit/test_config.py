"""Config validation: a broken file names the file, the key and what was expected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import ConfigError, load_config
from tui.__main__ import main

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
            "rule #2.subject: expected the name of a [[metric]] (have: cpu, error_rate, p95_ms), got 'metric:p95'",
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
            "rule #6.service: expected exactly one configured [[service]], but no [[service]] is 'webb' (choose: prod/web, prod/api, web, api)",
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


# --------------------------------------------------------------- impossible values


def broken(tmp_path: Path, old: str, new: str) -> str:
    """The example with one change; the one-line error it gives."""
    text = example()
    assert old in text, old
    path = write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # A rule that can never breach would leave the verdict HEALTHY.
        ("threshold = 5\n", "threshold = nan\n", "rule #1.threshold: expected a finite number"),
        ("threshold = 5\n", "threshold = inf\n", "rule #1.threshold: expected a finite number"),
        ("threshold = 5\n", "threshold = -inf\n", "rule #1.threshold: expected a finite number"),
        ("threshold = 5\n", "threshold = true\n", "rule #1.threshold: expected a finite number"),
        ("threshold = 5\n", 'threshold = "5"\n', "written without quotes"),
        # Durations: finite, bounded, never an overflow.
        ('for = "5m"', "for = inf", "rule #1.for: expected a duration of at most 72h, got inf"),
        ('for = "5m"', "for = nan", 'rule #1.for: expected a duration such as "30s"'),
        ('for = "5m"', "for = 1e300", "rule #1.for: expected a duration of at most 72h"),
        ('for = "5m"', f"for = 1{'0' * 400}", "rule #1.for: expected a duration of at most 72h"),
        ('for = "5m"', 'for = "99999999999999h"', "rule #1.for: expected a duration of at most"),
        ('for = "5m"', 'for = "73h"', "rule #1.for: expected a duration of at most 72h"),
        (
            'countdown = "10s"',
            "countdown = 1e20",
            "actions.countdown: expected a duration of at least 1s and at most 10m",
        ),
        ('countdown = "10s"', 'countdown = "0s"', "actions.countdown: expected a duration"),
        ('countdown = "10s"', 'countdown = "11m"', "actions.countdown: expected a duration"),
        ('interval = "5s"', 'interval = "0s"', "probe #1.interval: expected a duration of at"),
        ('timeout = "2s"', "timeout = 0", "probe #1.timeout: expected a duration longer than 0s"),
        ('timeout = "2s"', 'timeout = "2h"', "probe #1.timeout: expected a duration"),
        ('window = "15m"', 'window = "0s"', "datadog.window: expected a duration longer than 0s"),
        ("poll_interval = 15\n", "poll_interval = true\n", "datadog.poll_interval: expected"),
        ("poll_interval = 5.0", "poll_interval = true", "ecs.poll_interval: expected a finite"),
        ("max_concurrency = 8", "max_concurrency = true", "ecs.max_concurrency: expected"),
        ("expect_status = 200", "expect_status = 200.0", "probe #1.expect_status: expected"),
        ("production = true", "production = 1", "environment.production: expected true or"),
        # URLs and names the clients would only refuse later.
        (
            'org = "acme"',
            'org = "acme"\nbase_url = "sentry.io"',
            "sentry.base_url: expected an http",
        ),
        ("[datadog]", '[datadog]\nhost = "ftp://x"', "datadog.host: expected an http:// or"),
        ('region = "us-east-1"', 'region = "us east 1"', "aws.region: expected"),
        # The Sentry source refuses a mix of ids and slugs at start.
        ('projects = ["web"]', 'projects = ["web", "42"]', "sentry.projects: expected project ids"),
        # A metric query must name a metric (what the Datadog source needs at start).
        (
            'query = "avg:ecs.fargate.cpu.percent{service:web}"',
            'query = "1 + 2"',
            "metric #3.query: expected a Datadog query naming a metric",
        ),
        (
            'query = "avg:ecs.fargate.cpu.percent{service:web}"',
            'query = "avg:cpu{service:web} ; rm"',
            "metric #3.query: expected a Datadog query naming a metric",
        ),
        # audit_log = "" would be the current directory.
        (
            '# audit_log = "/var/log/deploywatch/audit.jsonl"',
            'audit_log = ""',
            "actions.audit_log: expected a file path",
        ),
        (
            '# audit_log = "/var/log/deploywatch/audit.jsonl"',
            'audit_log = "a\\u0007b"',
            "actions.audit_log: expected a file path",
        ),
        # Keys the app already uses, and one key for two actions.
        ('freeze = "f"', 'freeze = "ctrl+q"', "keys.freeze: expected a key the app does not use"),
        ('freeze = "f"', 'freeze = "ctrl+p"', "('ctrl+p' is the command palette)"),
        ('freeze = "f"', 'freeze = "ctrl+c"', "keys.freeze: expected a key the app does not use"),
        ('cancel = "c"', 'cancel = "q"', "keys.cancel: expected a key the app does not use"),
        ('cancel = "c"', 'cancel = "j"', "keys.cancel: expected a key the app does not use"),
        ('freeze = "f"', 'freeze = "c"', "keys: expected one key per action, but 'c' is both"),
    ],
)
def test_impossible_values_are_one_clear_line(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert expected in broken(tmp_path, old, new)


SECOND_WEB = '[[service]]\ncluster = "staging"\nservice = "web"\n\n[[service]]\ncluster = "prod"\nservice = "api"'


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # A typo must not fall back to the metric's service or the only service.
        (
            [('service = "web"\nop = ">="', 'service = "webb"\nop = ">="')],
            "rule #6.service: expected exactly one configured [[service]], but no [[service]]"
            " is 'webb' (choose: prod/web, prod/api, web, api)",
        ),
        (
            [
                (
                    'subject = "metric:error_rate"\nop = ">"\nthreshold = 10',
                    'subject = "metric:error_rate"\nop = ">"\nthreshold = 10\nservice = "wbe"',
                ),
            ],
            "rule #5.service: expected exactly one configured [[service]], but no [[service]] is 'wbe'",
        ),
        # A name two clusters share.
        (
            [('[[service]]\ncluster = "prod"\nservice = "api"', SECOND_WEB)],
            "metric #1.service: expected exactly one configured [[service]], but 'web' is"
            " prod/web, staging/web (choose: prod/web, staging/web)",
        ),
        # A name that is another service's label.
        (
            [('label = "api" ', 'label = "web" ')],
            "expected exactly one configured [[service]], but 'web' is prod/web, prod/api",
        ),
        # The sentry table's service, too.
        (
            [
                (
                    'environment = "production"\nservice = "web"',
                    'environment = "production"\nservice = "nope"',
                )
            ],
            "sentry.service: expected exactly one configured [[service]]",
        ),
    ],
)
def test_a_service_reference_names_exactly_one_service(
    tmp_path: Path, changes: list[tuple[str, str]], expected: str
) -> None:
    text = example()
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert expected in str(info.value)


def test_a_shared_name_resolves_by_its_key(tmp_path: Path) -> None:
    text = example().replace('[[service]]\ncluster = "prod"\nservice = "api"', SECOND_WEB)
    text = text.replace('service = "web"', 'service = "prod/web"')  # every reference by key
    for cluster in ("prod", "staging"):  # the [[service]] tables themselves stay
        text = text.replace(
            f'cluster = "{cluster}"\nservice = "prod/web"',
            f'cluster = "{cluster}"\nservice = "web"',
        )
    settings = load_config(write(tmp_path, text))
    assert [s.key for s in settings.services] == ["prod/web", "staging/web", "prod/api"]
    assert settings.service_key("web") is None  # ambiguous: never "the first one"
    assert settings.service_key("staging/web") == "staging/web"
    rollback = next(r for r in settings.rules if r.action == "rollback")
    assert settings.rule_service(rollback) == "prod/web"


@pytest.mark.parametrize(
    ("old", "at_bound", "past_bound"),
    [
        ('for = "5m"', 'for = "72h"', 'for = "72.01h"'),
        ('countdown = "10s"', 'countdown = "10m"', 'countdown = "601s"'),
        ('countdown = "10s"', 'countdown = "1s"', 'countdown = "999ms"'),
        ('timeout = "2s"', "timeout = 60", "timeout = 60.5"),
        ('interval = "5s"', 'interval = "100ms"', 'interval = "99ms"'),
        ('window = "15m"', 'window = "72h"', 'window = "73h"'),
    ],
)
def test_durations_are_bounded_at_sane_limits(
    tmp_path: Path, old: str, at_bound: str, past_bound: str
) -> None:
    text = example()
    assert old in text
    load_config(write(tmp_path, text.replace(old, at_bound, 1)))
    with pytest.raises(ConfigError, match="expected a duration"):
        load_config(write(tmp_path, text.replace(old, past_bound, 1)))


def test_control_characters_are_never_echoed_raw(tmp_path: Path) -> None:
    message = broken(tmp_path, "[keys]", '[keys]\n"\\u001b]0;pwned\\u0007\\u001b[2J" = "x"')
    assert "\x1b" not in message and "\x07" not in message
    assert "keys.\\x1b]0;pwned\\x07\\x1b[2J: unknown key" in message
    message = broken(tmp_path, 'name = "production"', 'name = "\\u001b[31m\\nred"')
    assert "\x1b" not in message and "\n" not in message


def test_a_huge_value_is_quoted_short(tmp_path: Path) -> None:
    message = broken(tmp_path, 'op = ">"', f'op = "{"x" * 100_000}"')
    assert len(message) < 400


@pytest.mark.parametrize("kind", ["directory", "fifo", "device"])
def test_the_config_must_be_a_regular_file(tmp_path: Path, kind: str) -> None:
    if kind == "directory":
        path, expected = tmp_path, "a directory"
    elif kind == "fifo":
        path, expected = tmp_path / "fifo.toml", "a FIFO"
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    else:
        path, expected = Path("/dev/zero"), "a device"  # reading it would never end
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: expected a regular file, but it is {expected}"


def test_a_config_larger_than_a_mebibyte_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, example() + "#" * (1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match=r": expected a config file of at most 1 MiB$"):
        load_config(path)


# ---------------------------------------------------------------------- the CLI


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("threshold = 5\n", "threshold = nan\n", "rule #1.threshold: expected a finite number"),
        ('for = "5m"', "for = 1e300", "rule #1.for: expected a duration of at most 72h"),
        ('interval = "5s"', 'interval = "0s"', "probe #1.interval: expected a duration"),
        ('freeze = "f"', 'freeze = "ctrl+q"', "keys.freeze: expected a key the app does not use"),
        ('service = "web"\nop', 'service = "webb"\nop', "rule #6.service: expected exactly one"),
    ],
)
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_cli_says_one_line_and_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    old: str,
    new: str,
    expected: str,
) -> None:
    path = write(tmp_path, example().replace(old, new, 1))
    argv = ["check-config", str(path)] if command == "check-config" else ["--config", str(path)]
    code, out, err = cli(argv, capsys)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith(f"deploywatch: {path}: {expected}")


def test_check_config_missing_file_names_the_positional_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nonexistent.toml"
    code, _, err = cli(["check-config", str(missing)], capsys)
    assert code == 2
    assert err == f"deploywatch: {missing}: no such file (usage: deploywatch check-config FILE)\n"
    code, _, err = cli(["run", "--config", str(missing)], capsys)
    assert code == 2 and "(pass --config FILE)" in err


def test_check_config_counts_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = example().replace('[[service]]\ncluster = "prod"\nservice = "api"\nlabel = "api"', "")
    code, out, _ = cli(["check-config", str(write(tmp_path, text))], capsys)
    assert code == 0
    assert "(1 service, 3 metrics, 1 probe, 6 rules, sentry on;" in out


def test_cli_escapes_control_characters_in_the_file_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(["check-config", str(tmp_path / "a\x1b[2Jb.toml")], capsys)
    assert code == 2 and "\x1b" not in err and "a\\x1b[2Jb.toml" in err


def test_demo_takes_a_scenario_file_like_sandbox_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundled = cli(["demo", "--scenario", "no-such-scenario"], capsys)
    assert bundled[0] == 2 and "no scenario 'no-such-scenario'" in bundled[2]
    missing = cli(["demo", "--scenario", str(tmp_path / "none.toml")], capsys)
    assert missing[0] == 2 and "no scenario" in missing[2]
    # A file is handed to the sandbox, which reads it (this one is not a valid scenario,
    # so it stops at once, saying why, instead of the CLI refusing the argument).
    scenario = tmp_path / "mine.toml"
    scenario.write_text('name = "mine"\nbogus = 1\n')
    code, _, err = cli(["demo", "--scenario", str(scenario)], capsys)
    assert code == 1, err
    assert "the sandbox did not start" in err and "no scenario" not in err
    assert "mine.toml" in err


def test_a_viewer_refuses_record_before_it_connects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run --bus URL --record FILE`` would record nothing (a viewer polls nothing of
    its own): refused in one line, before any broker is tried, and no file is written."""
    path = write(tmp_path, example())
    recording = tmp_path / "rec.jsonl.gz"
    argv = ["run", "--config", str(path), "--bus", "mqtt://127.0.0.1:9", "--record", str(recording)]
    code, out, err = cli(argv, capsys)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "--record does not combine with --bus" in err
    assert not recording.exists()
