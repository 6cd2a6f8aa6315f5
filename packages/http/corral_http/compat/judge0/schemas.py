"""What Judge0 clients send and are answered with: submissions, statuses, error answers."""

from __future__ import annotations

import re

import msgspec

MAX_BATCH = 20
MAX_ARGUMENTS_LENGTH = 512
# Judge0's stack limit (KB) is reported and echoed; NsJail applies the runtime's own.
STACK_LIMIT_KB = 64_000
MAX_STACK_LIMIT_KB = 128_000
TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

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
# Annotation keys: what Judge0 keeps with a submission that a Corral job does not.
EXPECTED_ANNOTATION = "judge0.expected_output"
LANGUAGE_ID_ANNOTATION = "judge0.language_id"
REDIRECT_ANNOTATION = "judge0.redirect_stderr_to_stdout"
ARGUMENTS_ANNOTATION = "judge0.command_line_arguments"
COMPILER_OPTIONS_ANNOTATION = "judge0.compiler_options"


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


