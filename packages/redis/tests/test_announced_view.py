"""A finish announces a small job's view with its id, and a waiter answers from it without
reading the record back; a large one is announced by its id alone. On a real redis-server."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from corral_contract.clock import ManualClock
from corral_contract.queue import new_job, ok_result
from corral_core import job as jobs
from corral_redis import RedisJobQueue, RedisJobStore, RedisSettings
from corral_redis.keyspace import QueueKeys
from corral_redis.records import MAX_ANNOUNCED_VIEW_BYTES


async def finished_and_announced(client: Redis, settings: RedisSettings, job_id: str, stdout: str) -> bytes:
    """Run `job_id` through the queue to COMPLETED with `stdout`; the message its finish published."""
    clock = ManualClock()
    queue = RedisJobQueue(client, clock, settings)
    listener = client.pubsub()
    await listener.subscribe(QueueKeys(settings.key_prefix).finished)
    try:
        await queue.submit(new_job(clock, job_id))
        lease = await queue.claim("w", 10_000, 1)
        assert lease is not None
        assert await queue.finish(lease, jobs.complete(lease.job, ok_result(stdout), clock.now()))
        while True:
            message = await listener.get_message(timeout=5)
            assert message is not None, "the finish was not announced"
            if message["type"] == "message":
                return bytes(message["data"])
    finally:
        await listener.aclose()  # type: ignore[no-untyped-call]


async def waiter_answer(store: RedisJobStore, client: Redis, settings: RedisSettings, job_id: str, announcement: bytes) -> jobs.Job | None:
    """What a waiter that has just submitted `job_id` answers when `announcement` is published."""
    await store.wait_finished("any", 0.2)  # the store's subscription is live from here on
    submitted_s = asyncio.get_running_loop().time()
    waiter = asyncio.ensure_future(store.wait_finished(job_id, 5, submitted_s))
    while store.waiting(job_id) == 0:
        await asyncio.sleep(0.01)
    await client.publish(QueueKeys(settings.key_prefix).finished, announcement)
    return await waiter


async def test_a_waiter_answers_from_the_announced_view_without_reading_the_record(
    client: Redis, settings: RedisSettings
) -> None:
    # Output a read must give back exactly: non-ASCII, a NUL, newlines, and the frame's ":" and "-".
    announcement = await finished_and_announced(client, settings, "small", "h\u00e9\x00\n:-1\ufffd\n")
    store = RedisJobStore(client, settings)
    try:
        read = await store.get("small")
        assert read is not None and read.status is jobs.JobStatus.COMPLETED
        assert announcement.startswith(b"small\n")
        # Gone from Redis: only the announcement can answer the waiter now.
        await client.delete(QueueKeys(settings.key_prefix).job("small"))
        assert await waiter_answer(store, client, settings, "small", announcement) == read
    finally:
        await store.aclose()


async def test_a_large_view_is_announced_by_id_and_read_back(client: Redis, settings: RedisSettings) -> None:
    announcement = await finished_and_announced(client, settings, "large", "x" * (MAX_ANNOUNCED_VIEW_BYTES + 1))
    assert announcement == b"large"
    store = RedisJobStore(client, settings)
    try:
        answer = await waiter_answer(store, client, settings, "large", announcement)
        assert answer is not None and answer == await store.get("large")
        assert answer.result is not None and len(answer.result.stdout) == MAX_ANNOUNCED_VIEW_BYTES + 1
    finally:
        await store.aclose()


@pytest.mark.parametrize("view", [b"garbage", b"3:abc", b"-" * 9, b"-" * 11, b"99:short" + b"-" * 9])
async def test_an_announcement_that_does_not_parse_is_read_back(client: Redis, settings: RedisSettings, view: bytes) -> None:
    await finished_and_announced(client, settings, "odd", "1\n")
    store = RedisJobStore(client, settings)
    try:
        answer = await waiter_answer(store, client, settings, "odd", b"odd\n" + view)
        assert answer is not None and answer == await store.get("odd")
    finally:
        await store.aclose()
