"""The job queue on Redis: lists for the line, a ZSET of leases, a fence per job.

Lists and leases rather than Streams: a released job must be next in line, where a stream only
appends, and an attempt must not count a release or a worker that died before starting the job,
which a consumer group's delivery count does. Lease deadlines are Redis' own clock, so a
worker's skewed clock cannot expire a lease. docs/queue.md says how claims and fairness work,
docs/redis-keys.md which keys hold what.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from corral_core import job as jobs
from corral_core.job import Job, encode_job
from corral_core.ports import Clock, Lease, QueueDepth, QueueFull, RecoveryReport, StorageFull
from corral_redis import scripts
from corral_redis.connection import storage_errors
from corral_redis.keyspace import QueueKeys
from corral_redis.records import (
    decode_record,
    encode_head,
    encode_queued,
    encode_time,
    file_fields,
    job_reserve,
    micros,
    progress_fields,
)
from corral_redis.settings import DEFAULT_SETTINGS, RedisSettings


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
        self._cancel = client.register_script(scripts.CANCEL)
        self._erase = client.register_script(scripts.ERASE)
        self._depth = client.register_script(scripts.DEPTH)
        self._turn = 0  # which of a worker's lines a claim looks at first, rotating
        # A Cluster client's pipeline is not one connection's: a claim waits, then starts.
        self._cluster = settings.cluster

    async def submit(self, job: Job) -> None:
        with storage_errors():
            outcome = await self._confirmed(self._submit, self.submit_keys(job), self.submit_args(job))
        if outcome != 1:
            raise self.refusal(outcome, job)

    def refusal(self, outcome: int, job: Job) -> Exception:
        """What the SUBMIT script's refusal `outcome` (not 1) means for `job`."""
        if outcome == 0:
            return QueueFull(self._settings.max_unfinished)
        if outcome == -1:
            return ValueError(f"job {job.id} was already submitted")
        ceiling = self._settings.max_memory_bytes
        return StorageFull(
            f"Redis' memory is near its ceiling of {ceiling} bytes" if ceiling else "Redis' memory is near its maxmemory"
        )

    async def _confirmed(self, script: AsyncScript, keys: list[str], args: list[str | bytes | int]) -> int:
        """A submit's or finish's outcome: what a client is told must survive a failover, so
        corral_redis.shards waits for replicas here."""
        return int(await script(keys=keys, args=args))

    def submit_keys(self, job: Job) -> list[str]:
        keys = self._keys
        language = job.request.language
        return [
            keys.job(job.id), keys.line(language), keys.processing, keys.lines, keys.reserved,
            keys.owner_line(language, job.owner),
        ]  # fmt: skip

    def submit_args(self, job: Job) -> list[str | bytes | int]:
        """The SUBMIT script's arguments for `job`: the same on a re-send, as the script expects."""
        keys = self._keys
        return [
            self._settings.max_unfinished,
            job.id,
            encode_job(job),
            encode_head(job),
            job_reserve(job),
            self._settings.max_memory_bytes,
            keys.usage(job.owner) if job.owner else "",
            *progress_fields(job),
            encode_queued(job.created_at),
        ]

    async def claim(
        self, worker_id: str, lease_ms: int, timeout_s: float, languages: Collection[str] | None = None
    ) -> Lease | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        with storage_errors():
            lines = await self._lines(languages)
            woken: str | None = None
            while True:
                self._turn += 1
                start = self._turn % len(lines) if lines else 0
                order = lines[start:] + lines[:start]
                if woken is not None:
                    order = [woken] + [line for line in order if line != woken]
                lease = await self._start_job(worker_id, lease_ms, order, woken is not None)
                if lease is not None:
                    return lease
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                if languages is None:
                    lines = await self._lines(None)
                if not lines:
                    # Any language, and none was ever submitted: poll for the first line.
                    await asyncio.sleep(min(remaining, 0.05))
                    woken = None
                    continue
                # Redis blocks in whole milliseconds and reads 0 as "forever".
                wait_s = max(min(remaining, self._settings.claim_block_s), 0.01)
                if self._cluster:
                    popped = await self._client.blpop([self._keys.wake(line) for line in lines], wait_s)
                else:
                    popped, lease = await self._woken_and_started(worker_id, lease_ms, lines, order, wait_s)
                    if lease is not None:
                        return lease
                woken = _text(popped[0]).removesuffix(":wake") if popped else None

    async def _lines(self, languages: Collection[str] | None) -> list[str]:
        if languages is not None:
            return [self._keys.line(language) for language in languages]
        members = await self._client.smembers(self._keys.lines)
        return sorted(_text(member) for member in members)

    async def _start_job(self, worker_id: str, lease_ms: int, lines: list[str], woken: bool) -> Lease | None:
        """Start the oldest job of the first of `lines` that has one."""
        keys, args = self._start_call(worker_id, lease_ms, lines, woken, waits=False)
        return _lease(await self._start(keys=keys, args=args), worker_id)

    async def _woken_and_started(
        self, worker_id: str, lease_ms: int, lines: list[str], order: list[str], wait_s: float
    ) -> tuple[Any, Lease | None]:
        """Block until a job is put in one of `lines` (or `wait_s` passes), then start the
        oldest job of the first of `order` that has one: the BLPOP and START in one round trip
        (Redis runs one connection's commands in order). START is told it was woken, and takes
        no wake token itself: when the BLPOP timed out and a job came in between, its token
        stays, and wakes an idle worker once for nothing (a token is only a hint)."""
        keys, args = self._start_call(worker_id, lease_ms, order, woken=True, waits=True)
        pipe = self._client.pipeline(transaction=False)
        pipe.blpop([self._keys.wake(line) for line in lines], wait_s)
        pipe.evalsha(self._start.sha, len(keys), *keys, *args)
        popped, started = await pipe.execute(raise_on_error=False)
        if isinstance(popped, Exception):
            raise popped
        if isinstance(started, NoScriptError):  # Redis restarted without it: load it, run it
            started = await self._start(keys=keys, args=args)
        elif isinstance(started, Exception):
            raise started
        return popped, _lease(started, worker_id)

    def _start_call(
        self, worker_id: str, lease_ms: int, lines: list[str], woken: bool, waits: bool
    ) -> tuple[list[str], list[str | bytes | int]]:
        """START's keys and arguments, for a claim from the first of `lines` with a job; `waits`
        when it is sent before a wait (scripts.START)."""
        keys = self._keys
        now = self._clock.now()
        args: list[str | bytes | int] = [
            keys.job_prefix, lease_ms, encode_time(now), worker_id, "", "1" if woken else "", micros(now) if waits else ""
        ]  # fmt: skip
        return [keys.processing, keys.leases, *lines], args

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
        return await self._write_final(
            job.id, lease.token, "", progress_fields(job), file_fields(job), callback=lease.job.callback is not None
        )

    async def _write_final(
        self,
        job_id: str,
        token: int,
        if_expired: str,
        fields: list[str | bytes],
        files: Sequence[str | bytes] = (),
        *,
        callback: bool = False,
    ) -> bool:
        keys = self._keys
        # A job with a callback names the line of deliveries, which FINISH puts it in.
        deliveries = [keys.deliveries] if callback else []
        with storage_errors():
            written = await self._confirmed(
                self._finish,
                [keys.job(job_id), keys.processing, keys.leases, keys.reserved, keys.job_files(job_id), *deliveries],
                [job_id, token, keys.finished, self._ttl_ms, if_expired, *fields, *files],
            )
        return int(written) == 1

    async def release(self, lease: Lease) -> bool:
        keys = self._keys
        with storage_errors():
            released = await self._release(
                keys=[keys.job(lease.job.id), keys.processing, keys.leases],
                args=[lease.job.id, lease.token, encode_queued(self._clock.now())],
            )
        return int(released) == 1

    async def cancel(self, job_id: str, now: datetime) -> bool:
        keys = self._keys
        with storage_errors():
            cancelled = await self._cancel(
                keys=[keys.job(job_id), keys.processing, keys.leases, keys.reserved],
                args=[job_id, encode_time(now), keys.finished, keys.cancelled, self._ttl_ms],
            )
        return int(cancelled) == 1

    async def erase(self, job_id: str) -> bool:
        keys = self._keys
        erased_keys = [keys.job(job_id), keys.job_files(job_id), keys.job_events(job_id), keys.job_input(job_id)]
        with storage_errors():
            erased = await self._erase(keys=[*erased_keys, keys.job_input_sent(job_id), keys.deliveries], args=[job_id])
        return int(erased) == 1

    async def recover(self, max_attempts: int) -> RecoveryReport:
        now = self._clock.now()  # failed jobs' finished_at, requeued jobs' queued: expiry is Redis' own clock
        keys = self._keys
        batch = self._settings.recover_batch
        requeued: list[str] = []
        failed: list[str] = []
        with storage_errors():
            while True:
                moved, exhausted, expired = await self._recover(
                    keys=[keys.processing, keys.leases],
                    args=[keys.job_prefix, max_attempts, batch, encode_queued(now)],
                )
                requeued.extend(job_id.decode() for job_id in moved)
                progress = len(moved)
                for fence, record in exhausted:
                    running = decode_record(record)
                    assert running is not None, "RECOVER reports only jobs it found"
                    failed_job = jobs.fail(running, jobs.worker_lost(running.attempts), now)
                    written = await self._write_final(
                        running.id, int(fence), "1", progress_fields(failed_job), callback=running.callback is not None
                    )
                    if written:
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
            pending = await self._depth(keys=[keys.lines])
            processing = await self._client.llen(keys.processing)
        return QueueDepth(pending=int(pending), unfinished=int(pending) + int(processing))


def _lease(started: Any, worker_id: str) -> Lease | None:
    """The lease a START reply gives (None: no job)."""
    if started is None:
        return None
    token, record = started
    job = decode_record(record)
    assert job is not None, "START returns only jobs it found"
    return Lease(job, int(token), worker_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
