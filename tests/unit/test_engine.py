"""The store and the ECS status judgement: no Textual involved."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from engine.store import EcsStatus, Store, ecs_status
from sources.model import SourceRateLimited
from sources.poll import Backoff, poll
from tests.fakes import T0, deployment, failure, mid_deploy_script, sample, service_deployment


def test_status_of_a_clean_completion() -> None:
    done = sample(
        "demo/web",
        [deployment("web:2")],
        service_deployments=[service_deployment("SUCCESSFUL", source="web:1", target="web:2")],
    )
    assert ecs_status(done) is EcsStatus.COMPLETED
    assert ecs_status(done).is_healthy


def test_status_in_progress_while_two_deployments_exist() -> None:
    web, _ = mid_deploy_script()
    assert ecs_status(web) is EcsStatus.IN_PROGRESS  # type: ignore[arg-type]


def test_rolled_back_deploy_is_never_healthy() -> None:
    rolled = sample(
        "demo/api",
        [deployment("api:7")],
        service_deployments=[
            service_deployment("ROLLBACK_SUCCESSFUL", source="api:7", target="api:8")
        ],
    )
    assert ecs_status(rolled) is EcsStatus.ROLLBACK_SUCCESSFUL
    assert not ecs_status(rolled).is_healthy


def test_failed_rollout_without_rollback() -> None:
    failed = sample(
        "demo/api",
        [deployment("api:8", rollout="FAILED", failed=3), deployment("api:7", status="ACTIVE")],
        service_deployments=[service_deployment("STOPPED", source="api:7", target="api:8")],
    )
    assert ecs_status(failed) is EcsStatus.FAILED


def test_no_sample_is_no_data() -> None:
    assert ecs_status(None) is EcsStatus.NO_DATA


def test_store_keeps_last_good_data_when_stale_and_counts_age_from_first_failure() -> None:
    store = Store([("demo/web", "web"), ("demo/api", "api")])
    web, _ = mid_deploy_script()
    assert store.ingest(web)
    assert store.take_dirty() == ["demo/web"]
    assert [e.id for _, e in store.take_events()] == ["e1", "e2"]
    assert store.ingest(failure("demo/web", "no answer", at=T0 + timedelta(seconds=5)))
    assert not store.ingest(failure("demo/web", "no answer", at=T0 + timedelta(seconds=9)))
    state = store.services["demo/web"]
    assert state.sample is web and state.stale
    assert state.stale_age(T0 + timedelta(seconds=12)) == 12.0  # since the last good data
    assert store.ingest(web)  # recovery clears STALE
    assert not state.stale


def test_stale_age_without_any_good_data_counts_from_first_failure() -> None:
    store = Store([("demo/web", "web")])
    store.ingest(failure("demo/web", "refused", at=T0))
    store.ingest(failure("demo/web", "refused again", at=T0 + timedelta(seconds=4)))
    assert store.services["demo/web"].stale_age(T0 + timedelta(seconds=6)) == 6.0


def test_unknown_keys_are_ignored() -> None:
    store = Store([("demo/web", "web")])
    assert not store.ingest(sample("other/svc", [deployment("x:1")]))
    assert store.take_dirty() == []


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    assert all(0.5 <= d <= 1.0 for d in delays[:1])
    assert all(4.0 <= d <= 8.0 for d in delays[4:])
    assert backoff.next_delay(retry_after=20.0) == 20.0
    backoff.reset()
    assert backoff.next_delay() <= 1.0


@pytest.mark.parametrize("fail_first", [True, False])
async def test_poll_times_out_backs_off_and_recovers(fail_first: bool) -> None:
    calls = 0
    sleeps: list[float] = []

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        if fail_first and calls == 1:
            raise SourceRateLimited("slow down", retry_after=7.0)
        return calls

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    results = []
    async for result in poll(fetch, 1.0, deadline=1.0, sleep=fake_sleep):
        results.append(result)
        if len(results) == 2:
            break
    if fail_first:
        assert results[0].error is not None and results[0].retry_in >= 7.0
        assert results[1].value == 2
        assert sleeps[0] >= 7.0
    else:
        assert [r.value for r in results] == [1, 2]
        assert sleeps[0] == 1.0


def test_events_are_taken_once_and_the_remembered_ids_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import engine.store

    monkeypatch.setattr(engine.store, "SEEN_EVENTS_MAX", 3)
    store = Store([("demo/web", "web")])
    first = sample("demo/web", [deployment("web:1")], events=[("a", "one"), ("b", "two")])
    store.ingest(first)
    store.ingest(first)  # re-delivered: nothing new
    assert [e.id for _, e in store.take_events()] == ["a", "b"]
    store.ingest(sample("demo/web", [deployment("web:1")], events=[("c", "3"), ("d", "4")]))
    assert [e.id for _, e in store.take_events()] == ["c", "d"]
    assert len(store._seen_events) == 3  # "a" was forgotten first
    assert ("demo/web", "a") not in store._seen_events
