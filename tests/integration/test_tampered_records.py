"""Job records altered by hand in a real Redis, then claimed by the worker's use case with a
real NsJail sandbox.

Judge0's CVE-2024-29021: values from a tampered database row were pasted into a command line.
Here a record that no longer decodes as a job (a limit as a string, a float, a number past 64
bits, garbage, a truncated payload) is failed at the claim as invalid_job; one that decodes but
breaks the service's [limits] (0, negative, huge) is failed as invalid_job by RunNextJob before
the sandbox sees it; a language with shell characters is no runtime (unsupported_language).
None of them runs (no result), none is lost (a final state in its record, nothing left leased
or in processing), and nothing is ever handed to a shell: NsJail's argv is a list, and the
service's code has no shell=True, os.system or create_subprocess_shell. Fields the record does
not know are ignored by design (API and worker deploy separately: queue payloads are lenient,
corral_core/job.py), and code with a NUL byte is code the API accepts too: both run as any job
does, within the service's limits.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from corral_contract.queue import new_job
from corral_core.job import ErrorCode, Job, JobStatus, Verdict, encode_job
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.usecases import RunNextJob
from corral_redis import QueueKeys, RedisJobQueue, RedisJobStore, RedisSettings, connect
from corral_sandbox import NsJailSandbox
from corral_system.clock import SystemClock
from corral_testbed.nsjail_host import nsjail_host

pytestmark = pytest.mark.timeout(120)
PWNED = f"/run/corral-test/pwned-{os.getpid()}"


class Parts(msgspec.Struct):
    client: Redis
    keys: QueueKeys
    queue: RedisJobQueue
    store: RedisJobStore
    run_next_job: RunNextJob


@pytest.fixture
async def parts(redis_url: str) -> AsyncIterator[Parts]:
    settings = RedisSettings(key_prefix=f"test:{uuid.uuid4().hex[:12]}:{{q}}:")
    client = connect(redis_url)
    clock = SystemClock()
    queue = RedisJobQueue(client, clock, settings)
    store = RedisJobStore(client, settings)
    sandbox = NsJailSandbox(host=nsjail_host())
    yield Parts(client, QueueKeys(settings.key_prefix), queue, store, RunNextJob(queue, sandbox, clock, limits=DEFAULT_LIMIT_POLICY))
    await store.aclose()
    keys = [key async for key in client.scan_iter(match=f"{settings.key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def spec(job: Job) -> dict[str, Any]:
    return msgspec.json.decode(encode_job(job), type=dict[str, Any])


def limit(name: str, value: object) -> Callable[[dict[str, Any]], bytes]:
    def tamper(record: dict[str, Any]) -> bytes:
        record["request"]["limits"][name] = value
        return msgspec.json.encode(record)

    return tamper


def raw(text: str) -> Callable[[dict[str, Any]], bytes]:
    def tamper(record: dict[str, Any]) -> bytes:
        return msgspec.json.encode(record).replace(b'"cpu_time_ms":2000', text.encode())

    return tamper


def truncated(record: dict[str, Any]) -> bytes:
    encoded = msgspec.json.encode(record)
    return encoded[: len(encoded) // 2]


async def claimed_once(parts: Parts, tamper: Callable[[dict[str, Any]], bytes], code: str = "print(1)") -> Job:
    """Submit a job, alter its record's spec by hand, let the worker's use case claim it; the
    job as stored afterwards, once nothing of it is leased or in processing."""
    job = new_job(SystemClock(), f"job-{uuid.uuid4().hex[:8]}", code)
    await parts.queue.submit(job)
    await parts.client.hset(parts.keys.job(job.id), "spec", tamper(spec(job)))
    await parts.run_next_job("w1", 1.0)
    assert await parts.client.lrange(parts.keys.processing, 0, -1) == [], "the job was left in processing"
    assert await parts.client.zcard(parts.keys.leases) == 0, "the job was left leased"
    stored = await parts.store.get(job.id)
    assert stored is not None, "the job was lost"
    return stored


@pytest.mark.parametrize(
    "tamper",
    [
        limit("cpu_time_ms", "1000"),
        limit("memory_mb", "64; id > /run/corral-test/pwned"),
        limit("wall_time_ms", 1.5),
        limit("max_output_bytes", None),
        limit("memory_mb", [1]),
        raw('"cpu_time_ms":NaN'),
        raw('"cpu_time_ms":1e400'),
        truncated,
        lambda _: b"\x00\xff garbage",
        lambda _: b"null",
        lambda _: b"[]",
    ],
    ids=["string", "shell", "float", "null", "list", "nan", "infinity", "truncated", "garbage", "json-null", "json-list"],
)
async def test_a_record_that_is_no_job_any_more_fails_as_invalid_job_without_running(
    parts: Parts, tamper: Callable[[dict[str, Any]], bytes]
) -> None:
    stored = await claimed_once(parts, tamper)
    assert stored.status is JobStatus.FAILED and stored.result is None
    assert stored.error is not None and stored.error.code is ErrorCode.INVALID_JOB
    assert stored.error.message.startswith("the job's record is not a valid job")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("cpu_time_ms", 0),
        ("cpu_time_ms", -1),
        ("wall_time_ms", DEFAULT_LIMIT_POLICY.maxima.wall_time_ms + 1),
        ("wall_time_ms", 2**63 - 1),
        ("memory_mb", -(2**63)),
        ("memory_mb", DEFAULT_LIMIT_POLICY.maxima.memory_mb + 1),
        ("max_processes", 10**9),
        ("max_processes", 10**30),
        ("max_output_bytes", 0),
        ("max_file_size_kb", 2**40),
        ("compile_wall_time_ms", -5),
        ("max_returned_files_kb", 2**50),
    ],
)
async def test_limits_outside_the_services_bounds_fail_as_invalid_job_without_running(parts: Parts, name: str, value: int) -> None:
    stored = await claimed_once(parts, limit(name, value))
    assert stored.status is JobStatus.FAILED and stored.result is None
    assert stored.error is not None and stored.error.code is ErrorCode.INVALID_JOB
    assert f"limits.{name}" in stored.error.message and "break the service's" in stored.error.message


@pytest.mark.parametrize("language", ["python; touch {pwned}", "$(touch {pwned})", "`touch {pwned}`", "python\n", "../../bin/sh"])
async def test_a_language_with_shell_characters_is_no_runtime_and_nothing_runs_it(parts: Parts, language: str) -> None:
    def tamper(record: dict[str, Any]) -> bytes:
        record["request"]["language"] = language.format(pwned=PWNED)
        return msgspec.json.encode(record)

    stored = await claimed_once(parts, tamper)
    assert stored.status is JobStatus.FAILED and stored.result is None
    assert stored.error is not None and stored.error.code is ErrorCode.UNSUPPORTED_LANGUAGE
    assert not os.path.exists(PWNED)


async def test_fields_the_record_does_not_know_are_ignored_and_the_job_runs_within_its_limits(parts: Parts) -> None:
    def tamper(record: dict[str, Any]) -> bytes:
        record["shell"] = f"touch {PWNED}"
        record["request"]["network"] = True
        record["request"]["limits"]["unbounded"] = True
        return msgspec.json.encode(record)

    stored = await claimed_once(parts, tamper, code="import socket\nprint(socket.gethostname() != '')")
    assert stored.status is JobStatus.COMPLETED and stored.result is not None
    assert (stored.result.verdict, stored.result.stdout) == (Verdict.OK, "True\n")
    assert stored.request.limits == DEFAULT_LIMIT_POLICY.defaults
    assert not os.path.exists(PWNED)


async def test_code_with_a_nul_byte_is_written_as_data_and_runs_within_its_limits(parts: Parts) -> None:
    def tamper(record: dict[str, Any]) -> bytes:
        record["request"]["code"] = f"print(1)\0\nimport os; os.system('touch {PWNED}')"
        return msgspec.json.encode(record)

    stored = await claimed_once(parts, tamper)
    assert stored.status is JobStatus.COMPLETED and stored.result is not None
    assert stored.result.verdict is Verdict.RUNTIME_ERROR  # CPython refuses source with a NUL
    assert "SyntaxError" in stored.result.stderr
    assert not os.path.exists(PWNED)


async def test_recovery_fails_an_abandoned_job_whose_record_is_no_job_instead_of_crashing(parts: Parts) -> None:
    job = new_job(SystemClock(), f"job-{uuid.uuid4().hex[:8]}")
    other = new_job(SystemClock(), f"job-{uuid.uuid4().hex[:8]}")
    await parts.queue.submit(job)
    await parts.queue.submit(other)
    first = await parts.queue.claim("lost", 1, 1.0)
    second = await parts.queue.claim("lost", 1, 1.0)
    assert first is not None and second is not None
    await parts.client.hset(parts.keys.job(job.id), "spec", b"{garbage")
    await asyncio.sleep(0.01)  # both leases (1 ms) run out on Redis' clock
    report = await parts.queue.recover(max_attempts=1)
    assert sorted(report.failed) == sorted([job.id, other.id])
    stored = await parts.store.get(job.id)
    assert stored is not None and stored.status is JobStatus.FAILED and stored.error is not None
    assert stored.error.code is ErrorCode.INVALID_JOB
    assert await parts.client.lrange(parts.keys.processing, 0, -1) == []
