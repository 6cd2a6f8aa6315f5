"""A Judge0 CE 1.13-compatible API, mounted at /judge0: a Judge0 client's base URL.

Submissions are Corral jobs submitted and read through the same use cases as /execute; a
submission's token is its job id. What Judge0 keeps with a submission and Corral's job does not
(the expected output, the language id asked for, redirect_stderr_to_stdout) rides along in the
job's annotations. Requests are decoded as Judge0 (Rails) reads them: unknown attributes
ignored, numbers and booleans accepted as strings. Errors are Judge0's own bodies: 422 with
{attribute: [messages]}, 400 and 503 with {"error": ...}.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec
from litestar import Controller, Request, Response, Router, delete, get, post
from litestar.di import Provide
from litestar.exceptions import NotFoundException, ValidationException
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap

from corral_api.compat.languages import BY_JUDGE0_ID, BY_LANGUAGE, LanguageRow, offered
from corral_api.dependencies import JobRoutes, Runtimes, Settings
from corral_api.longpolls import TooManyLongPolls
from corral_api.settings import ApiSettings
from corral_core.access import OverQuota
from corral_core.job import Job, JobStatus, RunResult, Verdict
from corral_core.policy import InvalidSubmission, LimitRequest
from corral_core.ports import QueueFull, Runtime, RuntimeCatalog, StorageFull, StorageUnavailable
from corral_core.usecases import JobNotFound, JobRequest

MAX_BATCH = 20
MAX_ARGUMENTS_LENGTH = 512
# Judge0's stack limit (KB) is reported and echoed; NsJail applies the runtime's own.
STACK_LIMIT_KB = 64_000
MAX_STACK_LIMIT_KB = 128_000
TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Annotation keys: what Judge0 keeps with a submission that a Corral job does not.
_EXPECTED = "judge0.expected_output"
_LANGUAGE_ID = "judge0.language_id"
_REDIRECT = "judge0.redirect_stderr_to_stdout"
_ARGUMENTS = "judge0.command_line_arguments"


class Status(msgspec.Struct, frozen=True):
    id: int
    description: str


IN_QUEUE = Status(1, "In Queue")
PROCESSING = Status(2, "Processing")
ACCEPTED = Status(3, "Accepted")
WRONG_ANSWER = Status(4, "Wrong Answer")
TIME_LIMIT_EXCEEDED = Status(5, "Time Limit Exceeded")
COMPILATION_ERROR = Status(6, "Compilation Error")
SIGSEGV = Status(7, "Runtime Error (SIGSEGV)")
SIGXFSZ = Status(8, "Runtime Error (SIGXFSZ)")
SIGFPE = Status(9, "Runtime Error (SIGFPE)")
SIGABRT = Status(10, "Runtime Error (SIGABRT)")
NZEC = Status(11, "Runtime Error (NZEC)")
RUNTIME_ERROR_OTHER = Status(12, "Runtime Error (Other)")
INTERNAL_ERROR = Status(13, "Internal Error")
EXEC_FORMAT_ERROR = Status(14, "Exec Format Error")
STATUSES = (
    IN_QUEUE,
    PROCESSING,
    ACCEPTED,
    WRONG_ANSWER,
    TIME_LIMIT_EXCEEDED,
    COMPILATION_ERROR,
    SIGSEGV,
    SIGXFSZ,
    SIGFPE,
    SIGABRT,
    NZEC,
    RUNTIME_ERROR_OTHER,
    INTERNAL_ERROR,
    EXEC_FORMAT_ERROR,
)
# The message of a job its client cancelled (DELETE /jobs/{id}), with status 13.
CANCELLED_MESSAGE = "Cancelled: the job was called off (DELETE /jobs/{id}) before it finished"
# Judge0 names these signals' runtime errors; any other signal is "Other".
_BY_SIGNAL = {11: SIGSEGV, 25: SIGXFSZ, 8: SIGFPE, 6: SIGABRT}


class SubmissionIn(msgspec.Struct, frozen=True):
    """A submission's attributes as Judge0 takes them: all optional, unknown ones ignored."""

    source_code: str | None = None
    language_id: int | None = None
    compiler_options: str | None = None
    command_line_arguments: str | None = None
    number_of_runs: int | None = None
    stdin: str | None = None
    expected_output: str | None = None
    cpu_time_limit: float | None = None
    cpu_extra_time: float | None = None
    wall_time_limit: float | None = None
    memory_limit: int | None = None
    stack_limit: int | None = None
    max_processes_and_or_threads: int | None = None
    enable_per_process_and_thread_time_limit: bool | None = None
    enable_per_process_and_thread_memory_limit: bool | None = None
    max_file_size: int | None = None
    redirect_stderr_to_stdout: bool | None = None
    callback_url: str | None = None
    additional_files: str | None = None
    enable_network: bool | None = None


