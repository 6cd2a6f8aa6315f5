"""In-memory queue, store, cancel notices and worker registry, sharing one `InMemoryJobs` state
(with a job's events and input, corral_memory.events).

Behaves as the Redis adapters do, lease for lease, so that use-case tests written against it
say something true about production.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Collection
from datetime import datetime, timedelta

import msgspec

from corral_core import job as jobs
from corral_core.events import InputChunk, JobEvent
from corral_core.job import Job, JobStatus
from corral_core.ports import Clock, Lease, QueueDepth, QueueFull, RecoveryReport, WorkerInfo


class _Held(msgspec.Struct):
    token: int
    worker_id: str
    deadline: datetime


class InMemoryJobs:
    """The state both in-memory adapters read and write. One per test, one per event loop."""

    def __init__(self, clock: Clock, *, max_unfinished: int = 10_000) -> None:
        self.clock = clock
        self.max_unfinished = max_unfinished
        self.records: dict[str, Job] = {}
        # A finished job's returned files, name -> content, kept apart from its record (which
        # lists them without content) as the Redis store keeps them.
        self.files: dict[str, dict[str, bytes]] = {}
        self.tokens: dict[str, int] = collections.defaultdict(int)
        # One line per (language, owner), as the Redis queue keeps them; jobs without an owner
        # are the owner "". `turns` holds, per language, the owners with jobs waiting, the next
        # to serve first.
        self.pending: dict[tuple[str, str], collections.deque[str]] = collections.defaultdict(collections.deque)
        self.turns: dict[str, collections.deque[str]] = collections.defaultdict(collections.deque)
        self.leases: dict[str, _Held] = {}
        # A job's events and input (corral_memory.events), each with the number of its last
        # entry, which makes its id; and what the input holds so far.
        self.events: dict[str, collections.deque[JobEvent]] = {}
        self.inputs: dict[str, list[InputChunk]] = {}
        self.input_bytes: dict[str, int] = collections.defaultdict(int)
        self.entries = 0
        self.changed = asyncio.Condition()
        # Job id -> when its callback is next due, or its lease's end (corral_memory.callbacks).
        self.deliveries: dict[str, datetime] = {}
        # Jobs erased before they expired: what their owners booked no longer counts.
        self.erased: set[str] = set()

    def pending_count(self) -> int:
        return sum(len(line) for line in self.pending.values())

    def put_in_line(self, job_id: str, *, at_head: bool = False) -> None:
        job = self.records[job_id]
        language, owner = job.request.language, job.owner
        line = self.pending[language, owner]
        if at_head:
            line.appendleft(job_id)
        else:
            line.append(job_id)
        if owner not in self.turns[language]:
            self.turns[language].append(owner)

    def has_waiting(self, language: str) -> bool:
        return bool(self.turns.get(language))

    def take_in_turn(self, language: str) -> str:
        """The next job of the language's owner whose turn it is, who goes to the back."""
        turns = self.turns[language]
        owner = turns.popleft()
        line = self.pending[language, owner]
        job_id = line.popleft()
        if line:
            turns.append(owner)
        return job_id

    def queue_callback(self, job: Job) -> None:
        """Put a job that just finished in the line of deliveries if it has a callback, as FINISH does."""
        if job.callback is not None:
            self.deliveries.setdefault(job.id, self.clock.now())

    async def aclose(self) -> None:
        """Nothing to close: the in-memory storage's "client" is this state itself."""

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()


