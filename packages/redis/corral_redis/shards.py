"""The queue spread over shards, on a Redis Cluster's masters or one server, and replicated submits.

A shard is a whole queue (queue.py, its scripts unchanged) under a prefix of its own, whose hash
tag is key_prefix's with the shard's number added: `corral:{q}:` becomes `corral:{q0}:`,
`corral:{q1}:`, ... Each shard's keys share one slot, so every script still runs on one node,
and the shards' slots land on different masters (with the default `{q}` and 3 masters, one
each). A job's shard is a hash of its id (crc32 modulo the shard count), so reading, waiting
for or finishing a job needs no lookup. API keys, quotas, idempotency records, workers and
duties stay under key_prefix itself, the control shard.

Claiming: a worker tries every shard without blocking, starting one shard further each claim,
so no shard is always looked at first, and for the language whose turn it is first (see
ShardedJobQueue.claim); only when all are empty does it block, on one shard's
wake lists at a time (a blocking pop cannot wait on keys of several slots), for a short slice
before trying all of them again. A job that lands on another shard meanwhile waits at most that
slice.

The owner's usage ledger (corral_redis.apikeys) lives in the control shard, which FINISH cannot
reach from another slot: a sharded job's finish settles the booking with a second script, on
the control shard, right after. A crash between the two leaves the booking counted as
unfinished until the key's bookings are cleared by hand (the job itself is done): quotas are
then stricter than they should be, never looser.

Replicated writes (min_replicas_acked): a submit's or finish's script and `WAIT n timeout` go
over one connection, since WAIT waits for the replicas to catch up with that connection's own
writes. When fewer replicas confirm in time, the call raises StorageUnavailable: a submit
answers 503 (the job is in Redis and may still run, but its submitter was never told it is
safe), a worker retries its finish (a repeated finish is accepted again, scripts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import zlib
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from typing import Any

import msgspec
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import AskError, ConnectionError, MovedError, RedisError, TimeoutError

from corral_core.access import AdmittingInSteps
from corral_core.events import EventKind, InputChunk, JobEvent
from corral_core.job import Job, decode_job
from corral_core.ports import Clock, Lease, QueueDepth, RecoveryReport, StorageUnavailable
from corral_redis import scripts
from corral_redis.apikeys import RedisAdmittingQueue, RedisKeyStore, RedisUsageLedger
from corral_redis.cancels import RedisCancelNotices
from corral_redis.connection import storage_errors
from corral_redis.events import RedisJobEvents, RedisJobInput
from corral_redis.keyspace import QueueKeys
from corral_redis.queue import RedisJobQueue
from corral_redis.settings import RedisSettings
from corral_redis.store import RedisJobStore

# How long an idle claim blocks on one shard before looking at all of them again.
_SHARD_BLOCK_S = 0.1


def shard_prefixes(settings: RedisSettings) -> list[str]:
    """Every shard's key prefix: key_prefix itself for one shard, else its tag numbered."""
    if settings.shards == 1:
        return [settings.key_prefix]
    tag_end = settings.key_prefix.index("}")
    return [f"{settings.key_prefix[:tag_end]}{shard}{settings.key_prefix[tag_end:]}" for shard in range(settings.shards)]


def shard_of(job_id: str, shards: int) -> int:
    """The shard of a job: its id's crc32, the same in every process and version."""
    return zlib.crc32(job_id.encode()) % shards


def _shard_settings(settings: RedisSettings, prefix: str) -> RedisSettings:
    # The unfinished-jobs ceiling is split: each shard's SUBMIT counts only its own jobs.
    return msgspec.structs.replace(
        settings, key_prefix=prefix, max_unfinished=math.ceil(settings.max_unfinished / settings.shards)
    )


def make_queue(client: Redis, clock: Clock, settings: RedisSettings) -> RedisJobQueue | ShardedJobQueue:
    """The queue the settings ask for: exactly RedisJobQueue for one shard on one server."""
    if settings.shards == 1 and not settings.cluster and settings.min_replicas_acked == 0:
        return RedisJobQueue(client, clock, settings)
    shards = [ShardQueue(client, clock, _shard_settings(settings, prefix), settings) for prefix in shard_prefixes(settings)]
    return shards[0] if len(shards) == 1 else ShardedJobQueue(shards)


