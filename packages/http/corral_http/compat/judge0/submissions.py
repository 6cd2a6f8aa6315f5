"""A Judge0 submission read as a Corral job request, and a Corral job answered as a Judge0
submission."""

from __future__ import annotations

import base64
import binascii
import math
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec
from litestar.status_codes import HTTP_400_BAD_REQUEST

from corral_core.callbacks import Callback, CallbackFormat, CallbackRefused, check_callback_url
from corral_core.job import Job, JobStatus, Limits, RunResult, Verdict
from corral_core.policy import InvalidSubmission, LimitRequest
from corral_core.submission import JobRequest
from corral_http.compat.judge0.schemas import (
    ACCEPTED,
    CANCELLED_MESSAGE,
    COMPILATION_ERROR,
    IN_QUEUE,
    INTERNAL_ERROR,
    MAX_ARGUMENTS_LENGTH,
    MAX_STACK_LIMIT_KB,
    NZEC,
    PROCESSING,
    RUNTIME_ERROR_OTHER,
    SIGABRT,
    SIGFPE,
    SIGSEGV,
    SIGXFSZ,
    STACK_LIMIT_KB,
    TIME_LIMIT_EXCEEDED,
    WRONG_ANSWER,
    AttributeErrors,
    Judge0Error,
    Status,
    SubmissionIn,
)
from corral_http.compat.languages import BY_JUDGE0_ID, BY_LANGUAGE

# Annotation keys: what Judge0 keeps with a submission that a Corral job does not.
_EXPECTED = "judge0.expected_output"
_LANGUAGE_ID = "judge0.language_id"
_REDIRECT = "judge0.redirect_stderr_to_stdout"
_ARGUMENTS = "judge0.command_line_arguments"



# Judge0 names these signals' runtime errors; any other signal is "Other".
_BY_SIGNAL = {11: SIGSEGV, 25: SIGXFSZ, 8: SIGFPE, 6: SIGABRT}





def decode_submission(raw: bytes) -> SubmissionIn:
    try:
        return msgspec.json.decode(raw, type=SubmissionIn, strict=False)
    except msgspec.ValidationError as error:
        raise AttributeErrors({_attribute_of(str(error)): [_type_message(str(error))]}) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
        raise Judge0Error(HTTP_400_BAD_REQUEST, f"malformed JSON: {error}") from None


def _attribute_of(message: str) -> str:
    found = re.search(r"at `\$\.?([A-Za-z_]*)", message)
    return found.group(1) if found and found.group(1) else "base"


def _type_message(message: str) -> str:
    if "`int" in message or "`float" in message:
        return "is not a number"
    if "`bool" in message:
        return "is not a boolean"
    if "`str" in message:
        return "is not a string"
    if "`object" in message:
        return "must be an object"
    return message


def _text(value: str | None, base64_encoded: bool, attribute: str, errors: dict[str, list[str]]) -> str | None:
    if value is None or not base64_encoded:
        return value
    try:
        return _b64decode(value).decode()
    except (binascii.Error, ValueError):
        errors.setdefault(attribute, []).append("is not Base64 encoded UTF-8 text")
        return None


def _b64decode(value: str) -> bytes:
    # Judge0 decodes leniently (Ruby's decode64): line breaks and stray characters are skipped,
    # missing padding is forgiven.
    alphabet = re.sub(r"[^A-Za-z0-9+/]", "", value)
    return base64.b64decode(alphabet + "=" * (-len(alphabet) % 4))