class InMemoryJobQueue:
    def __init__(self, state: InMemoryJobs) -> None:
        self._state = state
        self._turn = 0  # which of a worker's languages it looks at first, rotating

    async def depth(self) -> QueueDepth:
        pending = self._state.pending_count()
        return QueueDepth(pending=pending, unfinished=pending + len(self._state.leases))

    async def submit(self, job: Job) -> None:
        state = self._state
        if state.pending_count() + len(state.leases) >= state.max_unfinished:
            raise QueueFull(state.max_unfinished)
        if job.id in state.records:
            raise ValueError(f"job {job.id} was already submitted")
        state.records[job.id] = job
        state.put_in_line(job.id)
        await state.notify()

    def _next_language(self, languages: Collection[str] | None) -> str | None:
        state = self._state
        names = sorted(state.turns) if languages is None else list(languages)
        for offset in range(len(names)):
            name = names[(self._turn + offset) % len(names)]
            if state.has_waiting(name):
                return name
        return None

    async def claim(
        self, worker_id: str, lease_ms: int, timeout_s: float, languages: Collection[str] | None = None
    ) -> Lease | None:
        state = self._state
        async with state.changed:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel.
                async with asyncio.timeout(timeout_s):
                    await state.changed.wait_for(lambda: self._next_language(languages) is not None)
            except TimeoutError:
                return None
            language = self._next_language(languages)
            assert language is not None
            job_id = state.take_in_turn(language)
            self._turn += 1
        state.tokens[job_id] += 1
        token = state.tokens[job_id]
        now = state.clock.now()
        running = jobs.start(state.records[job_id], now)
        state.records[job_id] = running
        state.leases[job_id] = _Held(token, worker_id, now + timedelta(milliseconds=lease_ms))
        return Lease(running, token, worker_id)

    def _holds(self, lease: Lease) -> bool:
        held = self._state.leases.get(lease.job.id)
        return held is not None and held.token == lease.token

    async def renew(self, lease: Lease, lease_ms: int) -> bool:
        if not self._holds(lease):
            return False
        held = self._state.leases[lease.job.id]
        held.deadline = self._state.clock.now() + timedelta(milliseconds=lease_ms)
        return True

    async def finish(self, lease: Lease, job: Job) -> bool:
        if not job.finished:
            raise ValueError(f"finish needs a COMPLETED or FAILED job, not {job.status}")
        state = self._state
        stored = jobs.without_file_contents(job)
        files = {file.name: file.content for file in job.result.files} if job.result is not None else {}
        if not self._holds(lease):
            # A finish re-sent after its reply was lost finds exactly what it wrote: accepted.
            resent = state.tokens[job.id] == lease.token and state.records.get(job.id) == stored
            return resent and state.files.get(job.id, {}) == files
        del state.leases[job.id]
        state.records[job.id] = stored
        state.queue_callback(stored)
        if files:
            state.files[job.id] = files
        await state.notify()
        return True

    async def release(self, lease: Lease) -> bool:
        if not self._holds(lease):
            return False
        state = self._state
        del state.leases[lease.job.id]
        state.records[lease.job.id] = jobs.requeue(state.records[lease.job.id], count_attempt=False)
        state.put_in_line(lease.job.id, at_head=True)
        await state.notify()
        return True

    async def cancel(self, job_id: str, now: datetime) -> bool:
        state = self._state
        record = state.records.get(job_id)
        if record is None or record.finished:
            return False
        state.records[job_id] = jobs.cancel(record, now)
        state.leases.pop(job_id, None)
        for (language, owner), line in state.pending.items():
            if job_id in line:
                line.remove(job_id)
                if not line:
                    state.turns[language].remove(owner)  # an owner with nothing waiting has no turn
        await state.notify()
        return True

    async def erase(self, job_id: str) -> bool:
        state = self._state
        record = state.records.get(job_id)
        if record is None or not record.finished:
            return False
        del state.records[job_id]
        for held in (state.files, state.events, state.inputs, state.input_bytes, state.deliveries):
            held.pop(job_id, None)
        state.erased.add(job_id)
        return True

    async def recover(self, max_attempts: int) -> RecoveryReport:
        state = self._state
        now = state.clock.now()
        requeued: list[str] = []
        failed: list[str] = []
        for job_id, held in list(state.leases.items()):
            if held.deadline > now:
                continue
            del state.leases[job_id]
            record = state.records[job_id]
            if record.attempts >= max_attempts:
                state.records[job_id] = jobs.fail(record, jobs.worker_lost(record.attempts), now)
                state.queue_callback(record)
                failed.append(job_id)
            else:
                state.records[job_id] = jobs.requeue(record)
                state.put_in_line(job_id)
                requeued.append(job_id)
        if requeued or failed:
            await state.notify()
        return RecoveryReport(requeued=tuple(requeued), failed=tuple(failed))


class InMemoryJobStore:
    def __init__(self, state: InMemoryJobs) -> None:
        self._state = state

    async def get(self, job_id: str) -> Job | None:
        found = self._state.records.get(job_id)
        return None if found is None else jobs.without_inputs(found)

    async def file(self, job_id: str, name: str) -> bytes | None:
        return self._state.files.get(job_id, {}).get(name)

    async def wait_finished(self, job_id: str, timeout_s: float, submitted_s: float | None = None) -> Job | None:
        state = self._state
        if job_id not in state.records:
            return None
        async with state.changed:
            try:
                async with asyncio.timeout(timeout_s):
                    await state.changed.wait_for(lambda: state.records[job_id].finished)
            except TimeoutError:
                pass
        return jobs.without_inputs(state.records[job_id])


class InMemoryCancelNotices:
    def __init__(self, state: InMemoryJobs) -> None:
        self._state = state

    async def aclose(self) -> None:
        """Nothing to close: no subscription is held."""

    async def wait_cancelled(self, job_id: str, since_s: float | None = None) -> None:
        state = self._state

        def cancelled() -> bool:
            record = state.records.get(job_id)
            return record is not None and record.status is JobStatus.CANCELLED

        async with state.changed:
            await state.changed.wait_for(cancelled)


class InMemoryWorkerRegistry:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._seen: dict[str, tuple[WorkerInfo, datetime]] = {}
        self._duties: dict[str, tuple[str, datetime]] = {}

    async def heartbeat(self, info: WorkerInfo, ttl_ms: int) -> None:
        self._seen[info.worker_id] = (info, self._clock.now() + timedelta(milliseconds=ttl_ms))

    async def live_workers(self) -> list[WorkerInfo]:
        now = self._clock.now()
        return sorted(
            (info for info, expires in self._seen.values() if expires > now), key=lambda info: info.worker_id
        )

    async def hold_duty(self, duty: str, worker_id: str, ttl_ms: int) -> bool:
        now = self._clock.now()
        holder, expires = self._duties.get(duty, (worker_id, now))
        if holder != worker_id and expires > now:
            return False
        self._duties[duty] = (worker_id, now + timedelta(milliseconds=ttl_ms))
        return True


__all__ = [
    "InMemoryCancelNotices",
    "InMemoryJobQueue",
    "InMemoryJobStore",
    "InMemoryJobs",
    "InMemoryWorkerRegistry",
]
