"""Regenerate screenshots/ from the running app against the local sandbox.

    .venv/bin/python scripts/screenshots.py            # or: make screenshots

Runs the demo scenario through the real ECS source (boto3 → sandbox), waits for the
states worth showing, and saves SVGs at 200x50. Look at them after regenerating.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.process import SandboxProcess  # noqa: E402
from tui.app import DeployWatchApp  # noqa: E402
from tui.config import load_config  # noqa: E402
from tui.engine.store import EcsStatus  # noqa: E402

OUT = ROOT / "screenshots"
SIZE = (200, 50)
SPEED = 2.0


async def capture(config: Path) -> None:
    settings = load_config(config)
    app = DeployWatchApp(settings)
    async with app.run_test(size=SIZE) as pilot:

        async def until(check: str, done: Callable[[], bool], timeout: float = 90) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if done():
                    return
                await pilot.pause(0.25)
            raise SystemExit(f"timed out waiting for: {check}")

        def status(key: str) -> EcsStatus:
            return app.store.services[key].status

        def web_halfway() -> bool:
            sample = app.store.services["demo/web"].sample
            primary = sample.deployments[0] if sample and sample.deployments else None
            return (
                status("demo/web") is EcsStatus.IN_PROGRESS
                and primary is not None
                and (primary.running or 0) >= 2
            )

        await until("web halfway through its rollout", web_halfway)
        app.save_screenshot("dashboard-mid-deploy.svg", path=str(OUT))
        await until(
            "web completed, api rolled back",
            lambda: (
                status("demo/web") is EcsStatus.COMPLETED
                and status("demo/api") is EcsStatus.ROLLBACK_SUCCESSFUL
            ),
        )
        await pilot.pause(0.5)
        app.save_screenshot("dashboard.svg", path=str(OUT))
        await pilot.press("question_mark")
        await pilot.pause(0.3)
        app.save_screenshot("help.svg", path=str(OUT))


def main() -> int:
    OUT.mkdir(exist_ok=True)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(AWS_ACCESS_KEY_ID="sandbox", AWS_SECRET_ACCESS_KEY="sandbox")
    with SandboxProcess("demo", speed=SPEED) as sandbox:
        asyncio.run(capture(sandbox.config_path))
    for svg in sorted(OUT.glob("*.svg")):
        print(f"wrote {svg.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
