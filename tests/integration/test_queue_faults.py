"""The Redis queue under real faults: workers killed, frozen or with skewed clocks mid-job,
Redis restarted under a running job or killed mid-stream.

Real redis-server, real workers (the worker PEX, running real NsJail jobs), real signals; the
workers' own recovery duty re-queues what a lost worker held, never the test. Each test checks
that no accepted job is lost and that every job got exactly one final result: a worker logs
`job <id> COMPLETED` only for results the queue accepted, so the ids logged across all workers
must be the submitted ids, each once.

Nothing here may wait without a bound: every wait fails on its own, saying what it waited for,
well before the per-test timeout below; if something still hangs, the test logs where every
asyncio task is stuck just before that timeout fails it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar, cast

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from corral_contract.queue import new_job
from corral_core import job as jobs
from corral_core.job import Job, JobStatus, RunResult, Verdict
from corral_core.ports import StorageUnavailable
from corral_redis import (
    QueueKeys,
    RedisCanLoseJobs,
    RedisJobQueue,
    RedisJobStore,
    RedisSettings,
    RedisWorkerRegistry,
    check_durability,
    connect,
)
from corral_redis.records import progress_fields
from corral_redis.scripts import FINISH
from corral_system.clock import SystemClock
from corral_testbed.redis_server import RedisServerProcess, require_redis_server
from corral_testbed.services import WORKER_PEX, Corral

T = TypeVar("T")

log = logging.getLogger(__name__)

# Under load (the whole suite on 2 cores) a test here takes seconds, up to ~20 with a 10 s
# job; two minutes means it hangs.
TEST_TIMEOUT_S = 120
pytestmark = pytest.mark.timeout(TEST_TIMEOUT_S)
# Where every task waits goes to the log this long before pytest-timeout fails the test.
STUCK_REPORT_S = TEST_TIMEOUT_S - 8
# How long the jobs of one test may take to finish, all together.
FINISH_TIMEOUT_S = 60

LEASE_MS = 1_000
# Workers that lose a job to a lost worker within about two seconds.
FAST_WORKER = {
    "CORRAL_CONCURRENCY": "1",
    "CORRAL_LEASE_MS": "1500",
    "CORRAL_RENEW_EVERY_MS": "300",
    "CORRAL_RECOVER_EVERY_MS": "200",
    "CORRAL_HEARTBEAT_EVERY_MS": "300",
    # Several workers on one host: no metrics endpoint, or they would all want its one port.
    "CORRAL_METRICS_PORT": "0",
}


def job(job_id: str, code: str, wall_time_ms: int | None = None) -> Job:
    created = new_job(SystemClock(), job_id, code)
    if wall_time_ms is None:
        return created
    limits = msgspec.structs.replace(created.request.limits, wall_time_ms=wall_time_ms)
    return msgspec.structs.replace(created, request=msgspec.structs.replace(created.request, limits=limits))


@dataclass
class Queue:
    client: Redis
    settings: RedisSettings
    queue: RedisJobQueue
    store: RedisJobStore

    @property
    def keys(self) -> QueueKeys:
        return QueueKeys(self.settings.key_prefix)

    @property
    def registry(self) -> RedisWorkerRegistry:
        return RedisWorkerRegistry(self.client, self.settings)

    async def worker_of(self, job_id: str) -> str | None:
        """The worker that holds the job's lease, or that stored its result."""
        found = cast(bytes | None, await self.client.hget(self.keys.job(job_id), "worker"))
        return None if found is None else found.decode()

    async def leftovers(self) -> dict[str, int]:
        keys = self.keys
        return {
            "pending": await self.client.llen(keys.line("python")),
            "processing": await self.client.llen(keys.processing),
            "leases": await self.client.zcard(keys.leases),
        }

    async def finish_of(self, job_ids: Iterable[str], timeout_s: float = FINISH_TIMEOUT_S) -> list[Job]:
        """The final records of the jobs, which must all finish within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        finals = []
        for job_id in job_ids:
            left = max(deadline - time.monotonic(), 0.01)
            waited = self.store.wait_finished(job_id, left)
            found = await within(left + 5, f"wait_finished({job_id!r}) to return", waited)
            if found is None or not found.finished:
                state = found.status.value if found is not None else "missing"
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {job_id} to finish: it is {state}")
            finals.append(found)
        return finals


@contextlib.asynccontextmanager
async def open_queue(url: str, max_unfinished: int = 10_000) -> AsyncIterator[Queue]:
    client = connect(url, retries=1, socket_timeout=2.0, connect_timeout=0.5)
    config = RedisSettings(key_prefix=f"faults:{uuid.uuid4().hex[:12]}:{{q}}:", max_unfinished=max_unfinished)
    store = RedisJobStore(client, config)
    try:
        yield Queue(client, config, RedisJobQueue(client, SystemClock(), config), store)
    finally:
        try:
            await within(10, "the job store's notification listener to stop", store.aclose())
        finally:
            await within(10, "the Redis client to close", client.aclose())


class WorkerProcess:
    """`corral-worker run` from the worker PEX, one slot, on the test's key prefix.

    Its leases are short, so a lost worker's jobs come back within seconds; its own recovery
    duty (not the test) re-queues them. Its log says `job <id> COMPLETED` for every result the
    queue accepted; the job's record names the worker that stored it (`worker`).
    """

    def __init__(self, url: str, prefix: str, worker_id: str, logs: Path, **env: str) -> None:
        self.worker_id = worker_id
        self.log_path = logs / f"{worker_id}.log"
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, str(WORKER_PEX), "run"],
                env={
                    **os.environ,
                    "CORRAL_REDIS_URL": url,
                    "CORRAL_REDIS_KEY_PREFIX": prefix,
                    "CORRAL_WORKER_ID": worker_id,
                    **FAST_WORKER,
                    **env,
                },
                stdout=log_file,
                stderr=log_file,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def finished(self) -> list[str]:
        """The jobs whose result this worker stored, in order."""
        return re.findall(r"job (\S+) (?:COMPLETED|FAILED), attempt", self.log())

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    async def stop(self, timeout_s: float = 15) -> None:
        """SIGTERM, as a worker is stopped; its log is complete once it has exited."""
        self.signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.worker_id} still runs {timeout_s:g} s after SIGTERM; its log:\n{self.log()}"
            ) from None


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    if not WORKER_PEX.exists():
        pytest.fail(f"{WORKER_PEX} is missing: run these tests through `./pants test`")
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        with contextlib.suppress(ProcessLookupError):
            worker.signal(signal.SIGCONT)
        worker.end()


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(workers: list[WorkerProcess], tmp_path: Path) -> StartWorker:
    def start(queue: Queue, url: str, worker_id: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(url, queue.settings.key_prefix, worker_id, tmp_path, **env)
        workers.append(worker)
        return worker

    return start


@pytest.fixture(autouse=True)
async def report_stuck_tasks() -> AsyncIterator[None]:
    """Log every asyncio task's stack if the test still runs shortly before its timeout.

    pytest-timeout's own report shows only the event loop idling in select(), not what the
    test's tasks wait for.
    """
    alarm = asyncio.get_running_loop().call_later(STUCK_REPORT_S, _log_stuck_tasks)
    yield
    alarm.cancel()


def _log_stuck_tasks() -> None:
    report = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"\n{task.get_name()}, cancellation requested {task.cancelling()} times:", file=report)
        task.print_stack(file=report)
    log.error("still running after %d s; where every asyncio task waits:%s", STUCK_REPORT_S, report.getvalue())


async def within(timeout_s: float, what: str, awaitable: Awaitable[T]) -> T:
    """`await awaitable`, or fail after `timeout_s` saying what it waited for.

    asyncio.wait rather than asyncio.timeout: a timeout cancels the waiting task, which then
    waits for the cancelled awaitable to end, forever if that one ignores its cancellation.
    """
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
    return task.result()


async def eventually(check: Callable[[], Awaitable[T | None]], timeout_s: float = 30.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := await check():
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def running_jobs(queue: Queue, job_ids: list[str], worker_id: str) -> list[str]:
    """The jobs `worker_id` runs right now."""
    held = []
    for job_id in job_ids:
        record = await queue.store.get(job_id)
        if record is not None and record.status is JobStatus.RUNNING and await queue.worker_of(job_id) == worker_id:
            held.append(job_id)
    return held


def finished_once(job_ids: list[str], *workers: WorkerProcess) -> None:
    """Every job's result was stored once, by one worker, across all of them."""
    stored = sorted(job_id for worker in workers for job_id in worker.finished())
    assert stored == sorted(job_ids), {worker.worker_id: worker.finished() for worker in workers}


