"""Build sources from settings. The only place that knows both."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sources.ecs import EcsSource, EcsTarget

if TYPE_CHECKING:
    from sources.model import Source
    from tui.config import Settings


def build_sources(settings: Settings) -> list[Source]:
    """One source per kind of upstream configured."""
    ecs = settings.ecs
    return [
        EcsSource(
            [EcsTarget(ref.key, ref.cluster, ref.service) for ref in settings.services],
            region=settings.aws.region,
            profile=settings.aws.profile,
            endpoint_url=settings.aws.endpoint_url,
            poll_interval=ecs.poll_interval,
            connect_timeout=ecs.connect_timeout,
            read_timeout=ecs.read_timeout,
            max_concurrency=ecs.max_concurrency,
        )
    ]
