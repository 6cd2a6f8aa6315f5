"""How a job is laid out in its Redis hash, and read back.

A job's hash holds:
- `spec`, the job as submitted (msgspec JSON, core's encode_job), which the worker's claim reads;
- `head`, the same without its inputs (code, stdin, files: core's without_inputs), a few
  hundred bytes that a client's read fetches instead of `spec`. When the job finishes, `head`
  replaces `spec`, so a finished job keeps none of its request's bulk for its TTL;
- one field per part of the job that changes: `status` and `attempts` as plain text so the Lua
  scripts can compare and count them, `started_at`, `finished_at`, `result` and `error` as
  msgspec JSON (absent means None), and `stdout`, `stderr`, `compile_output`: the result's
  output (and its compiler's, for a compiled language) as UTF-8 bytes, never JSON-escaped (a
  control byte stays one byte, where JSON would spend six on it), with the `result` JSON holding
  empty strings in their place;
- `reserve`, the bytes set aside for the job's result while it is unfinished (budget below);
- `fence` (the lease token counter) and `worker` (who holds the lease, then who finished the
  job), the queue's bookkeeping.

A finished job's returned files (RunResult.files) are listed in `result` without their content
(core's without_file_contents); FINISH writes the contents into a hash of their own beside the
record (keyspace.job_files), with the record's TTL, and JobStore.file reads one of them.

Keeping the changing parts apart lets a script move a job through its lifecycle without decoding
it, and lets core produce every encoding.

Byte budget: a submission is refused (StorageFull) unless Redis' used memory, plus what is
reserved for the results of the unfinished jobs, plus this job's request and reserve fit under
the storage ceiling (settings.py, max_memory_bytes). The reserve is the most a result can take:
each of the three streams (stdout, stderr, the compiler's output) at most max_output_bytes of
raw output, which as UTF-8 text is at most three bytes
per byte (an invalid byte becomes U+FFFD), plus its JSON, plus, for a job that asks files back
(Program.outputs), max_returned_files_kb of their content. Finishing gives the reserve back; the
result it stores is then in used_memory until the record expires.

Reading is lenient like core's decode_job: fields a newer version added are ignored, fields it
does not know yet get their defaults. A record an older API wrote has no `head` (the read falls
back to `spec`); a result an older worker wrote has its output inside `result`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from corral_core.job import (
    Job,
    JobError,
    JobStatus,
    RunResult,
    decode_job,
    encode_job,
    without_file_contents,
    without_inputs,
)
from corral_core.testcases import TEST_OUTPUT_BYTES

# The parts of a job that change, in the order scripts take them.
PROGRESS = (
    "status", "attempts", "started_at", "finished_at", "result", "error", "stdout", "stderr", "compile_output"
)  # fmt: skip
# The order in which the worker's scripts return a record's fields (HMGET).
FIELDS = ("spec", *PROGRESS)
# What a client's read fetches: everything its answer shows, none of the job's inputs.
VIEW_FIELDS = ("head", *PROGRESS)

# A finish announces the job's view with its id (scripts.FINISH) up to this many bytes of fields;
# a larger one only by its id. Every API process gets every announcement: this bounds what one
# job's finish makes each of them read, and what a burst leaves in Redis' pub/sub buffers.
MAX_ANNOUNCED_VIEW_BYTES = 16 * 1024

# A result's JSON without its output (verdict, exit code, times) fits well within this.
_RESULT_JSON_BYTES = 1024
# UTF-8 spends at most three bytes on one byte of output (U+FFFD for an invalid byte).
_UTF8_PER_BYTE = 3

_encode = msgspec.json.Encoder().encode
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_time = msgspec.json.Decoder(datetime)
_result = msgspec.json.Decoder(RunResult)
_error = msgspec.json.Decoder(JobError)


def encode_time(moment: datetime) -> bytes:
    return _encode(moment)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch (a zone-aware moment): what scripts compare."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def encode_queued(moment: datetime) -> bytes:
    """A job's `queued` field (scripts.py): when it was put in line, comparable and as JSON."""
    return b"%d %s" % (micros(moment), _encode(moment))


def encode_head(job: Job) -> bytes:
    return encode_job(without_inputs(job))


def result_reserve(max_output_bytes: int, returned_files_kb: int = 0) -> int:
    """The most a job's stored result takes, each of its three streams at most max_output_bytes,
    and the files it asked back at most returned_files_kb (0 when it asked none)."""
    return 3 * _UTF8_PER_BYTE * max_output_bytes + _RESULT_JSON_BYTES + returned_files_kb * 1024


