"""The job: what a client asked to run, where it is in its life, and how it ended.

Every state change goes through the transition functions at the bottom of this module, which
refuse any move the lifecycle does not allow. Jobs are frozen msgspec Structs, so a transition
returns a new job and the old value stays valid for whoever still holds it.

The same Structs are the payloads the API and the worker exchange through the queue. The two are
deployed separately, so decoding is lenient: unknown fields are ignored and every field added
later must have a default.
"""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

from corral_core.callbacks import Callback
from corral_core.structs import copied
from corral_core.testcases import Ran, TestCase, TestResult, TestVerdict


class JobStatus(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    # Its client called it off (DELETE /jobs/{id}): it never ran, or its run was killed.
    CANCELLED = "CANCELLED"


FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class Verdict(enum.StrEnum):
    """How a program that ran came to an end (a COMPLETED job's verdict)."""

    OK = "ok"
    RUNTIME_ERROR = "runtime_error"
    TIME_LIMIT_EXCEEDED = "time_limit_exceeded"
    MEMORY_LIMIT_EXCEEDED = "memory_limit_exceeded"
    OUTPUT_LIMIT_EXCEEDED = "output_limit_exceeded"
    # The program never ran: its compiler refused it, or ran out of a compile limit
    # (RunResult.compile says which, compile_output what the compiler said).
    COMPILE_ERROR = "compile_error"
    # A job with test cases (RunResult.tests): its first failing test printed the wrong
    # output, or that test's checker program failed.
    WRONG_ANSWER = "wrong_answer"
    CHECKER_ERROR = "checker_error"


class StdinMode(enum.StrEnum):
    CLOSED = "closed"
    INTERACTIVE = "interactive"


class SandboxStart(enum.StrEnum):
    """How the program's sandbox was started: for it (cold), or ahead of the job (warm)."""

    COLD = "cold"
    WARM = "warm"


class ErrorCode(enum.StrEnum):
    """Why Corral could not run a job (a FAILED job's error code)."""

    WORKER_LOST = "worker_lost"
    SANDBOX_ERROR = "sandbox_error"
    UNSUPPORTED_LANGUAGE = "unsupported_language"


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """The resources one run may use; every field is resolved, none is optional.

    The compile_* ones bound the compile stage of compiled languages (its own jail; output,
    processes and file sizes are the run's). They have defaults only so that a job queued
    before they existed still decodes; the API always resolves them.
    """

    cpu_time_ms: int
    wall_time_ms: int
    memory_mb: int
    max_processes: int
    max_output_bytes: int
    max_file_size_kb: int
    compile_cpu_time_ms: int = 10_000
    compile_wall_time_ms: int = 20_000
    compile_memory_mb: int = 512
    # Files the job asked back (Program.outputs): how many, and their KiB in all (one file is
    # bounded by max_file_size_kb, as any file the program writes).
    max_returned_files: int = 16
    max_returned_files_kb: int = 16 * 1024


class LimitRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Limits as a client asks for them: every field may be left to the server's default."""

    cpu_time_ms: int | None = None
    wall_time_ms: int | None = None
    memory_mb: int | None = None
    max_processes: int | None = None
    max_output_bytes: int | None = None
    max_file_size_kb: int | None = None
    compile_cpu_time_ms: int | None = None
    compile_wall_time_ms: int | None = None
    compile_memory_mb: int | None = None
    max_returned_files: int | None = None
    max_returned_files_kb: int | None = None


class InputFile(msgspec.Struct, frozen=True):
    """A file the host writes into the job's working directory before the program starts."""

    name: str
    content: bytes


class ReturnedFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file a job's program left that the job asked back (Program.outputs)."""

    # Relative to the program's working directory, with "/" between directories.
    name: str
    size: int
    sha256: str
    media_type: str
    # Empty once stored: a store keeps a finished job's files apart (JobStore.file).
    content: bytes = b""


class LeftOut(msgspec.Struct, frozen=True):
    """A file that matched what the job asked back but was not returned, and why."""

    name: str
    reason: str


class CompileResult(msgspec.Struct, frozen=True, kw_only=True):
    """How the compile stage of a compiled language ended (its output is RunResult.compile_output).

    `verdict` is ok, runtime_error (the compiler refused the code), or the compile limit it ran
    out of: time_limit_exceeded, memory_limit_exceeded, output_limit_exceeded.
    """

    verdict: Verdict
    exit_code: int | None = None
    signal: int | None = None
    cpu_time_ms: int = 0
    wall_time_ms: int = 0
    memory_kb: int = 0
    # The compiled program came from the worker's compile cache: this stage did not run again
    # (its figures are those of the run that compiled it).
    cached: bool = False


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    verdict: Verdict
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    cpu_time_ms: int = 0
    wall_time_ms: int = 0
    memory_kb: int = 0
    # Compiled languages only: the compiler's stdout and stderr (capped like stdout), and how
    # the compile stage ended. A failed compile is verdict compile_error, and nothing ran.
    compile_output: str = ""
    compile_output_truncated: bool = False
    compile: CompileResult | None = None
    sandbox_start: SandboxStart = SandboxStart.COLD
    # The files asked back (Program.outputs) that were found and read, and those that matched
    # but were left out (not a regular file, past a limit, a name that is not plain text...).
    files: tuple[ReturnedFile, ...] = ()
    files_left_out: tuple[LeftOut, ...] = ()
    # A job with test cases: each test's run and judgement, in the order asked. The verdict
    # is the first failing test's (verdict_of_tests); the times are the tests' sums, the memory
    # their most, and stdout and stderr stay empty (each test has its own).
    tests: tuple[TestResult, ...] = ()


def verdict_of_tests(tests: tuple[TestResult, ...] | list[TestResult]) -> Verdict:
    """A job's verdict from its tests: its first failing test's, or ok."""
    for test in tests:
        if test.verdict not in (TestVerdict.OK, TestVerdict.SKIPPED):
            return Verdict(test.verdict.value)
    return Verdict.OK


def ran_of(result: RunResult) -> Ran:
    """One run of a test's program or checker, as judging it needs it."""
    return copied(Ran, result)


def result_of_tests(tests: list[TestResult], sandbox_start: SandboxStart = SandboxStart.COLD) -> RunResult:
    """A job's result from its tests' (RunResult.tests says how the figures add up)."""
    return RunResult(
        verdict=verdict_of_tests(tests),
        cpu_time_ms=sum(test.cpu_time_ms for test in tests),
        wall_time_ms=sum(test.wall_time_ms for test in tests),
        memory_kb=max((test.memory_kb for test in tests), default=0),
        sandbox_start=sandbox_start,
        tests=tuple(tests),
    )


class JobError(msgspec.Struct, frozen=True):
    code: ErrorCode
    message: str


class Program(msgspec.Struct, frozen=True, kw_only=True):
    """What a client asks to run: the code, its language and what it is given.

    Written once here: the run request a sandbox gets and the submission a client makes
    (corral_core.usecases.JobRequest) both extend it, each with limits of its own kind.
    """

    language: str
    code: str
    stdin: str = ""
    args: tuple[str, ...] = ()
    # A compiled language's compiler flags ("-O0", "-DDEBUG"): each one argv element of the
    # compiler, never read by a shell, where its runtime's compile command takes them.
    compiler_args: tuple[str, ...] = ()
    files: tuple[InputFile, ...] = ()
    # "closed": stdin is `stdin`, whole, before the program starts. "interactive": stdin is
    # what the client sends while the job runs (corral_core.events.JobInput), until it closes it.
    stdin_mode: StdinMode = StdinMode.CLOSED
    # Files to send back once the program ends: glob patterns relative to its working directory
    # ("plot.png", "out/**/*.csv"), read safely by the sandbox (RunResult.files).
    outputs: tuple[str, ...] = ()
    # Test cases: the program runs once per test, with the test's stdin and args in place of
    # the ones above, each run judged (corral_core.testcases).
    tests: tuple[TestCase, ...] = ()
    stop_on_first_failure: bool = False

    def with_limits(self, limits: Limits) -> RunRequest:
        return RunRequest(**{name: getattr(self, name) for name in Program.__struct_fields__}, limits=limits)


class RunRequest(Program, frozen=True, kw_only=True):
    """What a sandbox needs to run one program."""

    limits: Limits


class Job(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    request: RunRequest
    status: JobStatus = JobStatus.PENDING
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    result: RunResult | None = None
    error: JobError | None = None
    # The id of the HTTP request that submitted the job, so that the worker's log lines of its
    # run can be tied to the API's; empty when there was none.
    request_id: str = ""
    # What a front end asked to keep beside the job (the Judge0 adapter's expected output,
    # say), returned as given. Corral never reads it; the sandbox never sees it.
    annotations: dict[str, str] = {}
    # The id of the API key that submitted it (corral_core.access): only that key, or an
    # admin key, may read it. Empty when the API runs without keys.
    owner: str = ""
    # Where the finished job is sent (corral_core.callbacks), and how that delivery stands.
    callback: Callback | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class IllegalTransition(Exception):
    def __init__(self, job: Job, target: JobStatus) -> None:
        super().__init__(f"job {job.id} cannot go from {job.status} to {target}")
        self.job = job
        self.target = target


ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    # RUNNING -> PENDING is a re-queue: the worker was lost or handed the job back.
    JobStatus.RUNNING: frozenset({JobStatus.PENDING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def _move(job: Job, target: JobStatus, **changes: object) -> Job:
    if target not in ALLOWED[job.status]:
        raise IllegalTransition(job, target)
    return msgspec.structs.replace(job, status=target, **changes)


def start(job: Job, now: datetime) -> Job:
    """A worker claimed the job: one more attempt begins."""
    return _move(job, JobStatus.RUNNING, started_at=now, attempts=job.attempts + 1)


def complete(job: Job, result: RunResult, now: datetime) -> Job:
    return _move(job, JobStatus.COMPLETED, result=result, finished_at=now)


def fail(job: Job, error: JobError, now: datetime) -> Job:
    return _move(job, JobStatus.FAILED, error=error, finished_at=now)


def cancel(job: Job, now: datetime) -> Job:
    """Its client called it off: a pending job never runs, a running one is stopped."""
    return _move(job, JobStatus.CANCELLED, finished_at=now)


def requeue(job: Job, *, count_attempt: bool = True) -> Job:
    """Put a running job back in line.

    A lost worker's attempt counts towards the job's attempt limit; a job handed back on a
    graceful shutdown was never really tried, so its attempt is given back.
    """
    attempts = job.attempts if count_attempt else max(job.attempts - 1, 0)
    return _move(job, JobStatus.PENDING, started_at=None, attempts=attempts)


def without_inputs(job: Job) -> Job:
    """The job as its client reads it back: its code, stdin and files left out.

    They are the bulk of a request and only the worker needs them; a store may drop them once
    the job finishes, and reading a job never has to fetch them.
    """
    request = msgspec.structs.replace(job.request, code="", stdin="", files=())
    return msgspec.structs.replace(job, request=request)


def without_file_contents(job: Job) -> Job:
    """The job with its returned files listed but not their content, which a store keeps apart
    (JobStore.file): reading a job never has to fetch them."""
    if job.result is None or not job.result.files:
        return job
    files = tuple(msgspec.structs.replace(file, content=b"") for file in job.result.files)
    return msgspec.structs.replace(job, result=msgspec.structs.replace(job.result, files=files))


def worker_lost(attempts: int) -> JobError:
    return JobError(
        ErrorCode.WORKER_LOST,
        f"worker lost: the job's worker stopped renewing its lease ({attempts} attempts)",
    )


# On the wire a job is msgspec's JSON of the Job. Reading is lenient (fields this version does
# not know are ignored, fields it lacks get their defaults): the API and the worker are deployed
# separately, and one may be a version ahead of the other.
_job_encoder = msgspec.json.Encoder()
_job_decoder = msgspec.json.Decoder(Job)


def encode_job(job: Job) -> bytes:
    return _job_encoder.encode(job)


def decode_job(data: bytes | str) -> Job:
    return _job_decoder.decode(data)
