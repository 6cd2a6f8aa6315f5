"""A Judge0 submission read as a Corral job request: every attribute checked before use."""

from __future__ import annotations

import base64
import binascii
import math
import re
import shlex

import msgspec
from litestar.status_codes import HTTP_400_BAD_REQUEST

from corral_core.callbacks import Callback, CallbackFormat, CallbackRefused, check_callback_url
from corral_core.job import InputFile, Limits
from corral_core.policy import InvalidSubmission, LimitRequest, SizePolicy
from corral_core.submission import JobRequest
from corral_http.compat.judge0.archive import ArchiveRefused, input_files
from corral_http.compat.judge0.schemas import (
    ARGUMENTS_ANNOTATION,
    COMPILER_OPTIONS_ANNOTATION,
    EXPECTED_ANNOTATION,
    LANGUAGE_ID_ANNOTATION,
    MAX_ARGUMENTS_LENGTH,
    MAX_STACK_LIMIT_KB,
    REDIRECT_ANNOTATION,
    AttributeErrors,
    Judge0Error,
    SubmissionIn,
)
from corral_http.compat.languages import BY_JUDGE0_ID

# Judge0's multi-file program: no source_code, an additional_files archive with `run` in it.
MULTI_FILE_ID = 89


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
    if not math.isfinite(value):
        # Rails reads "NaN" and "Infinity" as no number at all; so does Judge0.
        errors.setdefault(attribute, []).append("is not a number")
    elif strict_low and value <= low:
        errors.setdefault(attribute, []).append(f"must be greater than {low:g}")
    elif not strict_low and value < low:
        errors.setdefault(attribute, []).append(f"must be greater than or equal to {low:g}")
    elif value > high:
        errors.setdefault(attribute, []).append(f"must be less than or equal to {high:g}")


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def to_request(submission: SubmissionIn, maxima: Limits, sizes: SizePolicy, base64_encoded: bool) -> JobRequest:
    """The job a Judge0 submission asks for, or AttributeErrors saying what Judge0 would."""
    errors: dict[str, list[str]] = {}
    source_code = _text(submission.source_code, base64_encoded, "source_code", errors)
    stdin = _text(submission.stdin, base64_encoded, "stdin", errors)
    expected = _text(submission.expected_output, base64_encoded, "expected_output", errors)
    row = None
    if submission.language_id is None:
        errors["language_id"] = ["can't be blank"]
    elif (row := BY_JUDGE0_ID.get(submission.language_id)) is None:
        errors["language_id"] = [f"language with id {submission.language_id} doesn't exist"]
    project = row is not None and row.judge0_id == MULTI_FILE_ID
    if project and not _blank(source_code):
        errors["source_code"] = ["must be blank"]
    elif not project and _blank(source_code) and "source_code" not in errors:
        errors["source_code"] = ["can't be blank"]

    _check_limits(submission, maxima, errors)
    _refuse_features_turned_off(submission, errors)
    callback = _callback(submission.callback_url, errors)
    arguments = submission.command_line_arguments or ""
    args = _arguments("command_line_arguments", arguments, errors)
    options = submission.compiler_options or ""
    compiler_args = _arguments("compiler_options", options, errors)
    files = _additional_files(submission.additional_files, sizes, errors)
    if project:
        source_code, files = _run_script(files, errors)
    if errors or row is None or source_code is None:
        raise AttributeErrors(errors)

    kept = {
        LANGUAGE_ID_ANNOTATION: str(row.judge0_id),
        EXPECTED_ANNOTATION: expected,
        REDIRECT_ANNOTATION: "true" if submission.redirect_stderr_to_stdout else None,
        ARGUMENTS_ANNOTATION: arguments or None,
        COMPILER_OPTIONS_ANNOTATION: options or None,
    }
    return JobRequest(
        code=source_code,
        language=row.language,
        stdin=stdin or "",
        args=tuple(args),
        compiler_args=tuple(compiler_args),
        files=files,
        limits=LimitRequest(
            cpu_time_ms=_ms(submission.cpu_time_limit),
            wall_time_ms=_ms(submission.wall_time_limit),
            memory_mb=None if submission.memory_limit is None else math.ceil(submission.memory_limit / 1024),
            max_processes=submission.max_processes_and_or_threads,
            max_file_size_kb=submission.max_file_size,
        ),
        annotations={key: value for key, value in kept.items() if value is not None},
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
    if submission.enable_network:
        errors.setdefault("enable_network", []).append("enabling network is not allowed")


def _additional_files(encoded: str | None, sizes: SizePolicy, errors: dict[str, list[str]]) -> tuple[InputFile, ...]:
    """The zip archive's files (always base64, whatever base64_encoded says, as Judge0 takes it)."""
    if _blank(encoded):
        return ()
    assert encoded is not None
    # Base64 takes 4 characters for 3 bytes; an archive is never larger than what it holds
    # by more than its headers.
    if len(encoded) > 2 * sizes.max_files_bytes + 64 * 1024:
        errors.setdefault("additional_files", []).append(f"is larger than {sizes.max_files_bytes} bytes")
        return ()
    try:
        return input_files(_b64decode(encoded), sizes)
    except (binascii.Error, ValueError):
        errors.setdefault("additional_files", []).append("is not Base64 encoded")
    except ArchiveRefused as refused:
        errors.setdefault("additional_files", []).append(str(refused))
    return ()


def _run_script(files: tuple[InputFile, ...], errors: dict[str, list[str]]) -> tuple[str | None, tuple[InputFile, ...]]:
    """A multi-file program's `run` script, its code, and the archive's other files (Judge0 runs
    `compile`, when there is one, then `run`, each with bash)."""
    run = next((file for file in files if file.name == "run"), None)
    if run is None:
        if "additional_files" not in errors:
            errors["additional_files"] = ["can't be blank" if not files else "holds no run script"]
        return None, ()
    try:
        return run.content.decode(), tuple(file for file in files if file is not run)
    except UnicodeDecodeError:
        errors["additional_files"] = ["has a run script that is not UTF-8 text"]
        return None, ()


def _arguments(attribute: str, text: str, errors: dict[str, list[str]]) -> list[str]:
    """The words of `command_line_arguments` or `compiler_options`, as argv elements.

    Judge0 (isolate_job.rb) removes `$&;<>|` and backticks, then writes the words into a
    script that bash runs: a line break there starts another command (the exploit of
    CVE-2024-28185 planted a symlink so). Here the same characters go, and the words are split
    with shell quoting rules but never run by a shell: a line break only separates two words,
    and each word is one argument of the compiler or program.
    """
    if len(text) > MAX_ARGUMENTS_LENGTH:
        errors.setdefault(attribute, []).append(f"is too long (maximum is {MAX_ARGUMENTS_LENGTH} characters)")
        return []
    try:
        return shlex.split(re.sub(r"[$&;<>|`]", "", text.strip()))
    except ValueError as error:
        errors.setdefault(attribute, []).append(str(error))
        return []


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else math.ceil(seconds * 1000)


# Corral's names for the parts of a request, as Judge0 calls them.
_ATTRIBUTES = {
    "code": "source_code",
    "language": "language_id",
    "stdin": "stdin",
    "args": "command_line_arguments",
    "compiler_args": "compiler_options",
    "files": "additional_files",
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
