"""The Redis queue under real faults: workers killed or frozen mid-job, Redis killed mid-stream.

Real redis-server, real worker processes (corral_testbed.queue_worker), real signals. Each test
checks that no accepted job is lost and that every job got exactly one final result: workers
print `finished <id>` only for results the queue accepted, so the ids printed across all
workers must be the submitted ids, each once.

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
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import pytest
from redis.asyncio import Redis

from corral_contract.queue import new_job
from corral_core import job as jobs
from corral_core.job import Job, JobStatus, RunResult, Verdict
from corral_core.ports import StorageUnavailable
from corral_core.usecases import RecoverAbandonedJobs
from corral_redis import (
    QueueKeys,
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
from corral_testbed import queue_worker
from corral_testbed.redis_server import RedisServerProcess, require_redis_server

T = TypeVar("T")

log = logging.getLogger(__name__)

# Under load (the whole suite on 2 cores) a test here takes seconds; a minute means it hangs.
TEST_TIMEOUT_S = 60
pytestmark = pytest.mark.timeout(TEST_TIMEOUT_S)
# Where every task waits goes to the log this long before pytest-timeout fails the test.
STUCK_REPORT_S = TEST_TIMEOUT_S - 8
# How long the jobs of one test may take to finish, all together.
FINISH_TIMEOUT_S = 30

LEASE_MS = 1_000
# The in-memory sandbox runs jobs inside the worker process: its pid says which worker ran it.
PRINT_WORKER_PID = "import os, time\ntime.sleep(0.3)\nprint(os.getpid())"


def job(job_id: str, code: str) -> Job:
    return new_job(SystemClock(), job_id, code)


@dataclass
class Queue:
    client: Redis
    settings: RedisSettings
    queue: RedisJobQueue
    store: RedisJobStore

    @property
    def keys(self) -> QueueKeys:
        return QueueKeys(self.settings.key_prefix)

    async def leftovers(self) -> dict[str, int]:
        keys = self.keys
        return {
            "pending": await self.client.llen(keys.pending),
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
    def __init__(self, url: str, prefix: str, worker_id: str, logs: Path, *flags: str) -> None:
        self.worker_id = worker_id
        self.stdout_path = logs / f"{worker_id}.out"
        self.stderr_path = logs / f"{worker_id}.err"
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, queue_worker.__file__, url, prefix, worker_id, *flags],
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                stdout=stdout,
                stderr=stderr,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.stdout_path.read_text()

    def errors(self) -> str:
        return self.stderr_path.read_text()

    def finished(self) -> list[str]:
        return [line.split()[1] for line in self.output().splitlines() if line.startswith("finished ")]

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    async def stop(self, timeout_s: float = 10) -> None:
        """SIGTERM, as a worker is stopped. Once it has exited, its output is complete: it may
        print `finished <id>` a moment after the queue accepted the result."""
        self.signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.worker_id} still runs {timeout_s:g} s after SIGTERM; its stderr:\n{self.errors()}"
            ) from None


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        with contextlib.suppress(ProcessLookupError):
            worker.signal(signal.SIGCONT)
        worker.end()


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(workers: list[WorkerProcess], tmp_path: Path) -> StartWorker:
    def start(queue: Queue, url: str, worker_id: str, *flags: str) -> WorkerProcess:
        worker = WorkerProcess(url, queue.settings.key_prefix, worker_id, tmp_path, *flags)
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


@contextlib.asynccontextmanager
async def recovering(queue: Queue) -> AsyncIterator[None]:
    """Recovery as a worker runs it: every 100 ms, up to 3 attempts per job."""
    recover = RecoverAbandonedJobs(queue.queue, max_attempts=3)

    async def loop() -> None:
        while True:
            await recover()
            await asyncio.sleep(0.1)

    task = asyncio.create_task(loop(), name="recovery loop")
    try:
        yield
    finally:
        task.cancel()
        # A recovery loop that swallowed its cancellation (redis-py under Python 3.11 did,
        # see corral_redis.connection) used to hang the test here until its timeout.
        with contextlib.suppress(asyncio.CancelledError):
            await within(10, "the recovery loop to end after its cancellation", task)


async def eventually(check: Callable[[], Awaitable[T | None]], timeout_s: float = 10.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := await check():
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def running_job(queue: Queue, job_ids: list[str]) -> str | None:
    for job_id in job_ids:
        record = await queue.store.get(job_id)
        if record is not None and record.status is JobStatus.RUNNING:
            return job_id
    return None


async def test_a_killed_workers_job_is_run_again_and_every_job_finishes_once(
    redis_url: str,
    start_worker: StartWorker,
) -> None:
    async with open_queue(redis_url) as queue:
        job_ids = [f"job-{index}" for index in range(4)]
        for job_id in job_ids:
            await queue.queue.submit(job(job_id, "import time\ntime.sleep(0.3)\nprint('done')"))
        doomed = start_worker(queue, redis_url, "doomed")
        await eventually(lambda: running_job(queue, job_ids), what="a running job")
        doomed.signal(signal.SIGKILL)
        doomed.end()
        # Asked after the kill: a loaded machine may let it finish one job and start the next
        # between the two steps above.
        victim = await running_job(queue, job_ids)

        survivor = start_worker(queue, redis_url, "survivor")
        async with recovering(queue):
            finals = await queue.finish_of(job_ids)
        await survivor.stop()

        assert sorted(doomed.finished() + survivor.finished()) == job_ids  # one accepted result each
        for final in finals:
            assert final.status is JobStatus.COMPLETED, final
            assert final.result is not None and final.result.stdout == "done\n"
            assert final.attempts == (2 if final.id == victim else 1), final
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
        await queue.queue.submit(job("job-a", PRINT_WORKER_PID))
        frozen = start_worker(queue, redis_url, "frozen")
        await eventually(lambda: running_job(queue, ["job-a"]), what="job-a running")
        frozen.signal(signal.SIGSTOP)

        rescuer = start_worker(queue, redis_url, "rescuer")
        async with recovering(queue):
            [final] = await queue.finish_of(["job-a"])
        frozen.signal(signal.SIGCONT)
        # Whichever it notices first, the lost lease or the refused result, it must give up.
        await eventually(lambda: _said(frozen, "lost the lease", "result refused"), what="the frozen worker to give up")
        await frozen.stop()
        await rescuer.stop()

        assert final.status is JobStatus.COMPLETED
        assert final.attempts == 2
        assert final.result is not None and final.result.stdout == f"{rescuer.pid}\n"
        assert await queue.store.get("job-a") == final  # the frozen worker changed nothing
        assert frozen.finished() == [] and rescuer.finished() == ["job-a"]
        assert await queue.leftovers() == {"pending": 0, "processing": 0, "leases": 0}


async def test_a_result_stored_after_the_lease_was_lost_is_refused(
    redis_url: str,
    start_worker: StartWorker,
) -> None:
    async with open_queue(redis_url) as queue:
        await queue.queue.submit(job("job-a", PRINT_WORKER_PID))
        # It runs the job, then freezes itself just before storing the result.
        frozen = start_worker(queue, redis_url, "frozen", "--stall-before-finish")
        await eventually(lambda: _stopped(frozen), what="the worker to freeze before finishing")

        rescuer = start_worker(queue, redis_url, "rescuer")
        async with recovering(queue):
            [final] = await queue.finish_of(["job-a"])
        frozen.signal(signal.SIGCONT)
        await eventually(lambda: _said(frozen, "result refused"), what="the late result to be refused")
        await frozen.stop()
        await rescuer.stop()

        assert final.status is JobStatus.COMPLETED and final.attempts == 2
        assert final.result is not None and final.result.stdout == f"{rescuer.pid}\n"
        assert await queue.store.get("job-a") == final
        assert "stalling job-a" in frozen.output()
        assert frozen.finished() == [] and rescuer.finished() == ["job-a"]


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
        in_line = cast(list[bytes], await queue.client.lrange(queue.keys.pending, 0, -1))
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

        assert await within(10, "the waiting reader to see job-a finish", waiting) == final


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
                FINISH, 3, keys.job("job-a"), keys.processing, keys.leases,
                "job-a", lease.token, keys.finished, queue.settings.finished_ttl_s * 1000, "",
                *progress_fields(final),
            )  # fmt: skip
            killed, written = await pipe.execute()
        assert killed >= 1 and written == 1

        assert await within(10, "the waiting reader to see job-a finish", waiting) == final


async def test_the_adapters_report_redis_down_and_carry_on_when_it_returns(
    redis_server: RedisServerProcess,
) -> None:
    async with open_queue(redis_server.url) as queue:
        registry = RedisWorkerRegistry(queue.client, SystemClock(), queue.settings)
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


async def test_the_durability_check_warns_about_a_redis_that_can_lose_jobs(tmp_path: Path) -> None:
    require_redis_server()
    with RedisServerProcess(tmp_path, unix_socket=True, appendonly=False, maxmemory_policy="allkeys-lru") as server:
        client = connect(server.url)
        try:
            warnings = await check_durability(client)
        finally:
            await client.aclose()
    assert len(warnings) == 2
    assert "appendonly" in warnings[0] and "maxmemory-policy" in warnings[1]


def _at_least(items: list[str], count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(items) >= count

    return check


async def _stopped(worker: WorkerProcess) -> bool:
    # The state letter follows the parenthesised command name in /proc/<pid>/stat.
    stat = Path(f"/proc/{worker.pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "T"


async def _said(worker: WorkerProcess, *phrases: str) -> bool:
    errors = worker.errors()
    return any(phrase in errors for phrase in phrases)
