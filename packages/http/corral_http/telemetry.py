"""What the API tells its operator: metrics, and a request id on every request and log line.

The request id is the client's `X-Request-ID` when it is a sane token, else a fresh one; it is
echoed in the answer, set in the log context (corral_system.logs) for every line logged while
the request is handled, and stored on the job a submission creates, so that the worker's lines
of its run carry it too.
"""

from __future__ import annotations

import re
import secrets

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge

from corral_system import logs

REQUEST_ID_HEADER = "x-request-id"
# Whatever a client sends ends up in every log line of its job: a short token, nothing else.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class ApiMetrics:
    """The API's metrics (docs/operations.md lists them). `registry` None: prometheus_client's own."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry or CollectorRegistry()
        self.jobs_submitted = Counter(
            "corral_jobs_submitted", "Jobs accepted (queued) by POST /execute.", registry=registry
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
