"""What goes over HTTP: request and response bodies, kept apart from the domain's Structs.

Requests are strict (unknown fields refused, lengths bounded) because they come from anyone;
responses are views of a Job that leave out what the client already sent. Every view is mapped
from the domain here and nowhere else, field by field, so renaming a domain field breaks the
type check instead of silently changing the public API.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from corral_core.job import (
    CompileResult,
    ErrorCode,
    InputFile,
    Job,
    JobError,
    JobStatus,
    RunResult,
    SandboxStart,
    Verdict,
)
from corral_core.policy import InvalidSubmission, LimitRequest
from corral_core.ports import ReadinessReport, WorkerInfo
from corral_core.submission import JobRequest

Limit = Annotated[int, msgspec.Meta(ge=1, le=2**31)] | None


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


class ExecuteIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: str
    language: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.+-]{0,31}$")] = "python"
    stdin: str = ""
    args: Annotated[list[str], msgspec.Meta(max_length=1024)] = []
    files: Annotated[list[FileIn], msgspec.Meta(max_length=1024)] = []
    limits: LimitsIn = LimitsIn()

    def to_request(self) -> JobRequest:
        return JobRequest(
            code=self.code,
            language=self.language,
            stdin=self.stdin,
            args=tuple(self.args),
            files=tuple(_decode_file(index, file) for index, file in enumerate(self.files)),
            limits=msgspec.convert(msgspec.to_builtins(self.limits), LimitRequest),
        )


def _decode_file(index: int, file: FileIn) -> InputFile:
    if file.encoding == "utf-8":
        return InputFile(file.name, file.content.encode())
    try:
        return InputFile(file.name, base64.b64decode(file.content, validate=True))
    except (binascii.Error, ValueError):
        raise InvalidSubmission(f"files[{index}].content", "is not valid base64") from None


class Accepted(msgspec.Struct, frozen=True):
    job_id: str
    status: JobStatus


class CompileView(msgspec.Struct, frozen=True):
    verdict: Verdict
    exit_code: int | None
    signal: int | None
    cpu_time_ms: int
    wall_time_ms: int
    memory_kb: int

    @classmethod
    def of(cls, stage: CompileResult) -> CompileView:
        return cls(
            verdict=stage.verdict,
            exit_code=stage.exit_code,
            signal=stage.signal,
            cpu_time_ms=stage.cpu_time_ms,
            wall_time_ms=stage.wall_time_ms,
            memory_kb=stage.memory_kb,
        )


class ResultView(msgspec.Struct, frozen=True, omit_defaults=True):
    """omit_defaults: only the compile_* fields have defaults, so an interpreted language's
    result reads exactly as before they existed."""

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

    @classmethod
    def of(cls, result: RunResult) -> ResultView:
        return cls(
            verdict=result.verdict,
            exit_code=result.exit_code,
            signal=result.signal,
            stdout=result.stdout,
            stderr=result.stderr,
            stdout_truncated=result.stdout_truncated,
            stderr_truncated=result.stderr_truncated,
            cpu_time_ms=result.cpu_time_ms,
            wall_time_ms=result.wall_time_ms,
            memory_kb=result.memory_kb,
            sandbox_start=result.sandbox_start,
            compile_output=result.compile_output,
            compile_output_truncated=result.compile_output_truncated,
            compile=None if result.compile is None else CompileView.of(result.compile),
        )


class ErrorView(msgspec.Struct, frozen=True):
    code: ErrorCode
    message: str

    @classmethod
    def of(cls, error: JobError) -> ErrorView:
        return cls(code=error.code, message=error.message)


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

    @classmethod
    def of(cls, job: Job) -> JobView:
        return cls(
            job_id=job.id,
            status=job.status,
            language=job.request.language,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            attempts=job.attempts,
            result=None if job.result is None else ResultView.of(job.result),
            error=None if job.error is None else ErrorView.of(job.error),
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
