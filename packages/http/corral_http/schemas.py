"""What goes over HTTP: request and response bodies, kept apart from the domain's Structs.

Requests are strict (unknown fields refused, lengths bounded) because they come from anyone;
responses are views of a Job that leave out what the client already sent. Every view is mapped
from the domain here and nowhere else, field by field, so renaming a domain field breaks the
type check instead of silently changing the public API.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from corral_core.callbacks import MAX_URL_LENGTH, Callback, DeliveryState
from corral_core.job import (
    ErrorCode,
    InputFile,
    Job,
    JobStatus,
    ReturnedFile,
    RunResult,
    SandboxStart,
    StdinMode,
    Verdict,
)
from corral_core.policy import InvalidSubmission, LimitRequest
from corral_core.ports import ReadinessReport, WorkerInfo
from corral_core.structs import copied
from corral_core.submission import JobRequest
from corral_http.fields import LISTED, CopiedView, Language
from corral_http.testcase_schemas import SummaryView, TestIn, TestResultView

Limit = Annotated[int, msgspec.Meta(ge=1, le=2**31)] | None
MOST_TESTS = 65_536
# A glob pattern of files to send back; SizePolicy.check_outputs says what else it must be.
OutputPattern = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
# What `outputs: true` asks for: everything the program left under out/.
OUT_DIRECTORY = ("out/**",)


class FileIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    content: str
    encoding: Literal["utf-8", "base64"] = "utf-8"


class LimitsIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    cpu_time_ms: Limit = None
    wall_time_ms: Limit = None
    memory_mb: Limit = None
    max_processes: Limit = None
    max_output_bytes: Limit = None
    max_file_size_kb: Limit = None
    compile_cpu_time_ms: Limit = None
    compile_wall_time_ms: Limit = None
    compile_memory_mb: Limit = None
    max_returned_files: Limit = None
    max_returned_files_kb: Limit = None


class ExecuteIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: str
    language: Language = "python"
    stdin: str = ""
    args: Annotated[list[str], msgspec.Meta(max_length=LISTED)] = []
    # A compiled language's compiler flags, each one argv element: ["-O0", "-DDEBUG"].
    compiler_args: Annotated[list[str], msgspec.Meta(max_length=LISTED)] = []
    files: Annotated[list[FileIn], msgspec.Meta(max_length=LISTED)] = []
    limits: LimitsIn = LimitsIn()
    # Test cases: the program is compiled once and runs once per test, each judged.
    tests: Annotated[list[TestIn], msgspec.Meta(max_length=MOST_TESTS)] = []
    # After a test fails, the rest are skipped.
    stop_on_first_failure: bool = False
    # Files to send back once the program ends: glob patterns relative to its working
    # directory, or true for everything under out/.
    outputs: Annotated[list[OutputPattern], msgspec.Meta(max_length=LISTED)] | bool = []
    # "interactive": stdin is what the client sends while the job runs (POST /jobs/{id}/stdin)
    # until it closes it, and `stdin` stays empty; "closed": stdin is `stdin`, whole.
    stdin_mode: Literal["closed", "interactive"] = "closed"
    # Where the finished job's view is POSTed, signed (Standard Webhooks): an http(s) URL.
    callback_url: Annotated[str, msgspec.Meta(max_length=MAX_URL_LENGTH)] | None = None

    def to_request(self) -> JobRequest:
        if self.stdin_mode == "interactive" and self.stdin:
            raise InvalidSubmission(
                "stdin", "an interactive job's stdin is sent while it runs (POST /jobs/{id}/stdin), not with it"
            )
        if self.stdin_mode == "interactive" and self.tests:
            raise InvalidSubmission(
                "stdin_mode", "a job with tests gives each test its own stdin: it cannot be interactive"
            )
        return JobRequest(
            code=self.code,
            language=self.language,
            stdin=self.stdin,
            args=tuple(self.args),
            compiler_args=tuple(self.compiler_args),
            files=tuple(_decode_file(index, file) for index, file in enumerate(self.files)),
            tests=tuple(test.to_test() for test in self.tests),
            stop_on_first_failure=self.stop_on_first_failure,
            outputs=_outputs(self.outputs),
            stdin_mode=StdinMode(self.stdin_mode),
            limits=msgspec.convert(msgspec.to_builtins(self.limits), LimitRequest),
            callback=None if self.callback_url is None else Callback(url=self.callback_url),
        )


def _outputs(outputs: list[str] | bool) -> tuple[str, ...]:
    if isinstance(outputs, bool):
        return OUT_DIRECTORY if outputs else ()
    return tuple(outputs)


def _decode_file(index: int, file: FileIn) -> InputFile:
    if file.encoding == "utf-8":
        return InputFile(file.name, file.content.encode())
    try:
        return InputFile(file.name, base64.b64decode(file.content, validate=True))
    except (binascii.Error, ValueError):
        raise InvalidSubmission(f"files[{index}].content", "is not valid base64") from None


class StdinIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Bytes for an interactive job's stdin; `eof` closes it after them."""

    data: str = ""
    encoding: Literal["utf-8", "base64"] = "utf-8"
    eof: bool = False

    def decoded(self) -> bytes:
        if self.encoding == "utf-8":
            return self.data.encode()
        try:
            return base64.b64decode(self.data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidSubmission("data", "is not valid base64") from None


class StdinAccepted(msgspec.Struct, frozen=True):
    job_id: str
    # The bytes added to the job's stdin, and whether it is now closed.
    sent_bytes: int
    eof: bool


class Accepted(msgspec.Struct, frozen=True):
    job_id: str
    status: JobStatus


class CompileView(CopiedView, frozen=True):
    verdict: Verdict
    exit_code: int | None
    signal: int | None
    cpu_time_ms: int
    wall_time_ms: int
    memory_kb: int
    # The compiled program came from the worker's compile cache: the stage did not run again
    # (its figures are those of the run that compiled it).
    cached: bool


# Returned files up to this size also come inline in a result read with `?inline_files=true`:
# small plots in the one answer; anything larger is read from GET /jobs/{id}/files/{name}.
INLINE_FILE_BYTES = 64 * 1024


class FileView(msgspec.Struct, frozen=True, omit_defaults=True):
    """A file the job returned; its content is read from GET /jobs/{id}/files/{name}."""

    name: str
    size: int
    sha256: str
    media_type: str
    # Only with `?inline_files=true`, for a file of at most INLINE_FILE_BYTES.
    content_base64: str | None = None

    @classmethod
    def of(cls, file: ReturnedFile, content: bytes | None = None) -> FileView:
        inline = None if content is None else base64.b64encode(content).decode()
        return copied(cls, file, content_base64=inline)


class LeftOutView(CopiedView, frozen=True):
    """A file that matched the job's outputs but was not returned, and why."""

    name: str
    reason: str


class ResultView(msgspec.Struct, frozen=True, omit_defaults=True):
    """omit_defaults: only the compile_*, test and file fields have defaults, so the result of
    an interpreted language's job without tests or files reads exactly as before they existed."""

    verdict: Verdict
    exit_code: int | None
    signal: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    cpu_time_ms: int
    wall_time_ms: int
    memory_kb: int
    # Whether the program's jail was started for it (cold) or ahead of the job (warm).
    sandbox_start: SandboxStart
    # Compiled languages only: what the compiler said, and how its stage ended.
    compile_output: str = ""
    compile_output_truncated: bool = False
    compile: CompileView | None = None
    # A job with test cases only: each test's run and judgement, in the order asked, and their count.
    tests: list[TestResultView] = []
    summary: SummaryView | None = None
    # A job that asked for files back (outputs): those returned, and those left out with why.
    files: list[FileView] = []
    files_left_out: list[LeftOutView] = []

    @classmethod
    def of(cls, result: RunResult, inline: Mapping[str, bytes] | None = None) -> ResultView:
        """`inline`: the content of the files to carry in the view, by name."""
        inline = inline or {}
        return copied(
            cls,
            result,
            compile=None if result.compile is None else CompileView.of(result.compile),
            tests=[TestResultView.of(test) for test in result.tests],
            summary=SummaryView.of(result.tests) if result.tests else None,
            files=[FileView.of(file, inline.get(file.name)) for file in result.files],
            files_left_out=[LeftOutView.of(left_out) for left_out in result.files_left_out],
        )


class ErrorView(CopiedView, frozen=True):
    code: ErrorCode
    message: str


class CallbackView(msgspec.Struct, frozen=True):
    """How the job's callback stands: pending (next attempt at `next_at`), delivered or failed."""

    url: str
    state: DeliveryState
    attempts: int
    last_status: str | None
    next_at: datetime | None

    @classmethod
    def of(cls, callback: Callback) -> CallbackView:
        return copied(cls, callback, last_status=callback.last_status or None)


class JobView(msgspec.Struct, frozen=True):
    job_id: str
    status: JobStatus
    language: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    result: ResultView | None
    error: ErrorView | None
    # Only on a job submitted with a callback_url.
    callback: CallbackView | msgspec.UnsetType = msgspec.UNSET

    @classmethod
    def of(cls, job: Job, inline: Mapping[str, bytes] | None = None) -> JobView:
        """`inline`: the content of the returned files to carry in the view, by name."""
        return copied(
            cls,
            job,
            job_id=job.id,
            language=job.request.language,
            result=None if job.result is None else ResultView.of(job.result, inline),
            error=None if job.error is None else ErrorView.of(job.error),
            callback=msgspec.UNSET if job.callback is None else CallbackView.of(job.callback),
        )


class RuntimeView(msgspec.Struct, frozen=True):
    language: str
    version: str
    workers: int

    @classmethod
    def of_workers(cls, workers: list[WorkerInfo]) -> list[RuntimeView]:
        """One view per runtime, with the number of live workers that offer it."""
        offered: dict[tuple[str, str], int] = {}
        for worker in workers:
            for runtime in worker.runtimes:
                key = (runtime.language, runtime.version)
                offered[key] = offered.get(key, 0) + 1
        return [cls(language, version, count) for (language, version), count in sorted(offered.items())]


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, frozen=True):
    """Every error answer: what went wrong, and per field where that applies."""

    status_code: int
    detail: str
    errors: list[FieldError] = []


class Readiness(msgspec.Struct, frozen=True):
    ready: bool
    redis: bool
    live_workers: int
    problems: list[str] = []
    # Redis' appendfsync as found at start ("unchecked" when the API did not check).
    redis_appendfsync: str = "unchecked"
    # Risks someone accepted (CORRAL_REDIS_ACCEPT_DATA_LOSS): in every answer, ready or not.
    warnings: list[str] = []

    @classmethod
    def of(cls, report: ReadinessReport) -> Readiness:
        return cls(
            ready=report.ready,
            redis=report.storage,
            live_workers=report.live_workers,
            problems=list(report.problems),
            redis_appendfsync=report.durability,
            warnings=list(report.warnings),
        )


class StreamEvent(msgspec.Struct, frozen=True):
    """One event of GET /jobs/{job_id}/events, as its SSE fields: what the OpenAPI document
    says each event of the stream is."""

    id: str
    event: Literal["status", "stdout", "stderr", "result"]
    data: str
