"""A Corral job answered as a Judge0 submission: its fields, status and encodings."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from litestar.status_codes import HTTP_400_BAD_REQUEST

from corral_core.job import Job, JobStatus, RunResult, Verdict
from corral_http.compat.judge0.schemas import (
    ACCEPTED,
    ARGUMENTS_ANNOTATION,
    CANCELLED_MESSAGE,
    COMPILATION_ERROR,
    COMPILER_OPTIONS_ANNOTATION,
    EXPECTED_ANNOTATION,
    IN_QUEUE,
    INTERNAL_ERROR,
    LANGUAGE_ID_ANNOTATION,
    NZEC,
    PROCESSING,
    REDIRECT_ANNOTATION,
    RUNTIME_ERROR_OTHER,
    SIGABRT,
    SIGFPE,
    SIGSEGV,
    SIGXFSZ,
    STACK_LIMIT_KB,
    TIME_LIMIT_EXCEEDED,
    WRONG_ANSWER,
    Judge0Error,
    Status,
)
from corral_http.compat.languages import BY_LANGUAGE

# Judge0 names these signals' runtime errors; any other signal is "Other".
_BY_SIGNAL = {11: SIGSEGV, 25: SIGXFSZ, 8: SIGFPE, 6: SIGABRT}

DEFAULT_FIELDS = ("token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status")
ALL_FIELDS = (
    "source_code",
    "language_id",
    "stdin",
    "expected_output",
    "stdout",
    "status_id",
    "created_at",
    "finished_at",
    "time",
    "memory",
    "stderr",
    "token",
    "number_of_runs",
    "cpu_time_limit",
    "cpu_extra_time",
    "wall_time_limit",
    "memory_limit",
    "stack_limit",
    "max_processes_and_or_threads",
    "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "max_file_size",
    "compile_output",
    "exit_code",
    "exit_signal",
    "message",
    "wall_time",
    "compiler_options",
    "command_line_arguments",
    "redirect_stderr_to_stdout",
    "callback_url",
    "additional_files",
    "enable_network",
    "status",
    "language",
)
# The text attributes `base64_encoded=true` encodes in answers.
_TEXT = frozenset({"source_code", "stdin", "expected_output", "stdout", "stderr", "compile_output", "message"})


def requested_fields(fields: str | None) -> tuple[str, ...]:
    names = [name for name in (fields or "").split(",") if name]
    invalid = [name for name in names if name != "*" and name not in ALL_FIELDS]
    if invalid:
        raise Judge0Error(HTTP_400_BAD_REQUEST, f"invalid fields: [{', '.join(invalid)}]")
    if "*" in names:
        return ALL_FIELDS
    return tuple(names) or DEFAULT_FIELDS


def _strip(text: str) -> str:
    # How Judge0 compares an output with the expected one: trailing whitespace of every line
    # and trailing blank lines do not count.
    return "\n".join(line.rstrip() for line in text.split("\n")).rstrip()


def status_of(job: Job) -> tuple[Status, str | None]:
    """Judge0's status for the job, and its message (the precise verdict where Judge0 has none)."""
    if job.status is JobStatus.PENDING:
        return IN_QUEUE, None
    if job.status is JobStatus.RUNNING:
        return PROCESSING, None
    if job.status is JobStatus.CANCELLED:
        # Judge0 has no such status (its DELETE only removes finished submissions): the closest
        # is a run that ended without a verdict, said plainly.
        return INTERNAL_ERROR, CANCELLED_MESSAGE
    if job.error is not None or job.result is None:
        message = job.error.message if job.error else "the job failed without a result"
        return INTERNAL_ERROR, message
    result = job.result
    match result.verdict:
        case Verdict.COMPILE_ERROR:
            return COMPILATION_ERROR, None
        case Verdict.TIME_LIMIT_EXCEEDED:
            return TIME_LIMIT_EXCEEDED, "Time limit exceeded"
        case Verdict.MEMORY_LIMIT_EXCEEDED:
            # Judge0 sees the OOM killer's SIGKILL: a runtime error of no named kind.
            return RUNTIME_ERROR_OTHER, "Memory limit exceeded"
        case Verdict.OUTPUT_LIMIT_EXCEEDED:
            # Judge0 limits output by file size: a program writing past it gets SIGXFSZ.
            return SIGXFSZ, "Output limit exceeded"
        case Verdict.RUNTIME_ERROR if result.signal is not None:
            return _BY_SIGNAL.get(result.signal, RUNTIME_ERROR_OTHER), f"Caught fatal signal {result.signal}"
        case Verdict.RUNTIME_ERROR:
            return NZEC, f"Exited with error status {result.exit_code}"
        # A job with test cases (Corral's own API; Judge0 submissions carry none): its first
        # failing test's verdict.
        case Verdict.WRONG_ANSWER:
            return WRONG_ANSWER, None
        case Verdict.CHECKER_ERROR:
            return INTERNAL_ERROR, "Checker error: a test's checker program failed"
    expected = job.annotations.get(EXPECTED_ANNOTATION)
    if expected is None or _strip(expected) == _strip(_stdout(job, result)):
        return ACCEPTED, None
    return WRONG_ANSWER, None


