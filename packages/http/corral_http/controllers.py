"""The HTTP resources, one controller each: jobs, and the service itself.

Handlers translate HTTP to use-case calls and domain objects to views (schemas.py); the rules
a submission must satisfy are the use case's, and errors become answers in errors.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import weakref
from typing import Annotated, Any

import msgspec
from litestar import Controller, HttpMethod, Request, Response, delete, get, post, route
from litestar.datastructures import ResponseHeader
from litestar.exceptions import HTTPException, NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import JSONBody, Parameter
from litestar.response import Stream
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_202_ACCEPTED,
    HTTP_204_NO_CONTENT,
    HTTP_206_PARTIAL_CONTENT,
    HTTP_304_NOT_MODIFIED,
    HTTP_409_CONFLICT,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
)

from corral_core.access import Caller
from corral_core.job import Job, StdinMode
from corral_core.policy import InvalidSubmission
from corral_core.submission import JobRequest, Submitted
from corral_http import files, live
from corral_http.auth import SUBMITS, caller_of, submitted
from corral_http.dependencies import Jobs
from corral_http.options import HttpOptions
from corral_http.schemas import (
    INLINE_FILE_BYTES,
    Accepted,
    ExecuteIn,
    JobView,
    Problem,
    StdinAccepted,
    StdinIn,
    StreamEvent,
)
from corral_http.services import JobRoutes
from corral_system import logs

log = logging.getLogger("corral_http.jobs")

JOB_ID = Parameter(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
# Its maximum is a setting: app.py writes it into the OpenAPI document.
Wait = Annotated[float, Parameter(ge=0, description="Seconds to wait for the job to finish.")]
IdempotencyKey = Annotated[
    str | None,
    Parameter(
        header="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retries of a submit with the same key (per API key) get the job the first one created.",
    ),
]
InlineFiles = Annotated[
    bool,
    Parameter(
        description=f"Returned files of at most {INLINE_FILE_BYTES // 1024} KiB also carry their content (content_base64)."
    ),
]
LastEventId = Annotated[
    str | None,
    Parameter(
        header="Last-Event-ID",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Resume after this event (the `id` of the last one received): every later event, once.",
    ),
]
EVENT_STREAM = "text/event-stream"
_STREAM_EXAMPLE = (
    "id: 1733612345000-0\nevent: status\ndata: RUNNING\n\n"
    "id: 1733612345050-0\nevent: stdout\ndata: asking\ndata: \n\n"
    ": keep-alive\n\n"
    "id: 1733612346100-0\nevent: stdout\ndata: done\ndata: \n\n"
    "id: 1733612346120-0\nevent: status\ndata: COMPLETED\n\n"
    'id: 1733612346121-0\nevent: result\ndata: {"job_id":"4f1c...","status":"COMPLETED",...}\n\n'
)
_encode = msgspec.json.Encoder().encode

# Why each error status can come, as the OpenAPI document says it; every one has a Problem body.
_WHY = {
    400: "Malformed request: a body that is not JSON (invalid UTF-8, too deeply nested, ...), "
    "a query parameter of the wrong type, or a Host header this API does not serve.",
    401: "No API key, or one that is unknown or revoked (the answer carries WWW-Authenticate: Bearer).",
    404: "No job with this id (it never existed, it finished and expired, or another key submitted it).",
    408: "The request body arrived slower than the server's minimum rate.",
    413: "The body, its code, stdin, an argument or its files are larger than the server accepts.",
    409: "Another request with this Idempotency-Key is still queuing its job: try again after Retry-After.",
    415: "The body was not sent as Content-Type: application/json.",
    422: "A well-formed request the server will not run: a field is invalid, a limit or `wait` "
    "above the server maximum, a language no worker offers, or an Idempotency-Key reused with "
    "another body.",
    429: "Over one of this key's quotas (request rate, unfinished jobs, stored bytes, long-polls or "
    "event streams at once): try again after Retry-After.",
    503: "Try again after Retry-After seconds: the queue or the job store is full, this process "
    "holds its most long-polls or event streams, or Redis is unreachable.",
}


def problems(*statuses: int, why: dict[int, str] | None = None) -> dict[int, ResponseSpec]:
    """The error answers a route documents, each with its Problem body; `why` overrides the
    reason given for some of them."""
    reasons = {**_WHY, **(why or {})}
    return {status: ResponseSpec(Problem, description=reasons[status], generate_examples=False) for status in statuses}


class JobsController(Controller):
    tags = ["jobs"]

    # Litestar (2.25) registers a controller's handlers one by one, in the order of their names,
    # and the OPTIONS answer it makes for a path lists the methods of the first one only (DELETE
    # here, not GET). This path says all of its own; its name sorts first, so that it is the
    # path's OPTIONS handler rather than Litestar's.
    @route("/jobs/{job_id:str}", http_method=HttpMethod.OPTIONS, status_code=HTTP_204_NO_CONTENT, include_in_schema=False)
    async def allowed_job_methods(self) -> Response[None]:
        return Response(None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": "DELETE, GET, OPTIONS"})

    @post(
        "/execute",
        status_code=HTTP_202_ACCEPTED,
        summary="Submit code to run",
        description="202 with the job id at once; with `wait`, the finished job (200) if it "
        "ends within that many seconds.",
        opt={SUBMITS: True},
        responses={
            HTTP_200_OK: ResponseSpec(JobView, description="The job finished within `wait`.", generate_examples=False),
            **problems(400, 401, 408, 409, 413, 415, 422, 429, 503),
        },
    )
    async def execute(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[ExecuteIn],
        jobs: Jobs,
        wait: Wait = 0,
        idempotency_key: IdempotencyKey = None,
        inline_files: InlineFiles = False,
    ) -> Response[Accepted | JobView]:
        _check_wait(wait, jobs.options)
        caller = caller_of(request)
        headers = []
        # A wait is refused before the job is queued: a 503 must not leave behind a job the
        # client never heard of.
        with jobs.long_polls.hold(caller) if wait > 0 else contextlib.nullcontext():
            request_id = logs.request_id.get()
            submitted_s = asyncio.get_running_loop().time()
            job_request = data.to_request()
            if idempotency_key is None:
                job, created = (await submitted(request, lambda caller: jobs.submit(caller, job_request, request_id=request_id))).job, True
            else:
                fingerprint = hashlib.sha256(_encode(data)).hexdigest()
                job, created = await _submit_once(request, jobs, job_request, idempotency_key, fingerprint, request_id)
                if not created:
                    headers.append(ResponseHeader(name="Idempotent-Replayed", value="true"))
            logs.job_id.set(job.id)
            if created:
                log.info("job submitted", extra={"language": job.request.language})
            if wait > 0:
                # A job this request created is known to exist unfinished: no need to read it first.
                job = await jobs.get(caller, job.id, wait_s=wait, submitted_s=submitted_s if created else None)
        # Without a wait the answer is 202 however far the job got: a replayed submit answers
        # as the first one did, even when the job has finished since.
        if wait > 0 and job.finished:
            view = JobView.of(job, await _inlined(jobs, job) if inline_files else None)
            return Response(view, status_code=HTTP_200_OK, headers=headers)
        return Response(
            Accepted(job.id, job.status),
            status_code=HTTP_202_ACCEPTED,
            headers=[*headers, ResponseHeader(name="Location", value=f"/jobs/{job.id}")],
        )

    @get(
        "/jobs/{job_id:str}",
        summary="Read a job, or wait for it to finish",
        responses=problems(400, 401, 404, 422, 429, 503),
    )
    async def read(
        self,
        request: Request[Any, Any, Any],
        job_id: Annotated[str, JOB_ID],
        jobs: Jobs,
        wait: Wait = 0,
        inline_files: InlineFiles = False,
    ) -> JobView:
        _check_wait(wait, jobs.options)
        caller = caller_of(request)
        with jobs.long_polls.hold(caller) if wait > 0 else contextlib.nullcontext():
            job = await jobs.get(caller, job_id, wait_s=wait)
        return JobView.of(job, await _inlined(jobs, job) if inline_files else None)

    @get(
        "/jobs/{job_id:str}/files/{name:path}",
        summary="Download a file the job returned",
        description="The content of one of the job's `result.files`, always as an attachment: "
        "served as its own media type only when that is inert (images, text, CSV, JSON, PDF), "
        "else as application/octet-stream. Its ETag is its sha256 (If-None-Match answers 304); "
        "one byte range may be asked for (206).",
        media_type=files.OPAQUE,
        responses=problems(
            400, 401, 404, 416, 422, 429, 503,
            why={
                404: "No job with this id (as for GET /jobs/{job_id}), or no file of this name among the files it returned.",
                416: "The range starts past the file's end.",
            },
        ),  # fmt: skip
    )
    async def file(
        self,
        request: Request[Any, Any, Any],
        job_id: Annotated[str, JOB_ID],
        name: str,
        jobs: Jobs,
        if_none_match: Annotated[str | None, Parameter(header="If-None-Match", max_length=4096)] = None,
        range_header: Annotated[str | None, Parameter(header="Range", max_length=256)] = None,
        if_range: Annotated[str | None, Parameter(header="If-Range", max_length=256)] = None,
    ) -> Response[bytes]:
        # Ownership first, as for the job itself: another key's job is one that does not exist.
        job = await jobs.get(caller_of(request), job_id)
        name = name.removeprefix("/")
        returned = next((file for file in job.result.files if file.name == name), None) if job.result else None
        if returned is None:
            raise NotFoundException(f"job {job_id} returned no file named {name!r}")
        tag = files.etag(returned.sha256)
        headers = {"ETag": tag, "Cache-Control": "private", "Accept-Ranges": "bytes"}
        if files.matches(if_none_match, tag):
            return Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
        content = await jobs.store.file(job_id, name)
        if content is None:  # expired with its job since the job was read
            raise NotFoundException(f"job {job_id} returned no file named {name!r}")
        headers |= {
            "Content-Disposition": files.disposition(name),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
        }
        media_type = files.served_type(returned.media_type)
        try:
            # A stale If-Range (another file's tag) asks for the whole file, not a piece of this one.
            span = files.span(range_header, len(content)) if if_range in (None, tag) else None
        except files.Unsatisfiable:
            raise HTTPException(
                status_code=HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
                detail=f"the range {range_header!r} starts past the file's {len(content)} bytes",
                headers={"Content-Range": f"bytes */{len(content)}"},
            ) from None
        if span is None:
            return Response(content, media_type=media_type, headers=headers)
        headers["Content-Range"] = f"bytes {span.start}-{span.end}/{len(content)}"
        return Response(
            content[span.start : span.end + 1],
            status_code=HTTP_206_PARTIAL_CONTENT,
            media_type=media_type,
            headers=headers,
        )

    @get(
        "/jobs/{job_id:str}/events",
        summary="Follow a job as it runs (Server-Sent Events)",
        description="A `text/event-stream` of the job's events, from its first (or after `Last-Event-ID`), "
        "each with an `id`, an `event` (its kind) and its `data`:\n\n"
        "- `status`: the job's new status (PENDING, RUNNING, COMPLETED, ...);\n"
        "- `stdout`, `stderr`: a chunk of the program's output as it wrote it (a line break in it "
        "splits the data into several `data:` lines, as the SSE format says; CR and CRLF arrive as LF);\n"
        "- `result`: the finished job, as GET /jobs/{job_id} answers it (JSON); the stream then ends.\n\n"
        "A stream opened after the job finished replays every event and ends. A comment line "
        "`: keep-alive` comes when nothing else has for a while. A dropped client reconnects with "
        "`Last-Event-ID` and gets every later event once, while the job's record lives.",
        media_type=EVENT_STREAM,
        responses={
            HTTP_200_OK: ResponseSpec(
                StreamEvent,
                media_type=EVENT_STREAM,
                description="The job's events (each as this schema's fields), then the end of the stream once its `result` is sent.",
                generate_examples=False,
                examples=[Example(summary="A job that printed two lines", value=_STREAM_EXAMPLE)],
            ),
            **problems(
                400, 401, 404, 422, 429, 503,
                why={
                    429: "This key holds its most event streams in this API process (key_max_streams), "
                    "or is over its request rate: try again after Retry-After.",
                    503: "This API process holds its most event streams, or Redis is unreachable: try again after Retry-After.",
                },
            ),
        },  # fmt: skip
    )
    async def events(
        self,
        request: Request[Any, Any, Any],
        job_id: Annotated[str, JOB_ID],
        jobs: Jobs,
        last_event_id: LastEventId = None,
    ) -> Stream:
        caller = caller_of(request)
        # Ownership first, as for the job itself: another key's job is one that does not exist.
        read_job = functools.partial(jobs.get, caller, job_id)
        await live.in_turn(jobs.streams.reading, read_job)()
        slot = jobs.streams.take(caller)
        after, heartbeat_s = last_event_id or "", jobs.options.stream_heartbeat_s
        stream = live.job_stream(jobs.events, read_job, _result_data, jobs.streams, job_id, after, heartbeat_s)
        events = live.holding(slot, stream)
        # The stream gives its place back when it ends; one never started (its client gone
        # before the first byte) does when it is collected.
        weakref.finalize(events, slot.release)
        return Stream(
            events,
            media_type=EVENT_STREAM,
            # No proxy may cache the stream or hold its events back to gather a larger buffer.
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @post(
        "/jobs/{job_id:str}/stdin",
        status_code=HTTP_202_ACCEPTED,
        summary="Send an interactive job's program some stdin",
        description="Adds `data` (text, or bytes as base64) to the stdin of a job submitted with "
        '`stdin_mode: "interactive"`; `eof: true` closes its stdin after them. The job may be '
        "PENDING (its program gets them when it starts) or RUNNING.",
        responses=problems(
            400, 401, 404, 408, 409, 413, 415, 422, 429, 503,
            why={
                409: "The job has finished, or was not submitted with stdin_mode interactive.",
                413: "More bytes than one call may send (max_stdin_call_bytes), or more than the job's "
                "stdin may take in all (max_stdin_bytes), or its stdin was closed already.",
                422: "A field is invalid (data that is not base64 with encoding base64, say).",
            },
        ),  # fmt: skip
    )
    async def stdin(
        self, request: Request[Any, Any, Any], job_id: Annotated[str, JOB_ID], data: JSONBody[StdinIn], jobs: Jobs
    ) -> StdinAccepted:
        job = await jobs.get(caller_of(request), job_id)
        if job.finished:
            raise HTTPException(status_code=HTTP_409_CONFLICT, detail=f"job {job_id} has finished ({job.status.value})")
        if job.request.stdin_mode != StdinMode.INTERACTIVE:
            raise HTTPException(
                status_code=HTTP_409_CONFLICT,
                detail=f"job {job_id} was not submitted with stdin_mode interactive: its stdin was given whole",
            )
        sent = data.decoded()
        most = jobs.options.max_stdin_call_bytes
        if len(sent) > most:
            raise HTTPException(
                status_code=HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                detail=f"{len(sent)} bytes are more than one call may send ({most}): send them in several",
            )
        total = jobs.options.sizes.max_stdin_bytes
        if not await jobs.job_input.send(job_id, sent, eof=data.eof, max_bytes=total):
            raise HTTPException(
                status_code=HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                detail=f"job {job_id}'s stdin would pass its {total} bytes in all, or was closed already",
            )
        return StdinAccepted(job_id=job_id, sent_bytes=len(sent), eof=data.eof)

    @delete(
        "/jobs/{job_id:str}",
        status_code=HTTP_200_OK,
        summary="Cancel a job",
        description="A PENDING job never runs; a RUNNING one has its sandbox killed at once. 200 with "
        "the job, now CANCELLED (its final state is set before the answer; a running job's sandbox "
        "is gone a moment later). Only the job's key, or an admin key, may cancel it.",
        responses=problems(
            400, 401, 404, 409, 422, 429, 503,
            why={409: "The job already finished (COMPLETED, FAILED or CANCELLED): nothing is left to cancel."},
        ),  # fmt: skip
    )
    async def cancel(self, request: Request[Any, Any, Any], job_id: Annotated[str, JOB_ID], jobs: Jobs) -> JobView:
        return JobView.of(await jobs.cancel(caller_of(request), job_id))


async def _submit_once(
    request: Request[Any, Any, Any], jobs: JobRoutes, job_request: JobRequest, key: str, fingerprint: str, request_id: str
) -> tuple[Job, bool]:
    created = False

    async def once(caller: Caller) -> Submitted:
        nonlocal created
        done, created = await jobs.submit_once(caller, job_request, key=key, fingerprint=fingerprint, request_id=request_id)
        return done

    return (await submitted(request, once)).job, created


def _result_data(job: Job) -> str:
    return _encode(JobView.of(job)).decode()


async def _inlined(jobs: JobRoutes, job: Job) -> dict[str, bytes]:
    """The content of the job's small returned files (its caller may read it: `get` said so)."""
    small = [file.name for file in job.result.files if file.size <= INLINE_FILE_BYTES] if job.result else []
    contents = await asyncio.gather(*(jobs.store.file(job.id, name) for name in small))
    return {name: content for name, content in zip(small, contents, strict=True) if content is not None}


def _check_wait(wait: float, options: HttpOptions) -> None:
    # How long a request may hold its connection is the API's own bound, not a job rule.
    if wait > options.max_wait_s:
        raise InvalidSubmission("wait", f"{wait:g} is above the server maximum of {options.max_wait_s:g} seconds")