def job_reserve(job: Job) -> int:
    """What SUBMIT sets aside for `job`'s result (result_reserve at the job's limits), and for
    each of its tests' outputs and checker message."""
    limits = job.request.limits
    per_test = 3 * _UTF8_PER_BYTE * min(limits.max_output_bytes, TEST_OUTPUT_BYTES) + _RESULT_JSON_BYTES
    returned_kb = limits.max_returned_files_kb if job.request.outputs else 0
    return result_reserve(limits.max_output_bytes, returned_kb) + len(job.request.tests) * per_test


def progress_fields(job: Job) -> list[str | bytes]:
    """The job's changing parts in PROGRESS order; an empty value means None (or no output).
    Returned files are listed without their content: file_fields has it."""
    result = without_file_contents(job).result
    return [
        job.status.value,
        str(job.attempts),
        b"" if job.started_at is None else _encode(job.started_at),
        b"" if job.finished_at is None else _encode(job.finished_at),
        b"" if result is None else _encode(msgspec.structs.replace(result, stdout="", stderr="", compile_output="")),
        b"" if job.error is None else _encode(job.error),
        b"" if result is None else result.stdout.encode(),
        b"" if result is None else result.stderr.encode(),
        b"" if result is None else result.compile_output.encode(),
    ]


def file_fields(job: Job) -> list[str | bytes]:
    """The job's returned files as FINISH stores them apart (keyspace.job_files): each one's
    name, then its content."""
    if job.result is None:
        return []
    return [part for file in job.result.files for part in (file.name, file.content)]


class UnreadableRecord(Exception):
    """A job's record that does not decode as a job (altered in Redis, or garbage)."""


def read_record(values: list[bytes | None]) -> Job:
    """decode_record for a record a script found: UnreadableRecord if it is not a job."""
    try:
        job = decode_record(values)
    except (msgspec.MsgspecError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        raise UnreadableRecord(f"the job's record is not a valid job: {error}") from None
    if job is None:
        raise UnreadableRecord("the job's record has no spec")
    return job


def refused_fields(values: list[bytes | None], now: datetime, error: JobError) -> list[str | bytes]:
    """progress_fields of a record that could not be read (FIELDS order): FAILED with `error`,
    its attempts and started_at as they are, finished `now`, no result."""
    attempts, started_at = values[2] or b"0", values[3] or b""
    return [JobStatus.FAILED.value, attempts, started_at, _encode(now), b"", _encode(error), b"", b"", b""]


def decode_record(values: list[bytes | None]) -> Job | None:
    """A job from its fields in FIELDS (or VIEW_FIELDS) order; None when it does not exist."""
    spec, status, attempts, started_at, finished_at, result, error, stdout, stderr, compiled = values
    if spec is None:
        return None
    return msgspec.structs.replace(
        decode_job(spec),
        status=JobStatus(status.decode()) if status else JobStatus.PENDING,
        attempts=int(attempts) if attempts else 0,
        started_at=_time.decode(started_at) if started_at else None,
        finished_at=_time.decode(finished_at) if finished_at else None,
        result=_decode_result(result, stdout, stderr, compiled) if result else None,
        error=_error.decode(error) if error else None,
    )


def _decode_result(result: bytes, stdout: bytes | None, stderr: bytes | None, compiled: bytes | None) -> RunResult:
    decoded = _result.decode(result)
    if stdout is None and stderr is None and compiled is None:
        return decoded  # written by an older worker, output and all, or a run with no output
    return msgspec.structs.replace(
        decoded,
        stdout=(stdout or b"").decode(errors="replace"),
        stderr=(stderr or b"").decode(errors="replace"),
        # An older worker's result kept the compiler's output in its JSON, if it had any.
        compile_output=decoded.compile_output if compiled is None else compiled.decode(errors="replace"),
    )


def announced_view(frame: bytes) -> list[bytes | None] | None:
    """The VIEW_FIELDS values a finish announced after the job's id (scripts.FINISH): per field
    "-" (none) or "<length>:<bytes>". None when there are none, or they do not parse."""
    values: list[bytes | None] = []
    at = 0
    while at < len(frame) and len(values) < len(VIEW_FIELDS):
        if frame[at : at + 1] == b"-":
            values.append(None)
            at += 1
            continue
        colon = frame.find(b":", at, at + 21)
        if colon < 0 or not frame[at:colon].isdigit():
            return None
        end = colon + 1 + int(frame[at:colon])
        if end > len(frame):
            return None
        values.append(frame[colon + 1 : end])
        at = end
    if at != len(frame) or len(values) != len(VIEW_FIELDS):
        return None
    return values