class BatchIn(msgspec.Struct, frozen=True):
    submissions: list[msgspec.Raw] | None = None


class Judge0Error(Exception):
    """An answer Judge0 gives as {"error": message}."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class AttributeErrors(Exception):
    """Judge0's 422: the messages per attribute of one submission."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


# ---- reading a submission -------------------------------------------------------------------


def _decode_submission(raw: bytes) -> SubmissionIn:
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


def to_request(submission: SubmissionIn, settings: ApiSettings, base64_encoded: bool) -> JobRequest:
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

    maxima = settings.limit_policy().maxima
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
    for option in ("enable_per_process_and_thread_time_limit", "enable_per_process_and_thread_memory_limit"):
        if getattr(submission, option):
            errors.setdefault(option, []).append("this option cannot be enabled")
    # Judge0's answers when an administrator turned these features off, as they are here.
    if not _blank(submission.compiler_options):
        errors.setdefault("compiler_options", []).append("setting compiler options is not allowed")
    if not _blank(submission.callback_url):
        errors.setdefault("callback_url", []).append("setting callback is not allowed")
    if not _blank(submission.additional_files):
        errors.setdefault("additional_files", []).append("setting additional files is not allowed")
    if submission.enable_network:
        errors.setdefault("enable_network", []).append("enabling network is not allowed")
    arguments = submission.command_line_arguments or ""
    args: list[str] = []
    if len(arguments) > MAX_ARGUMENTS_LENGTH:
        errors.setdefault("command_line_arguments", []).append(f"is too long (maximum is {MAX_ARGUMENTS_LENGTH} characters)")
    else:
        try:
            # Judge0 hands them to bash after removing the characters that would start another
            # command: the same words, without a shell.
            args = shlex.split(re.sub(r"[$&;<>|`]", "", arguments))
        except ValueError as error:
            errors.setdefault("command_line_arguments", []).append(str(error))
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
    )


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


def _attribute_errors(error: InvalidSubmission, language_id: int | None) -> AttributeErrors:
    attribute = _ATTRIBUTES.get(error.field.split("[")[0], error.field)
    if attribute == "language_id":
        return AttributeErrors({attribute: [f"language with id {language_id} doesn't exist"]})
    return AttributeErrors({attribute: [error.message]})


# ---- answering with a submission ------------------------------------------------------------

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
        "callback_url": lambda: None,
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


# ---- the routes -----------------------------------------------------------------------------


def _flag(value: str | None) -> bool:
    # Judge0 turns an option on with the word "true" and nothing else.
    return value == "true"


