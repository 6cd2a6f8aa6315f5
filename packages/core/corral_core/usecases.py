"""The use cases of a job once submitted: read it, cancel it, run the next one, recover
abandoned ones (submitting is corral_core.submission).

Each is a small class that gets its ports in the constructor and does one thing when called;
a use case that acts for someone takes that caller as its first argument. The API composes the
first two, the worker the last two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from corral_core import job as jobs
from corral_core.access import Caller
from corral_core.events import EventKind, JobEvents, JobInput
from corral_core.job import ErrorCode, Job, JobError, JobStatus, StdinMode
from corral_core.ports import (
    CancelNotices,
    Clock,
    JobCanceller,
    JobEraser,
    JobQueue,
    JobStore,
    Lease,
    RecoveryReport,
    Sandbox,
    SandboxError,
    StorageUnavailable,
    UnsupportedLanguage,
)
from corral_core.relay import EventRelay

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long the last events of a job may keep its slot from the next job when storage is slow.
_LAST_EVENTS_S = 2.0
# How long one read of an interactive job's input waits for its client: a wait, not a poll.
_INPUT_WAIT_S = 5.0


def _monotonic() -> float:
    # The event loop's clock: monotonic, so no step of the wall clock moves a lease's end.
    return asyncio.get_running_loop().time()


class JobNotFound(Exception):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class JobAlreadyFinished(Exception):
    """Only a PENDING or RUNNING job can be cancelled (HTTP 409)."""

    def __init__(self, job: Job) -> None:
        super().__init__(
            f"job {job.id} already finished ({job.status.value}): only a PENDING or RUNNING job can be cancelled"
        )
        self.job_id = job.id
        self.status = job.status


class JobUnfinished(Exception):
    """Only a finished job can be deleted: a PENDING or RUNNING one is cancelled first."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} is {job.status.value}: only a finished job can be deleted")
        self.job = job


