"""The watch's wakes while nothing arrives: a rule that lost its data asks for none."""

from __future__ import annotations

from datetime import timedelta

from engine.rules import Rule, RuleBook, RuleState
from tests.fakes import T0
from tests.unit.test_rules import rule

SEC = timedelta(seconds=1)


def probe_rule() -> Rule:
    """``avail < 99 for 30s``, 15 s of freshness: a probe's rule."""
    return rule(
        name="avail",
        subject="probe:web.availability",
        op="<",
        threshold=99.0,
        window=30 * SEC,
        fresh_for=15 * SEC,
    )


def test_a_rule_without_fresh_data_asks_for_no_wake_until_data_comes() -> None:
    """A probe answered, then went silent: its rule turns NO DATA when its point ages
    past freshness (a moment the watch wakes for). After that, the window ending and
    the streak's moments change nothing (no data stays no data): no wake for them, the
    next change can only come with data (which wakes the watch itself)."""
    book = RuleBook([probe_rule()])
    for i in range(3):
        book.record("probe:web.availability", T0 + i * SEC, 100.0)
    latest = T0 + 2 * SEC
    now = latest + 5 * SEC
    (ev,) = book.evaluate(now)
    assert ev.state is RuleState.OK
    wake = book.next_change(now)
    assert wake is not None and wake <= latest + 15 * SEC + SEC  # its freshness ends

    now = latest + 16 * SEC
    (ev,) = book.evaluate(now)
    assert ev.state is RuleState.NO_DATA
    assert book.next_change(now) is None  # not at latest + 30 s, when the window ends
    (later,) = book.evaluate(latest + 40 * SEC)
    assert later.state is RuleState.NO_DATA  # (and indeed nothing changed then)

    book.record("probe:web.availability", latest + 41 * SEC, 100.0)  # it answers again
    assert book.next_change(latest + 41 * SEC) is not None
    (ev,) = book.evaluate(latest + 41 * SEC)
    assert ev.state is RuleState.OK
