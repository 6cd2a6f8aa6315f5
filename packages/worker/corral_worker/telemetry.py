"""What a worker tells its operator: metrics, a log line per job, and its process title.

All of it is observed at the worker's ports, by decorators the container puts around the queue,
the registry and the sandbox: the use cases stay as they are and report nothing themselves.

A slot is an asyncio task that claims jobs in a loop (service.Worker), so the task that calls
`claim` is the slot: the slot is idle from the moment it asks for a job, busy from the moment it
gets one. The claim also sets the log context (corral_system.logs) of the slot's task, so every
line logged while the job runs carries its job id and the request id it was submitted with.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from corral_core.job import Job, RunRequest, RunResult
from corral_core.ports import (
    JobQueue,
    Lease,
    RecoveryReport,
    RunContext,
    Runtime,
    Sandbox,
    StorageUnavailable,
    WorkerInfo,
)
from corral_core.ports import WorkerRegistry as WorkerRegistryPort
from corral_system import logs

log = logging.getLogger("corral_worker.jobs")
T = TypeVar("T")

# Seconds; from a no-op job's fraction of a second to the longest wall time allowed (30 s)
# waiting behind a full queue.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# The Redis calls a worker makes (InstrumentedJobQueue, InstrumentedWorkerRegistry).
_REDIS_OPERATIONS = ("submit", "claim", "renew", "finish", "release", "recover", "heartbeat", "live_workers", "hold_duty")
_SANDBOX_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)


class WorkerMetrics:
    """The worker's metrics (docs/metrics.md lists them). `registry` None: prometheus_client's own."""

    def __init__(self, registry: CollectorRegistry | None, concurrency: int) -> None:
        self.concurrency = concurrency
        # By runtime: the catalog's languages, a few dozen at most, checked at submission.
        self.jobs_started = Counter(
            "corral_jobs_started", "Jobs a worker claimed (attempts), by runtime.", ["runtime"], registry=registry
        )
        self.jobs_finished = Counter(
            "corral_jobs_finished",
            "Jobs whose final state a worker stored, by runtime, status, verdict (COMPLETED) and error code (FAILED).",
            ["runtime", "status", "verdict", "error"],
            registry=registry,
        )
        self.jobs_released = Counter(
            "corral_jobs_released", "Jobs handed back to the queue at shutdown.", registry=registry
        )
        self.queue_wait = Histogram(
            "corral_job_queue_wait_seconds",
            "From a job's submission to the start of its run (this attempt), by runtime.",
            ["runtime"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.run_time = Histogram(
            "corral_job_run_seconds",
            "From the start of a job's run to its final state, by runtime.",
            ["runtime"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.sandbox_overhead = Histogram(
            "corral_sandbox_overhead_seconds",
            "Time a sandbox run took beyond the program's own wall time: starting the jail "
            "(scratch space, cgroups, namespaces) and tearing it down.",
            buckets=_SANDBOX_BUCKETS,
            registry=registry,
        )
        self.slots_busy = Gauge(
            "corral_worker_slots_busy", "Job slots running a job.", registry=registry, multiprocess_mode="livesum"
        )
        self.slots_idle = Gauge(
            "corral_worker_slots_idle", "Job slots waiting for a job.", registry=registry, multiprocess_mode="livesum"
        )
        self.renewals_failed = Counter(
            "corral_lease_renewals_failed",
            "Lease renewals that failed: the lease was lost, or Redis did not answer.",
            ["reason"],
            registry=registry,
        )
        self.recovered = Counter(
            "corral_jobs_recovered",
            "Abandoned jobs the recovery duty re-queued or failed as worker_lost.",
            ["outcome"],
            registry=registry,
        )
        self.redis_errors = Counter(
            "corral_redis_errors", "Redis calls that failed (StorageUnavailable), by operation.", ["operation"], registry=registry
        )
        self._start_at_zero()

    def _start_at_zero(self) -> None:
        self.slots_busy.set(0)
        self.slots_idle.set(self.concurrency)
        # Each Redis error series exists from the start: a rate over them is 0, not no data.
        for operation in _REDIS_OPERATIONS:
            self.redis_errors.labels(operation)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


class InstrumentedJobQueue:
    """A JobQueue that counts, logs and shows in the process title what passes through it."""

    def __init__(self, queue: JobQueue, metrics: WorkerMetrics, title: Callable[[str], None] | None = None) -> None:
        self._queue = queue
        self._metrics = metrics
        self._title = title
        self._running: dict[asyncio.Task[object], str] = {}

    async def submit(self, job: Job) -> None:
        await self._call("submit", self._queue.submit(job))

    async def claim(
        self, worker_id: str, lease_ms: int, timeout_s: float, languages: Collection[str] | None = None
    ) -> Lease | None:
        self._slot_is(None)
        logs.job_id.set("")
        logs.request_id.set("")
        lease = await self._call("claim", self._queue.claim(worker_id, lease_ms, timeout_s, languages))
        if lease is None:
            return None
        job = lease.job
        logs.job_id.set(job.id)
        logs.request_id.set(job.request_id)
        self._slot_is(job.id)
        runtime = job.request.language
        self._metrics.jobs_started.labels(runtime).inc()
        if (waited := _seconds(job.created_at, job.started_at)) is not None:
            self._metrics.queue_wait.labels(runtime).observe(waited)
        log.info("job started", extra={"attempt": job.attempts, "language": job.request.language})
        return lease

    async def renew(self, lease: Lease, lease_ms: int) -> bool:
        try:
            renewed = await self._call("renew", self._queue.renew(lease, lease_ms))
        except StorageUnavailable:
            self._metrics.renewals_failed.labels("redis_error").inc()
            raise
        if not renewed:
            self._metrics.renewals_failed.labels("lost").inc()
            log.warning("lease lost")
        return renewed

    async def finish(self, lease: Lease, job: Job) -> bool:
        stored = await self._call("finish", self._queue.finish(lease, job))
        if stored:
            verdict = job.result.verdict.value if job.result else ""
            error = job.error.code.value if job.error else ""
            runtime = job.request.language
            self._metrics.jobs_finished.labels(runtime, job.status.value, verdict, error).inc()
            if (ran := _seconds(job.started_at, job.finished_at)) is not None:
                self._metrics.run_time.labels(runtime).observe(ran)
            log.info(
                "job finished", extra={"status": job.status.value, "verdict": verdict, "error_code": error, "attempt": job.attempts}
            )
        else:
            log.warning("job result refused: the job was taken over")
        self._slot_is(None)
        return stored

    async def release(self, lease: Lease) -> bool:
        released = await self._call("release", self._queue.release(lease))
        if released:
            self._metrics.jobs_released.inc()
            log.info("job handed back to the queue")
        self._slot_is(None)
        return released

    async def recover(self, max_attempts: int) -> RecoveryReport:
        report = await self._call("recover", self._queue.recover(max_attempts))
        if report.requeued:
            self._metrics.recovered.labels("requeued").inc(len(report.requeued))
        if report.failed:
            self._metrics.recovered.labels("failed").inc(len(report.failed))
        return report

    async def _call(self, operation: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except StorageUnavailable:
            self._metrics.redis_errors.labels(operation).inc()
            raise

    def _slot_is(self, job_id: str | None) -> None:
        task = asyncio.current_task()
        if task is None:
            return
        if job_id is None:
            self._running.pop(task, None)
        else:
            if task not in self._running:
                task.add_done_callback(self._slot_ended)
            self._running[task] = job_id
        self._show()

    def _slot_ended(self, task: asyncio.Task[object]) -> None:
        if self._running.pop(task, None) is not None:
            self._show()

    def _show(self) -> None:
        busy = min(len(self._running), self._metrics.concurrency)
        self._metrics.slots_busy.set(busy)
        self._metrics.slots_idle.set(self._metrics.concurrency - busy)
        if self._title is not None:
            running = sorted(self._running.values())
            self._title(f"job {', '.join(running)}" if running else "idle")


class InstrumentedWorkerRegistry:
    """A WorkerRegistry that counts its Redis errors."""

    def __init__(self, registry: WorkerRegistryPort, metrics: WorkerMetrics) -> None:
        self._registry = registry
        self._metrics = metrics

    async def heartbeat(self, info: WorkerInfo, ttl_ms: int) -> None:
        try:
            await self._registry.heartbeat(info, ttl_ms)
        except StorageUnavailable:
            self._metrics.redis_errors.labels("heartbeat").inc()
            raise

    async def live_workers(self) -> list[WorkerInfo]:
        try:
            return await self._registry.live_workers()
        except StorageUnavailable:
            self._metrics.redis_errors.labels("live_workers").inc()
            raise

    async def hold_duty(self, duty: str, worker_id: str, ttl_ms: int) -> bool:
        try:
            return await self._registry.hold_duty(duty, worker_id, ttl_ms)
        except StorageUnavailable:
            self._metrics.redis_errors.labels("hold_duty").inc()
            raise


class TimedSandbox:
    """A Sandbox that measures what each run costs beyond the program's own wall time."""

    def __init__(self, sandbox: Sandbox, metrics: WorkerMetrics) -> None:
        self._sandbox = sandbox
        self._metrics = metrics

    def runtimes(self) -> list[Runtime]:
        return self._sandbox.runtimes()

    async def run(self, request: RunRequest, context: RunContext = RunContext()) -> RunResult:
        began = time.monotonic()
        result = await self._sandbox.run(request, context)
        took = time.monotonic() - began
        self._metrics.sandbox_overhead.observe(max(took - result.wall_time_ms / 1000, 0.0))
        return result
