"""Regenerate screenshots/ from the running app against the local sandbox.

    .venv/bin/python scripts/screenshots.py            # or: make screenshots

Runs two sandbox scenarios through the real sources (ECS via boto3, Datadog, Sentry and
the HTTP probes, all on 127.0.0.1), waits for the states worth showing, and saves SVGs
at 200x50:

- ``dashboard-mid-deploy.svg``: clean-rollout, web halfway from v1 to v2;
- ``dashboard-healthy.svg``: clean-rollout done, every pane with data, banner HEALTHY;
- ``help.svg``: the help screen over the healthy dashboard;
- ``dashboard-failing.svg``: bad-release, banner FAILING on the error-rate rule, with
  the new Sentry issue in its pane;
- ``dashboard-80x24-countdown.svg``: the same at 80x24 (the compact form) once the
  rollback rule's countdown runs;
- ``dashboard-baking.svg`` / ``dashboard-signed-off.svg``: demo, web's bake window
  counting down after its rollout, then web signed off;
- ``dashboard-rolled-back.svg``: demo, api rolled back by ECS's circuit breaker, the
  banner settled (ROLLED BACK, or DEGRADED when a warning still stands);
- ``deployment-report.md`` / ``.json``: ``deploywatch gate --act --report`` on
  bad-release: the report of a rehearsed automatic rollback;
- ``history.svg``: demo, the deployment history (``h``) once api was rolled back;
- ``smoke-failing.svg``: bad-release, the sandbox's smoke suite run with ``t``, checkout
  failing.

``scripts/screenshots.py history smoke`` regenerates only those two (and deletes
nothing).

Any other ``*.svg`` in screenshots/ is stale and deleted. Look at them after
regenerating (``rsvg-convert -w 1800 screenshots/x.svg -o /tmp/x.png``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.bake import BakeState  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.store import EcsStatus  # noqa: E402
from engine.verdict import Verdict  # noqa: E402
from sandbox.process import SandboxProcess  # noqa: E402
from tui.app import DeployWatchApp  # noqa: E402

OUT = ROOT / "screenshots"
SIZE = (200, 50)
SPEED = 1.0
"""Sandbox seconds per real second: at 1, the signals arrive before web's rollout ends."""
TIMEOUT = 120.0
"""Real seconds to wait for one state before giving up."""

HISTORY = 0.6
"""Share of the metrics' window with data before the healthy picture is taken."""

Check = Callable[[DeployWatchApp], bool]
Until = Callable[[str, Check], Awaitable[None]]
"""Wait (bounded) until a check holds, then let the screen repaint."""
Scene = Callable[[DeployWatchApp, Until, Any], Awaitable[None]]


def signals_in(app: DeployWatchApp) -> bool:
    """Every configured metric, Sentry and every probe has answered at least once."""
    store, settings = app.store, app.settings
    metrics = all(
        any(p.value is not None for s in store.metrics.get(m.name, {}).values() for p in s.points)
        for m in settings.metrics
    )
    sentry = settings.sentry is None or store.sentry is not None
    probes = all(p.name in store.probes for p in settings.probes)
    return metrics and sentry and probes


def history(app: DeployWatchApp) -> float:
    """How much of the metrics' window has data (the worst metric's best group), 0..1.

    Datadog answers the whole window with gaps before the sandbox began: a picture
    taken too early shows sparklines that are mostly gap dots.
    """
    shares = []
    for m in app.settings.metrics:
        groups = app.store.metrics.get(m.name, {}).values()
        shares.append(
            max(
                (
                    sum(p.value is not None for p in s.points) / len(s.points)
                    for s in groups
                    if s.points
                ),
                default=0.0,
            )
        )
    return min(shares, default=1.0)


def verdict(app: DeployWatchApp) -> Verdict | None:
    report = app.controller.report
    return report.verdict if report is not None else None


def statuses(app: DeployWatchApp) -> set[EcsStatus]:
    return {state.status for state in app.store.services.values()}