def _stdout(job: Job, result: RunResult) -> str:
    if job.annotations.get(REDIRECT_ANNOTATION):
        # Corral keeps the two streams apart: stderr follows stdout rather than interleaving.
        return result.stdout + result.stderr
    return result.stdout


def _seconds(ms: int) -> str:
    # Judge0 keeps times as decimals, which Rails writes as strings of seconds: "0.045", "5.0".
    return str(ms / 1000)


def timestamp(moment: datetime) -> str:
    """A time as Judge0 (Rails) writes it: UTC to the millisecond, `2026-12-07T21:12:16.401Z`."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _ran(job: Job) -> RunResult | None:
    """The run's result, or None where Judge0 has none: queued, running, or the compile failed
    (Judge0 then clears time, memory, the streams, the exit code, signal and message)."""
    result = job.result
    if result is None or result.verdict is Verdict.COMPILE_ERROR:
        return None
    return result


def view(job: Job, fields: Iterable[str], base64_encoded: bool, names: Mapping[int, str]) -> dict[str, Any]:
    """The submission's attributes Judge0 would answer with, in the order asked for.

    `names` are the languages' Judge0 names by id, as the workers offer them now.
    """
    status, message = status_of(job)
    request, result, limits = job.request, _ran(job), job.request.limits
    language_id = int(job.annotations.get(LANGUAGE_ID_ANNOTATION, 0)) or (
        BY_LANGUAGE[request.language].judge0_id if request.language in BY_LANGUAGE else None
    )
    redirect = bool(job.annotations.get(REDIRECT_ANNOTATION))
    values: dict[str, Callable[[], Any]] = {
        # Empty once read back: a store keeps no job's code (core's without_inputs).
        "source_code": lambda: request.code or None,
        "language_id": lambda: language_id,
        "stdin": lambda: request.stdin or None,
        "expected_output": lambda: job.annotations.get(EXPECTED_ANNOTATION),
        "stdout": lambda: (_stdout(job, result) or None) if result else None,
        "status_id": lambda: status.id,
        "created_at": lambda: timestamp(job.created_at),
        "finished_at": lambda: timestamp(job.finished_at) if job.finished_at else None,
        "time": lambda: _seconds(result.cpu_time_ms) if result else None,
        "memory": lambda: result.memory_kb if result else None,
        "stderr": lambda: None if not result or redirect else result.stderr or None,
        "token": lambda: job.id,
        "number_of_runs": lambda: 1,
        "cpu_time_limit": lambda: _seconds(limits.cpu_time_ms),
        "cpu_extra_time": lambda: "0.0",
        "wall_time_limit": lambda: _seconds(limits.wall_time_ms),
        "memory_limit": lambda: limits.memory_mb * 1024,
        "stack_limit": lambda: STACK_LIMIT_KB,
        "max_processes_and_or_threads": lambda: limits.max_processes,
        "enable_per_process_and_thread_time_limit": lambda: False,
        "enable_per_process_and_thread_memory_limit": lambda: False,
        "max_file_size": lambda: limits.max_file_size_kb,
        "compile_output": lambda: (job.result.compile_output or None) if job.result else None,
        # Judge0 reads 0 from a run that ended on a signal: isolate reports no exit code then.
        "exit_code": lambda: (result.exit_code or 0) if result else None,
        "exit_signal": lambda: result.signal if result else None,
        "message": lambda: message,
        "wall_time": lambda: _seconds(result.wall_time_ms) if result else None,
        "compiler_options": lambda: job.annotations.get(COMPILER_OPTIONS_ANNOTATION),
        "command_line_arguments": lambda: job.annotations.get(ARGUMENTS_ANNOTATION),
        "redirect_stderr_to_stdout": lambda: redirect,
        "callback_url": lambda: job.callback.url if job.callback else None,
        "additional_files": lambda: None,
        "enable_network": lambda: False,
        "status": lambda: {"id": status.id, "description": status.description},
        "language": lambda: {"id": language_id, "name": names.get(language_id or 0, request.language)},
    }
    answer: dict[str, Any] = {}
    for name in fields:
        value = values[name]()
        if base64_encoded and name in _TEXT and value is not None:
            value = _b64encode(value)
        answer[name] = value
    return answer


def _b64encode(text: str) -> str:
    # As Judge0 sends it (Ruby's encode64): lines of 60 characters, each ending in a newline.
    encoded = base64.b64encode(text.encode()).decode()
    return "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))
