"""The contract suites bound to the Redis adapters on a 3-master Redis Cluster, and sharded.

Three layouts beside test_redis.py's single server: one queue on the Cluster (every adapter
as deployed with `cluster = true`), three queue shards on the Cluster (one per master), and
three shards on the single server. Every script then runs on a node that refuses any key
outside the slot it was routed by, which is what proves each keeps to its prefix's hash tag.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest
from redis.asyncio import Redis

from corral_contract.access import AccessContract, AccessHarness
from corral_contract.clock import ManualClock
from corral_contract.events import JobEventsContract, JobInputContract, StreamsHarness
from corral_contract.queue import LEASE_MS, QUEUE_LIMIT, JobQueueContract, QueueHarness, new_job
from corral_contract.workers import RegistryHarness, WorkerRegistryContract
from corral_core.ports import QueueFull, StorageUnavailable
from corral_redis import (
    QueueKeys,
    RedisIdempotencyRecords,
    RedisKeyStore,
    RedisSettings,
    RedisUsageLedger,
    RedisWorkerRegistry,
    ShardedJobQueue,
    connect_to,
    make_admitting,
    make_cancel_notices,
    make_events,
    make_job_input,
    make_queue,
    make_store,
)
from corral_redis.shards import shard_of, shard_prefixes
from corral_testbed.redis_cluster import cluster_url  # noqa: F401 - a fixture

# The deadlines' mover of test_redis.py, per slot. KEYS: leases, workers, duties. ARGV: µs.
_MOVE_DEADLINES_BACK = """
local by = tonumber(ARGV[1])
for _, key in ipairs({KEYS[1], KEYS[2]}) do
  local scored = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for i = 1, #scored, 2 do
    redis.call('ZADD', key, string.format('%d', tonumber(scored[i + 1]) - by), scored[i])
  end
end
for i = 3, #KEYS do
  local expires = redis.call('HGET', KEYS[i], 'expires')
  if expires then redis.call('HSET', KEYS[i], 'expires', string.format('%d', tonumber(expires) - by)) end
end
"""

_MOVE_ARRIVALS_BACK = """
for _, key in ipairs(KEYS) do
  local arrival = redis.call('GET', key)
  if arrival then redis.call('SET', key, string.format('%d', tonumber(arrival) - tonumber(ARGV[1])), 'KEEPTTL') end
