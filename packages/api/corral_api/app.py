"""The API deployable's app: corral_http's Litestar app over what the container made, with
the container's resources held while it serves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from corral_api.container import ApiContainer
from corral_http.app import http_app


def create_app(container: ApiContainer) -> Litestar:
    @asynccontextmanager
    async def resources(_: Litestar) -> AsyncIterator[None]:
        await container.init_resources()  # type: ignore[misc]
        try:
            yield
        finally:
            await container.shutdown_resources()  # type: ignore[misc]

    return http_app(
        container.job_routes(), container.service_routes(), container.key_store(), container.http_options(), [resources]
    )
