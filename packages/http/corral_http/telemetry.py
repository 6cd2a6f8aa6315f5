"""What the API tells its operator: metrics, and a request id on every request and log line.

Requests are counted by the route's template (`/jobs/{job_id:str}`), never the path a client
sent, so that the series stay as few as the routes; a request no route matched (a 404 for an
unknown path) never reaches a route's middleware and is not counted. No metric has a per-key
label: keys are unbounded, and what each key used is metered in storage (docs/metrics.md).

The request id is the client's `X-Request-ID` when it is a sane token, else a fresh one; it is
echoed in the answer, set in the log context (corral_system.logs) for every line logged while
the request is handled, and stored on the job a submission creates, so that the worker's lines
of its run carry it too.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from corral_core.job import Job
from corral_system import logs

REQUEST_ID_HEADER = "x-request-id"
# Whatever a client sends ends up in every log line of its job: a short token, nothing else.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Seconds: from a cached read to a long poll held for its whole wait.
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class ApiMetrics:
    """The API's metrics (docs/metrics.md lists them). `registry` None: prometheus_client's own."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry or CollectorRegistry()
        self.jobs_submitted = Counter(
            "corral_jobs_submitted",
            "Jobs accepted (queued) by any route (native, Judge0, Piston), by runtime.",
            ["runtime"],
            registry=registry,
        )
        self.requests = Counter(
            "corral_http_requests",
            "HTTP requests answered, by route template, method and status class (2xx, 4xx, 5xx).",
            ["route", "method", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "corral_http_request_duration_seconds",
            "From a request's arrival to the end of its answer (a long poll's wait included), by route template and method.",
            ["route", "method"],
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )
        self.workers_live = Gauge(
            "corral_workers_live",
            "Worker processes whose heartbeat is current, read at each scrape.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        # Read from Redis at each scrape, by whichever API process answers it.
        self.queue_depth = Gauge(
            "corral_queue_depth", "Jobs waiting in line (PENDING).", registry=registry, multiprocess_mode="mostrecent"
        )
        self.jobs_unfinished = Gauge(
            "corral_jobs_unfinished",
            "Jobs PENDING or RUNNING: what [redis] max_unfinished bounds.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.redis_errors = Counter(
            "corral_redis_errors", "Redis calls that failed (StorageUnavailable), by operation.", ["operation"], registry=registry
        )

    def job_queued(self, job: Job) -> None:
        """SubmitJob's `queued`: a job accepted by any route."""
        self.jobs_submitted.labels(job.request.language).inc()


def request_metrics_middleware(metrics: ApiMetrics) -> Callable[[ASGIApp], ASGIApp]:
    """Count and time every request a route answers, by its route template.

    Outermost, so that what the door refuses is counted too; an exception that escapes every
    handler is the 500 the server will answer."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            began = time.perf_counter()
            status = 0

            async def send_noting_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_noting_status)
            except asyncio.CancelledError:
                # The client went away before its answer (nginx's 499): not the server's fault.
                status = status or 499
                raise
            except Exception as error:
                status = status or getattr(error, "status_code", 500)
                raise
            finally:
                # Routing set the template before any route middleware runs; a method outside
                # the known few is one label value, not what the client wrote.
                route = scope.get("path_template") or "unmatched"
                method = scope["method"] if scope["method"] in _METHODS else "other"
                metrics.requests.labels(route, method, f"{(status or 500) // 100}xx").inc()
                metrics.request_seconds.labels(route, method).observe(time.perf_counter() - began)

        return middleware

    return wrap


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        given = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"x-request-id"), "")
        request = given if _SANE_REQUEST_ID.fullmatch(given) else secrets.token_hex(8)
        reset = logs.request_id.set(request), logs.job_id.set("")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request.encode())]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            logs.request_id.reset(reset[0])
            logs.job_id.reset(reset[1])

    return middleware
