"""The fleet on screen: contexts side by side, the ``/`` filter, the order key, and the
confirmation naming account and region (Pilot, scripted sources)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import parse_config
from sources.model import Discovered, FleetChange
from tests.fakes import T0, FakeSource, FrozenClock, deployment, failure, sample, wait_until
from tui.app import DeployWatchApp
from tui.screens.dashboard import DashboardScreen
from widgets.deployments import DeploymentsPane
from widgets.filterbar import FilterInput

if TYPE_CHECKING:
    from engine.config import Settings
    from sources.model import Item


def fleet_settings(names: list[tuple[str, str]]) -> Settings:
    """Services ``(context, name)`` in cluster ``shop`` of two contexts."""
    return parse_config(
        {
            "environment": {"name": "fleet"},
            "aws": [
                {
                    "name": "prod-eu",
                    "region": "eu-west-1",
                    "profile": "prod-eu",
                    "production": True,
                },
                {
                    "name": "staging-us",
                    "region": "us-east-1",
                    "role_arn": "arn:aws:iam::222222222222:role/deploywatch",
                },
            ],
            "service": [{"cluster": "shop", "service": s, "context": c} for c, s in names],
        },
        Path("fleet.toml"),
    )


def settled(key: str) -> Item:
    return sample(key, [deployment(f"{key.rsplit('/', 1)[-1]}:1")])


def rolling(key: str) -> Item:
    name = key.rsplit("/", 1)[-1]
    return sample(
        key,
        [
            deployment(f"{name}:2", running=1, pending=1, rollout="IN_PROGRESS"),
            deployment(f"{name}:1", status="ACTIVE", running=3),
        ],
    )


NAMES = [
    ("prod-eu", "web"),
    ("prod-eu", "api"),
    ("prod-eu", "cart"),
    ("staging-us", "web"),
    ("staging-us", "billing"),
]


def shown(app: DeployWatchApp) -> list[str]:
    return app.screen.query_one(DeploymentsPane).keys


def screen_text(app: DeployWatchApp) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def title(app: DeployWatchApp) -> str:
    return str(app.screen.query_one("#deployments-pane").border_title)


async def start(pilot: Any, app: DeployWatchApp) -> DashboardScreen:
    await wait_until(pilot, lambda: app.store.services["staging-us:shop/web"].sample is not None)
    screen = app.screen
    assert isinstance(screen, DashboardScreen)
    return screen


async def test_two_contexts_side_by_side_one_stale_with_the_fix() -> None:
    items: list[Item] = [settled(f"{c}:shop/{s}") for c, s in NAMES]
    items += [
        failure(
            f"prod-eu:shop/{s}",
            "fix: aws sso login --profile prod-eu · ExpiredTokenException: token expired",
            reason="auth",
        )
        for c, s in NAMES
        if c == "prod-eu"
    ]
    app = DeployWatchApp(fleet_settings(NAMES), [FakeSource(items)], clock=FrozenClock())
    async with app.run_test(size=(160, 40)) as pilot:
        await start(pilot, app)
        await wait_until(pilot, lambda: "3 STALE" in screen_text(app))
        top = screen_text(app).splitlines()[0]
        assert "prod-eu 3 svc · 3 STALE" in top
        assert "staging-us 2 svc" in top and "staging-us 2 svc · " not in top
        bar = app.screen.query_one("#context-0")
        assert bar.has_class("-production") and bar.has_class("-stale")
        assert not app.screen.query_one("#context-1").has_class("-stale")
        pane = app.screen.query_one(DeploymentsPane)
        card = pane.card_text("prod-eu:shop/web").plain
        assert card.startswith("prod-eu web")
        assert "aws sso login --profile prod-eu" in card
        assert "STALE" not in pane.card_text("staging-us:shop/web").plain


async def test_filter_as_you_type_then_escape_clears_it() -> None:
    items = [settled(f"{c}:shop/{s}") for c, s in NAMES]
    app = DeployWatchApp(fleet_settings(NAMES), [FakeSource(items)], clock=FrozenClock())
    async with app.run_test(size=(160, 40)) as pilot:
        await start(pilot, app)
        await pilot.press("slash")
        assert isinstance(app.focused, FilterInput)
        await pilot.press("w", "e", "b")
        assert shown(app) == ["prod-eu:shop/web", "staging-us:shop/web"]
        assert "/web  2/5" in title(app)
        await pilot.press("space", "s", "t", "a", "g")  # every word must match
        assert shown(app) == ["staging-us:shop/web"]
        await pilot.press("R")  # typed into the filter, never a rollback
        assert isinstance(app.screen, DashboardScreen)
        assert app.focused is not None and isinstance(app.focused, FilterInput)
        await pilot.press("escape")
        assert len(shown(app)) == 5
        assert title(app) == "Deployments · ECS"
        assert not app.screen.query_one(FilterInput).has_class("-on")


async def test_filter_by_state_follows_updates_and_enter_keeps_it() -> None:
    items = [settled(f"{c}:shop/{s}") for c, s in NAMES]
    source = FakeSource(items)
    app = DeployWatchApp(fleet_settings(NAMES), [source], clock=FrozenClock())
    async with app.run_test(size=(160, 40)) as pilot:
        await start(pilot, app)
        await pilot.press("slash", *"in_progress", "enter")
        assert shown(app) == []
        assert isinstance(app.focused, DeploymentsPane)
        source.push(rolling("staging-us:shop/billing"))
        await wait_until(pilot, lambda: shown(app) == ["staging-us:shop/billing"])
        assert app.screen.query_one(DeploymentsPane).selected == "staging-us:shop/billing"


async def test_sort_switches_and_the_chosen_service_stays_selected() -> None:
    items = [settled(f"{c}:shop/{s}") for c, s in NAMES]
    source = FakeSource(items)
    app = DeployWatchApp(fleet_settings(NAMES), [source], clock=FrozenClock())
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await start(pilot, app)
        assert shown(app) == [f"{c}:shop/{s}" for c, s in NAMES]  # config order
        await pilot.press("j", "j")
        assert screen.selected == "prod-eu:shop/cart"
        await pilot.press("o")
        assert [k.rsplit("/", 1)[-1] for k in shown(app)] == [
            "api",
            "billing",
            "cart",
            "web",
            "web",
        ]
        assert title(app).endswith("· by name")
        assert screen.selected == "prod-eu:shop/cart"
        source.push(rolling("staging-us:shop/web"))  # updates never move the selection
        await wait_until(pilot, lambda: "IN_PROGRESS" in screen_text(app))
        assert screen.selected == "prod-eu:shop/cart"
        await pilot.press("o")
        assert shown(app)[0] == "staging-us:shop/web"  # urgency: in flight first
        assert title(app) == "Deployments · ECS"
        assert screen.selected == "prod-eu:shop/cart"


async def test_confirmation_names_context_account_and_region() -> None:
    items = [rolling("staging-us:shop/web")]
    app = DeployWatchApp(
        fleet_settings([("staging-us", "web")]), [FakeSource(items)], clock=FrozenClock()
    )
    async with app.run_test(size=(160, 40)) as pilot:
        await start(pilot, app)
        await pilot.press("R")
        await wait_until(pilot, lambda: bool(app.screen.query("#confirm-target")))
        target = str(app.screen.query_one("#confirm-target").render())
        assert "staging-us · account 222222222222 · us-east-1" in target
        assert "cluster      shop" in target


async def test_filter_is_usable_at_80x24() -> None:
    names = [("prod-eu", f"svc-{n:02}") for n in range(30)] + [("staging-us", "web")]
    items = [settled(f"{c}:shop/{s}") for c, s in names]
    app = DeployWatchApp(fleet_settings(names), [FakeSource(items)], clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot, app)
        await pilot.press("slash", "2", "7")
        assert shown(app) == ["prod-eu:shop/svc-27"]
        text = screen_text(app)
        assert "svc-27" in text and "svc-26" not in text
        filter_line = app.screen.query_one(FilterInput).region
        assert filter_line.height == 1 and filter_line.width > 20
        assert app.screen.query_one(DeploymentsPane).region.height >= 6


def discovery_settings(**entry: Any) -> Settings:
    return parse_config(
        {
            "aws": [
                {"name": "prod-eu", "region": "eu-west-1", "profile": "prod-eu"},
                {"name": "staging-us", "region": "us-east-1"},
            ],
            "service": [
                {"context": "prod-eu", "cluster": "*", "service": "web-*", **entry},
                {"context": "staging-us", "cluster": "shop", "service": "api"},
            ],
        },
        Path("fleet.toml"),
    )


def change(added: list[str] = [], removed: list[str] = [], only: float | None = None) -> Item:  # noqa: B006
    return FleetChange(
        source="ecs",
        context="prod-eu",
        added=tuple(
            Discovered(f"prod-eu:shop/{n}", "shop", n, "prod-eu:*/web-*", only) for n in added
        ),
        removed=tuple(f"prod-eu:shop/{n}" for n in removed),
        listed=("prod-eu:*/web-*",),
        at=T0,
    )


async def test_discovered_services_appear_and_leave_without_a_restart() -> None:
    source = FakeSource([settled("staging-us:shop/api")])
    app = DeployWatchApp(discovery_settings(), [source], clock=FrozenClock())
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_until(pilot, lambda: shown(app) == ["staging-us:shop/api"])  # no entry card
        source.push(change(["web-a", "web-b"]))
        source.push(settled("prod-eu:shop/web-a"))
        await wait_until(pilot, lambda: len(shown(app)) == 3)
        assert "prod-eu:shop/web-b" in shown(app)
        await wait_until(pilot, lambda: "prod-eu 2 svc" in screen_text(app))
        top = "\n".join(screen_text(app).splitlines()[:3])
        assert "3 services" in top and "discovery" not in top  # the entry is no service
        assert "web-*" not in top
        pane = app.screen.query_one(DeploymentsPane)
        assert pane.card_text("prod-eu:shop/web-a").plain.startswith("prod-eu web-a")
        await pilot.press("j", "j")
        chosen = pane.selected
        source.push(change(removed=["web-b"] if chosen != "prod-eu:shop/web-b" else ["web-a"]))
        await wait_until(pilot, lambda: len(shown(app)) == 2)
        assert pane.selected == chosen
        source.push(
            failure(
                "prod-eu:*/web-*", "fix: aws sso login --profile prod-eu · expired", reason="auth"
            )
        )
        await wait_until(pilot, lambda: "prod-eu:*/web-*" in shown(app))  # the entry says why
        assert "aws sso login --profile prod-eu" in pane.card_text("prod-eu:*/web-*").plain
        assert "STALE" in str(app.screen.query_one("#context-0").render())


async def test_only_active_shows_services_in_flight_or_changed_recently() -> None:
    source = FakeSource([settled("staging-us:shop/api")])
    app = DeployWatchApp(discovery_settings(only_active="15m"), [source], clock=FrozenClock())
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_until(pilot, lambda: shown(app) == ["staging-us:shop/api"])
        source.push(change(["web-old", "web-new", "web-moving"], only=900.0))
        old = sample(
            "prod-eu:shop/web-old", [deployment("web-old:1", updated=T0 - timedelta(hours=2))]
        )
        source.push(old)
        source.push(settled("prod-eu:shop/web-new"))  # changed a minute ago
        source.push(rolling("prod-eu:shop/web-moving"))
        await wait_until(pilot, lambda: len(shown(app)) == 3)
        assert "prod-eu:shop/web-old" not in shown(app)
