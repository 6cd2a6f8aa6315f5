"""What the server answers, as typed values.

Decoding is lenient (unknown fields ignored): a newer server may add fields without breaking an
older client.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

Status = Literal["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


class Limits(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Limits to ask for; any left as None get the server's default."""

    cpu_time_ms: int | None = None
    wall_time_ms: int | None = None
    memory_mb: int | None = None
    max_processes: int | None = None
    max_output_bytes: int | None = None
    max_file_size_kb: int | None = None


class Result(msgspec.Struct, frozen=True, kw_only=True):
    verdict: str  # ok, runtime_error, time_limit_exceeded, memory_limit_exceeded, output_limit_exceeded
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    cpu_time_ms: int = 0
    wall_time_ms: int = 0
    memory_kb: int = 0
    sandbox_start: str = "cold"  # warm: the jail was started ahead of the job


class JobError(msgspec.Struct, frozen=True):
    code: str  # worker_lost, sandbox_error, unsupported_language
    message: str


class Job(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    status: Status
    language: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    result: Result | None = None
    error: JobError | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class Accepted(msgspec.Struct, frozen=True):
    """A submission the server queued: read it by `job_id`."""

    job_id: str
    status: Status


class Runtime(msgspec.Struct, frozen=True):
    language: str
    version: str
    workers: int = 0


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, frozen=True):
    """The server's error body."""

    status_code: int = 0
    detail: str = ""
    errors: list[FieldError] = []
