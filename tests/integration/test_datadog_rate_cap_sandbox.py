"""The sandbox's Datadog with a rate-limit period of about 100000 s, through the real Datadog
source: ``X-RateLimit-Reset`` says hours once the budget is spent; the source
waits at most ``MAX_SERVER_WAIT_S`` and says why the pane waits (issue 11, defect 7: the
reset held polling for 28 hours, silently)."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import pytest

from sandbox.datadog_api import DatadogServer
from sources.datadog import DatadogQuery
from sources.model import MetricSample, SourceFailure
from sources.poll import MAX_SERVER_WAIT_S
from tests.integration.test_signal_sources import REQUESTS_Q, datadog, no_sleep, take

if TYPE_CHECKING:
    from sandbox.requestlog import RequestLog

pytestmark = pytest.mark.integration


def huge_period() -> int:
    """About 100000 s, chosen so the window (aligned on multiples of it) ends well past
    the cap: its reset then says far more than the source may wait."""
    period = 100_000
    while period - int(time.time()) % period < 10 * MAX_SERVER_WAIT_S:
        period += 7_919
    return period


async def test_a_huge_rate_limit_reset_is_capped_and_said(request_log: RequestLog) -> None:
    request_log.record("web", "v1", 200, 10.0)
    period = huge_period()
    with DatadogServer(request_log, rate_limit=1, rate_period_s=period) as server:
        slept: list[float] = []
        src = datadog(
            server.url, [DatadogQuery("requests", REQUESTS_Q)], interval=0.1, sleep=no_sleep(slept)
        )
        sample, held, limited = await take(src.stream(), 3)
    assert isinstance(sample, MetricSample)
    # The spent budget's reset (~100000 s) holds the next poll for the cap, no longer.
    assert slept[0] == 0.1
    assert MAX_SERVER_WAIT_S - 1 <= slept[1] <= MAX_SERVER_WAIT_S, slept
    # ... and the pane is told, in the failure it shows as its STALE reason.
    for failure in (held, limited):
        assert isinstance(failure, SourceFailure) and failure.reason == "rate limited"
        said = re.search(r"waiting (\d+)s \(server asked (\d+)s\)", failure.error)
        assert said is not None, failure.error
        assert int(said.group(1)) <= MAX_SERVER_WAIT_S
        assert 9 * MAX_SERVER_WAIT_S < int(said.group(2)) <= period
    assert isinstance(limited, SourceFailure)
    assert limited.retry_in is not None and limited.retry_in <= MAX_SERVER_WAIT_S
