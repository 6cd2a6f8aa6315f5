"""The Litestar app: controllers (controllers.py), the error map (errors.py) and the
container's services as dependencies (dependencies.py), put together.

`create_app(container)` is the only way to build it; tests pass a container whose adapters
were overridden with in-memory ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.types import ASGIApp, Scope

from corral_api.auth import auth_middleware
from corral_api.compat import judge0, piston
from corral_api.container import ApiContainer, close
from corral_api.controllers import JobsController, ServiceController
from corral_api.dependencies import dependencies
from corral_api.errors import exception_handlers
from corral_api.settings import ApiSettings
from corral_api.telemetry import request_id_middleware
from corral_core.ports import StorageUnavailable


def create_app(container: ApiContainer) -> Litestar:
    settings: ApiSettings = container.settings()

    @asynccontextmanager
    async def connections(_: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await close(container)

    metrics = container.metrics()
    middleware: list[Callable[[ASGIApp], ASGIApp]] = [request_id_middleware]
    if settings.auth:
        middleware.append(auth_middleware(container.key_store, settings.key_quotas(), settings.retry_after_s))

    async def count_redis_errors(error: Exception, scope: Scope) -> None:
        if isinstance(error, StorageUnavailable):
            metrics.redis_errors.labels(scope.get("path", "")).inc()

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
        middleware=middleware,
        after_exception=[count_redis_errors],
        # The deployable sets up logging (JSON lines, corral_system.logs); Litestar's own
        # default would replace the root handler with its text format.
        logging_config=None,
        request_max_body_size=settings.max_body_bytes(),
        openapi_config=OpenAPIConfig(
            title="Corral",
            version="0.1.0",
            description="Runs untrusted code in NsJail sandboxes, one job at a time per sandbox.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
    )
