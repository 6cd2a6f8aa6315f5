"""No-op jobs drained per second through the queue port: one master, then 3 Cluster masters.

Starts its own Redis Cluster from redis-server (AOF on, noeviction, on loopback), fills the
queue, then lets worker processes claim and finish every job with a fixed ok result: no
sandbox, so what is measured is the queue. With 1 master, one queue; with 3, three queue
shards (RedisSettings.shards), one per master. Every Redis shares this machine's cores with the
workers: on a 2-core machine, 3 masters cannot show what 3 hosts would, only that sharding costs
nothing it does not pay back.

    python bench/cluster_drain.py [--jobs 20000] [--workers 2] [--concurrency 4] [--masters 1 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
from multiprocessing.synchronize import Barrier

import msgspec

from corral_contract.queue import new_job
from corral_core import job as jobs
from corral_core.job import RunResult, Verdict
from corral_redis import RedisSettings, connect_to, make_queue
from corral_system.clock import SystemClock
from corral_testbed.redis_cluster import provide_cluster

OK = RunResult(verdict=Verdict.OK, exit_code=0, stdout="ok\n", wall_time_ms=1)
LEASE_MS = 60_000


def settings_for(url: str, masters: int) -> RedisSettings:
    return RedisSettings(url=url, cluster=True, shards=masters, key_prefix="bench:{q}:", max_unfinished=1_000_000)


async def fill(settings: RedisSettings, count: int, concurrency: int) -> float:
    client = connect_to(settings, socket_timeout=30.0)  # a loaded 2-core machine: slow, not down
    clock = SystemClock()
    queue = make_queue(client, clock, settings)
    ids = iter(range(count))

    async def submitter() -> None:
        for index in ids:
            await queue.submit(new_job(clock, f"job-{index:08d}", code="pass"))

    started = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return count / elapsed


async def drain(settings: RedisSettings, worker_id: str, concurrency: int, start: Barrier) -> tuple[int, float]:
    client = connect_to(settings, socket_timeout=30.0)  # a loaded 2-core machine: slow, not down
    clock = SystemClock()
    queue = make_queue(client, clock, settings)
    await client.ping()
    await asyncio.to_thread(start.wait)
    done = 0
    last = time.perf_counter()

    async def loop() -> None:
        nonlocal done, last
        while (lease := await queue.claim(worker_id, LEASE_MS, 0.05, ["python"])) is not None:
            if not await queue.finish(lease, jobs.complete(lease.job, OK, clock.now())):
                raise RuntimeError(f"finish of {lease.job.id} refused")
            done += 1
            last = time.perf_counter()

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    await client.aclose()
    return done, last


def worker_process(
    encoded: bytes,
    worker_id: str,
    concurrency: int,
    start: Barrier,
    results: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    settings = msgspec.json.decode(encoded, type=RedisSettings)
    results.put(asyncio.run(drain(settings, worker_id, concurrency, start)))


def run(masters: int, args: argparse.Namespace) -> None:
    with provide_cluster(masters=masters) as cluster:
        settings = settings_for(cluster.url, masters)
        submitted = asyncio.run(fill(settings, args.jobs, args.submitters))
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(args.workers + 1)
        results = context.Queue()
        processes = [
            context.Process(
                target=worker_process,
                args=(msgspec.json.encode(settings), f"w{index}", args.concurrency, start, results),
            )
            for index in range(args.workers)
        ]
        for process in processes:
            process.start()
        start.wait()
        began = time.perf_counter()
        finished = [results.get(timeout=600) for _ in processes]
        for process in processes:
            process.join()
    total = sum(count for count, _ in finished)
    elapsed = max(last for _, last in finished) - began
    if total != args.jobs:
        raise RuntimeError(f"drained {total} of {args.jobs} jobs")
    print(
        f"{masters} master{'s' if masters > 1 else ' '} ({masters} shard{'s' if masters > 1 else ''})"
        f"  submit {submitted:7,.0f} jobs/s  drain {total / elapsed:7,.0f} jobs/s"
        f" ({args.workers} processes x {args.concurrency} claim loops)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="claim loops per worker process")
    parser.add_argument("--submitters", type=int, default=16, help="concurrent submits while filling")
    parser.add_argument("--masters", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    print(f"{args.jobs:,} no-op jobs on a Redis Cluster, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for masters in args.masters:
        run(masters, args)


if __name__ == "__main__":
    main()
