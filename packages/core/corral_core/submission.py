"""Submitting a job: a client's request checked against every rule, booked against its key's
quotas and queued as a PENDING job, once per idempotency key."""

from __future__ import annotations

import asyncio

import msgspec

from corral_core.access import (
    AdmittingQueue,
    Caller,
    IdempotencyRecords,
    KeyRevoked,
    OverQuota,
    Quotas,
    RateDecision,
    UsageLedger,
)
from corral_core.callbacks import Callback, CallbackRefused, check_callback_url
from corral_core.job import Job, Program, StdinMode
from corral_core.policy import (
    InvalidSubmission,
    LimitPolicy,
    LimitRequest,
    SizePolicy,
    bytes_of_test,
    check_compiler_args,
    check_language,
    runtime_of,
    source_files,
)
from corral_core.ports import Clock, IdSource, JobQueue, JobStore, RuntimeCatalog
from corral_core.testcases import TEST_OUTPUT_BYTES
from corral_core.usecases import outliving_cancellation


class JobRequest(Program, frozen=True, kw_only=True):
    """A client's submission, before limits are resolved and an id is given."""

    language: str = "python"
    limits: LimitRequest = LimitRequest()
    annotations: dict[str, str] = {}
    callback: Callback | None = None


class Submitted(msgspec.Struct, frozen=True):
    """A queued job, and the caller's request rate when the submit itself counted the request
    (a caller with an `uncounted_key`); None when the request was counted before."""

    job: Job
    rate: RateDecision | None = None


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was first used for a different request (HTTP 422)."""

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was already used for a different request")


class IdempotencyConflict(Exception):
    """The first request with this Idempotency-Key is still being handled (HTTP 409)."""

    def __init__(self) -> None:
        super().__init__("a request with this Idempotency-Key is still in progress; retry shortly")


class SubmitJob:
    """Check a submission against every rule, then queue it as a PENDING job of the caller's.

    Raises InvalidSubmission (SubmissionTooLarge, LimitAboveMaximum) naming the field at
    fault, OverQuota, QueueFull, or StorageUnavailable; nothing is queued unless every rule
    holds.

    With a usage ledger and a caller that is a key, the job is booked against the key's quotas
    before it is queued: one unfinished job, and its size in bytes, counted as what its record
    can grow to (the request's code, stdin, arguments and files, plus max_output_bytes for each
    of stdout and stderr).

    With an admitting queue and a caller whose request is still to be counted (its
    `uncounted_key`), the key's check, the rate count, the booking and the queuing are one
    atomic step, one round trip to storage where the request would otherwise take three. Its
    rate comes back in `Submitted.rate`, or in the OverQuota raised; a key gone meanwhile
    raises KeyRevoked.
    """

    def __init__(
        self,
        queue: JobQueue,
        ids: IdSource,
        clock: Clock,
        limits: LimitPolicy,
        sizes: SizePolicy,
        runtimes: RuntimeCatalog,
        usage: UsageLedger | None = None,
        admitting: AdmittingQueue | None = None,
    ) -> None:
        self._queue = queue
        self._ids = ids
        self._clock = clock
        self._limits = limits
        self._sizes = sizes
        self._runtimes = runtimes
        self._usage = usage
        self._admitting = admitting

    def new_id(self) -> str:
        return self._ids.new_id()

    async def __call__(self, caller: Caller, request: JobRequest, *, request_id: str = "", job_id: str = "") -> Submitted:
        job = await self._job(caller, request, request_id, job_id)
        if self._usage is None or not job.owner:
            await self._queue.submit(job)
            return Submitted(job)
        quotas = caller.quotas
        if self._admitting is not None and caller.uncounted_key:
            return Submitted(job, await self._admit(job, caller.uncounted_key, quotas))
        refused = await self._usage.book(job.owner, job.id, self._booking(job), _most(quotas.max_unfinished), _most(quotas.max_stored_bytes))
        if refused is not None:
            raise OverQuota(refused, _quota_limit(quotas, refused))
        try:
            await self._queue.submit(job)
        except BaseException:
            # Not queued (or not known to be): give the booking back. Should the job have been
            # queued after all (a lost reply), its finish still settles the booking.
            await outliving_cancellation(self._usage.unbook(job.owner, job.id))
            raise
        return Submitted(job)

    async def _job(self, caller: Caller, request: JobRequest, request_id: str, job_id: str) -> Job:
        runtimes = await self._runtimes.offered()
        check_language(request.language, runtimes)
        reserved = source_files(request.language, runtimes)
        self._sizes.check(request.code, request.stdin, request.args, request.files, reserved=reserved)
        if request.compiler_args:
            self._sizes.check_arguments("compiler_args", request.compiler_args)
            check_compiler_args(request.language, runtimes)
        self._sizes.check_annotations(request.annotations)
        self._sizes.check_tests(request.tests, runtimes)
        self._sizes.check_outputs(request.outputs)
        if request.outputs and request.tests:
            raise InvalidSubmission("outputs", "a job with tests returns no files: send the program's files with one test instead")
        if request.callback is not None:
            try:
                check_callback_url(request.callback.url)
            except CallbackRefused as refused:
                raise InvalidSubmission("callback_url", refused.message) from None
        limits = self._limits.for_runtime(runtime_of(request.language, runtimes)).resolve(request.limits)
        return Job(
            id=job_id or self._ids.new_id(),
            request=request.with_limits(limits),
            created_at=self._clock.now(),
            request_id=request_id,
            annotations=dict(request.annotations),
            owner=caller.key_id,
            callback=request.callback,
        )

    def _booking(self, job: Job) -> int:
        """booked_bytes, and for an interactive job the most its client may send it."""
        interactive = job.request.stdin_mode is StdinMode.INTERACTIVE
        return booked_bytes(job) + (self._sizes.max_stdin_bytes if interactive else 0)

    async def _admit(self, job: Job, hashed: str, quotas: Quotas) -> RateDecision:
        assert self._admitting is not None
        admitted = await self._admitting.submit_admitted(job, hashed, quotas, self._booking(job))
        if admitted.refused == "revoked" or admitted.rate is None:
            raise KeyRevoked
        if admitted.refused == "rate":
            raise OverQuota("requests", admitted.rate.limit, admitted.rate.retry_after_s, rate=admitted.rate)
        if admitted.refused is not None:
            raise OverQuota(admitted.refused, _quota_limit(quotas, admitted.refused), rate=admitted.rate)
        return admitted.rate


def _most(quota: int | None) -> int:
    assert quota is not None, "a key's quotas are resolved"
    return quota


def _quota_limit(quotas: Quotas, refused: str) -> int:
    return _most(quotas.max_unfinished if refused == "unfinished jobs" else quotas.max_stored_bytes)


def booked_bytes(job: Job) -> int:
    """What a job's record may come to: its request, both outputs at their limit, once for the
    job and once for each of its tests (each with its checker's message), and the files it asked
    back at their limit."""
    request = job.request
    sent = len(request.code.encode()) + len(request.stdin.encode())
    sent += sum(len(arg.encode()) for arg in (*request.args, *request.compiler_args))
    sent += sum(len(file.name) + len(file.content) for file in request.files)
    sent += sum(bytes_of_test(test) for test in request.tests)
    per_test = 3 * min(request.limits.max_output_bytes, TEST_OUTPUT_BYTES)
    returned = request.limits.max_returned_files_kb * 1024 if request.outputs else 0
    return sent + 2 * request.limits.max_output_bytes + len(request.tests) * per_test + returned


class SubmitJobOnce:
    """Submit, unless the caller already submitted with this idempotency key: then the job
    that first submission created, however often the request is retried, and however many of
    the retries race. Returns what was submitted and whether this call created the job.

    The fingerprint tells one request from another; the same key with a different request is
    refused (IdempotencyKeyReused). A retry that arrives while the first is still being queued
    waits for it, up to `settle_s`, then is told to retry (IdempotencyConflict).
    """

    def __init__(
        self, submit: SubmitJob, store: JobStore, records: IdempotencyRecords, ttl_s: int, *, settle_s: float = 5.0
    ) -> None:
        self._submit = submit
        self._store = store
        self._records = records
        self._ttl_s = ttl_s
        self._settle_s = settle_s

    async def __call__(
        self, caller: Caller, request: JobRequest, *, key: str, fingerprint: str, request_id: str = ""
    ) -> tuple[Submitted, bool]:
        scope = caller.key_id
        job_id = self._submit.new_id()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settle_s
        while True:
            first = await self._records.claim(scope, key, job_id, fingerprint, self._ttl_s)
            if first is None:
                try:
                    return await self._submit(caller, request, request_id=request_id, job_id=job_id), True
                except BaseException:
                    await outliving_cancellation(self._records.release(scope, key, job_id))
                    raise
            first_id, first_fingerprint = first
            if first_fingerprint != fingerprint:
                raise IdempotencyKeyReused
            found = await self._store.get(first_id)
            if found is not None:
                return Submitted(found), False
            # The first request claimed the key and is queuing its job right now, or failed
            # and is giving the key back: look again in a moment.
            if loop.time() >= deadline:
                raise IdempotencyConflict
            await asyncio.sleep(0.02)
