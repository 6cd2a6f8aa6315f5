"""No-op jobs per second through the Redis queue: submitted, then drained by worker processes.

Starts its own redis-server (as Corral requires it: AOF on, noeviction) on a free port, fills
the queue, then lets worker processes claim and finish every job with a fixed ok result: no
sandbox, so what is measured is the queue alone. Run once per appendfsync setting, to show what
`always` (no acknowledged job lost even to a machine crash) costs over `everysec`.

    python bench/queue_throughput.py [--jobs 20000] [--workers 2] [--concurrency 1] [--uvloop]
        [--fsync everysec always]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

from corral_contract.queue import new_job
from corral_core import job as jobs
from corral_core.job import RunResult, Verdict
from corral_redis import RedisJobQueue, RedisSettings, connect
from corral_system.clock import SystemClock
from corral_testbed.redis_server import RedisServerProcess

SETTINGS = RedisSettings(key_prefix="bench:{q}:", max_unfinished=1_000_000)
OK = RunResult(verdict=Verdict.OK, exit_code=0, stdout="ok\n", wall_time_ms=1)
LEASE_MS = 60_000


async def fill(url: str, count: int, concurrency: int) -> float:
    """Submit `count` jobs from `concurrency` tasks of this process; returns jobs per second."""
    client = connect(url)
    clock = SystemClock()
    queue = RedisJobQueue(client, clock, SETTINGS)
    ids = iter(range(count))

    async def submitter() -> None:
        for index in ids:
            await queue.submit(new_job(clock, f"job-{index:08d}", code="pass"))

    started = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return count / elapsed


async def drain(url: str, worker_id: str, concurrency: int, start: Barrier) -> tuple[int, float]:
    """Claim and finish until the queue is empty; returns (jobs finished, time of the last)."""
    client = connect(url)
    clock = SystemClock()
    queue = RedisJobQueue(client, clock, SETTINGS)
    await client.ping()
    await asyncio.to_thread(start.wait)
    done = 0
    last = time.perf_counter()

    async def loop() -> None:
        nonlocal done, last
        while (lease := await queue.claim(worker_id, LEASE_MS, 0.05)) is not None:
            if not await queue.finish(lease, jobs.complete(lease.job, OK, clock.now())):
                raise RuntimeError(f"finish of {lease.job.id} refused")
            done += 1
            last = time.perf_counter()

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    await client.aclose()
    return done, last


def worker_process(
    url: str,
    worker_id: str,
    concurrency: int,
    use_uvloop: bool,
    start: Barrier,
    results: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    if use_uvloop:
        import uvloop

        results.put(uvloop.run(drain(url, worker_id, concurrency, start)))
    else:
        results.put(asyncio.run(drain(url, worker_id, concurrency, start)))


def run(fsync: str, args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="corral-bench-") as directory,
        RedisServerProcess(Path(directory), appendfsync=fsync) as server,
    ):
        submitted = asyncio.run(fill(server.url, args.jobs, args.submitters))
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(args.workers + 1)
        results = context.Queue()
        processes = [
            context.Process(
                target=worker_process,
                args=(server.url, f"w{index}", args.concurrency, args.uvloop, start, results),
            )
            for index in range(args.workers)
        ]
        for process in processes:
            process.start()
        start.wait()  # every worker is connected: start the clock
        began = time.perf_counter()
        finished = [results.get(timeout=600) for _ in processes]
        for process in processes:
            process.join()
    total = sum(count for count, _ in finished)
    elapsed = max(last for _, last in finished) - began
    if total != args.jobs:
        raise RuntimeError(f"drained {total} of {args.jobs} jobs")
    print(
        f"appendfsync {fsync:8}  submit {submitted:7,.0f} jobs/s ({args.submitters} concurrent, 1 process)"
        f"  drain {total / elapsed:7,.0f} jobs/s ({args.workers} processes x {args.concurrency}"
        f"{', uvloop' if args.uvloop else ''})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=1, help="claim loops per worker process")
    parser.add_argument("--uvloop", action="store_true", help="workers run on uvloop")
    parser.add_argument("--submitters", type=int, default=16, help="concurrent submits while filling")
    parser.add_argument("--fsync", nargs="+", default=["everysec", "always"], choices=["always", "everysec", "no"])
    args = parser.parse_args()
    print(f"{args.jobs:,} no-op jobs, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for fsync in args.fsync:
        run(fsync, args)


if __name__ == "__main__":
    main()
