"""How a job is laid out in its Redis hash, and read back.

A job's hash holds `spec`, the job as submitted (msgspec JSON, never rewritten), and one field
per part of the job that changes: `status` and `attempts` as plain text so the Lua scripts can
compare and count them, `started_at`, `finished_at`, `result` and `error` as msgspec JSON
(absent means None). Beside them, `fence` (the lease token counter) and `worker` (who holds the
lease, then who finished the job) are the queue's own bookkeeping. Keeping the changing parts apart lets a script move a job
through its lifecycle without decoding it, and lets core produce every encoding.

Reading is lenient like core's decode_job: fields a newer version added are ignored, fields it
does not know yet get their defaults.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from corral_core.job import Job, JobError, JobStatus, RunResult, decode_job

# The parts of a job that change, in the order scripts take them.
PROGRESS = ("status", "attempts", "started_at", "finished_at", "result", "error")
# The order in which scripts and reads return a record's fields (HMGET).
FIELDS = ("spec", *PROGRESS)

_encode = msgspec.json.Encoder().encode
_time = msgspec.json.Decoder(datetime)
_result = msgspec.json.Decoder(RunResult)
_error = msgspec.json.Decoder(JobError)


def encode_time(moment: datetime) -> bytes:
    return _encode(moment)


def progress_fields(job: Job) -> list[str | bytes]:
    """The job's changing parts in PROGRESS order; an empty value means None."""
    return [
        job.status.value,
        str(job.attempts),
        b"" if job.started_at is None else _encode(job.started_at),
        b"" if job.finished_at is None else _encode(job.finished_at),
        b"" if job.result is None else _encode(job.result),
        b"" if job.error is None else _encode(job.error),
    ]


def decode_record(values: list[bytes | None]) -> Job | None:
    """A job from its fields in FIELDS order; None when the record does not exist."""
    spec, status, attempts, started_at, finished_at, result, error = values
    if spec is None:
        return None
    return msgspec.structs.replace(
        decode_job(spec),
        status=JobStatus(status.decode()) if status else JobStatus.PENDING,
        attempts=int(attempts) if attempts else 0,
        started_at=_time.decode(started_at) if started_at else None,
        finished_at=_time.decode(finished_at) if finished_at else None,
        result=_result.decode(result) if result else None,
        error=_error.decode(error) if error else None,
    )
