"""The Litestar app: one controller for jobs, one for the service itself, one error map.

`create_app(container)` is the only way to build it; tests pass a container whose adapters
were overridden with in-memory ones.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from litestar import Controller, Litestar, Request, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import JSONBody, Parameter, SkipValidation
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_202_ACCEPTED,
    HTTP_404_NOT_FOUND,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from corral_api.container import ApiContainer, close
from corral_api.schemas import Accepted, ExecuteIn, FieldError, JobView, Problem, Readiness, RuntimeView
from corral_api.settings import ApiSettings
from corral_core.policy import InvalidSubmission, SubmissionTooLarge
from corral_core.ports import QueueFull, StorageUnavailable, WorkerRegistry
from corral_core.usecases import GetJob, JobNotFound, SubmitJob

log = logging.getLogger(__name__)

JOB_ID = Parameter(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
# Litestar checks a dependency's type at every request; a Protocol cannot be checked that way.
Registry = NamedDependency[SkipValidation[WorkerRegistry]]
Submit = NamedDependency[SubmitJob]
Get = NamedDependency[GetJob]
Settings = NamedDependency[ApiSettings]
Wait = Annotated[float, Parameter(ge=0, description="Seconds to wait for the job to finish.")]


class JobsController(Controller):
    tags = ["jobs"]

    @post(
        "/execute",
        status_code=HTTP_202_ACCEPTED,
        summary="Submit code to run",
        description="202 with the job id at once; with `wait`, the finished job (200) if it "
        "ends within that many seconds.",
    )
    async def execute(
        self,
        data: JSONBody[ExecuteIn],
        submit_job: Submit,
        get_job: Get,
        settings: Settings,
        wait: Wait = 0,
    ) -> Response[Accepted | JobView]:
        _check_wait(wait, settings)
        job = await submit_job(data.to_request())
        if wait > 0:
            job = await get_job(job.id, wait_s=wait)
            if job.finished:
                return Response(JobView.of(job), status_code=HTTP_200_OK)
        return Response(
            Accepted(job.id, job.status),
            status_code=HTTP_202_ACCEPTED,
            headers=[ResponseHeader(name="Location", value=f"/jobs/{job.id}")],
        )

    @get("/jobs/{job_id:str}", summary="Read a job, or wait for it to finish")
    async def read(
        self,
        job_id: Annotated[str, JOB_ID],
        get_job: Get,
        settings: Settings,
        wait: Wait = 0,
    ) -> JobView:
        _check_wait(wait, settings)
        return JobView.of(await get_job(job_id, wait_s=wait))


class ServiceController(Controller):
    tags = ["service"]

    @get("/runtimes", summary="Languages the live workers can run")
    async def runtimes(self, registry: Registry) -> list[RuntimeView]:
        offered: dict[tuple[str, str], int] = {}
        for worker in await registry.live_workers():
            for runtime in worker.runtimes:
                key = (runtime.language, runtime.version)
                offered[key] = offered.get(key, 0) + 1
        return [RuntimeView(lang, version, count) for (lang, version), count in sorted(offered.items())]

    @get("/healthz", summary="The API process is alive")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", summary="Redis answers and a worker was seen recently")
    async def readyz(self, registry: Registry) -> Response[Readiness]:
        try:
            live = len(await registry.live_workers())
        except StorageUnavailable as error:
            ready = Readiness(ready=False, redis=False, live_workers=0, problems=[f"redis: {error}"])
            return Response(ready, status_code=HTTP_503_SERVICE_UNAVAILABLE)
        if live == 0:
            ready = Readiness(ready=False, redis=True, live_workers=0, problems=["no live worker"])
            return Response(ready, status_code=HTTP_503_SERVICE_UNAVAILABLE)
        return Response(Readiness(ready=True, redis=True, live_workers=live))


def _check_wait(wait: float, settings: ApiSettings) -> None:
    if wait > settings.max_wait_s:
        raise InvalidSubmission("wait", f"{wait:g} is above the server maximum of {settings.max_wait_s:g} seconds")


def _problem(
    status: int, detail: str, errors: list[FieldError] | None = None, headers: dict[str, str] | None = None
) -> Response[Problem]:
    return Response(Problem(status, detail, errors or []), status_code=status, headers=headers)


def _invalid(_: Request[Any, Any, Any], error: InvalidSubmission) -> Response[Problem]:
    status = HTTP_413_REQUEST_ENTITY_TOO_LARGE if isinstance(error, SubmissionTooLarge) else HTTP_422_UNPROCESSABLE_ENTITY
    return _problem(status, str(error), [FieldError(error.field, error.message)])


def _validation(_: Request[Any, Any, Any], error: ValidationException) -> Response[Problem]:
    # Litestar answers 400 for a body or parameter that fails validation; a well-formed
    # request with wrong content is a 422, and the client is told each field.
    fields = [
        FieldError(str(item.get("key") or item.get("source") or "body"), str(item.get("message")))
        for item in (error.extra if isinstance(error.extra, list) else [])
        if isinstance(item, dict)
    ]
    return _problem(HTTP_422_UNPROCESSABLE_ENTITY, str(error.detail), fields)


def _not_found(_: Request[Any, Any, Any], error: JobNotFound | NotFoundException) -> Response[Problem]:
    return _problem(HTTP_404_NOT_FOUND, str(error.detail if isinstance(error, HTTPException) else error))


def _http(_: Request[Any, Any, Any], error: HTTPException) -> Response[Problem]:
    return _problem(error.status_code, str(error.detail), headers=error.headers or {})


def _retry_later(settings: ApiSettings):  # type: ignore[no-untyped-def]
    def handle(_: Request[Any, Any, Any], error: QueueFull | StorageUnavailable) -> Response[Problem]:
        return _problem(HTTP_503_SERVICE_UNAVAILABLE, str(error), headers={"Retry-After": str(settings.retry_after_s)})

    return handle


def _unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return _problem(HTTP_500_INTERNAL_SERVER_ERROR, "internal error; it was logged")


def _dependencies(container: ApiContainer) -> dict[str, Provide]:
    # Litestar inspects a dependency's signature, which dependency-injector providers lack:
    # hand it plain functions that ask the container (see litestar issue #582).
    def submit_job() -> SubmitJob:
        return container.submit_job()

    def get_job() -> GetJob:
        return container.get_job()

    def registry() -> WorkerRegistry:
        return container.registry()

    def settings() -> ApiSettings:
        return container.settings()

    return {
        name: Provide(provider, sync_to_thread=False)
        for name, provider in [
            ("submit_job", submit_job),
            ("get_job", get_job),
            ("registry", registry),
            ("settings", settings),
        ]
    }


def create_app(container: ApiContainer) -> Litestar:
    settings: ApiSettings = container.settings()

    @asynccontextmanager
    async def connections(_: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await close(container)

    return Litestar(
        route_handlers=[JobsController, ServiceController],
        dependencies=_dependencies(container),
        exception_handlers={
            InvalidSubmission: _invalid,
            ValidationException: _validation,
            JobNotFound: _not_found,
            NotFoundException: _not_found,
            QueueFull: _retry_later(settings),
            StorageUnavailable: _retry_later(settings),
            HTTPException: _http,
            Exception: _unexpected,
        },
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