end
"""

LAYOUTS = {"cluster": (True, 1), "cluster-3-shards": (True, 3), "server-3-shards": (False, 3)}


@pytest.fixture(params=list(LAYOUTS))
def settings(request: pytest.FixtureRequest, cluster_url: str, redis_url: str) -> RedisSettings:  # noqa: F811
    cluster, shards = LAYOUTS[request.param]
    return RedisSettings(
        url=cluster_url if cluster else redis_url,
        cluster=cluster,
        shards=shards,
        key_prefix=f"test:{uuid.uuid4().hex[:12]}:{{q}}:",
        max_unfinished=QUEUE_LIMIT,
    )


@pytest.fixture
async def client(settings: RedisSettings) -> AsyncIterator[Redis]:
    client = connect_to(settings)
    yield client
    for prefix in {settings.key_prefix, *shard_prefixes(settings)}:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        for key in keys:  # one by one: on a Cluster, a DEL of several keys must keep to one slot
            await client.delete(key)
    await client.aclose()


def elapsing(client: Redis, settings: RedisSettings, clock: ManualClock) -> Callable[[int], Awaitable[None]]:
    control = QueueKeys(settings.key_prefix)

    async def elapse(ms: int) -> None:
        clock.advance(ms)
        duties = [key async for key in client.scan_iter(match=control.duty("*"))]
        await client.eval(_MOVE_DEADLINES_BACK, 2 + len(duties), control.leases, control.workers, *duties, ms * 1000)
        for prefix in shard_prefixes(settings):
            if prefix != settings.key_prefix:
                shard = QueueKeys(prefix)
                await client.eval(_MOVE_DEADLINES_BACK, 2, shard.leases, shard.workers, ms * 1000)

    return elapse


@pytest.fixture
async def parts(client: Redis, settings: RedisSettings) -> AsyncIterator[QueueHarness]:
    clock = ManualClock()
    store = make_store(client, settings)
    queue = make_queue(client, clock, settings)
    notices = make_cancel_notices(client, settings)
    yield QueueHarness(
        queue, store, clock, elapsing(client, settings, clock), queue, canceller=queue, notices=notices, eraser=queue
    )
    await notices.aclose()
    await store.aclose()


class TestRedisClusterJobQueue(JobQueueContract):
    @pytest.fixture
    def harness(self, parts: QueueHarness) -> QueueHarness:
        return parts

    # Two promises one queue keeps and shards do not: one order across every job, and one
    # count of unfinished jobs. Shards keep both per shard; the tests below say so.
    async def test_jobs_are_claimed_in_submission_order(self, harness: QueueHarness) -> None:
        if not isinstance(harness.queue, ShardedJobQueue):
            await super().test_jobs_are_claimed_in_submission_order(harness)
            return
        await _claimed_in_order_within_each_shard(harness)

    async def test_a_full_queue_refuses_and_stores_nothing(self, harness: QueueHarness) -> None:
        if not isinstance(harness.queue, ShardedJobQueue):
            await super().test_a_full_queue_refuses_and_stores_nothing(harness)
            return
        await _each_shard_refuses_past_its_share(harness)

    async def test_the_size_limit_counts_every_language(self, harness: QueueHarness) -> None:
        if not isinstance(harness.queue, ShardedJobQueue):
            await super().test_the_size_limit_counts_every_language(harness)
            return
        await _each_shard_refuses_past_its_share(harness, languages=("python", "javascript"))

    # Turns between owners are a shard's own: the same cases with every job on one shard.
    async def test_owners_take_turns_so_a_busy_one_does_not_starve_another(  # type: ignore[override]
        self, harness: QueueHarness, client: Redis, settings: RedisSettings
    ) -> None:
        if not isinstance(harness.queue, ShardedJobQueue):
            await super().test_owners_take_turns_so_a_busy_one_does_not_starve_another(harness)
            return
        harness = _room_for_a_shard_full(harness, client, settings)
        big, small = _on_shard_0("big", 3), _on_shard_0("small", 2)
        await _submit_owned(harness, [(big[0], "big"), (big[1], "big"), (big[2], "big"), (small[0], "small"), (small[1], "small")])
        assert await self._claim_ids(harness, 5) == [big[0], small[0], big[1], small[1], big[2]]

    async def test_jobs_without_an_owner_take_turns_as_one_owner(  # type: ignore[override]
        self, harness: QueueHarness, client: Redis, settings: RedisSettings
    ) -> None:
        if not isinstance(harness.queue, ShardedJobQueue):
            await super().test_jobs_without_an_owner_take_turns_as_one_owner(harness)
            return
        harness = _room_for_a_shard_full(harness, client, settings)
        anon, keyed = _on_shard_0("anon", 3), _on_shard_0("keyed", 2)
        await _submit_owned(harness, [(anon[0], ""), (anon[1], ""), (anon[2], ""), (keyed[0], "key"), (keyed[1], "key")])
        assert await self._claim_ids(harness, 5) == [anon[0], keyed[0], anon[1], keyed[1], anon[2]]

    async def test_a_released_job_is_next_of_its_owner_and_keeps_the_turns(  # type: ignore[override]
        self, harness: QueueHarness, client: Redis, settings: RedisSettings
    ) -> None:
        if not isinstance(harness.queue, ShardedJobQueue):
            await super().test_a_released_job_is_next_of_its_owner_and_keeps_the_turns(harness)
            return
        harness = _room_for_a_shard_full(harness, client, settings)
        big, small = _on_shard_0("big", 2), _on_shard_0("small", 1)
        await _submit_owned(harness, [(big[0], "big"), (big[1], "big"), (small[0], "small")])
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None and lease.job.id == big[0]
        assert await harness.queue.release(lease)
        assert await self._claim_ids(harness, 3) == [small[0], big[0], big[1]]


def _room_for_a_shard_full(harness: QueueHarness, client: Redis, settings: RedisSettings) -> QueueHarness:
    """The harness with room for all of a case's jobs on one shard (each holds a third)."""
    roomy = msgspec.structs.replace(settings, max_unfinished=3 * QUEUE_LIMIT)
    return dataclasses.replace(harness, queue=make_queue(client, harness.clock, roomy))


def _on_shard_0(name: str, count: int) -> list[str]:
    return [job_id for job_id in (f"{name}-{index}" for index in range(500)) if shard_of(job_id, 3) == 0][:count]


async def _submit_owned(harness: QueueHarness, jobs: list[tuple[str, str]]) -> None:
    for job_id, owner in jobs:
        await harness.queue.submit(new_job(harness.clock, job_id, owner=owner))


async def _claimed_in_order_within_each_shard(harness: QueueHarness) -> None:
    shards = 3
    submitted = [f"job-{index}" for index in range(QUEUE_LIMIT)]
    for job_id in submitted:
        await harness.queue.submit(new_job(harness.clock, job_id))
    claimed = []
    for _ in submitted:
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        claimed.append(lease.job.id)
    assert sorted(claimed) == sorted(submitted)
    for shard in range(shards):
        mine = [job_id for job_id in submitted if shard_of(job_id, shards) == shard]
        assert [job_id for job_id in claimed if shard_of(job_id, shards) == shard] == mine


