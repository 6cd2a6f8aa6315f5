"""The worker loop: N job slots, a heartbeat, and the recovery of abandoned jobs.

Redis may go away at any time: every loop backs off and tries again rather than exit, so a
worker outlives a Redis restart, and a running job outlives it too as long as its lease does
(RunNextJob). On stop (SIGTERM), slots take no new job; running jobs get `shutdown_grace_s`
(by default longer than the longest job may run) to finish, then are cancelled, which hands
them back to the queue without counting the attempt; a result already in hand is stored first.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from corral_core.ports import Clock, Runtime, StorageUnavailable, WorkerInfo, WorkerRegistry
from corral_core.usecases import RecoverAbandonedJobs, RunNextJob

log = logging.getLogger(__name__)

CLAIM_TIMEOUT_S = 1.0


class Backoff:
    """Exponential backoff with jitter, reset by the first success."""

    def __init__(self, first_s: float = 0.05, most_s: float = 2.0) -> None:
        self._first = first_s
        self._most = most_s
        self._next = first_s

    def reset(self) -> None:
        self._next = self._first

    async def wait(self) -> None:
        await asyncio.sleep(self._next * random.uniform(0.5, 1.5))
        self._next = min(self._next * 2, self._most)


class Worker:
    def __init__(
        self,
        worker_id: str,
        run_next_job: RunNextJob,
        recover: RecoverAbandonedJobs,
        registry: WorkerRegistry,
        clock: Clock,
        runtimes: list[Runtime],
        *,
        concurrency: int,
        heartbeat_every_ms: int,
        recover_every_ms: int,
        shutdown_grace_s: float,
    ) -> None:
        self.worker_id = worker_id
        self._run_next_job = run_next_job
        self._recover = recover
        self._registry = registry
        self._clock = clock
        self._runtimes = tuple(runtimes)
        self._concurrency = concurrency
        self._heartbeat_every_s = heartbeat_every_ms / 1000
        self._recover_every_s = recover_every_ms / 1000
        self._grace_s = shutdown_grace_s
        self._stopping = asyncio.Event()
        self.jobs_done = 0

    def stop(self) -> None:
        """Take no new job; `serve` returns once running ones finished or were handed back."""
        self._stopping.set()

    async def serve(self) -> None:
        log.info("worker %s: %d slots, runtimes %s", self.worker_id, self._concurrency, self._runtimes)
        slots = [asyncio.create_task(self._slot()) for _ in range(self._concurrency)]
        chores = [
            asyncio.create_task(self._every(self._heartbeat_every_s, self._heartbeat)),
            asyncio.create_task(self._every(self._recover_every_s, self._recover_once)),
        ]
        await self._stopping.wait()
        log.info("worker %s stopping", self.worker_id)
        _, unfinished = await asyncio.wait(slots, timeout=self._grace_s)
        for task in [*unfinished, *chores]:
            task.cancel()
        await asyncio.gather(*slots, *chores, return_exceptions=True)
        log.info("worker %s stopped after %d jobs", self.worker_id, self.jobs_done)

    async def _slot(self) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            try:
                job = await self._run_next_job(self.worker_id, CLAIM_TIMEOUT_S)
            except StorageUnavailable as error:
                log.warning("redis unavailable, retrying: %s", error)
                await backoff.wait()
                continue
            except Exception:
                log.exception("job slot failed; carrying on")
                await backoff.wait()
                continue
            backoff.reset()
            if job is not None:
                self.jobs_done += 1
                log.info("worker %s: job %s %s, attempt %d", self.worker_id, job.id, job.status.value, job.attempts)

    async def _heartbeat(self) -> None:
        info = WorkerInfo(self.worker_id, self._clock.now(), self._runtimes)
        await self._registry.heartbeat(info, ttl_ms=round(self._heartbeat_every_s * 3000))

    async def _recover_once(self) -> None:
        # Recovery is atomic and safe to run anywhere; one worker at a time is enough, and the
        # duty passes on by itself when its holder dies.
        ttl_ms = round(self._recover_every_s * 3000)
        if await self._registry.hold_duty("recovery", self.worker_id, ttl_ms):
            await self._recover()

    async def _every(self, period_s: float, chore: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await chore()
            except StorageUnavailable as error:
                log.warning("redis unavailable during %s: %s", chore.__name__, error)
            except Exception:
                log.exception("%s failed", chore.__name__)
            await asyncio.sleep(period_s)
