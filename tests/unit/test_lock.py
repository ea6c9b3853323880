"""The operator lock's arbiter: order of arrival, renewal, takeover, expiry, vanishing."""

from __future__ import annotations

from datetime import timedelta

from engine.lock import LockArbiter
from tests.fakes import T0


def test_first_claim_wins_and_the_second_is_refused() -> None:
    arbiter = LockArbiter()
    lock = arbiter.claim("web", "c1", "alice@bastion-1", T0)
    assert lock is not None and lock.words() == "web: locked by alice@bastion-1 since 02:00"
    assert arbiter.claim("web", "c2", "bob@bastion-2", T0) is None
    assert arbiter.locks["web"].client == "c1"


def test_a_renewal_keeps_since_and_moves_the_expiry() -> None:
    arbiter = LockArbiter(ttl=timedelta(minutes=15))
    arbiter.claim("web", "c1", "alice@b", T0)
    later = T0 + timedelta(minutes=10)
    lock = arbiter.claim("web", "c1", "alice@b", later)
    assert lock is not None and lock.since == T0 and lock.expires == later + timedelta(minutes=15)


def test_a_takeover_names_the_previous_holder() -> None:
    arbiter = LockArbiter()
    arbiter.claim("web", "c1", "alice@b", T0)
    lock = arbiter.claim("web", "c2", "bob@b", T0, takeover=True)
    assert lock is not None and lock.taken_over_from == "alice@b" and lock.client == "c2"


def test_a_forgotten_lock_expires_and_a_vanished_holder_frees_its_locks() -> None:
    arbiter = LockArbiter(ttl=timedelta(minutes=15))
    arbiter.claim("web", "c1", "alice@b", T0)
    arbiter.claim("api", "c2", "bob@b", T0 + timedelta(minutes=5))
    assert arbiter.expire(T0 + timedelta(minutes=14)) == []
    assert arbiter.expire(T0 + timedelta(minutes=15)) == ["web"]
    assert arbiter.claim("web", "c3", "carol@b", T0 + timedelta(minutes=15)) is not None
    assert arbiter.gone("c2") == ["api"]
    assert arbiter.release("web", "c1") is False and arbiter.release("web", "c3") is True
    assert arbiter.locks == {}