def _between(
    errors: dict[str, list[str]], attribute: str, value: float | None, *, low: float, high: float, strict_low: bool = False
) -> None:
    if value is None:
        return
    if strict_low and value <= low:
        errors.setdefault(attribute, []).append(f"must be greater than {low:g}")
    elif not strict_low and value < low:
        errors.setdefault(attribute, []).append(f"must be greater than or equal to {low:g}")
    elif value > high:
        errors.setdefault(attribute, []).append(f"must be less than or equal to {high:g}")


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def to_request(submission: SubmissionIn, maxima: Limits, base64_encoded: bool) -> JobRequest:
    """The job a Judge0 submission asks for, or AttributeErrors saying what Judge0 would."""
    errors: dict[str, list[str]] = {}
    source_code = _text(submission.source_code, base64_encoded, "source_code", errors)
    stdin = _text(submission.stdin, base64_encoded, "stdin", errors)
    expected = _text(submission.expected_output, base64_encoded, "expected_output", errors)
    if _blank(source_code) and "source_code" not in errors:
        errors["source_code"] = ["can't be blank"]
    row = None
    if submission.language_id is None:
        errors["language_id"] = ["can't be blank"]
    elif (row := BY_JUDGE0_ID.get(submission.language_id)) is None:
        errors["language_id"] = [f"language with id {submission.language_id} doesn't exist"]

    _check_limits(submission, maxima, errors)
    _refuse_features_turned_off(submission, errors)
    callback = _callback(submission.callback_url, errors)
    arguments = submission.command_line_arguments or ""
    args = _arguments(arguments, errors)
    if errors or row is None or source_code is None:
        raise AttributeErrors(errors)

    annotations = {_LANGUAGE_ID: str(row.judge0_id)}
    if expected is not None:
        annotations[_EXPECTED] = expected
    if submission.redirect_stderr_to_stdout:
        annotations[_REDIRECT] = "true"
    if arguments:
        annotations[_ARGUMENTS] = arguments
    return JobRequest(
        code=source_code,
        language=row.language,
        stdin=stdin or "",
        args=tuple(args),
        limits=LimitRequest(
            cpu_time_ms=_ms(submission.cpu_time_limit),
            wall_time_ms=_ms(submission.wall_time_limit),
            memory_mb=None if submission.memory_limit is None else math.ceil(submission.memory_limit / 1024),
            max_processes=submission.max_processes_and_or_threads,
            max_file_size_kb=submission.max_file_size,
        ),
        annotations=annotations,
        callback=callback,
    )


def _callback(url: str | None, errors: dict[str, list[str]]) -> Callback | None:
    """Judge0's callback: its submission's view, PUT to the URL once the submission finishes."""
    if _blank(url):
        return None
    assert url is not None
    try:
        return Callback(url=check_callback_url(url), format=CallbackFormat.JUDGE0)
    except CallbackRefused as refused:
        errors.setdefault("callback_url", []).append(refused.message)
        return None


def _check_limits(submission: SubmissionIn, maxima: Limits, errors: dict[str, list[str]]) -> None:
    _between(errors, "number_of_runs", submission.number_of_runs, low=0, high=1, strict_low=True)
    _between(errors, "cpu_time_limit", submission.cpu_time_limit, low=0, high=maxima.cpu_time_ms / 1000, strict_low=True)
    _between(errors, "cpu_extra_time", submission.cpu_extra_time, low=0, high=0)
    _between(errors, "wall_time_limit", submission.wall_time_limit, low=0, high=maxima.wall_time_ms / 1000, strict_low=True)
    _between(errors, "memory_limit", submission.memory_limit, low=2048, high=maxima.memory_mb * 1024)
    _between(errors, "stack_limit", submission.stack_limit, low=0, high=MAX_STACK_LIMIT_KB)
    _between(
        errors, "max_processes_and_or_threads", submission.max_processes_and_or_threads, low=0, high=maxima.max_processes, strict_low=True
    )
    _between(errors, "max_file_size", submission.max_file_size, low=0, high=maxima.max_file_size_kb, strict_low=True)


def _refuse_features_turned_off(submission: SubmissionIn, errors: dict[str, list[str]]) -> None:
    for option in ("enable_per_process_and_thread_time_limit", "enable_per_process_and_thread_memory_limit"):
        if getattr(submission, option):
            errors.setdefault(option, []).append("this option cannot be enabled")
    # Judge0's answers when an administrator turned these features off, as they are here.
    if not _blank(submission.compiler_options):
        errors.setdefault("compiler_options", []).append("setting compiler options is not allowed")
    if not _blank(submission.additional_files):
        errors.setdefault("additional_files", []).append("setting additional files is not allowed")
    if submission.enable_network:
        errors.setdefault("enable_network", []).append("enabling network is not allowed")