async def test_a_killed_workers_jobs_are_run_again_by_another_and_every_job_finishes_once(
    redis_url: str,
    start_worker: StartWorker,
) -> None:
    async with open_queue(redis_url) as queue:
        job_ids = [f"job-{index}" for index in range(4)]
        for job_id in job_ids:
            await queue.queue.submit(job(job_id, "import time\ntime.sleep(1)\nprint('done')"))
        doomed = start_worker(queue, redis_url, "doomed", CORRAL_CONCURRENCY="2")
        await eventually(
            lambda: _all_of(running_jobs(queue, job_ids, "doomed"), 2), what="the doomed worker running two jobs"
        )
        doomed.signal(signal.SIGKILL)
        doomed.end()
        # Asked after the kill: a loaded machine may let it finish a job and start the next
        # between the two steps above.
        victims = await running_jobs(queue, job_ids, "doomed")
        assert victims, "the doomed worker died holding no job"

        # The survivor takes the recovery duty once the dead worker's lapses, and re-queues.
        survivor = start_worker(queue, redis_url, "survivor")
        finals = await queue.finish_of(job_ids)
        await survivor.stop()

        for final in finals:
            assert final.status is JobStatus.COMPLETED, final
            assert final.result is not None and final.result.stdout == "done\n"
            if final.id in victims:
                assert final.attempts == 2, final
                assert await queue.worker_of(final.id) == "survivor", final
        finished_once(job_ids, doomed, survivor)
        assert not set(victims) & set(doomed.finished())
        assert await queue.leftovers() == {"pending": 0, "processing": 0, "leases": 0}