def halfway(app: DeployWatchApp) -> bool:
    """Some service is mid-rollout with at least half its new tasks running."""
    for state in app.store.services.values():
        sample = state.sample
        if state.status is not EcsStatus.IN_PROGRESS or sample is None:
            continue
        primary = next((d for d in sample.deployments if d.status == "PRIMARY"), None)
        if primary is not None and (primary.running or 0) * 2 >= (primary.desired or 1):
            return True
    return False


def healthy_after_rollout(app: DeployWatchApp) -> bool:
    return (
        signals_in(app)
        and statuses(app) <= {EcsStatus.COMPLETED, EcsStatus.STEADY}
        and verdict(app) is Verdict.HEALTHY
        and history(app) >= HISTORY
    )


def failing_on_error_rate(app: DeployWatchApp) -> bool:
    report = app.controller.report
    return (
        report is not None
        and report.verdict is Verdict.FAILING
        and any(e.subject.endswith("error_rate") for e in report.driving)
        and app.store.sentry is not None
        and bool(app.store.sentry.new_issues)
        and signals_in(app)
    )


async def clean_rollout(app: DeployWatchApp, until: Until, pilot: Any) -> None:
    await until("web halfway through its rollout", halfway)
    save(app, "dashboard-mid-deploy.svg")
    await until(
        f"the rollout done, the banner HEALTHY, {HISTORY:.0%} of the metrics' window in",
        healthy_after_rollout,
    )
    save(app, "dashboard-healthy.svg")
    app.action_help()  # what `?` does
    await until("the help screen", lambda a: a.screen is not a.dashboard)
    save(app, "help.svg")


async def bad_release(app: DeployWatchApp, until: Until, pilot: Any) -> None:
    await until("the banner FAILING on the error-rate rule", failing_on_error_rate)
    save(app, "dashboard-failing.svg")
    await until("the rollback rule's countdown", lambda a: bool(a.controller.snapshot.countdowns))
    await pilot.resize_terminal(80, 24)
    await pilot.pause(0.5)
    save(app, "dashboard-80x24-countdown.svg")


def rolled_back_and_settled(app: DeployWatchApp) -> bool:
    report = app.controller.report
    return EcsStatus.ROLLBACK_SUCCESSFUL in statuses(app) and any(
        "rolled back to" in line for line in report.reasons
    )


def bake_state(app: DeployWatchApp, state: BakeState) -> bool:
    return any(b.key.endswith("/web") and b.state is state for b in app.controller.snapshot.bakes)


async def demo_rollback(app: DeployWatchApp, until: Until, pilot: Any) -> None:
    await until("web's rollout done and baking", lambda a: bake_state(a, BakeState.BAKING))
    save(app, "dashboard-baking.svg")
    await until(
        "api rolled back by the circuit breaker, the banner settled", rolled_back_and_settled
    )
    save(app, "dashboard-rolled-back.svg")
    await until("web signed off after its bake", lambda a: bake_state(a, BakeState.SIGNED_OFF))
    save(app, "dashboard-signed-off.svg")


async def history_scene(app: DeployWatchApp, until: Until, pilot: Any) -> None:
    from tui.screens.history import HistoryScreen

    await until(
        "api rolled back by the circuit breaker, the banner settled", rolled_back_and_settled
    )
    app.dashboard.action_history()  # what `h` does
    await until(
        "the history fetched",
        lambda a: isinstance(a.screen, HistoryScreen) and a.screen.memory.sample is not None,
    )
    save(app, "history.svg")


async def smoke_scene(app: DeployWatchApp, until: Until, pilot: Any) -> None:
    await until("the banner FAILING on the error-rate rule", failing_on_error_rate)
    app.dashboard.action_smoke()  # what `t` does
    await until(
        "the smoke suite finished",
        lambda a: any(r.finished is not None for r in a.controller.snapshot.smoke),
    )
    await pilot.pause(1.0)  # the smoke screen repaints twice a second
    save(app, "smoke-failing.svg")


