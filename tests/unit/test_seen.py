"""The store's memory of event ids: bounded, and small per id (the soak's slope)."""

from __future__ import annotations

import tracemalloc

from engine.seen import SeenIds
from engine.store import SEEN_EVENTS_MAX, Store
from tests.fakes import deployment, sample


def test_seen_ids_stay_at_their_bound_and_forget_the_oldest_first() -> None:
    seen = SeenIds(100)
    assert all(seen.add(("demo/web", f"ev-{n}")) for n in range(1000))
    assert len(seen) == 100
    assert ("demo/web", "ev-999") in seen and ("demo/web", "ev-900") in seen
    assert ("demo/web", "ev-899") not in seen  # forgotten: the oldest go first
    assert not seen.add(("demo/web", "ev-950"))  # re-delivered: not new
    assert ("demo/api", "ev-950") not in seen  # the same id of another service is not it
    assert seen.add(("demo/web", "ev-0"))  # forgotten long ago: new again
    assert len(seen) == 100


def test_the_store_remembers_at_most_its_bound_of_event_ids_in_little_memory() -> None:
    """Twice the bound of distinct events (a long soak's worth) leave the store holding
    exactly the bound, and each remembered id costs hashes, not its strings: under 3 MB
    for 20,000 (the tuples of strings in an ordered dict took 4.8 MB)."""
    store = Store([("bench/svc", "svc")])
    web = [deployment("web:1")]
    per_sample = 50
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(2 * SEEN_EVENTS_MAX // per_sample):
            events = [(f"svc-{n}-{k}", "has started 1 tasks") for k in range(per_sample)]
            store.ingest(sample("bench/svc", web, events=events))
            assert len(store.take_events()) == per_sample  # every one is new
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(store._seen_events) == SEEN_EVENTS_MAX
    assert grown < 3 * 1024 * 1024, f"{grown / 2**20:.1f} MB for {SEEN_EVENTS_MAX} ids"
    newest = sample(
        "bench/svc", web, events=[(f"svc-{2 * SEEN_EVENTS_MAX // per_sample - 1}-0", "x")]
    )
    store.ingest(newest)
    assert store.take_events() == []  # still remembered: a re-delivery is not shown twice