class SubmissionsController(Controller):
    path = "/submissions"
    tags = ["judge0"]

    @post("/", status_code=HTTP_201_CREATED, summary="Create a submission (Judge0)")
    async def create(
        self,
        request: Request[Any, Any, Any],
        jobs: JobRoutes,
        base64_encoded: str | None = None,
        wait: str | None = None,
        fields: str | None = None,
    ) -> Response[dict[str, Any]]:
        waiting = _flag(wait)
        encoded = _flag(base64_encoded)
        chosen = requested_fields(fields)
        submission = _decode_submission(await request.body())
        job_request = to_request(submission, jobs.settings, encoded)
        with jobs.long_polls.hold() if waiting else contextlib.nullcontext():
            job = await _submit(jobs.submit, job_request, submission.language_id)
            if not waiting:
                return Response({"token": job.id}, status_code=HTTP_201_CREATED)
            job = await jobs.get(job.id, wait_s=jobs.settings.max_wait_s)
        return Response(view(job, chosen, encoded, await _names(jobs.runtimes, chosen)), status_code=HTTP_201_CREATED)

    @post("/batch", status_code=HTTP_201_CREATED, summary="Create a batch of submissions (Judge0)")
    async def create_batch(
        self,
        request: Request[Any, Any, Any],
        jobs: JobRoutes,
        base64_encoded: str | None = None,
    ) -> Response[list[dict[str, Any]]]:
        try:
            batch = msgspec.json.decode(await request.body(), type=BatchIn)
        # msgspec raises UnicodeDecodeError for invalid UTF-8 in a string, RecursionError for
        # deep nesting: the client's fault as much as any other malformed JSON.
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
            raise Judge0Error(HTTP_400_BAD_REQUEST, f"malformed JSON: {error}") from None
        _check_batch_size(len(batch.submissions or []))
        submit_job, settings = jobs.submit, jobs.settings
        answers: list[dict[str, Any]] = []
        accepted = False
        for raw in batch.submissions or []:
            try:
                submission = _decode_submission(raw)
                job = await _submit(submit_job, to_request(submission, settings, _flag(base64_encoded)), submission.language_id)
            except AttributeErrors as error:
                answers.append(dict(error.errors))
                continue
            answers.append({"token": job.id})
            accepted = True
        return Response(answers, status_code=HTTP_201_CREATED if accepted else HTTP_422_UNPROCESSABLE_ENTITY)

    @get("/batch", summary="Get a batch of submissions (Judge0)")
    async def read_batch(
        self,
        request: Request[Any, Any, Any],
        jobs: JobRoutes,
        tokens: str | None = None,
        base64_encoded: str | None = None,
        fields: str | None = None,
    ) -> dict[str, list[dict[str, Any] | None]]:
        chosen = requested_fields(fields)
        asked = (request.headers.get("tokens") or tokens or "").strip()
        names = [token for token in asked.split(",") if token] if asked else []
        _check_batch_size(len(names))
        found: list[dict[str, Any] | None] = []
        language_names = await _names(jobs.runtimes, chosen)
        get_job = jobs.get
        for token in names:
            job = await _find(get_job, token)
            found.append(None if job is None else view(job, chosen, _flag(base64_encoded), language_names))
        return {"submissions": found}

    @get("/{token:str}", summary="Get a submission (Judge0)")
    async def read(
        self,
        token: str,
        jobs: JobRoutes,
        base64_encoded: str | None = None,
        fields: str | None = None,
    ) -> dict[str, Any]:
        chosen = requested_fields(fields)
        job = await _find(jobs.get, token)
        if job is None:
            raise NotFoundException()
        return view(job, chosen, _flag(base64_encoded), await _names(jobs.runtimes, chosen))

    @delete("/{token:str}", status_code=HTTP_200_OK, summary="Delete a submission (Judge0): not allowed here")
    async def remove(self, token: str) -> None:
        # Judge0's delete removes a finished submission, which Corral keeps until it expires (a
        # job is cancelled through DELETE /jobs/{id}); Judge0 answers so when deletion is off.
        raise Judge0Error(HTTP_400_BAD_REQUEST, "delete not allowed")


async def _submit(submit_job: Callable[[JobRequest], Any], request: JobRequest, language_id: int | None) -> Job:
    try:
        job: Job = await submit_job(request)
    except InvalidSubmission as error:
        raise _attribute_errors(error, language_id) from None
    return job


async def _find(get_job: Callable[..., Any], token: str) -> Job | None:
    if not TOKEN.match(token):
        return None
    try:
        job: Job = await get_job(token)
    except JobNotFound:
        return None
    return job


def _check_batch_size(count: int) -> None:
    if count > MAX_BATCH:
        raise Judge0Error(
            HTTP_400_BAD_REQUEST, f"number of submissions in a batch should be less than or equal to {MAX_BATCH}"
        )
    if count == 0:
        raise Judge0Error(HTTP_400_BAD_REQUEST, "there should be at least one submission in a batch")


