"""What the server answers, as typed values.

Decoding is lenient (unknown fields ignored): a newer server may add fields without breaking an
older client.
"""

from __future__ import annotations

import base64
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
    # Files asked back (`outputs`): how many, and their KiB in all.
    max_returned_files: int | None = None
    max_returned_files_kb: int | None = None


# ---- test cases: what to send ------------------------------------------------------------


class Exact(msgspec.Struct, frozen=True, tag_field="kind", tag="exact"):
    """The output is the expected one byte for byte."""


class Lines(msgspec.Struct, frozen=True, tag_field="kind", tag="lines"):
    """Line by line; trailing whitespace and trailing blank lines do not count (the default)."""


class Tokens(msgspec.Struct, frozen=True, tag_field="kind", tag="tokens"):
    """The same whitespace-separated words, however spaced."""


class Float(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="float"):
    """Word by word: numbers equal within `abs_tol` or `rel_tol` (of the expected value)."""

    abs_tol: float = 1e-6
    rel_tol: float = 1e-6


class CheckerProgram(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="program"):
    """A program that reads input.txt, expected.txt and output.txt and exits 0 to accept, 1 to
    refuse; what it prints is the test's checker message."""

    language: str
    code: str


Checker = Exact | Lines | Tokens | Float | CheckerProgram


class TestCase(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """One run of the program: its stdin and arguments, and what it should print. Without
    `expected_stdout` a test passes when the program exits 0 within its limits; without
    `checker`, the output is compared line by line."""

    __test__ = False  # a test case, not a test for pytest to collect

    name: str = ""
    stdin: str = ""
    args: list[str] = []
    expected_stdout: str | None = None
    checker: Checker | None = None


# ---- what the server answers ---------------------------------------------------------------


class CompileStage(msgspec.Struct, frozen=True, kw_only=True):
    """How a compiled language's compile stage ended."""

    verdict: str  # ok, runtime_error (the compiler refused), or a compile limit it ran out of
    exit_code: int | None = None
    signal: int | None = None
    cpu_time_ms: int = 0
    wall_time_ms: int = 0
    memory_kb: int = 0
    cached: bool = False  # the worker's compile cache had the program: this stage did not run again


class TestResult(msgspec.Struct, frozen=True, kw_only=True):
    __test__ = False  # a test's result, not a test for pytest to collect

    name: str
    # ok, wrong_answer, runtime_error, time_limit_exceeded, memory_limit_exceeded,
    # output_limit_exceeded, checker_error, skipped
    verdict: str
    exit_code: int | None = None
    signal: int | None = None
    cpu_time_ms: int = 0
    wall_time_ms: int = 0
    memory_kb: int = 0
    stdout: str = ""
    stdout_truncated: bool = False
    stderr: str = ""
    stderr_truncated: bool = False
    checker_message: str = ""


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    total: int = 0


class ReturnedFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file the program left that the job asked back: its content is read with
    `Client.download(job_id, name)`, or comes inline when the job was read with inline_files."""

    name: str  # relative to the program's working directory, "/" between directories
    size: int = 0
    sha256: str = ""
    media_type: str = ""
    content_base64: str | None = None

    @property
    def content(self) -> bytes | None:
        """The content when it came inline, else None."""
        return None if self.content_base64 is None else base64.b64decode(self.content_base64)


class LeftOut(msgspec.Struct, frozen=True):
    """A file that matched the job's outputs but was not returned, and why."""

    name: str
    reason: str = ""


class Result(msgspec.Struct, frozen=True, kw_only=True):
    # ok, runtime_error, time_limit_exceeded, memory_limit_exceeded, output_limit_exceeded,
    # compile_error; with tests, also wrong_answer and checker_error (the first failing test's)
    verdict: str
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
    # Compiled languages: what the compiler said, and how its stage ended.
    compile_output: str = ""
    compile_output_truncated: bool = False
    compile: CompileStage | None = None
    # A job with tests: each test's result in the order sent, and how many passed.
    tests: list[TestResult] = []
    summary: Summary | None = None
    # A job that asked for files back (`outputs`): those returned, and those left out with why.
    files: list[ReturnedFile] = []
    files_left_out: list[LeftOut] = []


class JobError(msgspec.Struct, frozen=True):
    code: str  # worker_lost, sandbox_error, unsupported_language, invalid_job
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


class Event(msgspec.Struct, frozen=True):
    """One event of a job's stream (Client.stream): `kind` status (data: the new status),
    stdout or stderr (data: a chunk of output), or result (data: the finished job, `job()`)."""

    id: str
    kind: str
    data: str

    def job(self) -> Job:
        """The finished job a `result` event carries."""
        return msgspec.json.decode(self.data, type=Job)


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
