"""What a relay publishes of the items its watch takes in (no broker needed)."""

from __future__ import annotations

from pathlib import Path

from engine.audit import AuditLog
from engine.controller import Controller
from engine.relay import Relay
from sources.bus import Topics, parse_bus_url
from sources.model import Discovered, FleetChange
from tests.fakes import T0, FrozenClock, mid_deploy_script, settings


def test_items_the_bus_does_not_carry_stay_local(tmp_path: Path) -> None:
    """A discovery's fleet change is the watch's own business: offering it to the relay
    publishes nothing and raises nothing (a crash there would stop the source)."""
    clock = FrozenClock()
    controller = Controller(
        settings(),
        clock=clock,
        executor=lambda call: {},
        audit=AuditLog(tmp_path / "a.jsonl"),
        operator=lambda: "t",
        read_only=True,
    )
    relay = Relay(controller, parse_bus_url("mqtt://127.0.0.1:1", {}), Topics("t"), clock=clock)
    change = FleetChange(
        source="discovery",
        context=None,
        added=(Discovered("shop/web-1", "shop", "web-1", "shop/web-*", None),),
        removed=(),
        listed=("shop/web-*",),
        at=T0,
    )
    relay.offer(change)
    assert relay.current == {}
    relay.offer(mid_deploy_script()[0])
    assert any("/state/ecs/" in topic for topic in relay.current)
