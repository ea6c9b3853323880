"""The fleet in a real terminal: ``deploywatch --config`` over two moto accounts in a
200x50 tmux, discovery, the ``/`` filter and one context's credentials expiring."""

from __future__ import annotations

import os
import re
import shlex
from typing import TYPE_CHECKING

import pytest

from bench._tmux import Tmux
from sandbox.faults import Fault
from sandbox.fleet import FleetWorld
from tests.e2e.test_tmux_demo import DEPLOYWATCH

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


def test_fleet_discovery_filter_and_one_context_stale(tmp_path: Path) -> None:
    with FleetWorld(tmp_path, services=30) as world:
        config = world.write_config(interval=5)
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in world.environment().items())
        tmux = Tmux(f"dw-fleet-{os.getpid()}")
        tmux.start(f"env -u AWS_PROFILE {env} {DEPLOYWATCH} --config {config}; sleep 30")
        try:
            # Both accounts discovered, side by side in the top bar.
            tmux.wait_for(re.compile(r"prod-eu 32 svc.*staging-us 31 svc"), 60)
            # Plain moto has no service-deployments API: STALE until the poller has
            # taken it as unsupported (a few polls).
            tmux.wait_gone(re.compile(r"STALE"), 60)
            # / filters as you type; escape clears.
            tmux.keys("/")
            tmux.wait_for(re.compile(r"filter: name, cluster, context or state"), 10)
            tmux.keys("staging web-01")
            screen = tmux.wait_for(re.compile(r"/staging web-01  10/63"), 10)
            cards = re.findall(r"[▶▎] (\S+) (\S+)  \S+:shop/", screen)  # the cards' first lines
            assert cards and {c for c, _ in cards} == {"staging-us"}
            assert {name for _, name in cards} <= {f"web-01{n}" for n in range(10)}
            tmux.keys("Escape")
            tmux.wait_gone(re.compile(r"10/63"), 10)
            # A new service appears by itself at the next listing.
            world.create_service("staging-us", "shop", "web-new")
            tmux.wait_for(re.compile(r"staging-us 32 svc"), 30)
            # prod-eu's credentials expire: only that context goes STALE, with the fix.
            world.faults.set("aws:prod-eu", Fault(kind="expired_token"))
            screen = tmux.wait_for(re.compile(r"prod-eu 32 svc · 32 STALE"), 30)
            assert "aws sso login --profile prod-eu" in screen
            assert re.search(r"staging-us 32 svc\s", screen)
            world.faults.clear("aws:prod-eu")
            tmux.wait_gone(re.compile(r"prod-eu 32 svc · \d+ STALE"), 30)
            tmux.keys("q")
        finally:
            tmux.kill()
