"""The Litestar app: controllers (controllers.py), the error map (errors.py), the container's
services as dependencies (dependencies.py), and what every request must be (middleware.py,
requests.py), put together.

`create_app(container)` is the only way to build it; tests pass a container whose adapters
were overridden with in-memory ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, OpenAPI, OpenAPIType, Parameter, Schema, SecurityScheme
from litestar.types import Middleware, Scope

from corral_api.auth import OPEN_PATHS, KeyCache, auth_middleware
from corral_api.compat import judge0, piston
from corral_api.container import ApiContainer, close
from corral_api.controllers import JobsController, ServiceController
from corral_api.dependencies import dependencies
from corral_api.errors import exception_handlers
from corral_api.middleware import AllowedHosts, SlowBodyCutOff
from corral_api.requests import JsonOnlyRequest
from corral_api.settings import ApiSettings
from corral_api.telemetry import request_id_middleware
from corral_core.ports import StorageUnavailable


def create_app(container: ApiContainer) -> Litestar:
    settings: ApiSettings = container.settings()

    @asynccontextmanager
    async def connections(_: Litestar) -> AsyncIterator[None]:
        catalog = asyncio.get_running_loop().create_task(container.runtimes().keep_fresh(), name="corral runtime catalog")
        try:
            yield
        finally:
            catalog.cancel()
            with suppress(asyncio.CancelledError):
                await catalog
            await close(container)

    metrics = container.metrics()
    # Outermost first: even a refused Host's 400 carries its request id, and a request is
    # counted against its key's rate only once its host is known to be ours.
    middleware: list[Middleware] = [
        request_id_middleware,
        DefineMiddleware(AllowedHosts, hosts=settings.hosts()),
        DefineMiddleware(SlowBodyCutOff, min_bytes_per_s=settings.min_body_bytes_per_s, grace_s=settings.body_grace_s),
    ]
    if settings.auth:
        cache = KeyCache(container.key_store)
        middleware.append(auth_middleware(container.key_store, settings.key_quotas(), settings.retry_after_s, cache))

    async def count_redis_errors(error: Exception, scope: Scope) -> None:
        if isinstance(error, StorageUnavailable):
            metrics.redis_errors.labels(scope.get("path", "")).inc()

    origins = settings.cors_origins()
    app = Litestar(
        route_handlers=[
            JobsController,
            ServiceController,
            judge0.router(settings, queue_size=container.redis_settings().max_unfinished),
            piston.router(settings),
        ],
        dependencies=dependencies(container),
        exception_handlers=exception_handlers(settings.retry_after_s),
        lifespan=[connections],
        request_class=JsonOnlyRequest,
        after_exception=[count_redis_errors],
        # The deployable sets up logging (JSON lines, corral_system.logs); Litestar's own
        # default would replace the root handler with its text format.
        logging_config=None,
        request_max_body_size=settings.max_body_bytes(),
        middleware=middleware,
        cors_config=CORSConfig(allow_origins=origins, allow_methods=["GET", "POST", "DELETE"]) if origins else None,
        openapi_config=OpenAPIConfig(
            title="Corral",
            version="0.1.0",
            description="Runs untrusted code in NsJail sandboxes, one job at a time per sandbox.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
    )
    _document_settings(app.openapi_schema, settings)
    if settings.auth:
        _document_auth(app.openapi_schema)
    return app


def _document_auth(document: OpenAPI) -> None:
    """Say which operations need a key, and how to send it: only when keys are on, since a
    schema that asks for a key the server ignores would be a lie clients (and fuzzers) act on."""
    components = document.components or Components()
    components.security_schemes = {**(components.security_schemes or {}), "apiKey": SecurityScheme(type="http", scheme="bearer")}
    document.components = components
    for name, path in (document.paths or {}).items():
        if name.startswith(OPEN_PATHS):
            continue
        for operation in (path.get, path.post, path.put, path.patch, path.delete):
            if operation is not None:
                operation.security = [{"apiKey": []}]


def _document_settings(document: OpenAPI, settings: ApiSettings) -> None:
    """Write the maxima that are settings into the document: the handlers and request Structs
    are declared before settings exist, and a client should read the limits from the schema."""
    for path in (document.paths or {}).values():
        for operation in (path.get, path.post):
            for parameter in (operation.parameters if operation else None) or []:
                if not (isinstance(parameter, Parameter) and parameter.name == "wait"):
                    continue
                # Judge0's `wait` is a flag ("true"), not seconds: only a number has this maximum.
                schema = parameter.schema
                if isinstance(schema, Schema) and schema.type in (OpenAPIType.NUMBER, OpenAPIType.INTEGER):
                    schema.maximum = settings.max_wait_s
    schemas = document.components.schemas if document.components else {}
    maxima = settings.limit_policy().maxima
    for name, field in (schemas["LimitsIn"].properties or {}).items():
        if not isinstance(field, Schema):
            continue
        field.maximum = getattr(maxima, name)  # Litestar states the bounds beside `oneOf` too
        for choice in field.one_of or []:
            if isinstance(choice, Schema) and choice.type == OpenAPIType.INTEGER:
                choice.minimum, choice.maximum = 1, getattr(maxima, name)
    execute = schemas["ExecuteIn"].properties or {}
    for name, most in (("args", settings.size_policy().max_args), ("files", settings.max_files)):
        if isinstance(listed := execute[name], Schema):
            listed.max_items = most
