"""The job queue on Redis: lists for the line, a ZSET of leases, a fence per job.

Layout (every key under the settings' prefix, see settings.py and records.py):

- `pending`, a LIST of job ids in line, oldest on the left;
- `processing`, a LIST of the ids workers took. A worker takes an id with a move from
  `pending`, never a pop, so a job is never only in a worker's memory;
- `leases`, a ZSET of the running job ids scored by lease deadline (Redis' TIME, µs);
- `job:<id>`, a HASH per job (records.py), with `fence`, the token counter of its leases;
- `reserved`, the bytes set aside for the results of unfinished jobs (records.py, byte budget).

Lists and leases rather than Streams: a consumer group's pending-entries list has delivery
counts and XAUTOCLAIM, but none of them fits here. A released job must be next in line, and a
stream only appends; attempts must not count a release or a worker that died before starting
the job, which a delivery count does; and entries must be trimmed by hand. A stream would add a
PEL beside the same lease ZSET, fence and attempt counter instead of replacing any of them.

Lease deadlines are Redis' own clock (see scripts.py): the injected Clock only stamps the
started_at and finished_at that users read, so a worker's skewed clock cannot expire a lease.

Claiming is one script (LMOVE then start) while work is waiting. Only an empty queue makes a
worker block in BLMOVE, which cannot run inside a script; the id it gets is then started by the
same script, which refuses it if recovery put it back in line meanwhile. A worker that dies
between the two leaves an id in `processing` with no lease: recovery puts it back at the head
without counting an attempt, since it never ran.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from corral_core import job as jobs
from corral_core.job import Job, encode_job
from corral_core.ports import Clock, Lease, QueueDepth, QueueFull, RecoveryReport, StorageFull
from corral_redis import scripts
from corral_redis.connection import storage_errors
from corral_redis.records import decode_record, encode_head, encode_time, progress_fields, result_reserve
from corral_redis.settings import DEFAULT_SETTINGS, QueueKeys, RedisSettings


class RedisJobQueue:
    def __init__(self, client: Redis, clock: Clock, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._client = client
        self._clock = clock
        self._settings = settings
        self._keys = QueueKeys(settings.key_prefix)
        self._ttl_ms = settings.finished_ttl_s * 1000
        self._submit = client.register_script(scripts.SUBMIT)
        self._start = client.register_script(scripts.START)
        self._renew = client.register_script(scripts.RENEW)
        self._finish = client.register_script(scripts.FINISH)
        self._release = client.register_script(scripts.RELEASE)
        self._recover = client.register_script(scripts.RECOVER)

    async def submit(self, job: Job) -> None:
        with storage_errors():
            outcome = await self._submit(keys=self.submit_keys(job), args=self.submit_args(job))
        if outcome == 0:
            raise QueueFull(self._settings.max_unfinished)
        if outcome == -1:
            raise ValueError(f"job {job.id} was already submitted")
        if outcome == -2:
            ceiling = self._settings.max_memory_bytes
            raise StorageFull(
                f"Redis' memory is near its ceiling of {ceiling} bytes" if ceiling else "Redis' memory is near its maxmemory"
            )

    def submit_keys(self, job: Job) -> list[str]:
        keys = self._keys
        return [keys.job(job.id), keys.pending, keys.processing, keys.reserved]

    def submit_args(self, job: Job) -> list[str | bytes | int]:
        """The SUBMIT script's arguments for `job`: the same on a re-send, as the script expects."""
        keys = self._keys
        return [
            self._settings.max_unfinished,
            job.id,
            encode_job(job),
            encode_head(job),
            result_reserve(job.request.limits.max_output_bytes),
            self._settings.max_memory_bytes,
            keys.usage(job.owner) if job.owner else "",
            *progress_fields(job),
        ]

    async def claim(self, worker_id: str, lease_ms: int, timeout_s: float) -> Lease | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        keys = self._keys
        with storage_errors():
            while True:
                lease = await self._start_job(worker_id, lease_ms, None)
                if lease is not None:
                    return lease
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                # Redis blocks in whole milliseconds and reads 0 as "forever".
                wait_s = max(min(remaining, self._settings.claim_block_s), 0.01)
                # redis-py types the timeout as int; Redis takes fractions of a second.
                moved = await self._client.blmove(keys.pending, keys.processing, wait_s, "LEFT", "RIGHT")  # type: ignore[arg-type]
                if moved is not None:
                    lease = await self._start_job(worker_id, lease_ms, moved)
                    if lease is not None:
                        return lease

    async def _start_job(self, worker_id: str, lease_ms: int, moved: bytes | str | None) -> Lease | None:
        """Start the job BLMOVE `moved` to processing, or (None) the oldest pending job."""
        keys = self._keys
        args: list[str | bytes | int] = [keys.job_prefix, lease_ms, encode_time(self._clock.now()), worker_id]
        if moved is not None:
            args.append(moved)
        started = await self._start(keys=[keys.pending, keys.processing, keys.leases], args=args)
        if started is None:
            return None
        token, record = started
        job = decode_record(record)
        assert job is not None, "START returns only jobs it found"
        return Lease(job, int(token), worker_id)

    async def renew(self, lease: Lease, lease_ms: int) -> bool:
        keys = self._keys
        with storage_errors():
            renewed = await self._renew(
                keys=[keys.job(lease.job.id), keys.leases],
                args=[lease.job.id, lease.token, lease_ms],
            )
        return int(renewed) == 1

    async def finish(self, lease: Lease, job: Job) -> bool:
        if not job.finished:
            raise ValueError(f"finish needs a COMPLETED or FAILED job, not {job.status}")
        if job.id != lease.job.id:
            raise ValueError(f"lease is for job {lease.job.id}, not {job.id}")
        return await self._write_final(job.id, lease.token, "", progress_fields(job))

    async def _write_final(self, job_id: str, token: int, if_expired: str, fields: list[str | bytes]) -> bool:
        keys = self._keys
        with storage_errors():
            written = await self._finish(
                keys=[keys.job(job_id), keys.processing, keys.leases, keys.reserved],
                args=[job_id, token, keys.finished, self._ttl_ms, if_expired, *fields],
            )
        return int(written) == 1

    async def release(self, lease: Lease) -> bool:
        keys = self._keys
        with storage_errors():
            released = await self._release(
                keys=[keys.job(lease.job.id), keys.pending, keys.processing, keys.leases],
                args=[lease.job.id, lease.token],
            )
        return int(released) == 1

    async def recover(self, max_attempts: int) -> RecoveryReport:
        now = self._clock.now()  # only the failed jobs' finished_at: expiry is Redis' own clock
        keys = self._keys
        batch = self._settings.recover_batch
        requeued: list[str] = []
        failed: list[str] = []
        with storage_errors():
            while True:
                moved, exhausted, expired = await self._recover(
                    keys=[keys.pending, keys.processing, keys.leases],
                    args=[keys.job_prefix, max_attempts, batch],
                )
                requeued.extend(job_id.decode() for job_id in moved)
                progress = len(moved)
                for fence, record in exhausted:
                    running = decode_record(record)
                    assert running is not None, "RECOVER reports only jobs it found"
                    failed_job = jobs.fail(running, jobs.worker_lost(running.attempts), now)
                    if await self._write_final(running.id, int(fence), "1", progress_fields(failed_job)):
                        failed.append(running.id)
                        progress += 1
                # A full batch may have left more expired leases behind; stop if nothing
                # moved, so a lease refreshed between the two steps cannot make this spin.
                if expired < batch or progress == 0:
                    break
        return RecoveryReport(requeued=tuple(requeued), failed=tuple(failed))

    async def depth(self) -> QueueDepth:
        keys = self._keys
        with storage_errors():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.llen(keys.pending)
                pipe.llen(keys.processing)
                pending, processing = await pipe.execute()
        return QueueDepth(pending=int(pending), unfinished=int(pending) + int(processing))
