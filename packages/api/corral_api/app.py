"""The Litestar app: controllers (controllers.py), the error map (errors.py) and the
container's services as dependencies (dependencies.py), put together.

`create_app(container)` is the only way to build it; tests pass a container whose adapters
were overridden with in-memory ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from corral_api.compat import judge0, piston
from corral_api.container import ApiContainer, close
from corral_api.controllers import JobsController, ServiceController
from corral_api.dependencies import dependencies
from corral_api.errors import exception_handlers
from corral_api.settings import ApiSettings


def create_app(container: ApiContainer) -> Litestar:
    settings: ApiSettings = container.settings()

    @asynccontextmanager
    async def connections(_: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await close(container)

    return Litestar(
        route_handlers=[
            JobsController,
            ServiceController,
            judge0.router(settings, queue_size=container.redis_settings().max_unfinished),
            piston.router(settings),
        ],
        dependencies=dependencies(container),
        exception_handlers=exception_handlers(settings.retry_after_s),
        lifespan=[connections],
        request_max_body_size=settings.max_body_bytes(),
        openapi_config=OpenAPIConfig(
            title="Corral",
            version="0.1.0",
            description="Runs untrusted code in NsJail sandboxes, one job at a time per sandbox.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
    )