def make_admitting(
    client: Redis, queue: RedisJobQueue | ShardedJobQueue, settings: RedisSettings
) -> RedisAdmittingQueue | AdmittingInSteps:
    """A keyed submit in one round trip (scripts.ADMIT) where it can be one script, else in steps.

    ADMIT reads the key and books its usage in the control shard and queues in the job's shard:
    one script only when they are the same slot and the submit needs no replica's WAIT.
    """
    if type(queue) is RedisJobQueue:
        return RedisAdmittingQueue(client, queue, settings)
    return AdmittingInSteps(RedisKeyStore(client, settings), RedisUsageLedger(client, settings), queue)


def make_cancel_notices(client: Redis, settings: RedisSettings) -> RedisCancelNotices | ShardedCancelNotices:
    if settings.shards == 1:
        return RedisCancelNotices(client, settings)
    return ShardedCancelNotices(
        [RedisCancelNotices(client, _shard_settings(settings, prefix)) for prefix in shard_prefixes(settings)]
    )


def make_store(client: Redis, settings: RedisSettings) -> RedisJobStore | ShardedJobStore:
    if settings.shards == 1:
        return RedisJobStore(client, settings)
    return ShardedJobStore([RedisJobStore(client, _shard_settings(settings, prefix)) for prefix in shard_prefixes(settings)])


def make_events(client: Redis, settings: RedisSettings) -> RedisJobEvents | ShardedJobEvents:
    """A job's events live in its shard, beside its record, and expire with it."""
    if settings.shards == 1:
        return RedisJobEvents(client, settings)
    return ShardedJobEvents([RedisJobEvents(client, _shard_settings(settings, prefix)) for prefix in shard_prefixes(settings)])


def make_job_input(client: Redis, settings: RedisSettings) -> RedisJobInput | ShardedJobInput:
    if settings.shards == 1:
        return RedisJobInput(client, settings)
    return ShardedJobInput([RedisJobInput(client, _shard_settings(settings, prefix)) for prefix in shard_prefixes(settings)])


class ShardQueue(RedisJobQueue):
    """One shard's queue: SPUBLISH on a Cluster, replicated submits, usage settled apart."""

    def __init__(self, client: Redis, clock: Clock, settings: RedisSettings, control: RedisSettings) -> None:
        super().__init__(client, clock, settings)
        if settings.cluster:
            self._finish = client.register_script(scripts.SHARDED_FINISH)
            self._cancel = client.register_script(scripts.SHARDED_CANCEL)
        self._ledger = QueueKeys(control.key_prefix)
        # The ledger is out of this shard's slot unless the shard is the control shard itself.
        self._settles_apart = control.key_prefix != settings.key_prefix
        self._settle = client.register_script(scripts.SETTLE)

    def submit_args(self, job: Job) -> list[str | bytes | int]:
        args = super().submit_args(job)
        if not self._settles_apart or not job.owner:
            return args
        # FINISH must not name a ledger it cannot reach; finish() settles it instead.
        return ["" if arg == self._keys.usage(job.owner) else arg for arg in args]

    async def _confirmed(self, script: AsyncScript, keys: list[str], args: list[str | bytes | int]) -> int:
        wanted = self._settings.min_replicas_acked
        if wanted == 0:
            return await super()._confirmed(script, keys, args)
        timeout_ms = self._settings.replica_ack_timeout_ms
        async with _connection_for(self._client, keys[0]) as connection:
            # EVAL rather than EVALSHA: a NOSCRIPT reply would leave the WAIT's to read.
            await connection.send_packed_command(
                connection.pack_commands([("EVAL", script.script, len(keys), *keys, *args), ("WAIT", wanted, timeout_ms)])
            )
            outcome = int(await connection.read_response())
            acked = int(await connection.read_response())
        if acked < wanted:
            raise StorageUnavailable(
                f"a write reached {acked} of the {wanted} replicas it needs within {timeout_ms} ms "
                "(redis min_replicas_acked): not acknowledged"
            )
        return outcome

    async def finish(self, lease: Lease, job: Job) -> bool:
        written = await super().finish(lease, job)
        if written and job.owner and self._settles_apart:
            await self._settle_usage(job.owner, job.id)
        return written

    async def cancel(self, job_id: str, now: datetime) -> bool:
        cancelled = await super().cancel(job_id, now)
        if cancelled and self._settles_apart:
            await self._settle_owner_of(job_id)
        return cancelled

    async def erase(self, job_id: str) -> bool:
        if not self._settles_apart:
            return await super().erase(job_id)
        with storage_errors():
            head = await self._client.hget(self._keys.job(job_id), "head")
        erased = await super().erase(job_id)
        owner = decode_job(head).owner if head else ""
        if erased and owner:
            # The ledger's entry lapses now rather than a TTL from now (booking.lua frees it).
            with storage_errors():
                await self._settle(keys=[self._ledger.usage(owner)], args=[job_id, 0])
        return erased

    async def recover(self, max_attempts: int) -> RecoveryReport:
        report = await super().recover(max_attempts)
        if self._settles_apart:
            for job_id in report.failed:
                await self._settle_owner_of(job_id)
        return report

    async def _settle_owner_of(self, job_id: str) -> None:
        with storage_errors():
            head = await self._client.hget(self._keys.job(job_id), "head")
        owner = decode_job(head).owner if head else ""
        if owner:
            await self._settle_usage(owner, job_id)

    async def _settle_usage(self, owner: str, job_id: str) -> None:
        with storage_errors():
            # What FINISH (or CANCEL) found the job stored, for its booking to shrink to.
            stored = await self._client.hget(self._keys.job(job_id), "stored")
            await self._settle(
                keys=[self._ledger.usage(owner), self._ledger.usage_bytes(owner)],
                args=[job_id, self._ttl_ms, stored or ""],
            )