async def test_a_task_cancelled_in_the_middle_of_redis_calls_always_ends(redis_url: str) -> None:
    """Recovery loops, lease renewals and notification listeners are stopped by cancelling them.

    A cancellation lost inside redis-py leaves the task running and whoever awaits it waiting
    forever; under Python 3.11 one cancellation in a few was lost (see corral_redis.connection).
    """
    async with open_queue(redis_url) as queue:
        await queue.queue.submit(job("job-a", "print(1)"))

        async def recover_forever() -> None:
            while True:
                await queue.queue.recover(3)

        async def read_forever() -> None:
            while True:
                await queue.store.get("job-a")

        for attempt in range(300):
            task = asyncio.create_task((recover_forever, read_forever)[attempt % 2]())
            await asyncio.sleep(random.uniform(0, 0.003))
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)
            assert done, f"attempt {attempt}: the task still runs 5 s after its cancellation"
            assert task.cancelled(), f"attempt {attempt}: {task!r}"

        for attempt in range(50):  # the store's listener, cancelled as it subscribes
            store = RedisJobStore(queue.client, queue.settings)
            waiting = asyncio.create_task(store.wait_finished("job-a", 5))
            await asyncio.sleep(random.uniform(0, 0.003))
            await within(5, f"attempt {attempt}: the store to close", store.aclose())
            waiting.cancel()
            await asyncio.wait({waiting}, timeout=5)
            assert waiting.done(), f"attempt {attempt}: wait_finished still runs 5 s after its cancellation"

        # A reader cancelled just as a notification wakes it (an API request given up on): the
        # notification is published, and the cancellation lands around the moment it arrives.
        for attempt in range(50):
            waiting = asyncio.create_task(queue.store.wait_finished("job-a", 20))
            await asyncio.sleep(0.05)  # subscribed, read job-a (pending), now waits for a wake-up
            await queue.client.publish(queue.keys.finished, "job-a")
            await asyncio.sleep(random.uniform(0, 0.003))
            waiting.cancel()
            await asyncio.wait({waiting}, timeout=5)
            assert waiting.cancelled(), f"attempt {attempt}: wait_finished ignored its cancellation: {waiting!r}"


