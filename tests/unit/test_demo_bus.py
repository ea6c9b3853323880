"""``demo --viewers``: what it refuses before starting anything, and the pane it opens."""

from __future__ import annotations

import shlex

import pytest

from tui.demo_bus import DemoBusError, check_viewers, split_command, viewer_command


@pytest.mark.parametrize(
    ("viewers", "env", "why"),
    [
        (0, {"TMUX": "/tmp/tmux-0/default,1,0"}, "1 to 3"),
        (4, {"TMUX": "/tmp/tmux-0/default,1,0"}, "1 to 3"),
        (1, {}, "run it inside tmux"),
    ],
)
def test_viewers_are_refused_with_what_to_do(viewers: int, env: dict[str, str], why: str) -> None:
    with pytest.raises(DemoBusError, match=why):
        check_viewers(viewers, env)


@pytest.mark.parametrize(
    ("option", "why"),
    [("production", "--production does not combine with --viewers"), ("record", "--record")],
)
def test_options_the_viewers_would_ignore_are_refused(option: str, why: str) -> None:
    """The viewers' panes read the sandbox's config as it is: a production rehearsal
    would let them confirm with y, and there is nothing of theirs to record."""
    with pytest.raises(DemoBusError, match=why):
        check_viewers(1, {"TMUX": "/tmp/tmux-0/default,1,0"}, **{option: True})


def test_a_viewer_pane_runs_an_operators_dashboard_from_the_bus_with_its_env() -> None:
    argv = viewer_command("mqtt://127.0.0.1:1883", "/tmp/a b/config.toml")
    command = split_command(argv, {"DEPLOYWATCH_HOLDER": "me@here (pane 2)", "DD_API_KEY": "x"})
    assert command[:2] == ["tmux", "split-window"] and "-d" in command
    assert command[command.index("-e") + 1] == "DD_API_KEY=x"
    assert "DEPLOYWATCH_HOLDER=me@here (pane 2)" in command
    assert shlex.split(command[-1])[-6:] == [
        "run", "--bus", "mqtt://127.0.0.1:1883", "--config", "/tmp/a b/config.toml", "--operate",
    ]  # fmt: skip