def _arguments(arguments: str, errors: dict[str, list[str]]) -> list[str]:
    if len(arguments) > MAX_ARGUMENTS_LENGTH:
        errors.setdefault("command_line_arguments", []).append(f"is too long (maximum is {MAX_ARGUMENTS_LENGTH} characters)")
        return []
    try:
        # Judge0 hands them to bash after removing the characters that would start another
        # command: the same words, without a shell.
        return shlex.split(re.sub(r"[$&;<>|`]", "", arguments))
    except ValueError as error:
        errors.setdefault("command_line_arguments", []).append(str(error))
        return []


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else math.ceil(seconds * 1000)


# Corral's names for the parts of a request, as Judge0 calls them.
_ATTRIBUTES = {
    "code": "source_code",
    "language": "language_id",
    "stdin": "stdin",
    "args": "command_line_arguments",
    "annotations": "expected_output",
    "limits.cpu_time_ms": "cpu_time_limit",
    "limits.wall_time_ms": "wall_time_limit",
    "limits.memory_mb": "memory_limit",
    "limits.max_processes": "max_processes_and_or_threads",
    "limits.max_file_size_kb": "max_file_size",
}


def attribute_errors(error: InvalidSubmission, language_id: int | None) -> AttributeErrors:
    attribute = _ATTRIBUTES.get(error.field.split("[")[0], error.field)
    if attribute == "language_id":
        return AttributeErrors({attribute: [f"language with id {language_id} doesn't exist"]})
    return AttributeErrors({attribute: [error.message]})



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
    expected = job.annotations.get(_EXPECTED)
    if expected is None or _strip(expected) == _strip(_stdout(job, result)):
        return ACCEPTED, None
    return WRONG_ANSWER, None


def _stdout(job: Job, result: RunResult) -> str:
    if job.annotations.get(_REDIRECT):
        # Corral keeps the two streams apart: stderr follows stdout rather than interleaving.
        return result.stdout + result.stderr
    return result.stdout


def _seconds(ms: int) -> str:
    return str(ms / 1000)


def view(job: Job, fields: Iterable[str], base64_encoded: bool, names: Mapping[int, str]) -> dict[str, Any]:
    """The submission's attributes Judge0 would answer with, in the order asked for.

    `names` are the languages' Judge0 names by id, as the workers offer them now.
    """
    status, message = status_of(job)
    request, result, limits = job.request, job.result, job.request.limits
    language_id = int(job.annotations.get(_LANGUAGE_ID, 0)) or (
        BY_LANGUAGE[request.language].judge0_id if request.language in BY_LANGUAGE else None
    )
    redirect = bool(job.annotations.get(_REDIRECT))
    values: dict[str, Callable[[], Any]] = {
        # Empty once read back: a store keeps no job's code (core's without_inputs).
        "source_code": lambda: request.code or None,
        "language_id": lambda: language_id,
        "stdin": lambda: request.stdin or None,
        "expected_output": lambda: job.annotations.get(_EXPECTED),
        "stdout": lambda: (_stdout(job, result) or None) if result else None,
        "status_id": lambda: status.id,
        "created_at": lambda: job.created_at.isoformat(),
        "finished_at": lambda: job.finished_at.isoformat() if job.finished_at else None,
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
        "compile_output": lambda: (result.compile_output or None) if result else None,
        # Judge0 reads 0 from a run that ended on a signal: isolate reports no exit code then.
        "exit_code": lambda: (result.exit_code or 0) if result else None,
        "exit_signal": lambda: result.signal if result else None,
        "message": lambda: message,
        "wall_time": lambda: _seconds(result.wall_time_ms) if result else None,
        "compiler_options": lambda: None,
        "command_line_arguments": lambda: job.annotations.get(_ARGUMENTS),
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
