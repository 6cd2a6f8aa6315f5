"""The worker loop over in-memory adapters: jobs, stop, Redis outages."""

from __future__ import annotations

import asyncio

from corral_contract.clock import ManualClock
from corral_contract.queue import new_job
from corral_core.job import JobStatus, RunResult, Verdict
from corral_core.ports import Runtime, StorageUnavailable
from corral_core.usecases import RecoverAbandonedJobs, RunNextJob
from corral_memory.jobs import InMemoryJobQueue, InMemoryJobs, InMemoryJobStore, InMemoryWorkerRegistry
from corral_testbed.scripted_sandbox import ScriptedSandbox
from corral_worker.service import Worker


class SlowSandbox(ScriptedSandbox):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = asyncio.Event()

    def runtimes(self) -> list[Runtime]:
        return [Runtime("python", "3.11.2")]

    async def outcome(self, *_: object) -> RunResult:
        self.started.set()
        await asyncio.sleep(self.seconds)
        return RunResult(verdict=Verdict.OK, exit_code=0, stdout="slept\n")


class FlakyQueue(InMemoryJobQueue):
    """Unreachable for its first `outages` claims, as a queue whose Redis is restarting."""

    def __init__(self, state: InMemoryJobs, outages: int) -> None:
        super().__init__(state)
        self.outages = outages

    async def claim(self, worker_id: str, lease_ms: int, timeout_s: float, languages=None):  # type: ignore[no-untyped-def]
        if self.outages > 0:
            self.outages -= 1
            raise StorageUnavailable("connection refused")
        return await super().claim(worker_id, lease_ms, timeout_s, languages)


def make_worker(queue: InMemoryJobQueue, state: InMemoryJobs, sandbox: SlowSandbox, grace_s: float) -> Worker:
    registry = InMemoryWorkerRegistry(state.clock)
    return Worker(
        "w1",
        RunNextJob(queue, sandbox, state.clock),
        RecoverAbandonedJobs(queue),
        registry,
        state.clock,
        sandbox.runtimes(),
        concurrency=2,
        heartbeat_every_ms=50,
        recover_every_ms=50,
        shutdown_grace_s=grace_s,
    )


async def stopped_while_running(state: InMemoryJobs, run_s: float, grace_s: float) -> Worker:
    """A worker stopped while it runs job-a (a program taking `run_s`), once it has stopped."""
    queue, sandbox = InMemoryJobQueue(state), SlowSandbox(run_s)
    await queue.submit(new_job(state.clock, "job-a"))
    worker = make_worker(queue, state, sandbox, grace_s=grace_s)
    serving = asyncio.create_task(worker.serve())
    await sandbox.started.wait()
    worker.stop()
    await asyncio.wait_for(serving, 5)
    return worker


async def test_a_stopped_worker_finishes_its_running_job_within_the_grace() -> None:
    state = InMemoryJobs(ManualClock())
    worker = await stopped_while_running(state, run_s=0.3, grace_s=5)
    done = await InMemoryJobStore(state).get("job-a")
    assert done is not None and done.status is JobStatus.COMPLETED and worker.jobs_done == 1


async def test_a_job_still_running_after_the_grace_is_handed_back() -> None:
    state = InMemoryJobs(ManualClock())
    await stopped_while_running(state, run_s=60, grace_s=0.1)
    handed_back = await InMemoryJobStore(state).get("job-a")
    assert handed_back is not None and handed_back.status is JobStatus.PENDING
    assert handed_back.attempts == 0 and [job for line in state.pending.values() for job in line] == ["job-a"]


async def test_the_worker_rides_out_a_storage_outage() -> None:
    state = InMemoryJobs(ManualClock())
    queue, sandbox = FlakyQueue(state, outages=5), SlowSandbox(0)
    await queue.submit(new_job(state.clock, "job-a"))
    worker = make_worker(queue, state, sandbox, grace_s=1)
    serving = asyncio.create_task(worker.serve())
    done = await InMemoryJobStore(state).wait_finished("job-a", 10)
    worker.stop()
    await asyncio.wait_for(serving, 5)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert queue.outages == 0


async def test_the_worker_announces_itself_and_its_runtimes() -> None:
    state = InMemoryJobs(ManualClock())
    queue, sandbox = InMemoryJobQueue(state), SlowSandbox(0)
    worker = make_worker(queue, state, sandbox, grace_s=1)
    registry = worker._registry
    serving = asyncio.create_task(worker.serve())
    await asyncio.sleep(0.1)
    [info] = await registry.live_workers()
    assert info.worker_id == "w1" and info.runtimes == (Runtime("python", "3.11.2"),)
    worker.stop()
    await asyncio.wait_for(serving, 5)