def gate_report() -> None:
    """``deploywatch gate --act --report`` against bad-release: a real report."""
    import subprocess

    print("scenario bad-release (gate)…", flush=True)
    with SandboxProcess("bad-release", speed=4.0) as sandbox:
        env = {**os.environ, **sandbox.client_env}
        target = OUT / "deployment-report"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tui",
                "gate",
                "--config",
                str(sandbox.config_path),
                "--act",
                "--timeout",
                "4m",
                "--report",
                str(target),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        print(done.stdout[-1500:], flush=True)
        if done.returncode != 3:
            raise SystemExit(f"the gate ended {done.returncode}, expected 3 (rolled back)")
        WRITTEN.extend(["deployment-report.md", "deployment-report.json"])


FLEET = "dashboard-fleet-two-contexts.svg"


def fleet_picture() -> None:
    """Two ``[[aws]]`` contexts of 100 services each, one with expired credentials: the
    fleet rehearsal is a test of its own (two accounts in the sandbox), which draws this
    picture when asked to."""
    import subprocess

    print("fleet rehearsal (two contexts)…", flush=True)
    test = (
        "tests/integration/test_fleet_sandbox.py::test_the_dashboard_shows_both_contexts_one_stale"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=ROOT,
        env={**os.environ, "DEPLOYWATCH_FLEET_SCREENSHOT": str(OUT / FLEET)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        print(done.stdout[-3000:], flush=True)
        raise SystemExit("the fleet rehearsal failed: its picture was not drawn")
    WRITTEN.append(FLEET)
    print(f"wrote screenshots/{FLEET}", flush=True)


WRITTEN: list[str] = []


def save(app: DeployWatchApp, name: str) -> None:
    app.save_screenshot(name, path=str(OUT))
    WRITTEN.append(name)
    print(f"wrote screenshots/{name}", flush=True)


async def capture(config: Path, scene: Scene) -> None:
    app = DeployWatchApp(load_config(config))
    async with app.run_test(size=SIZE) as pilot:

        async def until(what: str, done: Check) -> None:
            deadline = time.monotonic() + TIMEOUT
            while not done(app):
                if time.monotonic() > deadline:
                    raise SystemExit(f"timed out waiting for: {what}")
                await pilot.pause(0.25)
            await pilot.pause(0.5)  # let the screen repaint what the store now says

        await scene(app, until, pilot)


def run(scenario: str, scene: Scene) -> None:
    print(f"scenario {scenario}…", flush=True)
    with SandboxProcess(scenario, speed=SPEED) as sandbox:
        # The sandbox's own credentials (AWS, DD_*, SENTRY_AUTH_TOKEN): a real key in
        # this shell is never sent anywhere, not even to loopback.
        os.environ.update(sandbox.client_env)
        asyncio.run(capture(sandbox.config_path, scene))


SCENES: dict[str, tuple[str, Scene]] = {
    "history": ("demo", history_scene),
    "smoke": ("bad-release", smoke_scene),
}
"""The pictures ``scripts/screenshots.py NAME...`` can regenerate alone."""


def main() -> int:
    OUT.mkdir(exist_ok=True)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    only = sys.argv[1:]
    if only:
        unknown = [name for name in only if name not in (*SCENES, "fleet")]
        if unknown:
            choices = ", ".join((*SCENES, "fleet"))
            raise SystemExit(f"unknown picture {unknown[0]!r} (choose: {choices})")
        for name in only:
            if name == "fleet":
                fleet_picture()
            else:
                run(*SCENES[name])
        return 0
    for scenario, scene in SCENES.values():
        run(scenario, scene)
    run("clean-rollout", clean_rollout)
    run("bad-release", bad_release)
    run("demo", demo_rollback)
    gate_report()
    fleet_picture()
    for svg in sorted([*OUT.glob("*.svg"), *OUT.glob("*.md"), *OUT.glob("*.json")]):
        if svg.name not in WRITTEN:
            svg.unlink()
            print(f"deleted stale {svg.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