async def test_a_worker_frozen_past_its_lease_loses_the_job_to_another(
    redis_url: str,
    start_worker: StartWorker,
) -> None:
    async with open_queue(redis_url) as queue:
        await queue.queue.submit(job("job-a", "import time\ntime.sleep(0.5)\nprint('done')"))
        frozen = start_worker(queue, redis_url, "frozen")
        await eventually(lambda: running_jobs(queue, ["job-a"], "frozen"), what="job-a running")
        frozen.signal(signal.SIGSTOP)  # its jail runs on, but nobody renews the lease

        rescuer = start_worker(queue, redis_url, "rescuer")
        [final] = await queue.finish_of(["job-a"])
        frozen.signal(signal.SIGCONT)
        # Whichever it notices first, the lost lease or the refused result, it must give up.
        await eventually(lambda: _said(frozen, "lost the lease", "result refused"), what="the frozen worker to give up")
        await frozen.stop()
        await rescuer.stop()

        assert final.status is JobStatus.COMPLETED and final.attempts == 2
        assert await queue.worker_of("job-a") == "rescuer"
        assert await queue.store.get("job-a") == final  # the frozen worker changed nothing
        assert frozen.finished() == [] and rescuer.finished() == ["job-a"]
        assert await queue.leftovers() == {"pending": 0, "processing": 0, "leases": 0}


async def test_a_job_runs_once_through_three_redis_restarts(
    redis_server: RedisServerProcess, start_worker: StartWorker
) -> None:
    async with open_queue(redis_server.url) as queue:
        ten_seconds = "import time\ntime.sleep(10)\nprint('done')"
        await queue.queue.submit(job("job-a", ten_seconds, wall_time_ms=20_000))
        # A lease that outlasts one restart, not three: the job lives through the blips only
        # because each renewal that fails is retried within the lease.
        worker = start_worker(queue, redis_server.url, "w1", CORRAL_LEASE_MS="4000", CORRAL_RENEW_EVERY_MS="500")
        await eventually(lambda: running_jobs(queue, ["job-a"], "w1"), what="job-a running")
        for _ in range(3):
            await asyncio.sleep(1)
            # Down longer than the client's own retries last, shorter than the lease.
            await asyncio.to_thread(redis_server.stop)
            await asyncio.sleep(1.5)
            await asyncio.to_thread(redis_server.start)
        [final] = await queue.finish_of(["job-a"])
        await worker.stop()

        assert final.status is JobStatus.COMPLETED, final
        assert final.result is not None and final.result.stdout == "done\n"
        assert final.attempts == 1
        assert worker.finished() == ["job-a"]
        assert "lease renewal failed" in worker.log(), "no renewal ever met Redis down"
        assert await queue.leftovers() == {"pending": 0, "processing": 0, "leases": 0}


