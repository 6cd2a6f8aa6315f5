"""The use cases: submit a job, read it, run the next one, recover abandoned ones.

Each is a small class that gets its ports in the constructor and does one thing when called.
The API composes the first two, the worker the last two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from corral_core import job as jobs
from corral_core.job import ErrorCode, Job, JobError, Program
from corral_core.policy import LimitPolicy, LimitRequest, SizePolicy, check_language, source_files
from corral_core.ports import (
    Clock,
    IdSource,
    JobQueue,
    JobStore,
    Lease,
    RecoveryReport,
    RuntimeCatalog,
    Sandbox,
    SandboxError,
    UnsupportedLanguage,
)

log = logging.getLogger(__name__)


class JobRequest(Program, frozen=True, kw_only=True):
    """A client's submission, before limits are resolved and an id is given."""

    language: str = "python"
    limits: LimitRequest = LimitRequest()
    annotations: dict[str, str] = {}


class JobNotFound(Exception):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class SubmitJob:
    """Check a submission against every rule, then queue it as a PENDING job.

    Raises InvalidSubmission (SubmissionTooLarge, LimitAboveMaximum) naming the field at
    fault, QueueFull, or StorageUnavailable; nothing is queued unless every rule holds.
    """

    def __init__(
        self,
        queue: JobQueue,
        ids: IdSource,
        clock: Clock,
        limits: LimitPolicy,
        sizes: SizePolicy,
        runtimes: RuntimeCatalog,
    ) -> None:
        self._queue = queue
        self._ids = ids
        self._clock = clock
        self._limits = limits
        self._sizes = sizes
        self._runtimes = runtimes

    async def __call__(self, request: JobRequest) -> Job:
        runtimes = await self._runtimes.offered()
        check_language(request.language, runtimes)
        reserved = source_files(request.language, runtimes)
        self._sizes.check(request.code, request.stdin, request.args, request.files, reserved=reserved)
        self._sizes.check_annotations(request.annotations)
        job = Job(
            id=self._ids.new_id(),
            request=request.with_limits(self._limits.resolve(request.limits)),
            created_at=self._clock.now(),
            annotations=dict(request.annotations),
        )
        await self._queue.submit(job)
        return job


class GetJob:
    def __init__(self, store: JobStore) -> None:
        self._store = store

    async def __call__(self, job_id: str, wait_s: float = 0) -> Job:
        if wait_s > 0:
            found = await self._store.wait_finished(job_id, wait_s)
        else:
            found = await self._store.get(job_id)
        if found is None:
            raise JobNotFound(job_id)
        return found


class RunNextJob:
    """Claim one job, run it in the sandbox while renewing its lease, and store how it ended.

    If the lease is lost mid-run (the worker stalled and another took the job over), the run is
    cancelled: its result would be refused anyway.
    """

    def __init__(
        self,
        queue: JobQueue,
        sandbox: Sandbox,
        clock: Clock,
        *,
        lease_ms: int = 10_000,
        renew_every_ms: int = 3_000,
    ) -> None:
        if renew_every_ms >= lease_ms:
            raise ValueError("leases must be renewed more often than they expire")
        self._queue = queue
        self._sandbox = sandbox
        self._clock = clock
        self._lease_ms = lease_ms
        self._renew_every_s = renew_every_ms / 1000

    async def __call__(self, worker_id: str, timeout_s: float) -> Job | None:
        lease = await self._queue.claim(worker_id, self._lease_ms, timeout_s)
        if lease is None:
            return None
        try:
            final = await self._run_leased(lease)
        except asyncio.CancelledError:
            # Shutdown: hand the job back for another worker rather than lose it.
            await asyncio.shield(self._queue.release(lease))
            raise
        if final is None:
            log.warning("lost the lease on job %s; its result is not ours to store", lease.job.id)
            return None
        if not await self._queue.finish(lease, final):
            log.warning("job %s was taken over; result refused", lease.job.id)
            return None
        return final

    async def _run_leased(self, lease: Lease) -> Job | None:
        run = asyncio.ensure_future(self._run(lease.job))
        try:
            while True:
                done, _ = await asyncio.wait({run}, timeout=self._renew_every_s)
                if done:
                    return run.result()
                if not await self._queue.renew(lease, self._lease_ms):
                    return None
        finally:
            if not run.done():
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run

    async def _run(self, job: Job) -> Job:
        try:
            result = await self._sandbox.run(job.request)
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


class RecoverAbandonedJobs:
    def __init__(self, queue: JobQueue, *, max_attempts: int = 3) -> None:
        self._queue = queue
        self._max_attempts = max_attempts

    async def __call__(self) -> RecoveryReport:
        report = await self._queue.recover(self._max_attempts)
        if report.requeued or report.failed:
            log.warning("recovered jobs: requeued %s, failed %s", report.requeued, report.failed)
        return report
