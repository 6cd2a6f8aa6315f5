"""The contract suites bound to the Redis adapters on a real Redis, plus what only Redis has:
the crash window between BLMOVE and start, retried scripts, record expiry, lenient reading,
lease time kept on Redis' own clock whatever the callers' clocks say.

Each test gets its own key prefix, so a shared server (REDIS_URL) is never flushed.

Leases, heartbeats and duties expire by Redis' TIME, which a test cannot move: `elapse(ms)`
moves every stored deadline `ms` back instead, which is the same to every script (each
compares a stored deadline with TIME), and advances the ManualClock that stamps started_at.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar, cast

import msgspec
import pytest
from redis.asyncio import Redis

from corral_contract.access import AccessContract, AccessHarness
from corral_contract.clock import ManualClock
from corral_contract.events import JobEventsContract, JobInputContract, StreamsHarness
from corral_contract.queue import LEASE_MS, QUEUE_LIMIT, JobQueueContract, QueueHarness, new_job, ok_result
from corral_contract.workers import RegistryHarness, WorkerRegistryContract
from corral_core import job as jobs
from corral_core.job import ALLOWED, ErrorCode, JobError, JobStatus, encode_job
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import JobQueue, Lease, RecoveryReport, StorageFull, WorkerInfo
from corral_memory.jobs import InMemoryJobQueue, InMemoryJobs, InMemoryJobStore
from corral_redis import (
    QueueKeys,
    RedisAdmittingQueue,
    RedisCancelNotices,
    RedisIdempotencyRecords,
    RedisJobEvents,
    RedisJobInput,
    RedisJobQueue,
    RedisJobStore,
    RedisKeyStore,
    RedisSettings,
    RedisUsageLedger,
    RedisWorkerRegistry,
    check_durability,
    connect,
)
from corral_redis.records import encode_time, progress_fields, result_reserve
from corral_redis.scripts import CANCEL, FINISH, START, SUBMIT

T = TypeVar("T")

# KEYS: leases ZSET, workers ZSET, then duty HASHes. ARGV: how far back (µs).
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


def elapsing(client: Redis, settings: RedisSettings, clock: ManualClock) -> Callable[[int], Awaitable[None]]:
    """The harnesses' elapse(ms) for the Redis adapters under `settings`' prefix."""
    keys = QueueKeys(settings.key_prefix)

    async def elapse(ms: int) -> None:
        clock.advance(ms)
        duties = [key async for key in client.scan_iter(match=f"{keys.duty('*')}")]
        await client.eval(_MOVE_DEADLINES_BACK, 2 + len(duties), keys.leases, keys.workers, *duties, ms * 1000)

    return elapse


@pytest.fixture
def settings() -> RedisSettings:
    return RedisSettings(key_prefix=f"test:{uuid.uuid4().hex[:12]}:{{q}}:", max_unfinished=QUEUE_LIMIT)


@pytest.fixture
async def client(redis_url: str, settings: RedisSettings) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{settings.key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def notices(client: Redis, settings: RedisSettings) -> AsyncIterator[RedisCancelNotices]:
    listening = RedisCancelNotices(client, settings)
    yield listening
    await listening.aclose()


@pytest.fixture
async def parts(
    client: Redis, settings: RedisSettings
) -> AsyncIterator[tuple[RedisJobQueue, RedisJobStore, ManualClock]]:
    clock = ManualClock()
    store = RedisJobStore(client, settings)
    yield RedisJobQueue(client, clock, settings), store, clock
    await store.aclose()


@pytest.fixture
def elapse(
    client: Redis, settings: RedisSettings, parts: tuple[RedisJobQueue, RedisJobStore, ManualClock]
) -> Callable[[int], Awaitable[None]]:
    return elapsing(client, settings, parts[2])


class TestRedisJobQueue(JobQueueContract):
    @pytest.fixture
    async def harness(
        self,
        parts: tuple[RedisJobQueue, RedisJobStore, ManualClock],
        elapse: Callable[[int], Awaitable[None]],
        notices: RedisCancelNotices,
    ) -> QueueHarness:
        queue, store, clock = parts
        return QueueHarness(queue, store, clock, elapse, queue, canceller=queue, notices=notices, eraser=queue)


@pytest.fixture
async def redis_streams(client: Redis, settings: RedisSettings) -> AsyncIterator[StreamsHarness]:
    events, job_input = RedisJobEvents(client, settings), RedisJobInput(client, settings)
    yield StreamsHarness(events, job_input)
    await events.aclose()
    await job_input.aclose()


class TestRedisJobEvents(JobEventsContract):
    @pytest.fixture
    def streams(self, redis_streams: StreamsHarness) -> StreamsHarness:
        return redis_streams


class TestRedisJobInput(JobInputContract):
    @pytest.fixture
    def streams(self, redis_streams: StreamsHarness) -> StreamsHarness:
        return redis_streams


# KEYS: GCRA arrival times. ARGV: how far back (µs).
_MOVE_ARRIVALS_BACK = """
for _, key in ipairs(KEYS) do
  local arrival = redis.call('GET', key)
  if arrival then redis.call('SET', key, string.format('%d', tonumber(arrival) - tonumber(ARGV[1])), 'KEEPTTL') end