async def test_workers_with_skewed_clocks_finish_every_job_once_and_the_service_stays_ready(
    redis_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    async with open_queue(redis_url) as queue:
        # Ahead: it holds the recovery duty, and with its own clock would see every lease as
        # expired. Behind: its heartbeats would look long dead to everyone else.
        ahead = start_worker(queue, redis_url, "ahead", **skewed_clock("+300s"))
        await eventually(lambda: _holds_duty(queue, "ahead"), what="the skewed worker to take the recovery duty")
        behind = start_worker(queue, redis_url, "behind", **skewed_clock("-300s"))
        api = Corral(redis_url, tmp_path, env={"CORRAL_REDIS_KEY_PREFIX": queue.settings.key_prefix})
        api.start_api()
        try:
            await asyncio.to_thread(api.wait_ready, 60, 2)
            seen = {info.worker_id: info.seen_at for info in await queue.registry.live_workers()}
            now = SystemClock().now()
            assert seen["ahead"] - now > timedelta(minutes=4), "the skew never reached the worker"
            assert now - seen["behind"] > timedelta(minutes=4), "the skew never reached the worker"

            job_ids = [f"job-{index}" for index in range(8)]
            for job_id in job_ids:
                await queue.queue.submit(job(job_id, "import time\ntime.sleep(0.5)\nprint('done')"))
            readiness = asyncio.create_task(_readiness_while(api.url, queue.finish_of(job_ids)))
            finals, answers = await readiness
        finally:
            api.stop()
        await ahead.stop()
        await behind.stop()

        for final in finals:
            assert final.status is JobStatus.COMPLETED and final.attempts == 1, final
        finished_once(job_ids, ahead, behind)
        assert answers and all(answer == (200, True, 2) for answer in answers), answers


def skewed_clock(offset: str) -> dict[str, str]:
    """The environment that runs one process with its wall clock `offset` off (`+300s`), as on
    a host whose clock is wrong: Debian's libfaketime, preloaded into that process alone.
    Redis' time, which leases keep, stays true."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("libfaketime is missing: apt-get install faketime")
    # Its monotonic clock moves by the same constant, which leaves every duration as it was:
    # libfaketime 0.9.10's clock_nanosleep fails (EINVAL) under FAKETIME_DONT_FAKE_MONOTONIC.
    return {"LD_PRELOAD": str(found[0]), "FAKETIME": offset}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServerProcess]:
    require_redis_server()
    # always: the test asserts that no acknowledged write is lost, which `everysec` promises
    # only for a Redis process crash, not for a machine crash.
    server = RedisServerProcess(tmp_path / "redis", unix_socket=True, appendfsync="always")
    server.start()
    yield server
    server.stop()


async def test_every_acknowledged_submission_survives_a_redis_crash(redis_server: RedisServerProcess) -> None:
    async with open_queue(redis_server.url, max_unfinished=1_000_000) as queue:
        acknowledged: list[str] = []
        refused = 0
        stop = asyncio.Event()

        async def submit_stream(stream: int) -> None:
            nonlocal refused
            for index in range(1_000_000):
                if stop.is_set():
                    return
                job_id = f"s{stream}-{index}"
                try:
                    await queue.queue.submit(job(job_id, "print(1)"))
                except StorageUnavailable:
                    refused += 1
                    await asyncio.sleep(0.02)
                else:
                    acknowledged.append(job_id)

        streams = [asyncio.create_task(submit_stream(stream)) for stream in range(4)]
        await eventually(_at_least(acknowledged, 300), what="submissions before the crash")
        await asyncio.to_thread(redis_server.kill)
        before_restart = len(acknowledged)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(redis_server.start)
        # The same clients carry on by themselves once Redis is back.
        await eventually(_at_least(acknowledged, before_restart + 300), what="submissions after the restart")
        stop.set()
        await within(10, "the submission streams to stop", asyncio.gather(*streams))

        assert refused > 0, "Redis was never seen down"
        in_line = cast(list[bytes], await queue.client.lrange(queue.keys.line("python"), 0, -1))
        pending = {job_id.decode() for job_id in in_line}
        assert not set(acknowledged) - pending, "acknowledged submissions lost"
        for job_id in acknowledged[:: max(len(acknowledged) // 50, 1)]:
            record = await queue.store.get(job_id)
            assert record is not None and record.status is JobStatus.PENDING


async def test_a_reader_waiting_across_a_redis_restart_still_sees_the_job_finish(
    redis_server: RedisServerProcess,
) -> None:
    async with open_queue(redis_server.url) as queue:
        await queue.queue.submit(job("job-a", "print(1)"))
        lease = await queue.queue.claim("w1", 60_000, 1)
        assert lease is not None
        waiting = asyncio.create_task(queue.store.wait_finished("job-a", 20))
        await asyncio.sleep(0.2)

        await asyncio.to_thread(redis_server.kill)
        await asyncio.to_thread(redis_server.start)  # the lease survived in the AOF
        final = jobs.complete(lease.job, RunResult(verdict=Verdict.OK, exit_code=0), SystemClock().now())
        assert await queue.queue.finish(lease, final)

        # The store reads a job without its inputs (core's without_inputs).
        assert await within(10, "the waiting reader to see job-a finish", waiting) == jobs.without_inputs(final)


async def test_a_finish_published_while_the_reader_was_disconnected_still_wakes_it(
    redis_server: RedisServerProcess,  # its own: it cuts every subscriber of the server
) -> None:
    async with open_queue(redis_server.url) as queue:
        await queue.queue.submit(job("job-a", "print(1)"))
        lease = await queue.queue.claim("w1", 60_000, 1)
        assert lease is not None
        waiting = asyncio.create_task(queue.store.wait_finished("job-a", 20))
        await asyncio.sleep(0.2)

        # One pipeline, run in order by Redis: the subscription is cut, then the job finishes
        # and its notification goes to nobody. Only the wake-up on resubscribing can save it.
        final = jobs.complete(lease.job, RunResult(verdict=Verdict.OK, exit_code=0), SystemClock().now())
        keys = queue.keys
        async with queue.client.pipeline(transaction=False) as pipe:
            pipe.client_kill_filter(_type="pubsub", skipme=True)
            pipe.eval(
                FINISH, 4, keys.job("job-a"), keys.processing, keys.leases, keys.reserved,
                "job-a", lease.token, keys.finished, queue.settings.finished_ttl_s * 1000, "",
                *progress_fields(final),
            )  # fmt: skip
            killed, written = await pipe.execute()
        assert killed >= 1 and written == 1

        assert await within(10, "the waiting reader to see job-a finish", waiting) == jobs.without_inputs(final)


async def test_the_adapters_report_redis_down_and_carry_on_when_it_returns(
    redis_server: RedisServerProcess,
) -> None:
    async with open_queue(redis_server.url) as queue:
        registry = queue.registry
        await queue.queue.submit(job("job-a", "print(1)"))
        await asyncio.to_thread(redis_server.kill)

        for call in (
            queue.queue.submit(job("job-b", "print(2)")),
            queue.queue.claim("w1", LEASE_MS, 0.2),
            queue.queue.recover(3),
            queue.store.get("job-a"),
            queue.store.wait_finished("job-a", 0.2),
            registry.live_workers(),
        ):
            with pytest.raises(StorageUnavailable):
                await call

        await asyncio.to_thread(redis_server.start)
        lease = await queue.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None and lease.job.id == "job-a"
        assert await queue.store.get("job-b") is None  # refused while down: never written


async def test_the_durability_check_refuses_a_redis_that_can_lose_jobs_unless_accepted(tmp_path: Path) -> None:
    require_redis_server()
    with RedisServerProcess(tmp_path, unix_socket=True, appendonly=False, maxmemory_policy="allkeys-lru") as server:
        client = connect(server.url)
        try:
            with pytest.raises(RedisCanLoseJobs, match="appendonly.*maxmemory-policy"):
                await check_durability(client)
            accepted = await check_durability(client, accept_data_loss=True)
        finally:
            await client.aclose()
    assert accepted.appendonly == "no" and accepted.maxmemory_policy == "allkeys-lru"
    assert accepted.appendfsync == "everysec"
    [appendonly, policy] = accepted.accepted_risks()
    assert "CORRAL_REDIS_ACCEPT_DATA_LOSS" in appendonly and "appendonly" in appendonly
    assert "maxmemory-policy" in policy


def _at_least(items: list[str], count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(items) >= count

    return check


async def _said(worker: WorkerProcess, *phrases: str) -> bool:
    text = worker.log()
    return any(phrase in text for phrase in phrases)


async def _all_of(found: Awaitable[list[str]], count: int) -> list[str] | None:
    items = await found
    return items if len(items) >= count else None


async def _holds_duty(queue: Queue, worker_id: str) -> bool:
    holder = cast(bytes | None, await queue.client.hget(queue.keys.duty("recovery"), "holder"))
    return holder == worker_id.encode()


async def _readiness_while(url: str, step: Awaitable[T]) -> tuple[T, list[tuple[int, bool, int]]]:
    """`step`'s outcome, and every /readyz answer (status, ready, live workers) meanwhile."""
    answers: list[tuple[int, bool, int]] = []
    task = asyncio.ensure_future(step)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        while not task.done():
            response = await http.get("/readyz")
            body = response.json()
            answers.append((response.status_code, body["ready"], body["live_workers"]))
            await asyncio.wait({task}, timeout=0.2)
    return task.result(), answers