class ShardedJobQueue:
    """Several ShardQueues as one JobQueue: a job goes to the shard its id names."""

    def __init__(self, shards: Sequence[ShardQueue]) -> None:
        self._shards = list(shards)
        self._turn = 0

    def shard(self, job_id: str) -> ShardQueue:
        return self._shards[shard_of(job_id, len(self._shards))]

    async def submit(self, job: Job) -> None:
        await self.shard(job.id).submit(job)

    async def claim(
        self, worker_id: str, lease_ms: int, timeout_s: float, languages: Collection[str] | None = None
    ) -> Lease | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self._turn += 1
            first = self._turn % len(self._shards)
            order = self._shards[first:] + self._shards[:first]
            # Each shard takes turns between languages on its own, which would not stop one
            # shard full of one language from answering every claim: this claim's language
            # (in turn) is looked for on every shard first.
            offered = sorted(languages) if languages is not None else []
            rounds = [[offered[self._turn % len(offered)]], languages] if len(offered) > 1 else [languages]
            for wanted in rounds:
                for shard in order:
                    lease = await shard.claim(worker_id, lease_ms, 0, wanted)
                    if lease is not None:
                        return lease
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            # Blocks on the shard this round started with: each in turn over successive rounds.
            lease = await order[0].claim(worker_id, lease_ms, min(remaining, _SHARD_BLOCK_S), languages)
            if lease is not None:
                return lease

    async def renew(self, lease: Lease, lease_ms: int) -> bool:
        return await self.shard(lease.job.id).renew(lease, lease_ms)

    async def finish(self, lease: Lease, job: Job) -> bool:
        return await self.shard(lease.job.id).finish(lease, job)

    async def release(self, lease: Lease) -> bool:
        return await self.shard(lease.job.id).release(lease)

    async def cancel(self, job_id: str, now: datetime) -> bool:
        return await self.shard(job_id).cancel(job_id, now)

    async def erase(self, job_id: str) -> bool:
        return await self.shard(job_id).erase(job_id)

    async def recover(self, max_attempts: int) -> RecoveryReport:
        requeued: list[str] = []
        failed: list[str] = []
        for shard in self._shards:
            report = await shard.recover(max_attempts)
            requeued.extend(report.requeued)
            failed.extend(report.failed)
        return RecoveryReport(requeued=tuple(requeued), failed=tuple(failed))

    async def depth(self) -> QueueDepth:
        depths = [await shard.depth() for shard in self._shards]
        return QueueDepth(
            pending=sum(depth.pending for depth in depths), unfinished=sum(depth.unfinished for depth in depths)
        )