class Judge0Language(msgspec.Struct, frozen=True):
    runtime: Runtime
    row: LanguageRow

    @property
    def id(self) -> int:
        return self.row.judge0_id

    @property
    def name(self) -> str:
        return self.row.judge0_name.format(version=self.runtime.version)


async def judge0_languages(runtimes: RuntimeCatalog) -> list[Judge0Language]:
    """The languages live workers offer that Judge0 has an id for, by name.

    Judge0 has one id per language and version; the newest version a worker offers takes it.
    """
    chosen: dict[int, Judge0Language] = {}
    for lang in offered(await runtimes.offered()):
        if lang.row is not None and lang.row.judge0_id not in chosen:
            chosen[lang.row.judge0_id] = Judge0Language(lang.runtime, lang.row)
    return sorted(chosen.values(), key=lambda lang: lang.name)


async def _names(runtimes: RuntimeCatalog, fields: tuple[str, ...]) -> dict[int, str]:
    if "language" not in fields:
        return {}
    return {lang.id: lang.name for lang in await judge0_languages(runtimes)}


class LanguagesController(Controller):
    path = "/languages"
    tags = ["judge0"]

    @get("/", summary="Languages the workers run, by Judge0 id (Judge0)")
    async def languages(self, runtimes: Runtimes) -> list[dict[str, Any]]:
        return [{"id": lang.id, "name": lang.name} for lang in await judge0_languages(runtimes)]

    @get("/all", summary="Active and archived languages (Judge0)")
    async def all_languages(self, runtimes: Runtimes) -> list[dict[str, Any]]:
        return [{"id": lang.id, "name": lang.name, "is_archived": False} for lang in await judge0_languages(runtimes)]

    @get("/{language_id:int}", summary="A language (Judge0)")
    async def language(self, language_id: int, runtimes: Runtimes) -> dict[str, Any]:
        for lang in await judge0_languages(runtimes):
            if lang.id == language_id:
                source = lang.runtime.source_file or "main"
                return {
                    "id": lang.id,
                    "name": lang.name,
                    "is_archived": False,
                    "source_file": source,
                    "compile_cmd": lang.row.compile_cmd.format(source=source) if lang.row.compile_cmd else None,
                    "run_cmd": lang.row.run_cmd.format(source=source),
                }
        raise NotFoundException()


class ServiceController(Controller):
    tags = ["judge0"]

    @get("/statuses", summary="Submission statuses (Judge0)")
    async def statuses(self) -> list[Status]:
        return list(STATUSES)

    @get("/about", summary="About this API (Judge0)")
    async def about(self) -> dict[str, str]:
        return {
            "version": "1.13.1",
            "homepage": "https://judge0.com",
            "source_code": "https://github.com/judge0/judge0",
            "maintainer": "Corral: a Judge0 CE 1.13-compatible API over Corral's sandboxes (not Judge0 itself)",
        }

    @get("/config_info", summary="Limits and features of this API (Judge0)")
    async def config_info(self, settings: Settings, queue_size: int) -> dict[str, Any]:
        return config_info(settings, queue_size)


