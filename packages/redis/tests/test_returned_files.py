"""A finished job's returned files live in a hash beside its record, not in it, and expire with
it; a re-sent FINISH writes them no second time. On a real redis-server."""

from __future__ import annotations

from typing import cast

import msgspec
from redis.asyncio import Redis

from corral_contract.clock import ManualClock
from corral_contract.queue import FILES, LEASE_MS, new_job, ok_result
from corral_core import job as jobs
from corral_core.job import Job, RunResult, Verdict
from corral_core.ports import Lease
from corral_redis import RedisJobQueue, RedisJobStore, RedisSettings
from corral_redis.keyspace import QueueKeys
from corral_redis.records import file_fields, progress_fields, result_reserve
from corral_redis.scripts import FINISH


async def expire_time(client: Redis, key: str) -> int:
    """When `key` expires, in ms since the epoch (PEXPIRETIME)."""
    return int(await client.eval("return redis.call('PEXPIRETIME', KEYS[1])", 1, key))


async def finished(queue: RedisJobQueue, clock: ManualClock, result: RunResult) -> tuple[Lease, Job]:
    """Job "job-a" submitted, claimed and finished with `result`: its lease and its final state."""
    await queue.submit(new_job(clock, "job-a"))
    lease = await queue.claim("w1", LEASE_MS, 1)
    assert lease is not None
    final = jobs.complete(lease.job, result, clock.now())
    assert await queue.finish(lease, final)
    return lease, final


async def test_the_files_hash_expires_with_the_record_and_the_record_holds_no_content(
    client: Redis, settings: RedisSettings
) -> None:
    clock = ManualClock()
    queue, keys = RedisJobQueue(client, clock, settings), QueueKeys(settings.key_prefix)
    _, final = await finished(queue, clock, RunResult(verdict=Verdict.OK, exit_code=0, files=FILES))

    record, files = keys.job("job-a"), keys.job_files("job-a")
    # The same TTL, set by one script a moment apart (Redis 7.0 reads its clock per command):
    # the files go no later than the record, so no content outlives the job that lists it.
    expires = await expire_time(client, record)
    files_expire = await expire_time(client, files)
    assert expires > 0 and 0 <= expires - files_expire <= 10
    assert 0 < await client.pttl(files) <= settings.finished_ttl_s * 1000
    assert await client.hgetall(files) == {file.name.encode(): file.content for file in FILES}
    result = msgspec.json.decode(cast(bytes, await client.hget(record, "result")))
    assert [file["content"] for file in result["files"]] == [""] * len(FILES)


async def test_a_finish_resent_after_a_lost_reply_writes_the_files_no_second_time(
    client: Redis, settings: RedisSettings
) -> None:
    clock = ManualClock()
    queue, store, keys = RedisJobQueue(client, clock, settings), RedisJobStore(client, settings), QueueKeys(settings.key_prefix)
    lease, final = await finished(queue, clock, RunResult(verdict=Verdict.OK, exit_code=0, files=FILES))
    files = keys.job_files("job-a")
    expires = await expire_time(client, files)
    # The same script again, as redis-py re-sends it when the first reply was lost.
    resent = await client.eval(
        FINISH, 5, keys.job("job-a"), keys.processing, keys.leases, keys.reserved, files,
        "job-a", lease.token, keys.finished, settings.finished_ttl_s * 1000, "",
        *progress_fields(final), *file_fields(final),
    )  # fmt: skip
    assert resent == 1
    assert await client.hlen(files) == len(FILES)
    assert await expire_time(client, files) == expires  # not written again
    assert await store.get("job-a") == jobs.without_inputs(jobs.without_file_contents(final))
    await store.aclose()


async def test_a_job_without_files_has_no_files_hash_and_one_asking_for_files_reserves_them(
    client: Redis, settings: RedisSettings
) -> None:
    clock = ManualClock()
    queue, keys = RedisJobQueue(client, clock, settings), QueueKeys(settings.key_prefix)
    await finished(queue, clock, ok_result())
    assert await client.exists(keys.job_files("job-a")) == 0

    plain = new_job(clock, "job-b")
    asking = msgspec.structs.replace(plain, request=msgspec.structs.replace(plain.request, outputs=("*.png",)))
    await queue.submit(asking)
    limits = asking.request.limits
    reserved = int(cast(bytes, await client.get(keys.reserved)))
    assert reserved == result_reserve(limits.max_output_bytes) + limits.max_returned_files_kb * 1024
