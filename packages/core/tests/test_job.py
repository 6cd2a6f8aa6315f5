from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from corral_core import job as jobs
from corral_core.job import (
    ErrorCode,
    IllegalTransition,
    InputFile,
    Job,
    JobError,
    JobStatus,
    RunRequest,
    RunResult,
    Verdict,
    decode_job,
    encode_job,
)
from corral_core.policy import DEFAULT_LIMIT_POLICY

NOW = datetime(2026, 1, 1, tzinfo=UTC)
INPUT = InputFile("in.txt", b"\x00\x01")
OK = RunResult(verdict=Verdict.OK, exit_code=0)
LOST = JobError(ErrorCode.WORKER_LOST, "gone")


def pending() -> Job:
    request = RunRequest(language="python", code="print(1)", limits=DEFAULT_LIMIT_POLICY.defaults)
    return Job(id="j", request=request, created_at=NOW)


def test_a_claimed_job_runs_and_counts_an_attempt() -> None:
    running = jobs.start(pending(), NOW)
    assert running.status is JobStatus.RUNNING
    assert running.attempts == 1 and running.started_at == NOW


def test_a_running_job_completes_with_its_result() -> None:
    done = jobs.complete(jobs.start(pending(), NOW), OK, NOW)
    assert done.status is JobStatus.COMPLETED and done.result == OK and done.finished


def test_a_pending_job_cannot_complete_without_running() -> None:
    with pytest.raises(IllegalTransition):
        jobs.complete(pending(), OK, NOW)


@pytest.mark.parametrize("final", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_finished_job_never_changes_again(final: JobStatus) -> None:
    running = jobs.start(pending(), NOW)
    ends = {
        JobStatus.COMPLETED: lambda: jobs.complete(running, OK, NOW),
        JobStatus.FAILED: lambda: jobs.fail(running, LOST, NOW),
        JobStatus.CANCELLED: lambda: jobs.cancel(running, NOW),
    }
    done = ends[final]()
    assert done.finished
    for move in (
        lambda j: jobs.start(j, NOW),
        lambda j: jobs.complete(j, OK, NOW),
        lambda j: jobs.fail(j, LOST, NOW),
        lambda j: jobs.cancel(j, NOW),
        jobs.requeue,
    ):
        with pytest.raises(IllegalTransition):
            move(done)


def test_a_pending_job_is_cancelled_without_ever_starting() -> None:
    cancelled = jobs.cancel(pending(), NOW)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.finished
    assert cancelled.finished_at == NOW and cancelled.started_at is None and cancelled.attempts == 0


def test_a_running_job_is_cancelled_without_a_result() -> None:
    cancelled = jobs.cancel(jobs.start(pending(), NOW), NOW)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.result is None and cancelled.attempts == 1


def test_requeue_after_a_lost_worker_keeps_the_attempt() -> None:
    again = jobs.requeue(jobs.start(pending(), NOW))
    assert again.status is JobStatus.PENDING and again.attempts == 1 and again.started_at is None


def test_a_job_handed_back_on_shutdown_gets_its_attempt_back() -> None:
    again = jobs.requeue(jobs.start(pending(), NOW), count_attempt=False)
    assert again.attempts == 0


def test_jobs_round_trip_through_their_wire_encoding() -> None:
    done = jobs.complete(jobs.start(pending(), NOW), OK, NOW)
    assert decode_job(encode_job(done)) == done


def test_decoding_ignores_fields_a_newer_deployment_added() -> None:
    raw = msgspec.json.decode(encode_job(pending()))
    raw["priority"] = 7
    raw["result"] = None
    assert decode_job(msgspec.json.encode(raw)) == pending()


def test_decoding_fills_defaults_for_fields_an_older_deployment_lacks() -> None:
    raw = msgspec.json.decode(encode_job(pending()))
    for newer in ("attempts", "error", "result", "status", "request_id"):
        raw.pop(newer)
    for newer in ("stdin", "args", "files"):
        raw["request"].pop(newer)
    assert decode_job(msgspec.json.encode(raw)) == pending()


def test_a_job_is_its_structs_json_on_the_wire() -> None:
    job = msgspec.structs.replace(pending(), request=msgspec.structs.replace(pending().request, files=(INPUT,)))
    assert encode_job(job) == msgspec.json.encode(job)


def test_a_job_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_job(b"[1, 2]")


def test_annotations_travel_with_the_job_and_stay_out_of_the_run_request() -> None:
    job = msgspec.structs.replace(pending(), annotations={"judge0.expected_output": "42\n"})
    assert decode_job(encode_job(job)) == job
    assert "annotations" not in msgspec.to_builtins(job.request)
