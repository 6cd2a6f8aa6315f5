"""Failover without loss: a master of a Redis Cluster SIGKILLed under a stream of submissions.

3 masters with a replica each, 3 queue shards, `min_replicas_acked = 1`: a submit (and a
finish) is acknowledged only once a replica has it. Consumers claim and finish through the
queue port (no sandbox, so the stream is fast), recovery runs as the workers' duty would. The
master of one shard is killed mid-stream; its replica is promoted, the clients find it, the
killed node comes back as the new master's replica, and every acknowledged job must then
finish, its final state accepted exactly once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from corral_contract.queue import new_job, ok_result
from corral_core import job as jobs
from corral_core.job import Job, JobStatus
from corral_core.ports import StorageUnavailable
from corral_redis import RedisSettings, connect_to, make_queue, make_store
from corral_redis.keyspace import QueueKeys
from corral_redis.shards import shard_prefixes
from corral_system.clock import SystemClock
from corral_testbed.redis_cluster import RedisCluster, provide_cluster

LEASE_MS = 2000


@pytest.fixture
def cluster() -> Iterator[RedisCluster]:
    with provide_cluster(masters=3, replicas=1, node_timeout_ms=1000) as running:
        yield running


async def test_killing_a_master_loses_no_acknowledged_job(cluster: RedisCluster) -> None:
    settings = RedisSettings(
        url=cluster.url, cluster=True, shards=3, min_replicas_acked=1, replica_ack_timeout_ms=500,
        max_unfinished=100_000,
    )  # fmt: skip
    client = connect_to(settings, socket_timeout=2.0)
    clock = SystemClock()
    queue = make_queue(client, clock, settings)
    store = make_store(client, settings)
    acknowledged: list[str] = []
    refused = 0
    finishes: Counter[str] = Counter()
    unexpected: list[str] = []
    submitting = asyncio.Event()
    submitting.set()

    async def read(job_id: str) -> Job | None:
        for _ in range(50):  # as a client retries a 503 while its client learns the new map
            try:
                return await store.get(job_id)
            except StorageUnavailable:
                await asyncio.sleep(0.1)
        return await store.get(job_id)

    async def submit_stream() -> None:
        nonlocal refused
        while submitting.is_set():
            job = new_job(clock, uuid.uuid4().hex)
            try:
                await queue.submit(job)
            except StorageUnavailable:
                refused += 1
                await asyncio.sleep(0.05)
            else:
                acknowledged.append(job.id)

    async def consume(worker: str) -> None:
        while True:
            try:
                lease = await queue.claim(worker, LEASE_MS, 0.2)
                if lease is None:
                    continue
                done = jobs.complete(lease.job, ok_result(), clock.now())
                for _ in range(50):  # a finish that a replica did not confirm is retried, as a worker does
                    try:
                        if await queue.finish(lease, done):
                            finishes[lease.job.id] += 1
                        break
                    except StorageUnavailable:
                        await asyncio.sleep(0.1)
            except StorageUnavailable:
                await asyncio.sleep(0.1)
            except Exception as error:  # reported by the test below, not swallowed
                unexpected.append(repr(error))
                await asyncio.sleep(0.1)

    async def recover() -> None:
        while True:
            try:
                await queue.recover(max_attempts=10)
            except StorageUnavailable:
                pass
            except Exception as error:  # reported by the test below, not swallowed
                unexpected.append(repr(error))
            await asyncio.sleep(0.3)

    tasks = [asyncio.create_task(submit_stream()), asyncio.create_task(recover())]
    tasks += [asyncio.create_task(consume(f"w{index}")) for index in range(3)]
    try:
        await asyncio.sleep(1.5)
        before = len(acknowledged)
        assert before > 20, "the stream never got going"
        # The master of the first shard's slot dies with no chance to flush anything.
        victim_name = client.get_node_from_key(QueueKeys(shard_prefixes(settings)[0]).leases).name  # type: ignore[attr-defined]
        victim = next(node for node in cluster.nodes if f"127.0.0.1:{node.port}" == victim_name)
        victim.kill()
        await asyncio.to_thread(cluster.wait_healthy, 30)
        # Back as the promoted master's replica: until then its shard has none to confirm a
        # write, and its submits are refused (503) and its finishes retried.
        victim.start()
        await asyncio.to_thread(cluster.wait_replicas_synced, 30)
        promoted_at = time.monotonic()
        while time.monotonic() - promoted_at < 2 and len(acknowledged) < before + 20:
            await asyncio.sleep(0.1)
        submitting.clear()
        assert len(acknowledged) > before, "no submission was acknowledged after the failover"
        deadline = time.monotonic() + 60
        while True:
            unfinished = [job_id for job_id in acknowledged if finishes[job_id] == 0]
            if not unfinished or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    lost = [job_id for job_id in acknowledged if finishes[job_id] == 0]
    assert not unexpected, unexpected[:5]
    assert not lost, (
        f"{len(lost)} of {len(acknowledged)} acknowledged jobs never finished ({refused} submits refused): "
        + "; ".join(f"{job.id} {job.status} attempts {job.attempts}" for job in [await read(job_id) for job_id in lost[:3]] if job)
    )
    assert all(finishes[job_id] == 1 for job_id in acknowledged), "a job's final state was accepted twice"
    for job_id in acknowledged[:: max(1, len(acknowledged) // 50)]:
        found = await read(job_id)
        assert found is not None and found.status == JobStatus.COMPLETED, (job_id, found)
    await store.aclose()
    await client.aclose()