async def _each_shard_refuses_past_its_share(harness: QueueHarness, languages: tuple[str, ...] = ("python",)) -> None:
    """Each shard holds ceil(QUEUE_LIMIT / 3) unfinished jobs; one more on it is refused whole."""
    share = -(-QUEUE_LIMIT // 3)
    on_shard_0 = [f"job-{index}" for index in range(200) if shard_of(f"job-{index}", 3) == 0]
    for index, job_id in enumerate(on_shard_0[:share]):
        await harness.queue.submit(new_job(harness.clock, job_id, language=languages[index % len(languages)]))
    refused = on_shard_0[share]
    with pytest.raises(QueueFull):
        await harness.queue.submit(new_job(harness.clock, refused))
    assert await harness.store.get(refused) is None
    elsewhere = next(f"job-{index}" for index in range(200) if shard_of(f"job-{index}", 3) == 1)
    await harness.queue.submit(new_job(harness.clock, elsewhere))  # another shard has room


@pytest.fixture
async def cluster_streams(client: Redis, settings: RedisSettings) -> AsyncIterator[StreamsHarness]:
    events, job_input = make_events(client, settings), make_job_input(client, settings)
    yield StreamsHarness(events, job_input)
    await events.aclose()
    await job_input.aclose()


class TestRedisClusterJobEvents(JobEventsContract):
    @pytest.fixture
    def streams(self, cluster_streams: StreamsHarness) -> StreamsHarness:
        return cluster_streams


class TestRedisClusterJobInput(JobInputContract):
    @pytest.fixture
    def streams(self, cluster_streams: StreamsHarness) -> StreamsHarness:
        return cluster_streams


class TestRedisClusterAccess(AccessContract):
    @pytest.fixture
    def access(self, client: Redis, settings: RedisSettings, parts: QueueHarness) -> AccessHarness:
        keys = QueueKeys(settings.key_prefix)

        async def elapse(ms: int) -> None:
            await parts.elapse(ms)
            async for arrival in client.scan_iter(match=keys.rate("*")):
                await client.eval(_MOVE_ARRIVALS_BACK, 1, arrival, ms * 1000)

        return AccessHarness(
            RedisKeyStore(client, settings),
            RedisUsageLedger(client, settings),
            RedisIdempotencyRecords(client, settings),
            parts.queue,
            parts.clock,
            elapse,
            make_admitting(client, parts.queue, settings),  # type: ignore[arg-type]
            parts.canceller,
            parts.eraser,
        )

    # A repair reads the records beside the ledger: shards keep them elsewhere, and say so.
    async def test_a_repair_drops_a_booking_without_a_record_and_keeps_the_rest(self, access: AccessHarness) -> None:
        if not isinstance(access.queue, ShardedJobQueue):
            await super().test_a_repair_drops_a_booking_without_a_record_and_keeps_the_rest(access)
            return
        assert await access.usage.book("k1", "job-lost", 500, 5, 1000) is None
        with pytest.raises(NotImplementedError, match="sharded"):
            await access.usage.repair("k1")
        assert await access.usage.held_bytes("k1") == 500  # refused, it changed nothing


class TestRedisClusterWorkerRegistry(WorkerRegistryContract):
    @pytest.fixture
    def registry(self, client: Redis, settings: RedisSettings) -> RegistryHarness:
        clock = ManualClock()
        return RegistryHarness(RedisWorkerRegistry(client, settings), clock, elapsing(client, settings, clock))


async def test_each_shard_lives_on_its_own_master(cluster_url: str) -> None:  # noqa: F811
    settings = RedisSettings(url=cluster_url, cluster=True, shards=3)
    client = connect_to(settings)
    try:
        await client.ping()
        masters = {client.get_node_from_key(QueueKeys(prefix).leases).name for prefix in shard_prefixes(settings)}  # type: ignore[attr-defined]
    finally:
        await client.aclose()
    assert len(masters) == 3


def test_one_shard_is_the_queue_under_key_prefix_itself() -> None:
    settings = RedisSettings(key_prefix="corral:{q}:")
    assert shard_prefixes(settings) == ["corral:{q}:"]
    three = msgspec.structs.replace(settings, shards=3)
    assert shard_prefixes(three) == ["corral:{q0}:", "corral:{q1}:", "corral:{q2}:"]


@pytest.mark.parametrize("cluster", [True, False], ids=["cluster", "server"])
async def test_a_submit_no_replica_confirms_is_refused_as_unavailable(
    cluster: bool,
    cluster_url: str,  # noqa: F811
    redis_url: str,
) -> None:
    settings = RedisSettings(
        url=cluster_url if cluster else redis_url, cluster=cluster, key_prefix=f"test:{uuid.uuid4().hex[:12]}:{{q}}:",
        min_replicas_acked=1, replica_ack_timeout_ms=50,
    )  # fmt: skip
    client = connect_to(settings)
    try:
        queue = make_queue(client, ManualClock(), settings)
        with pytest.raises(StorageUnavailable, match="0 of the 1 replicas"):
            await queue.submit(new_job(ManualClock(), "job-a"))
        # The connection that waited is whole: the next command on the pool reads its own reply.
        assert await client.ping()
    finally:
        await client.aclose()
