"""The Litestar app over the routes' services: controllers (one per resource), the error map,
the door (auth), what every request must be (middleware, requests), and the OpenAPI document.

A deployable calls `http_app` with what its container made; the app never sees the container.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

import msgspec
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    PathItem,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.types import Middleware, Scope

from corral_core.access import KeyStore
from corral_core.ports import StorageUnavailable
from corral_http import schemas, testcase_schemas
from corral_http.auth import OPEN_PATHS, KeyCache, KeyDoor, no_keys
from corral_http.compat import judge0, piston
from corral_http.compat.openapi import document_compat
from corral_http.controllers import JobsController
from corral_http.dependencies import dependencies
from corral_http.errors import exception_handlers
from corral_http.middleware import AllowedHosts, SlowBodyCutOff
from corral_http.options import HttpOptions
from corral_http.requests import JsonOnlyRequest
from corral_http.service import ServiceController
from corral_http.services import JobRoutes, ServiceRoutes
from corral_http.telemetry import request_id_middleware

Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]


def http_app(
    jobs: JobRoutes, service: ServiceRoutes, keys: KeyStore, options: HttpOptions, lifespan: Sequence[Lifespan] = ()
) -> Litestar:
    async def count_redis_errors(error: Exception, scope: Scope) -> None:
        if isinstance(error, StorageUnavailable):
            service.metrics.redis_errors.labels(scope.get("path", "")).inc()

    origins = list(options.cors_origins)
    app = Litestar(
        route_handlers=[
            JobsController,
            ServiceController,
            judge0.router(options.retry_after_s),
            piston.router(options.retry_after_s),
        ],
        dependencies=dependencies(jobs, service),
        exception_handlers=exception_handlers(options.retry_after_s),
        lifespan=list(lifespan),
        request_class=JsonOnlyRequest,
        after_exception=[count_redis_errors],
        # The deployable sets up logging (JSON lines, corral_system.logs); Litestar's own
        # default would replace the root handler with its text format.
        logging_config=None,
        request_max_body_size=options.max_body_bytes,
        middleware=_middleware(keys, options),
        cors_config=CORSConfig(allow_origins=origins, allow_methods=["GET", "POST", "DELETE"]) if origins else None,
        openapi_config=OpenAPIConfig(
            title="Corral",
            version="0.1.0",
            description="Runs untrusted code in NsJail sandboxes, one job at a time per sandbox.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
    )
    _document_limits(app.openapi_schema, options)
    _document_callback(app.openapi_schema)
    document_compat(app.openapi_schema, keys=options.auth)
    _document_closed_objects(app.openapi_schema)
    if options.auth:
        _document_auth(app.openapi_schema)
    return app


def _middleware(keys: KeyStore, options: HttpOptions) -> list[Middleware]:
    # Outermost first: even a refused Host's 400 carries its request id, and a request is
    # counted against its key's rate only once its host is known to be ours.
    middleware: list[Middleware] = [
        request_id_middleware,
        DefineMiddleware(AllowedHosts, hosts=options.hosts),
        DefineMiddleware(SlowBodyCutOff, min_bytes_per_s=options.min_body_bytes_per_s, grace_s=options.body_grace_s),
    ]
    if options.key_quotas is None:
        middleware.append(no_keys)
    else:
        door = DefineMiddleware(
            KeyDoor, keys=keys, defaults=options.key_quotas, retry_after_s=options.retry_after_s, cache=KeyCache(keys)
        )
        middleware.append(door)
    return middleware


def _document_callback(document: OpenAPI) -> None:
    """Say what a job's callback_url receives: the finished job's view, POSTed and signed."""
    execute = (document.paths or {}).get("/execute")
    if execute is None or execute.post is None:
        return
    signed = (
        "The finished job (as GET /jobs/{id} answers), signed as Standard Webhooks says: "
        "webhook-id (the same on every retry), webhook-timestamp and webhook-signature "
        "(v1,<base64 HMAC-SHA256 of id.timestamp.body> with the key's whsec_ secret). Retried with "
        "backoff until a 2xx; a redirect is not followed."
    )
    body = RequestBody(
        description=signed,
        required=True,
        content={"application/json": OpenAPIMediaType(schema=Reference(ref="#/components/schemas/JobView"))},
    )
    delivery = Operation(
        summary="The job finished (sent to its callback_url)",
        request_body=body,
        responses={"2XX": OpenAPIResponse(description="Received: no more attempts")},
    )
    execute.post.callbacks = {"jobFinished": {"{$request.body#/callback_url}": PathItem(post=delivery)}}


def _document_closed_objects(document: OpenAPI) -> None:
    """Say which request objects refuse fields they do not name (forbid_unknown_fields): Litestar
    leaves additionalProperties out, which promises a client that extra fields are ignored."""
    closed = {
        name
        for module in (schemas, testcase_schemas)
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, msgspec.Struct) and value.__struct_config__.forbid_unknown_fields
    }
    for name, schema in ((document.components.schemas if document.components else None) or {}).items():
        if name in closed and isinstance(schema, Schema) and schema.type == OpenAPIType.OBJECT:
            schema.additional_properties = False


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


def _document_limits(document: OpenAPI, options: HttpOptions) -> None:
    """Write the maxima the deployable chose into the document: the handlers and request
    Structs are declared before they are known, and a client should read them from the schema."""
    for path in (document.paths or {}).values():
        for operation in (path.get, path.post):
            for parameter in (operation.parameters if operation else None) or []:
                if not (isinstance(parameter, Parameter) and parameter.name == "wait"):
                    continue
                # Judge0's `wait` is a flag ("true"), not seconds: only a number has this maximum.
                schema = parameter.schema
                if isinstance(schema, Schema) and schema.type in (OpenAPIType.NUMBER, OpenAPIType.INTEGER):
                    schema.maximum = options.max_wait_s
    schemas = document.components.schemas if document.components else {}
    maxima = options.limits.maxima
    for name, field in (schemas["LimitsIn"].properties or {}).items():
        if not isinstance(field, Schema):
            continue
        field.maximum = getattr(maxima, name)  # Litestar states the bounds beside `oneOf` too
        for choice in field.one_of or []:
            if isinstance(choice, Schema) and choice.type == OpenAPIType.INTEGER:
                choice.minimum, choice.maximum = 1, getattr(maxima, name)
    execute = schemas["ExecuteIn"].properties or {}
    sizes = options.sizes
    for name, most in (("args", sizes.max_args), ("files", sizes.max_files), ("tests", sizes.max_tests)):
        if isinstance(listed := execute[name], Schema):
            listed.max_items = most
    # A list of patterns or `true`: the bound is the list's.
    outputs = execute["outputs"]
    for choice in (outputs.one_of or []) if isinstance(outputs, Schema) else []:
        if isinstance(choice, Schema) and choice.type == OpenAPIType.ARRAY:
            choice.max_items = sizes.max_output_patterns
