"""A bus viewer's watch judges like any other but never acts by itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.verdict import Verdict
from tests.unit.test_controller import bad_release, watch

if TYPE_CHECKING:
    from pathlib import Path


async def test_a_watch_that_is_not_automatic_starts_no_countdown_and_sends_nothing(
    tmp_path: Path,
) -> None:
    controller, rec, clock = watch(tmp_path)
    controller.automatic = False
    bad_release(controller)
    snapshot = controller.step()
    assert snapshot.verdict is Verdict.FAILING
    assert snapshot.countdowns == ()
    clock.advance(60)
    snapshot = controller.step()
    await controller.settle()
    assert snapshot.countdowns == () and rec.calls == [] and snapshot.last_result is None
