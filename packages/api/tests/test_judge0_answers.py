"""Judge0 1.13.1's answers field by field, as its serializer and worker write them.

Compared with Judge0's own source (app/serializers/submission_serializer.rb, app/jobs/
isolate_job.rb) and docs (docs/api/submissions): Rails writes times in UTC to the millisecond
with a Z, decimals (time, wall_time, the limits in seconds) as strings, memory in KB, and a
compile error clears what the run would have set.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from corral_core import job as jobs
from corral_core.job import Job, RunRequest, RunResult, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_http.compat.judge0 import views

# What the official SDK (judge0 0.0.8, submission.py) parses created_at and finished_at with.
SDK_TIMESTAMP = "%Y-%m-%dT%H:%M:%S.%fZ"
JUDGE0_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _job(at: datetime, result: RunResult | None) -> Job:
    job = Job(id="t", request=RunRequest(language="python", code="", limits=DEFAULT_LIMIT_POLICY.defaults), created_at=at)
    if result is None:
        return job
    return jobs.complete(jobs.start(job, at), result, at + timedelta(seconds=2, microseconds=5))


def test_timestamps_are_utc_to_the_millisecond_with_a_z() -> None:
    at = datetime(2026, 12, 7, 23, 12, 16, 401_321, tzinfo=timezone(timedelta(hours=2)))
    answer = views.view(_job(at, RunResult(verdict=Verdict.OK)), ("created_at", "finished_at"), False, {})
    assert answer == {"created_at": "2026-12-07T21:12:16.401Z", "finished_at": "2026-12-07T21:12:18.401Z"}
    assert datetime.strptime(answer["created_at"], SDK_TIMESTAMP).replace(tzinfo=UTC) == at.replace(microsecond=401_000)


def test_a_queued_submission_has_no_finish_time_and_no_run_values() -> None:
    fields = ("finished_at", "time", "wall_time", "memory", "exit_code", "exit_signal", "stdout", "status")
    answer = views.view(_job(datetime.now(UTC), None), fields, False, {})
    assert answer == {
        "finished_at": None,
        "time": None,
        "wall_time": None,
        "memory": None,
        "exit_code": None,
        "exit_signal": None,
        "stdout": None,
        "status": {"id": 1, "description": "In Queue"},
    }


def test_times_are_strings_of_seconds_and_memory_is_kb() -> None:
    result = RunResult(verdict=Verdict.OK, cpu_time_ms=45, wall_time_ms=1200, memory_kb=8556, stdout="hi\n")
    answer = views.view(_job(datetime.now(UTC), result), ("time", "wall_time", "memory", "cpu_time_limit", "exit_code"), False, {})
    cpu_limit = str(DEFAULT_LIMIT_POLICY.defaults.cpu_time_ms / 1000)
    assert answer == {"time": "0.045", "wall_time": "1.2", "memory": 8556, "cpu_time_limit": cpu_limit, "exit_code": 0}


def test_a_compile_error_clears_what_a_run_would_have_set() -> None:
    result = RunResult(verdict=Verdict.COMPILE_ERROR, exit_code=1, cpu_time_ms=300, memory_kb=9000, compile_output="main.c: error\n")
    fields = ("time", "wall_time", "memory", "stdout", "stderr", "exit_code", "exit_signal", "message", "compile_output", "status")
    answer = views.view(_job(datetime.now(UTC), result), fields, False, {})
    assert answer == {
        "time": None,
        "wall_time": None,
        "memory": None,
        "stdout": None,
        "stderr": None,
        "exit_code": None,
        "exit_signal": None,
        "message": None,
        "compile_output": "main.c: error\n",
        "status": {"id": 6, "description": "Compilation Error"},
    }


def test_every_field_is_answered_for_a_star_in_judge0_s_order() -> None:
    assert views.requested_fields("*") == views.ALL_FIELDS
    assert views.requested_fields("stdout,*") == views.ALL_FIELDS
    answer = views.view(_job(datetime.now(UTC), RunResult(verdict=Verdict.OK)), views.ALL_FIELDS, True, {})
    assert list(answer) == list(views.ALL_FIELDS)
    assert JUDGE0_TIMESTAMP.match(answer["created_at"]) and JUDGE0_TIMESTAMP.match(answer["finished_at"])
    # Absent values are null, never left out; base64 leaves nulls alone.
    assert answer["stdout"] is None and answer["compiler_options"] is None and answer["additional_files"] is None