class GetJob:
    """Read a job for a caller: a job the caller may not read is, to it, a job that does not
    exist (JobNotFound, never a refusal that would tell it exists)."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    async def __call__(self, caller: Caller, job_id: str, wait_s: float = 0, submitted_s: float | None = None) -> Job:
        """`submitted_s`: the event loop's time before the caller's own submit created the job
        (JobStore.wait_finished), which saves a read of it."""
        if wait_s > 0 and not caller.admin and submitted_s is None:
            # Ownership first: someone else's job must not make a stranger wait for its end.
            found = await self._store.get(job_id)
            if found is not None and caller.may_read(found.owner) and not found.finished:
                found = await self._store.wait_finished(job_id, wait_s)
        elif wait_s > 0:
            found = await self._store.wait_finished(job_id, wait_s, submitted_s)
        else:
            found = await self._store.get(job_id)
        if found is None or not caller.may_read(found.owner):
            raise JobNotFound(job_id)
        return found


class CancelJob:
    """Call off a caller's job: a pending one never runs, a running one's sandbox is stopped
    by its worker (RunNextJob), and either ends CANCELLED. Returns the cancelled job.

    Whoever may read a job may cancel it (its owner, an admin key); to anyone else it does not
    exist (JobNotFound). A finished job stays as it is (JobAlreadyFinished), as does one that
    finishes while the cancel is on its way: the storage decides atomically which came first.
    """

    def __init__(self, store: JobStore, canceller: JobCanceller, clock: Clock) -> None:
        self._store = store
        self._canceller = canceller
        self._clock = clock

    async def __call__(self, caller: Caller, job_id: str) -> Job:
        found = await self._store.get(job_id)
        if found is None or not caller.may_read(found.owner):
            raise JobNotFound(job_id)
        if found.finished:
            raise JobAlreadyFinished(found)
        cancelled = await self._canceller.cancel(job_id, self._clock.now())
        after = await self._store.get(job_id)
        if after is None:
            raise JobNotFound(job_id)  # finished and expired in between: gone either way
        if not cancelled:
            raise JobAlreadyFinished(after)
        return after


class DeleteJob:
    """Remove a caller's finished job before it expires (Judge0's DELETE /submissions/{token}).
    Returns the job as it was, without its inputs.

    Whoever may read a job may delete it; to anyone else it does not exist (JobNotFound). A
    PENDING or RUNNING job stays (JobUnfinished): the storage refuses it atomically, so a job
    that a worker is about to finish is never erased under it.
    """

    def __init__(self, store: JobStore, eraser: JobEraser) -> None:
        self._store = store
        self._eraser = eraser

    async def __call__(self, caller: Caller, job_id: str) -> Job:
        found = await self._store.get(job_id)
        if found is None or not caller.may_read(found.owner):
            raise JobNotFound(job_id)
        if not found.finished:
            raise JobUnfinished(found)
        if not await self._eraser.erase(job_id):
            raise JobNotFound(job_id)  # erased by a request racing this one
        return found


class _Cancelled(Exception):
    """The job was cancelled while it ran: its run is stopped and nothing is stored."""


class _LeaseTimer:
    """How long this worker may still count on its lease, on its own monotonic clock.

    The queue keeps the real deadline, on its own clock; the worker never compares another
    host's clock with its own. It only knows that a claim or renewal sent at local time t
    gives a lease lasting at least until t + lease (the queue starts counting when it
    receives the call, never earlier), so it counts from the moment it sent the last call
    that succeeded. A step of the wall clock changes nothing here.
    """

    def __init__(self, lease_s: float, sent_at: float) -> None:
        self._lease_s = lease_s
        self._expires = sent_at + lease_s

    def renewed(self, sent_at: float) -> None:
        self._expires = sent_at + self._lease_s

    def left_s(self) -> float:
        return max(self._expires - _monotonic(), 0.0)


class RunNextJob:
    """Claim one job, run it in the sandbox while renewing its lease, and store how it ended.

    The storage may be unreachable for a while (a Redis restart): renewals and the result
    write are retried for as long as the lease lasts, counted on this worker's monotonic clock
    from the last call that succeeded. The run is given up (its sandbox killed) only when the
    lease is lost for real: refused by the queue, or out of time with every renewal failed.
    A result, once the run ended, is stored even if the worker is cancelled meanwhile
    (shutdown), and a job cancelled before it ended is handed back uncounted; both within the
    lease, so a cancellation never waits longer than one lease.

    A job its client cancels (CancelJob) has its sandbox stopped as soon as `cancels` tells,
    or at the latest when the next renewal is refused; its run's result is not stored.

    With `events`, the job's RUNNING status, its output as it comes, and once its result is
    stored its final status and a `result` event are appended there (EventRelay: in the
    background, never slowing or failing the run). With `job_input`, an interactive job's
    stdin is what its client sends while it runs.
    """

    def __init__(
        self,
        queue: JobQueue,
        sandbox: Sandbox,
        clock: Clock,
        *,
        lease_ms: int = 10_000,
        renew_every_ms: int = 3_000,
        retry_every_ms: int = 200,
        cancels: CancelNotices | None = None,
        events: JobEvents | None = None,
        job_input: JobInput | None = None,
    ) -> None:
        if renew_every_ms >= lease_ms:
            raise ValueError("leases must be renewed more often than they expire")
        self._queue = queue
        self._cancels = cancels
        self._sandbox = sandbox
        self._clock = clock
        self._lease_ms = lease_ms
        self._renew_every_s = renew_every_ms / 1000
        self._retry_s = min(retry_every_ms, renew_every_ms) / 1000
        self._events = events
        self._job_input = job_input

    async def __call__(self, worker_id: str, timeout_s: float) -> Job | None:
        sent = _monotonic()
        languages = [runtime.language for runtime in self._sandbox.runtimes()]
        lease = await self._queue.claim(worker_id, self._lease_ms, timeout_s, languages)
        if lease is None:
            return None
        timer = _LeaseTimer(self._lease_ms / 1000, sent)
        relay = None if self._events is None else EventRelay(self._events, lease.job.id)
        if relay is not None:
            relay.start(JobStatus.RUNNING.value)
        try:
            final = await self._run_leased(lease, timer, sent, relay)
        except _Cancelled:
            log.info("job %s was cancelled; its run was stopped", lease.job.id)
            if relay is not None:
                await relay.abandon()
            return None
        except asyncio.CancelledError:
            # Shutdown: hand the job back for another worker rather than lose it.
            if relay is not None:
                await outliving_cancellation(relay.abandon())
            await outliving_cancellation(self._hand_back(lease, timer))
            raise
        if final is None:
            log.warning("lost the lease on job %s; its result is not ours to store", lease.job.id)
            if relay is not None:
                await relay.abandon()
            return None
        stored = await outliving_cancellation(self._store(lease, final, timer))
        if relay is not None:
            if stored:
                # Its record holds the result now: a reader woken by these finds it there.
                last = ((EventKind.STATUS, final.status.value), (EventKind.RESULT, ""))
                await outliving_cancellation(relay.close(*last, timeout_s=_LAST_EVENTS_S))
            else:
                await relay.abandon()
        return final if stored else None

    async def _run_leased(self, lease: Lease, timer: _LeaseTimer, claimed_s: float, relay: EventRelay | None) -> Job | None:
        run = asyncio.ensure_future(self._run(lease.job, relay))
        notice = (
            None if self._cancels is None else asyncio.ensure_future(self._cancels.wait_cancelled(lease.job.id, claimed_s))
        )
        healthy = True
        try:
            while True:
                pause = self._renew_every_s if healthy else self._retry_s
                watched = {run} if notice is None else {run, notice}
                done, _ = await asyncio.wait(watched, timeout=min(pause, timer.left_s()), return_when=asyncio.FIRST_COMPLETED)
                if run in done:
                    return run.result()
                if notice is not None and notice in done:
                    if notice.exception() is None:
                        raise _Cancelled
                    # Renewals still tell of a cancel, only later.
                    log.warning("job %s: no more cancel notices: %s", lease.job.id, notice.exception())
                    notice = None
                if timer.left_s() <= 0:
                    log.warning("job %s: no renewal got through for a whole lease", lease.job.id)
                    return None
                sent = _monotonic()
                try:
                    async with asyncio.timeout(timer.left_s()):
                        renewed = await self._queue.renew(lease, self._lease_ms)
                except (StorageUnavailable, TimeoutError) as error:
                    log.warning("job %s: lease renewal failed, retrying while the lease lasts: %s", lease.job.id, error)
                    healthy = False
                    continue
                if not renewed:
                    return None
                timer.renewed(sent)
                healthy = True
        finally:
            if notice is not None and not notice.done():
                notice.cancel()
            if not run.done():
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run

    async def _store(self, lease: Lease, final: Job, timer: _LeaseTimer) -> bool:
        """Write the final state; False if the queue refused it or the lease ran out first.

        Retrying is safe: a finish re-sent under the same lease is recognised and accepted.
        """
        while True:
            try:
                async with asyncio.timeout(timer.left_s()):
                    if await self._queue.finish(lease, final):
                        return True
                log.warning("job %s was taken over; result refused", lease.job.id)
                return False
            except (StorageUnavailable, TimeoutError) as error:
                if timer.left_s() <= self._retry_s:
                    log.warning("job %s: result not stored before the lease ran out: %s", lease.job.id, error)
                    return False
                log.warning("job %s: storing the result failed, retrying: %s", lease.job.id, error)
                await asyncio.sleep(self._retry_s)

    async def _hand_back(self, lease: Lease, timer: _LeaseTimer) -> None:
        while True:
            try:
                async with asyncio.timeout(timer.left_s()):
                    await self._queue.release(lease)
                return
            except (StorageUnavailable, TimeoutError) as error:
                if timer.left_s() <= self._retry_s:
                    # Recovery re-queues it once the lease has expired, counting an attempt.
                    log.warning("job %s: could not hand it back: %s", lease.job.id, error)
                    return
                await asyncio.sleep(self._retry_s)

    async def _run(self, job: Job, relay: EventRelay | None) -> Job:
        stdin_source = None
        if self._job_input is not None and job.request.stdin_mode is StdinMode.INTERACTIVE:
            stdin_source = _input_of(self._job_input, job.id)
        on_output = None if relay is None else relay.output
        try:
            result = await self._sandbox.run(job.request, scope=job.owner, on_output=on_output, stdin_source=stdin_source)
        except UnsupportedLanguage as error:
            return jobs.fail(job, JobError(ErrorCode.UNSUPPORTED_LANGUAGE, str(error)), self._clock.now())
        except SandboxError as error:
            log.error("sandbox could not run job %s: %s", job.id, error)
            return jobs.fail(job, JobError(ErrorCode.SANDBOX_ERROR, str(error)), self._clock.now())
        except Exception:
            # A bug in an adapter must not leave the job RUNNING until its lease runs out, nor
            # kill the worker: the job fails with a sandbox error and the details go to the log.
            log.exception("sandbox crashed on job %s", job.id)
            crash = JobError(ErrorCode.SANDBOX_ERROR, "the sandbox failed unexpectedly; the worker logged why")
            return jobs.fail(job, crash, self._clock.now())
        return jobs.complete(job, result, self._clock.now())


async def _input_of(job_input: JobInput, job_id: str, retry_s: float = 0.2) -> AsyncIterator[bytes]:
    """What the client sends the job's stdin, chunk by chunk, until it closes it. Storage that
    is away for a while delays the input, never ends it (the sandbox stops reading when the
    program ends)."""
    after = ""
    while True:
        try:
            chunks = await job_input.receive(job_id, after, timeout_s=_INPUT_WAIT_S)
        except StorageUnavailable as error:
            log.warning("job %s: its input could not be read, retrying: %s", job_id, error)
            await asyncio.sleep(retry_s)
            continue
        for chunk in chunks:
            after = chunk.id
            if chunk.data:
                yield chunk.data
            if chunk.eof:
                return


class RecoverAbandonedJobs:
    def __init__(self, queue: JobQueue, *, max_attempts: int = 3) -> None:
        self._queue = queue
        self._max_attempts = max_attempts

    async def __call__(self) -> RecoveryReport:
        report = await self._queue.recover(self._max_attempts)
        if report.requeued or report.failed:
            log.warning("recovered jobs: requeued %s, failed %s", report.requeued, report.failed)
        return report


async def outliving_cancellation(step: Awaitable[T]) -> T:
    """Await `step` to its end even if the caller is cancelled meanwhile, then re-raise that.

    For writes that must not be cut short (a finished job's result, a job handed back); each
    such step here is bounded by its lease.
    """
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                break
            cancelled = True
    if cancelled:
        task.cancel()  # a no-op on a done task; keeps its exception from being reported unread
        with contextlib.suppress(Exception):
            task.result()
        raise asyncio.CancelledError
    return task.result()