class ShardedJobStore:
    """Several RedisJobStores as one JobStore, each with its own finish subscription."""

    def __init__(self, shards: Sequence[RedisJobStore]) -> None:
        self._shards = list(shards)

    def shard(self, job_id: str) -> RedisJobStore:
        return self._shards[shard_of(job_id, len(self._shards))]

    async def get(self, job_id: str) -> Job | None:
        return await self.shard(job_id).get(job_id)

    async def file(self, job_id: str, name: str) -> bytes | None:
        return await self.shard(job_id).file(job_id, name)

    async def wait_finished(self, job_id: str, timeout_s: float, submitted_s: float | None = None) -> Job | None:
        return await self.shard(job_id).wait_finished(job_id, timeout_s, submitted_s)

    def waiting(self, job_id: str | None = None) -> int:
        if job_id is not None:
            return self.shard(job_id).waiting(job_id)
        return sum(shard.waiting() for shard in self._shards)

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class ShardedJobEvents:
    """Several RedisJobEvents as one JobEvents, each with its own subscription (when read)."""

    def __init__(self, shards: Sequence[RedisJobEvents]) -> None:
        self._shards = list(shards)

    def shard(self, job_id: str) -> RedisJobEvents:
        return self._shards[shard_of(job_id, len(self._shards))]

    async def append(self, job_id: str, events: Sequence[tuple[EventKind, str]]) -> None:
        await self.shard(job_id).append(job_id, events)

    async def read(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[JobEvent]:
        return await self.shard(job_id).read(job_id, after, timeout_s)

    def waiting(self) -> int:
        return sum(shard.waiting() for shard in self._shards)

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class ShardedJobInput:
    """Several RedisJobInputs as one JobInput: a job's input lives in its shard."""

    def __init__(self, shards: Sequence[RedisJobInput]) -> None:
        self._shards = list(shards)

    def shard(self, job_id: str) -> RedisJobInput:
        return self._shards[shard_of(job_id, len(self._shards))]

    async def send(self, job_id: str, data: bytes, *, eof: bool = False, max_bytes: int) -> bool:
        return await self.shard(job_id).send(job_id, data, eof=eof, max_bytes=max_bytes)

    async def receive(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[InputChunk]:
        return await self.shard(job_id).receive(job_id, after, timeout_s)

    def waiting(self) -> int:
        return sum(shard.waiting() for shard in self._shards)

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class ShardedCancelNotices:
    """Several RedisCancelNotices as one CancelNotices: a job's notice comes from its shard."""

    def __init__(self, shards: Sequence[RedisCancelNotices]) -> None:
        self._shards = list(shards)

    async def wait_cancelled(self, job_id: str, since_s: float | None = None) -> None:
        await self._shards[shard_of(job_id, len(self._shards))].wait_cancelled(job_id, since_s)

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


@contextlib.asynccontextmanager
async def _connection_for(client: Redis, key: str) -> AsyncIterator[AbstractConnection]:
    """One connection to the node that holds `key`, kept for a command and the WAIT after it.

    A connection left with a reply unread (an error or a cancellation half-way) is dropped, so
    that reply is never taken for the next command's.
    """
    with storage_errors():
        cluster: Any = client
        if isinstance(cluster, RedisCluster):
            await cluster.initialize()
            node = cluster.get_node_from_key(key)
            if node is None:
                raise StorageUnavailable(f"no Redis Cluster node serves the slot of {key} now")
            connection = node.acquire_connection()
            try:
                yield connection
            except BaseException as error:
                # A topology refresh by another task closes this node's connections, ours
                # included, under our feet: redis-py then fails on a writer it no longer has.
                closed_under_us = not isinstance(error, RedisError) and not connection.is_connected
                await connection.disconnect()
                if closed_under_us or isinstance(error, ConnectionError | TimeoutError | MovedError | AskError):
                    # The slot may have moved (a failover): learn the new map for the next write.
                    with contextlib.suppress(Exception):
                        await cluster.nodes_manager.initialize()
                if closed_under_us and isinstance(error, Exception):
                    raise ConnectionError(f"the connection to {node.name} was closed while in use") from error
                raise
            finally:
                node.release(connection)
        else:
            pool = client.connection_pool
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                yield connection
            except BaseException:
                await connection.disconnect()
                raise
            finally:
                await pool.release(connection)