def config_info(settings: ApiSettings, queue_size: int) -> dict[str, Any]:
    defaults, maxima = settings.limit_policy().defaults, settings.limit_policy().maxima
    return {
        "maintenance_mode": False,
        "enable_wait_result": True,
        "enable_compiler_options": False,
        "allowed_languages_for_compile_options": [],
        "enable_command_line_arguments": True,
        "enable_submission_delete": False,
        "enable_callbacks": False,
        "callbacks_max_tries": 0,
        "callbacks_timeout": 0.0,
        "enable_additional_files": False,
        "max_queue_size": queue_size,
        "cpu_time_limit": defaults.cpu_time_ms / 1000,
        "max_cpu_time_limit": maxima.cpu_time_ms / 1000,
        "cpu_extra_time": 0.0,
        "max_cpu_extra_time": 0.0,
        "wall_time_limit": defaults.wall_time_ms / 1000,
        "max_wall_time_limit": maxima.wall_time_ms / 1000,
        "memory_limit": defaults.memory_mb * 1024,
        "max_memory_limit": maxima.memory_mb * 1024,
        "stack_limit": STACK_LIMIT_KB,
        "max_stack_limit": MAX_STACK_LIMIT_KB,
        "max_processes_and_or_threads": defaults.max_processes,
        "max_max_processes_and_or_threads": maxima.max_processes,
        "enable_per_process_and_thread_time_limit": False,
        "allow_enable_per_process_and_thread_time_limit": False,
        "enable_per_process_and_thread_memory_limit": False,
        "allow_enable_per_process_and_thread_memory_limit": False,
        "max_file_size": defaults.max_file_size_kb,
        "max_max_file_size": maxima.max_file_size_kb,
        "number_of_runs": 1,
        "max_number_of_runs": 1,
        "redirect_stderr_to_stdout": False,
        "max_extract_size": 0,
        "enable_batched_submissions": True,
        "max_submission_batch_size": MAX_BATCH,
        "submission_cache_duration": 0.0,
        "use_docs_as_homepage": False,
        "allow_enable_network": False,
        "enable_network": False,
    }


# ---- errors as Judge0 answers them ----------------------------------------------------------


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response[dict[str, str]]:
    return Response({"error": message}, status_code=status, headers=headers)


def exception_handlers(retry_after_s: int) -> ExceptionHandlersMap:
    def judge0_error(_: Request[Any, Any, Any], error: Judge0Error) -> Response[dict[str, str]]:
        return _error(error.status_code, error.message)

    def attribute_errors(_: Request[Any, Any, Any], error: AttributeErrors) -> Response[dict[str, list[str]]]:
        return Response(error.errors, status_code=HTTP_422_UNPROCESSABLE_ENTITY)

    def invalid(_: Request[Any, Any, Any], error: InvalidSubmission) -> Response[dict[str, str]]:
        # The server's own bounds on a request (the longest wait, say), not a submission's.
        return _error(HTTP_400_BAD_REQUEST, str(error))

    def queue_full(_: Request[Any, Any, Any], error: QueueFull) -> Response[dict[str, str]]:
        return _error(HTTP_503_SERVICE_UNAVAILABLE, "queue is full", {"Retry-After": str(retry_after_s)})

    def unavailable(
        _: Request[Any, Any, Any], error: StorageFull | StorageUnavailable | TooManyLongPolls
    ) -> Response[dict[str, str]]:
        return _error(HTTP_503_SERVICE_UNAVAILABLE, str(error), {"Retry-After": str(retry_after_s)})

    def not_found(_: Request[Any, Any, Any], error: NotFoundException) -> Response[dict[str, str]]:
        return _error(HTTP_404_NOT_FOUND, "Not Found")

    def over_quota(_: Request[Any, Any, Any], error: OverQuota) -> Response[dict[str, str]]:
        return _error(HTTP_429_TOO_MANY_REQUESTS, str(error), {"Retry-After": str(error.retry_after_s)})

    def validation(_: Request[Any, Any, Any], error: ValidationException) -> Response[dict[str, str]]:
        return _error(HTTP_400_BAD_REQUEST, str(error.detail))

    return {
        Judge0Error: judge0_error,
        AttributeErrors: attribute_errors,
        InvalidSubmission: invalid,
        QueueFull: queue_full,
        StorageFull: unavailable,
        StorageUnavailable: unavailable,
        TooManyLongPolls: unavailable,
        OverQuota: over_quota,
        NotFoundException: not_found,
        ValidationException: validation,
    }


def router(settings: ApiSettings, queue_size: int) -> Router:
    """The Judge0 API, for `create_app` to mount."""

    def max_queue() -> int:
        return queue_size

    return Router(
        path="/judge0",
        route_handlers=[SubmissionsController, LanguagesController, ServiceController],
        exception_handlers=exception_handlers(settings.retry_after_s),
        dependencies={"queue_size": Provide(max_queue, sync_to_thread=False)},
        include_in_schema=True,
    )