end
"""


class TestRedisAccess(AccessContract):
    @pytest.fixture
    def access(
        self, client: Redis, settings: RedisSettings, parts: tuple[RedisJobQueue, RedisJobStore, ManualClock]
    ) -> AccessHarness:
        queue, _, clock = parts
        keys = QueueKeys(settings.key_prefix)

        async def elapse(ms: int) -> None:
            clock.advance(ms)
            arrivals = [key async for key in client.scan_iter(match=keys.rate("*"))]
            if arrivals:
                await client.eval(_MOVE_ARRIVALS_BACK, len(arrivals), *arrivals, ms * 1000)

        return AccessHarness(
            RedisKeyStore(client, settings),
            RedisUsageLedger(client, settings),
            RedisIdempotencyRecords(client, settings),
            queue,
            clock,
            elapse,
            RedisAdmittingQueue(client, queue, settings),
            queue,
            queue,
        )


class TestRedisWorkerRegistry(WorkerRegistryContract):
    @pytest.fixture
    def registry(self, client: Redis, settings: RedisSettings) -> RegistryHarness:
        clock = ManualClock()
        return RegistryHarness(RedisWorkerRegistry(client, settings), clock, elapsing(client, settings, clock))


async def test_a_job_taken_by_a_worker_that_died_before_starting_it_is_requeued_uncounted(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock], client: Redis, settings: RedisSettings
) -> None:
    queue, store, clock = parts
    keys = QueueKeys(settings.key_prefix)
    await queue.submit(new_job(clock, "job-a"))
    await queue.submit(new_job(clock, "job-b"))
    # What a worker of the version before lines did (BLMOVE, then the start script), dying between.
    assert await client.lmove(keys.line("python"), keys.processing, "LEFT", "RIGHT") == b"job-a"

    report = await queue.recover(max_attempts=3)

    assert report.requeued == () and report.failed == ()  # it never ran: nothing to report
    assert await client.lrange(keys.processing, 0, -1) == []
    lease = await queue.claim("w1", LEASE_MS, 1)
    assert lease is not None and lease.job.id == "job-a" and lease.job.attempts == 1  # kept its place


async def test_a_moved_job_that_recovery_put_back_is_not_started(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock], client: Redis, settings: RedisSettings
) -> None:
    queue, store, clock = parts
    keys = QueueKeys(settings.key_prefix)
    await queue.submit(new_job(clock, "job-a"))
    moved = await client.lmove(keys.line("python"), keys.processing, "LEFT", "RIGHT")
    assert moved is not None
    await queue.recover(max_attempts=3)  # runs between the worker's BLMOVE and its start

    # The start script as the slow worker's claim runs it, with the id its BLMOVE got.
    started = await client.eval(
        START, 3, keys.processing, keys.leases, keys.line("python"),
        keys.job_prefix, LEASE_MS, encode_time(clock.now()), "slow", moved, "",
    )  # fmt: skip
    assert started is None

    pending = await store.get("job-a")
    assert pending is not None and pending.status is JobStatus.PENDING and pending.attempts == 0
    assert await client.lrange(keys.line("python"), 0, -1) == [b"job-a"]


async def test_a_claim_that_blocked_in_blmove_starts_the_job_it_moved(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock],
) -> None:
    queue, store, clock = parts
    waiting = asyncio.ensure_future(queue.claim("w1", LEASE_MS, 5))
    await asyncio.sleep(0.05)  # blocked in BLMOVE by now: the queue is empty
    await queue.submit(new_job(clock, "job-a"))
    lease = await waiting
    assert lease is not None and lease.job.status is JobStatus.RUNNING
    assert await store.get("job-a") == jobs.without_inputs(lease.job)


async def test_a_finished_record_expires_and_leaves_no_queue_entry(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock], client: Redis, settings: RedisSettings
) -> None:
    queue, _, clock = parts
    keys = QueueKeys(settings.key_prefix)
    await queue.submit(new_job(clock, "job-a"))
    lease = await queue.claim("w1", LEASE_MS, 1)
    assert lease is not None
    assert await queue.finish(lease, jobs.complete(lease.job, ok_result(), clock.now()))
    ttl_ms = await client.pttl(keys.job("job-a"))
    assert 0 < ttl_ms <= settings.finished_ttl_s * 1000
    assert await client.llen(keys.line("python")) == 0
    assert await client.llen(keys.processing) == 0
    assert await client.zcard(keys.leases) == 0


async def test_a_submit_resent_after_a_lost_reply_is_accepted_once(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock], client: Redis, settings: RedisSettings
) -> None:
    queue, _, clock = parts
    keys = QueueKeys(settings.key_prefix)
    job = new_job(clock, "job-a")
    await queue.submit(job)
    # The same script again, as redis-py re-sends it when the first reply was lost.
    keys_sent = queue.submit_keys(job)
    resent = await client.eval(SUBMIT, len(keys_sent), *keys_sent, *queue.submit_args(job))
    assert resent == 1
    assert await client.lrange(keys.line("python"), 0, -1) == [b"job-a"]
    with pytest.raises(ValueError):
        await queue.submit(new_job(clock, "job-a", code="print('another job')"))


async def test_a_finish_resent_after_a_lost_reply_is_accepted_again(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock],
) -> None:
    queue, store, clock = parts
    await queue.submit(new_job(clock, "job-a"))
    lease = await queue.claim("w1", LEASE_MS, 1)
    assert lease is not None
    final = jobs.complete(lease.job, ok_result(), clock.now())
    assert await queue.finish(lease, final)
    assert await queue.finish(lease, final)  # the same write under the same lease: a re-send
    other = jobs.complete(lease.job, ok_result("other\n"), clock.now())
    assert not await queue.finish(lease, other)
    assert await store.get("job-a") == jobs.without_inputs(final)


async def test_a_cancel_resent_after_a_lost_reply_is_accepted_again_and_gives_back_once(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock], client: Redis, settings: RedisSettings
) -> None:
    queue, store, clock = parts
    keys = QueueKeys(settings.key_prefix)
    await queue.submit(new_job(clock, "job-a", code="print('a' * 10)"))
    await queue.submit(new_job(clock, "job-b"))
    lease = await queue.claim("w1", LEASE_MS, 1)
    assert lease is not None and lease.job.id == "job-a"
    reserve = result_reserve(DEFAULT_LIMIT_POLICY.defaults.max_output_bytes)
    assert int(cast(bytes, await client.get(keys.reserved))) == 2 * reserve
    now = clock.now()
    assert await queue.cancel("job-a", now)
    # The same script again, as redis-py re-sends it when the first reply was lost.
    args: list[str | bytes | int] = ["job-a", encode_time(now), keys.finished, keys.cancelled, settings.finished_ttl_s * 1000]
    cancel_keys = [keys.job("job-a"), keys.processing, keys.leases, keys.reserved]
    assert await client.eval(CANCEL, 4, *cancel_keys, *args) == 1
    assert not await queue.finish(lease, jobs.complete(lease.job, ok_result(), clock.now()))
    assert int(cast(bytes, await client.get(keys.reserved))) == reserve  # job-b's alone
    assert await client.lrange(keys.processing, 0, -1) == [] and await client.zcard(keys.leases) == 0
    assert b"print('a' * 10)" not in cast(bytes, await client.hget(keys.job("job-a"), "spec"))
    assert 0 < await client.pttl(keys.job("job-a")) <= settings.finished_ttl_s * 1000
    # A pending job's id stays in its line until a claim passes over it.
    assert await queue.cancel("job-b", clock.now())
    assert int(cast(bytes, await client.get(keys.reserved))) == 0
    assert await client.lrange(keys.line("python"), 0, -1) == [b"job-b"]
    assert await queue.claim("w1", LEASE_MS, 0.1) is None
    assert await client.lrange(keys.line("python"), 0, -1) == []
    assert await client.lrange(keys.processing, 0, -1) == []
    assert (await store.get("job-b")).status is JobStatus.CANCELLED  # type: ignore[union-attr]


async def test_a_record_from_a_newer_version_reads_with_unknown_fields_ignored(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock], client: Redis, settings: RedisSettings
) -> None:
    queue, store, clock = parts
    job = new_job(clock, "job-a")
    await queue.submit(job)
    spec = msgspec.json.decode(encode_job(job))
    spec["priority"] = 7  # a field this version does not know
    key = QueueKeys(settings.key_prefix).job("job-a")
    await client.hset(key, mapping={"spec": msgspec.json.encode(spec), "head": msgspec.json.encode(spec)})
    assert await store.get("job-a") == jobs.without_inputs(job)


async def test_records_and_results_of_the_previous_layout_read_as_before(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock], client: Redis, settings: RedisSettings
) -> None:
    """An older API wrote no head and no reserve; an older worker kept the output in `result`."""
    queue, store, clock = parts
    key = QueueKeys(settings.key_prefix).job("job-a")
    job = new_job(clock, "job-a")
    await queue.submit(job)
    await client.hdel(key, "head", "reserve")
    assert await store.get("job-a") == jobs.without_inputs(job)
    lease = await queue.claim("w1", LEASE_MS, 1)
    assert lease is not None and lease.job.request.code == "print(1)"
    final = jobs.complete(lease.job, ok_result("old\n"), clock.now())
    assert await queue.finish(lease, final)
    await client.hdel(key, "stdout")
    await client.hset(key, "result", msgspec.json.encode(final.result))
    assert await store.get("job-a") == jobs.without_inputs(final)


async def test_a_finished_job_keeps_no_inputs_and_its_output_as_raw_bytes(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock], client: Redis, settings: RedisSettings
) -> None:
    queue, store, clock = parts
    keys = QueueKeys(settings.key_prefix)
    stdin = "x" * 100_000
    job = new_job(clock, "job-a", code="print(input())")
    job = msgspec.structs.replace(job, request=msgspec.structs.replace(job.request, stdin=stdin))
    await queue.submit(job)
    assert int(cast(bytes, await client.get(keys.reserved))) == result_reserve(job.request.limits.max_output_bytes)
    lease = await queue.claim("w1", LEASE_MS, 1)
    assert lease is not None and lease.job.request.stdin == stdin
    flood = "\x01" * 50_000
    warnings = "\x02" * 1_000
    final = jobs.complete(lease.job, msgspec.structs.replace(ok_result(flood), compile_output=warnings), clock.now())
    assert await queue.finish(lease, final)
    assert await client.hget(keys.job("job-a"), "stdout") == flood.encode()
    assert await client.hget(keys.job("job-a"), "compile_output") == warnings.encode()
    assert b"print(input())" not in cast(bytes, await client.hget(keys.job("job-a"), "spec"))
    assert int(cast(bytes, await client.get(keys.reserved))) == 0
    stored = await client.hgetall(keys.job("job-a"))
    assert sum(len(name) + len(value) for name, value in stored.items()) < 50_000 + 4096
    # SAMPLES 0: every field counted (the default samples five and extrapolates, which varies
    # with the hash's seed); jemalloc puts a 50,000-byte string in a 57,344-byte size class.
    assert cast(int, await client.memory_usage(keys.job("job-a"), samples=0)) < 50_000 * 5 // 4 + 4096
    assert await store.get("job-a") == jobs.without_inputs(final)


async def test_a_submission_past_the_memory_ceiling_is_refused_and_stores_nothing(
    client: Redis, settings: RedisSettings
) -> None:
    used = int((await client.info("memory"))["used_memory"])
    reserve = result_reserve(DEFAULT_LIMIT_POLICY.defaults.max_output_bytes)
    # Room for two jobs' reserves, not three.
    tight = msgspec.structs.replace(settings, max_memory_bytes=used + 2 * reserve + reserve // 2)
    clock = ManualClock()
    queue = RedisJobQueue(client, clock, tight)
    keys = QueueKeys(tight.key_prefix)
    await queue.submit(new_job(clock, "job-1"))
    await queue.submit(new_job(clock, "job-2"))
    with pytest.raises(StorageFull):
        await queue.submit(new_job(clock, "job-3"))
    assert not await client.exists(keys.job("job-3"))
    # A finished job gives its reserve back, and there is room again.
    lease = await queue.claim("w1", LEASE_MS, 1)
    assert lease is not None
    assert await queue.finish(lease, jobs.complete(lease.job, ok_result(), clock.now()))
    await queue.submit(new_job(clock, "job-3"))


async def test_recovery_does_not_fail_a_job_whose_lease_was_renewed_after_it_looked(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock],
    client: Redis,
    settings: RedisSettings,
    elapse: Callable[[int], Awaitable[None]],
) -> None:
    queue, store, clock = parts
    await queue.submit(new_job(clock, "job-a"))
    lease = await queue.claim("w1", LEASE_MS, 1)
    assert lease is not None
    await elapse(LEASE_MS + 1)
    # Recovery's first script found the lease expired and out of attempts; then the worker
    # renewed it before the second step (FAILED, only if the lease is still expired) ran.
    assert await queue.renew(lease, LEASE_MS)
    lost = progress_fields(jobs.fail(lease.job, jobs.worker_lost(1), clock.now()))
    keys = QueueKeys(settings.key_prefix)
    written = await client.eval(
        FINISH, 4, keys.job("job-a"), keys.processing, keys.leases, keys.reserved,
        "job-a", lease.token, keys.finished, settings.finished_ttl_s * 1000, "1", *lost,
    )  # fmt: skip
    assert written == 0
    assert (await store.get("job-a")).status is JobStatus.RUNNING  # type: ignore[union-attr]
    assert await queue.recover(max_attempts=1) == RecoveryReport()


async def test_every_record_reads_exactly_as_the_in_memory_adapter_has_it(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock], elapse: Callable[[int], Awaitable[None]]
) -> None:
    queue, store, clock = parts
    state = InMemoryJobs(clock, max_unfinished=QUEUE_LIMIT)
    twin, twin_store = InMemoryJobQueue(state), InMemoryJobStore(state)
    job_ids = ["job-a", "job-b", "job-c"]

    async def both(step: str, call: Callable[[JobQueue], Awaitable[T]]) -> T:
        ours, theirs = await call(queue), await call(twin)
        assert ours == theirs, step
        for job_id in job_ids:
            assert await store.get(job_id) == await twin_store.get(job_id), (step, job_id)
        return ours

    async def claim(step: str, worker_id: str) -> Lease:
        lease = await both(step, lambda q: q.claim(worker_id, LEASE_MS, 1))
        assert lease is not None, step
        return lease

    for job_id in job_ids:
        await both(f"submit {job_id}", lambda q, job_id=job_id: q.submit(new_job(clock, job_id)))  # type: ignore[misc]
    first = await claim("claim a", "w1")
    await both("release a", lambda q: q.release(first))
    await claim("claim a again", "w1")
    await elapse(LEASE_MS // 2)
    second = await claim("claim b", "w2")
    await elapse(LEASE_MS // 2 + 1)
    await both("recover a", lambda q: q.recover(max_attempts=2))
    third = await claim("claim c", "w3")
    final = jobs.fail(third.job, JobError(ErrorCode.SANDBOX_ERROR, "no jail"), clock.now())
    await both("fail c", lambda q: q.finish(third, final))
    await both("renew b", lambda q: q.renew(second, LEASE_MS))
    await claim("claim a, the last time", "w4")
    await elapse(LEASE_MS + 1)
    await both("recover a and b", lambda q: q.recover(max_attempts=2))


async def test_every_status_change_a_script_makes_is_one_core_allows(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock],
    client: Redis,
    settings: RedisSettings,
    elapse: Callable[[int], Awaitable[None]],
) -> None:
    """The lifecycle is written twice, in core (ALLOWED) and in the Lua scripts: every path of
    every script that changes a status is driven here, and each change it makes checked."""
    queue, _, clock = parts
    keys = QueueKeys(settings.key_prefix)
    job_ids = ["job-a", "job-b", "job-c", "job-d", "job-e"]
    seen: set[tuple[JobStatus, JobStatus]] = set()

    async def statuses() -> dict[str, JobStatus | None]:
        found: dict[str, JobStatus | None] = {}
        for job_id in job_ids:
            raw = cast(bytes | None, await client.hget(keys.job(job_id), "status"))
            found[job_id] = None if raw is None else JobStatus(raw.decode())
        return found

    async def step(script: str, call: Awaitable[T]) -> T:
        before = await statuses()
        outcome = await call
        for job_id, after in (await statuses()).items():
            was = before[job_id]
            if was is not None and after != was:
                assert after is not None and after in ALLOWED[was], f"{script} moved {job_id} from {was} to {after}"
                seen.add((was, after))
        return outcome

    async def claim(worker_id: str) -> Lease:
        lease = await step("START", queue.claim(worker_id, LEASE_MS, 1))
        assert lease is not None
        return lease

    for job_id in job_ids[:3]:
        await step("SUBMIT", queue.submit(new_job(clock, job_id)))
    a = await claim("w1")  # LMOVE inside the script
    await step("RELEASE", queue.release(a))
    a = await claim("w1")
    await step("RENEW", queue.renew(a, LEASE_MS))
    await step("FINISH", queue.finish(a, jobs.complete(a.job, ok_result(), clock.now())))
    b = await claim("w2")
    await step("FINISH", queue.finish(b, jobs.fail(b.job, JobError(ErrorCode.SANDBOX_ERROR, "no jail"), clock.now())))
    await claim("w3")
    await elapse(LEASE_MS + 1)
    await step("RECOVER", queue.recover(max_attempts=2))  # requeued
    await claim("w3")
    await elapse(LEASE_MS + 1)
    await step("RECOVER", queue.recover(max_attempts=2))  # out of attempts: failed
    await step("SUBMIT", queue.submit(new_job(clock, "job-d")))
    moved = await client.lmove(keys.line("python"), keys.processing, "LEFT", "RIGHT")  # a blocked claim's BLMOVE
    assert moved is not None
    started = client.eval(
        START, 3, keys.processing, keys.leases, keys.line("python"),
        keys.job_prefix, LEASE_MS, encode_time(clock.now()), "w4", moved, "",
    )  # fmt: skip
    assert await step("START", started) is not None
    assert await step("CANCEL", queue.cancel("job-d", clock.now()))  # running
    await step("SUBMIT", queue.submit(new_job(clock, "job-e")))
    assert await step("CANCEL", queue.cancel("job-e", clock.now()))  # pending

    lifecycle = {(was, now) for was, moves in ALLOWED.items() for now in moves}
    assert seen == lifecycle - {(JobStatus.PENDING, JobStatus.FAILED)}  # no script fails a pending job
    assert (await statuses())["job-c"] is JobStatus.FAILED


async def test_the_durability_check_accepts_the_test_server(client: Redis) -> None:
    durability = await check_durability(client)
    assert durability.risks == () and not durability.accepted_risks()
    assert durability.appendonly == "yes" and durability.maxmemory_policy == "noeviction"
    assert durability.appendfsync in {"always", "everysec", "no"}


def test_a_key_prefix_without_a_hash_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="hash tag"):
        RedisSettings(key_prefix="corral:")


async def test_lease_expiry_follows_redis_time_whatever_the_callers_clocks_say(
    client: Redis, settings: RedisSettings
) -> None:
    """A worker minutes ahead claims; one minutes behind recovers: neither clock moves a lease."""
    ahead, behind = ManualClock(), ManualClock()
    ahead.advance(10 * 60_000)
    behind.advance(-10 * 60_000)
    claiming, recovering = RedisJobQueue(client, ahead, settings), RedisJobQueue(client, behind, settings)
    await claiming.submit(new_job(ahead, "job-a"))
    lease = await claiming.claim("w-ahead", LEASE_MS, 1)
    assert lease is not None and lease.job.started_at == ahead.now()  # stamps still come from the caller
    assert await recovering.recover(max_attempts=1) == RecoveryReport()
    assert await claiming.renew(lease, LEASE_MS)

    registry_ahead = RedisWorkerRegistry(client, settings)
    await registry_ahead.heartbeat(WorkerInfo("w-ahead", ahead.now()), ttl_ms=LEASE_MS)
    assert [info.worker_id for info in await RedisWorkerRegistry(client, settings).live_workers()] == ["w-ahead"]
    assert await registry_ahead.hold_duty("recovery", "w-ahead", ttl_ms=LEASE_MS)
    assert not await RedisWorkerRegistry(client, settings).hold_duty("recovery", "w-behind", ttl_ms=LEASE_MS)


async def test_a_short_real_lease_expires_by_redis_time(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock],
) -> None:
    """No elapse() here: the lease runs out in real time, as Redis' TIME counts it."""
    queue, store, clock = parts
    await queue.submit(new_job(clock, "job-a"))
    assert await queue.claim("w1", 1_000, 1) is not None
    assert await queue.recover(max_attempts=3) == RecoveryReport()
    await asyncio.sleep(1.1)
    assert (await queue.recover(max_attempts=3)).requeued == ("job-a",)


async def test_jobs_an_older_version_put_in_a_language_s_line_take_their_turn(
    parts: tuple[RedisJobQueue, RedisJobStore, ManualClock], client: Redis, settings: RedisSettings
) -> None:
    queue, _, clock = parts
    keys = QueueKeys(settings.key_prefix)
    for index in range(2):
        await queue.submit(new_job(clock, f"big-{index}", owner="big"))
    # What SUBMIT did before owners had lines: the language's line, and no turn for it.
    await queue.submit(new_job(clock, "old-0"))
    await client.lrem(keys.turns("python"), 0, keys.line("python"))
    claimed = []
    for index in range(3):
        lease = await queue.claim(f"w{index}", LEASE_MS, 1)
        assert lease is not None
        claimed.append(lease.job.id)
    assert claimed == ["big-0", "old-0", "big-1"]
