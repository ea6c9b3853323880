"""Renewing and releasing the operator lock: the arbiter honours both only from the
holder; a dashboard renews its locks while its operator is active, else lets them run
out (no broker needed)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING

from engine.audit import AuditLog
from engine.controller import Controller
from engine.lock import LockArbiter
from engine.relay import Relay
from sources.bus import LockClient, LockView, Topics, encode, parse_bus_url
from tests.fakes import T0, FrozenClock, settings

if TYPE_CHECKING:
    from pathlib import Path

TTL = timedelta(minutes=15)
TOPICS = Topics("t")
BUS = parse_bus_url("mqtt://127.0.0.1:1", {})


def test_only_the_holder_renews_and_a_renewal_never_grants() -> None:
    arbiter = LockArbiter(ttl=TTL)
    arbiter.claim("web", "c1", "alice@b", T0)
    later = T0 + timedelta(minutes=10)
    assert arbiter.renew("web", "c2", later) is None  # not bob's to renew
    assert arbiter.locks["web"].expires == T0 + TTL
    lock = arbiter.renew("web", "c1", later)
    assert lock is not None and (lock.since, lock.expires) == (T0, later + TTL)
    # Expired (or freed, or taken over): a late renewal does not take it back.
    assert arbiter.renew("web", "c1", later + TTL) is None
    assert arbiter.renew("api", "c1", T0) is None and "api" not in arbiter.locks


def relay(tmp_path: Path, clock: FrozenClock) -> Relay:
    controller = Controller(
        settings(),
        clock=clock,
        executor=lambda call: {},
        audit=AuditLog(tmp_path / "a.jsonl"),
        operator=lambda: "t",
        read_only=True,
    )
    return Relay(controller, BUS, TOPICS, clock=clock)


def claim(made: Relay, client: str, **flags: bool) -> None:
    body = {"client": client, "holder": f"{client}@b", **flags}
    made.on_message(TOPICS.lock_claim("web"), encode(body))


def retained(made: Relay) -> dict[str, object] | None:
    payload = made.current.get(TOPICS.lock("web"))
    return None if payload is None else dict(json.loads(payload))


def test_the_relay_takes_renewals_and_releases_only_from_the_holder(tmp_path: Path) -> None:
    clock = FrozenClock()
    made = relay(tmp_path, clock)
    claim(made, "alice")
    first = retained(made)
    assert first is not None and first["ttl_s"] == TTL.total_seconds()
    clock.advance(600)
    claim(made, "bob", renew=True)
    claim(made, "bob", release=True)
    assert retained(made) == first  # neither bob's renewal nor his release counts
    claim(made, "alice", renew=True)
    renewed = retained(made)
    assert renewed is not None and renewed["since"] == first["since"]
    assert renewed["expires"] == (T0 + timedelta(seconds=600) + TTL).isoformat()
    claim(made, "alice", release=True)
    assert retained(made) is None
    claim(made, "alice", renew=True)  # released: a renewal does not take it back
    assert retained(made) is None and made.arbiter.locks == {}


def ours(client: LockClient, granted: timedelta = timedelta(0)) -> LockView:
    return LockView(
        "web", client.identifier, "me@here", T0, T0 + granted + TTL, TTL
    )  # granted (or last renewed) at T0 + granted


def test_a_lock_is_renewed_after_a_third_of_its_ttl_only_if_the_operator_was_active() -> None:
    client = LockClient(BUS, TOPICS, "me@here", identifier="me")
    client.locks["web"] = ours(client)
    client.locks["api"] = LockView("api", "other", "alice@b", T0, T0 + TTL, TTL)
    third = T0 + TTL / 3
    assert client.renewals(third) == []  # nobody touched anything: it runs out
    client.touch(T0 - timedelta(seconds=1))
    assert client.renewals(third) == []  # active before the grant only
    client.touch(T0 + timedelta(minutes=1))
    assert client.renewals(third - timedelta(seconds=1)) == []  # too early
    assert client.renewals(third) == ["web"]  # ours only, never alice's
    client._renew_sent["web"] = third
    assert client.renewals(third + timedelta(minutes=1)) == []  # sent, no answer yet
    # The relay's answer: granted again at `third`; active since? Not yet.
    client.locks["web"] = ours(client, granted=TTL / 3)
    assert client.renewals(third + TTL / 3) == []
    client.touch(third + timedelta(seconds=5))
    assert client.renewals(third + TTL / 3) == ["web"]


def test_a_lock_whose_arbiter_gave_no_ttl_is_never_renewed_by_guess() -> None:
    client = LockClient(BUS, TOPICS, "me@here", identifier="me")
    client.locks["web"] = LockView("web", "me", "me@here", T0)
    client.touch(T0 + TTL)
    assert client.renewals(T0 + TTL) == []


def test_a_lock_message_with_a_bad_expiry_or_ttl_is_dropped() -> None:
    client = LockClient(BUS, TOPICS, "me@here", identifier="me")
    good = {"client": "me", "holder": "me@here", "since": T0.isoformat()}
    for bad in (
        {"expires": "2026-01-05T02:00:00", "ttl_s": 900},  # no zone
        {"expires": (T0 + TTL).isoformat(), "ttl_s": -1},
        {"expires": (T0 + TTL).isoformat(), "ttl_s": 1e300},
        {"expires": (T0 + TTL).isoformat(), "ttl_s": "soon"},
    ):
        client._read(TOPICS.lock("web"), encode({**good, **bad}))
    assert client.locks == {} and client.stats.malformed == 4
    client._read(TOPICS.lock("web"), encode({**good, "expires": (T0 + TTL).isoformat()}))
    assert client.locks["web"].expires == T0 + TTL and client.locks["web"].ttl is None
