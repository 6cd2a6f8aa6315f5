"""The operator's routes: the runtimes the live workers offer, liveness, readiness, metrics."""

from __future__ import annotations

import asyncio

from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from corral_core.ports import StorageUnavailable
from corral_http.controllers import problems
from corral_http.dependencies import Service
from corral_http.schemas import Readiness, RuntimeView
from corral_system.metrics import CONTENT_TYPE
from corral_system.metrics import exposition as metrics_exposition


class ServiceController(Controller):
    tags = ["service"]

    @get("/runtimes", summary="Languages the live workers can run", responses=problems(400, 401, 429, 503))
    async def runtimes(self, service: Service) -> list[RuntimeView]:
        return RuntimeView.of_workers(await service.registry.live_workers())

    @get("/healthz", summary="The API process is alive", responses=problems(400))
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get(
        "/readyz",
        summary="Redis answers and a worker was seen recently",
        responses={
            **problems(400),
            HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
                Readiness, description="Not ready: Redis is unreachable or no worker is live.", generate_examples=False
            ),
        },
    )
    async def readyz(self, service: Service) -> Response[Readiness]:
        report = await service.readiness.check()
        return Response(Readiness.of(report), status_code=HTTP_200_OK if report.ready else HTTP_503_SERVICE_UNAVAILABLE)

    @get("/metrics", summary="Metrics of every API process, in the Prometheus text format", include_in_schema=False)
    async def metrics(self, service: Service) -> Response[bytes]:
        metrics = service.metrics
        try:
            depth = await service.queue_gauge.depth()
            live = await service.registry.live_workers()
        except StorageUnavailable:
            metrics.redis_errors.labels("/metrics").inc()
        else:
            metrics.queue_depth.set(depth.pending)
            metrics.jobs_unfinished.set(depth.unfinished)
            metrics.workers_live.set(len(live))
        # In multiprocess mode this reads every process's files: not on the event loop.
        text = await asyncio.to_thread(metrics_exposition, metrics.registry)
        return Response(text, media_type=CONTENT_TYPE)
