"""A key's byte budget follows what its jobs really store, on a real redis-server.

Jobs are submitted through the SubmitJob use case (which books each at the most it may grow
to), claimed, given the events a worker appends and finished through the Redis queue's own
FINISH: everything a run stores, without NsJail, so twenty thousand jobs take seconds. The
repair is `corral-api keys repair-bookings`, from the API's PEX.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from corral_core import job as jobs
from corral_core.access import Caller, OverQuota, Quotas
from corral_core.events import EventKind
from corral_core.job import LimitRequest, RunResult, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY, SizePolicy
from corral_core.submission import JobRequest, SubmitJob
from corral_memory.runtimes import InMemoryRuntimeCatalog
from corral_redis import RedisJobEvents, RedisJobQueue, RedisSettings, RedisUsageLedger, connect
from corral_redis.keyspace import QueueKeys
from corral_system.clock import SystemClock
from corral_system.ids import RandomIds
from corral_testbed.services import API_PEX

MIB = 1024 * 1024
BUDGET = 64 * MIB
SMALL_JOBS = 20_000
# Jobs in flight at once: below the key's max_unfinished.
AT_ONCE = 50


@dataclass
class Stack:
    settings: RedisSettings
    client: Redis
    submit: SubmitJob
    queue: RedisJobQueue
    events: RedisJobEvents
    usage: RedisUsageLedger
    keys: QueueKeys


@pytest.fixture
async def stack(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    ttl_s = getattr(request, "param", 24 * 3600)
    settings = RedisSettings(url=redis_url, key_prefix=f"bookings-{request.node.name}:{{q}}:", finished_ttl_s=ttl_s)
    client = connect(redis_url)
    async for key in client.scan_iter(match=f"{settings.key_prefix}*"):
        await client.delete(key)
    usage = RedisUsageLedger(client, settings)
    queue = RedisJobQueue(client, SystemClock(), settings)
    submit = SubmitJob(
        queue, RandomIds(), SystemClock(), DEFAULT_LIMIT_POLICY, SizePolicy(), InMemoryRuntimeCatalog(), usage=usage
    )
    events = RedisJobEvents(client, settings)
    try:
        yield Stack(settings, client, submit, queue, events, usage, QueueKeys(settings.key_prefix))
    finally:
        await events.aclose()
        await client.aclose()


CALLER = Caller(key_id="k1", quotas=Quotas(max_unfinished=100, max_stored_bytes=BUDGET))


async def run_one(stack: Stack, code: str, output: str = "1\n", limits: LimitRequest | None = None) -> str:
    """Submit a job, then do what a worker does with it: claim, append its events, finish."""
    submitted = await stack.submit(CALLER, JobRequest(code=code, limits=limits or LimitRequest()))
    job_id = submitted.job.id
    lease = await stack.queue.claim("w1", 60_000, 5)
    assert lease is not None
    await stack.events.append(lease.job.id, [(EventKind.STATUS, "RUNNING"), (EventKind.STDOUT, output)])
    result = RunResult(verdict=Verdict.OK, exit_code=0, stdout=output, stderr=output, wall_time_ms=5)
    finished = jobs.complete(lease.job, result, SystemClock().now())
    assert await stack.queue.finish(lease, finished)
    await stack.events.append(lease.job.id, [(EventKind.STATUS, "COMPLETED"), (EventKind.RESULT, "")])
    return job_id


async def test_twenty_thousand_small_jobs_fit_a_64_mib_budget(stack: Stack) -> None:
    for start in range(0, SMALL_JOBS, AT_ONCE):
        await asyncio.gather(*(run_one(stack, f"print({n})") for n in range(start, start + AT_ONCE)))
    held = await stack.usage.held_bytes("k1")
    print(f"{SMALL_JOBS} small jobs hold {held} bytes, {held / SMALL_JOBS:.0f} each")
    assert held < BUDGET
    assert await stack.client.zcard(stack.keys.usage("k1")) == SMALL_JOBS


async def test_a_flood_of_large_outputs_is_still_refused_at_the_budget(stack: Stack) -> None:
    large = LimitRequest(max_output_bytes=MIB)
    accepted = 0
    with pytest.raises(OverQuota, match="stored bytes"):
        while accepted < 100:
            await run_one(stack, "print('x' * 2**20)", output="x" * (MIB - 1), limits=large)
            accepted += 1
    held = await stack.usage.held_bytes("k1")
    # Each holds its two outputs at least (and its events, which hold them again, shrunk to its
    # booking): the budget takes at most 32 of them, and the last one refused did not fit.
    assert 16 <= accepted <= BUDGET // (2 * MIB)
    assert BUDGET - 5 * MIB < held <= BUDGET


@pytest.mark.parametrize("stack", [1], indirect=True)
async def test_bookings_return_to_zero_once_every_record_has_expired(stack: Stack) -> None:
    finished = [await run_one(stack, f"print({n})") for n in range(100)]
    cancelled = []
    for n in range(20):
        submitted = await stack.submit(CALLER, JobRequest(code=f"print({n})"))
        assert await stack.queue.cancel(submitted.job.id, SystemClock().now())
        cancelled.append(submitted.job.id)
    assert 0 < await stack.usage.held_bytes("k1") < 120 * 4096
    deadline = time.monotonic() + 30
    while await stack.client.exists(*(stack.keys.job(job_id) for job_id in finished + cancelled)):
        assert time.monotonic() < deadline, "the records never expired"
        await asyncio.sleep(0.2)
    assert await stack.usage.held_bytes("k1") == 0
    assert await stack.client.zcard(stack.keys.usage("k1")) == 0
    assert await stack.client.hgetall(stack.keys.usage_bytes("k1")) == {b":total": b"0"}


def repair_bookings(settings: RedisSettings, *key_ids: str) -> str:
    made = subprocess.run(
        [sys.executable, str(API_PEX), "keys", "repair-bookings", *key_ids],
        env={**os.environ, "CORRAL_REDIS_URL": settings.url, "CORRAL_REDIS_KEY_PREFIX": settings.key_prefix},
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout


async def test_a_corrupted_booking_is_repaired_from_the_live_records(stack: Stack) -> None:
    if not Path(API_PEX).exists():
        pytest.fail(f"{API_PEX} is missing: run the integration tests through `./pants test`")
    done = [await run_one(stack, f"print({n})") for n in range(10)]
    held = await stack.usage.held_bytes("k1")
    sizes = stack.keys.usage_bytes("k1")
    # Drift: a finished job's booking at its most again, a booking whose job was never queued,
    # and a total that agrees with neither.
    await stack.client.hset(sizes, mapping={done[0]: 200_000, "lost-job": 5_000, ":total": 10 * BUDGET})
    await stack.client.zadd(stack.keys.usage("k1"), {"lost-job": float("inf")})
    assert await stack.usage.held_bytes("k1") == 10 * BUDGET
    assert repair_bookings(stack.settings, "k1") == f"k1  {10 * BUDGET} -> {held} bytes\n"
    assert await stack.usage.held_bytes("k1") == held
    assert await stack.client.zscore(stack.keys.usage("k1"), "lost-job") is None
    assert repair_bookings(stack.settings, "k1") == f"k1  {held} -> {held} bytes\n"
