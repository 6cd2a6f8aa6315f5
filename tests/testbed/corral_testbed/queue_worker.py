"""A bare Corral worker as an OS process, for tests that kill, stop and resume workers.

It composes the core's RunNextJob with the Redis queue, the system clock and the in-memory
sandbox (which runs Python in a thread of this process, so a job's `os.getpid()` names the
worker that ran it). It prints `ready`, then `finished <id>` for every result the queue
accepted; the core logs refusals to stderr. SIGTERM hands the current job back and exits.

    python queue_worker.py REDIS_URL KEY_PREFIX WORKER_ID [--lease-ms N] [--renew-every-ms N]
        [--stall-before-finish]

`--stall-before-finish` makes the process SIGSTOP itself once, when its first job has run and
its result is about to be stored: a pause at the worst moment (a long GC, a frozen VM) that
a test can hold for as long as it likes and then end with SIGCONT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from corral_core.job import Job
from corral_core.ports import JobQueue, Lease, RecoveryReport, StorageUnavailable
from corral_core.usecases import RunNextJob
from corral_memory.sandbox import InMemorySandbox
from corral_redis import RedisJobQueue, RedisSettings, connect
from corral_system.clock import SystemClock


class StallingQueue:
    """A queue that freezes its own process once, just before it stores a result."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self._stalled = False

    async def submit(self, job: Job) -> None:
        await self._queue.submit(job)

    async def claim(self, worker_id: str, lease_ms: int, timeout_s: float) -> Lease | None:
        return await self._queue.claim(worker_id, lease_ms, timeout_s)

    async def renew(self, lease: Lease, lease_ms: int) -> bool:
        return await self._queue.renew(lease, lease_ms)

    async def finish(self, lease: Lease, job: Job) -> bool:
        if not self._stalled:
            self._stalled = True
            print(f"stalling {job.id}", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
        return await self._queue.finish(lease, job)

    async def release(self, lease: Lease) -> bool:
        return await self._queue.release(lease)

    async def recover(self, max_attempts: int) -> RecoveryReport:
        return await self._queue.recover(max_attempts)


async def work(args: argparse.Namespace) -> None:
    clock = SystemClock()
    client = connect(args.redis_url, retries=1, socket_timeout=2.0, connect_timeout=1.0)
    queue: JobQueue = RedisJobQueue(client, clock, RedisSettings(key_prefix=args.key_prefix))
    if args.stall_before_finish:
        queue = StallingQueue(queue)
    run_next = RunNextJob(queue, InMemorySandbox(), clock, lease_ms=args.lease_ms, renew_every_ms=args.renew_every_ms)
    print("ready", flush=True)
    try:
        while True:
            try:
                finished = await run_next(args.worker_id, timeout_s=0.5)
            except StorageUnavailable as error:
                logging.warning("redis unavailable, retrying: %s", error)
                await asyncio.sleep(0.1)
                continue
            if finished is not None:
                print(f"finished {finished.id}", flush=True)
    finally:
        await client.aclose()


async def main(args: argparse.Namespace) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await work(args)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("redis_url")
    parser.add_argument("key_prefix")
    parser.add_argument("worker_id")
    parser.add_argument("--lease-ms", type=int, default=1_500)
    parser.add_argument("--renew-every-ms", type=int, default=300)
    parser.add_argument("--stall-before-finish", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    asyncio.run(main(parse(sys.argv[1:])))
