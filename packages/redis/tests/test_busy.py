"""Bursts of requests on one process: they wait for a connection, share reads, and a limit of the
process's own is never reported as Redis being unreachable. On a real redis-server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from corral_contract.clock import ManualClock
from corral_contract.queue import new_job, ok_result
from corral_core import job as jobs
from corral_core.ports import StorageUnavailable
from corral_redis import RedisJobQueue, RedisJobStore, RedisSettings, connect

CLOCK = ManualClock()


async def hmget_calls(client: Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_hmget", {}).get("calls", 0))


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def store_and_queue(redis_url: str, settings: RedisSettings) -> AsyncIterator[tuple[RedisJobStore, RedisJobQueue]]:
    """A store and a queue on one client with the default pool, as an API process has them."""
    client = connect(redis_url)
    store = RedisJobStore(client, settings)
    try:
        yield store, RedisJobQueue(client, CLOCK, settings)
    finally:
        await store.aclose()
        await client.aclose()


async def test_more_concurrent_reads_than_connections_all_succeed(
    redis_url: str,
    settings: RedisSettings,
) -> None:
    client = connect(redis_url, max_connections=2, client_name="corral-test-small")
    store = RedisJobStore(client, settings)
    queue = RedisJobQueue(client, ManualClock(), settings)
    try:
        await queue.submit(new_job(ManualClock(), "burst"))
        found = await asyncio.gather(*(store.get("burst") for _ in range(300)))
        assert {job.id for job in found if job is not None} == {"burst"} and None not in found
        named = [entry for entry in await client.client_list() if entry.get("name") == "corral-test-small"]
        assert 1 <= len(named) <= 2
    finally:
        await client.aclose()


async def test_a_pool_that_stays_busy_says_so_not_that_redis_is_unreachable(
    redis_url: str,
    settings: RedisSettings,
) -> None:
    client = connect(redis_url, max_connections=1, pool_timeout_s=0.2)
    store = RedisJobStore(client, settings)
    try:
        # The one connection blocks in BLPOP for a second; the read cannot get a connection.
        holder = asyncio.ensure_future(client.blpop([f"{settings.key_prefix}nothing"], timeout=1))
        await asyncio.sleep(0.05)
        with pytest.raises(StorageUnavailable) as raised:
            await store.get("any")
        assert "unreachable" not in str(raised.value)
        assert "max_connections" in str(raised.value)
        await holder
        assert await store.get("any") is None  # and the pool serves again once it is free
    finally:
        await client.aclose()


async def test_waiters_that_came_before_the_subscription_read_the_record_once(
    store_and_queue: tuple[RedisJobStore, RedisJobQueue],
    admin: Redis,
) -> None:
    store, queue = store_and_queue
    await queue.submit(new_job(CLOCK, "early"))
    start = await hmget_calls(admin)
    # All registered before the reader subscribes: going live wakes them, before their first read.
    waiters = [asyncio.create_task(store.wait_finished("early", 20)) for _ in range(50)]
    while await hmget_calls(admin) - start < 50:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    assert await hmget_calls(admin) - start == 50
    assert store.waiting("early") == 50
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)


async def test_the_waiters_of_one_job_share_the_read_when_it_finishes(
    store_and_queue: tuple[RedisJobStore, RedisJobQueue],
    admin: Redis,
) -> None:
    store, queue = store_and_queue
    await queue.submit(new_job(CLOCK, "awaited"))
    lease = await queue.claim("w", 10_000, 1)
    assert lease is not None
    start = await hmget_calls(admin)
    waiters = [asyncio.create_task(store.wait_finished("awaited", 20)) for _ in range(200)]
    # Each waiter reads the record once on its own when it starts; then they all sleep.
    while store.waiting("awaited") < 200 or await hmget_calls(admin) - start < 200:
        await asyncio.sleep(0.01)
    before = await hmget_calls(admin)
    assert await queue.finish(lease, jobs.complete(lease.job, ok_result(), CLOCK.now()))
    finished = await asyncio.gather(*waiters)
    reads = await hmget_calls(admin) - before
    assert {job.status for job in finished if job is not None} == {jobs.JobStatus.COMPLETED}
    assert reads <= 3, f"{reads} reads of the record for 200 waiters"
