"""The JobQueue, JobStore, JobCanceller and CancelNotices contract: leases, fencing, recovery,
waiting, cancelling.

Bind it with a fixture `harness` that yields a `QueueHarness` whose queue, store, canceller and
notices share one backing state, whose queue holds at most `QUEUE_LIMIT` unfinished jobs, whose adapters stamp
the times users read (started_at, finished_at) from `harness.clock` (a ManualClock), and whose
`elapse(ms)` makes that much time pass for the leases.

Lease expiry follows whatever clock the adapter keeps its deadlines on: the injected clock for
the in-memory adapter (elapse advances it), Redis' own clock for the Redis adapter, whose
binding moves every stored deadline back instead (so the suite never sleeps). Either way the
suite sees the same thing: `ms` later, leases that had less than `ms` left have expired.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from corral_contract.clock import ManualClock
from corral_core import job as jobs
from corral_core.job import (
    CompileResult,
    ErrorCode,
    InputFile,
    Job,
    JobError,
    JobStatus,
    ReturnedFile,
    RunRequest,
    RunResult,
    Verdict,
)
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import (
    CancelNotices,
    Clock,
    JobCanceller,
    JobEraser,
    JobQueue,
    JobStore,
    Lease,
    QueueDepth,
    QueueFull,
    QueueGauge,
    RecoveryReport,
)

QUEUE_LIMIT = 5
# Long enough that the real time a test takes (a loaded machine, a real Redis) never expires
# a lease the test meant to keep: only elapse() moves lease time by whole leases.
LEASE_MS = 10_000


@dataclass
class QueueHarness:
    queue: JobQueue
    store: JobStore
    clock: ManualClock
    elapse: Callable[[int], Awaitable[None]]
    gauge: QueueGauge  # the queue's depth, as /metrics reads it
    # The queue adapter usually is the canceller too. Both are needed by the cancel cases.
    canceller: JobCanceller | None = None
    notices: CancelNotices | None = None
    eraser: JobEraser | None = None

    def cancels(self) -> tuple[JobCanceller, CancelNotices]:
        assert self.canceller is not None and self.notices is not None, "bind `canceller` and `notices`"
        return self.canceller, self.notices


def new_job(clock: Clock, job_id: str, code: str = "print(1)", language: str = "python", owner: str = "") -> Job:
    """A PENDING job (Python unless told, no owner unless told) created now, under the
    server's default limits."""
    request = RunRequest(language=language, code=code, limits=DEFAULT_LIMIT_POLICY.defaults)
    return Job(id=job_id, request=request, created_at=clock.now(), owner=owner)


def ok_result(stdout: str = "1\n") -> RunResult:
    return RunResult(verdict=Verdict.OK, exit_code=0, stdout=stdout, wall_time_ms=5)


def returned(name: str, content: bytes, media_type: str = "application/octet-stream") -> ReturnedFile:
    """A file as the sandbox returns it, content and all."""
    return ReturnedFile(
        name=name, size=len(content), sha256=hashlib.sha256(content).hexdigest(), media_type=media_type, content=content
    )


# Binary with NUL and bytes that are not UTF-8, an empty file, a name below a directory.
FILES = (
    returned("plot.png", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" + bytes(range(256)), "image/png"),
    returned("empty.txt", b"", "text/plain"),
    returned("out/a.csv", b"x,y\n1,2\n", "text/csv"),
)


class JobQueueContract:
    @pytest.fixture
    def harness(self) -> QueueHarness:
        raise NotImplementedError("bind the contract: provide a `harness` fixture")

    async def test_submitted_job_is_pending_and_readable(self, harness: QueueHarness) -> None:
        job = new_job(harness.clock, "job-a", code="print('hé')")
        await harness.queue.submit(job)
        assert await harness.store.get("job-a") == jobs.without_inputs(job)

    async def test_unknown_job_reads_as_none(self, harness: QueueHarness) -> None:
        assert await harness.store.get("no-such-job") is None
        assert await harness.store.wait_finished("no-such-job", 0.05) is None

    async def test_the_worker_gets_the_inputs_and_readers_do_not(self, harness: QueueHarness) -> None:
        files = (InputFile("data.bin", b"\x00\xff"),)
        request = RunRequest(
            language="python", code="print(1)", stdin="in", files=files, limits=DEFAULT_LIMIT_POLICY.defaults
        )
        await harness.queue.submit(Job(id="job-a", request=request, created_at=harness.clock.now()))
        read = await harness.store.get("job-a")
        assert read is not None and (read.request.code, read.request.stdin, read.request.files) == ("", "", ())
        assert read.request.language == "python" and read.request.limits == DEFAULT_LIMIT_POLICY.defaults
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None and lease.job.request == request

    async def test_output_of_any_bytes_reads_back_exactly(self, harness: QueueHarness) -> None:
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        output = "\x01\x00é\ufffd\n" * 100
        result = RunResult(
            verdict=Verdict.OK,
            exit_code=0,
            stdout=output,
            stderr="\x1b[31m",
            stdout_truncated=True,
            compile_output="main.c:1: warning: \x01é\n",
            compile=CompileResult(verdict=Verdict.OK, exit_code=0, wall_time_ms=40),
        )
        final = jobs.complete(lease.job, result, harness.clock.now())
        assert await harness.queue.finish(lease, final)
        assert await harness.store.get("job-a") == jobs.without_inputs(final)

    async def _finished_with_files(self, harness: QueueHarness, job_id: str = "job-a") -> tuple[Lease, Job]:
        await harness.queue.submit(new_job(harness.clock, job_id))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None and lease.job.id == job_id
        final = jobs.complete(lease.job, RunResult(verdict=Verdict.OK, exit_code=0, files=FILES), harness.clock.now())
        assert await harness.queue.finish(lease, final)
        return lease, final

    async def test_a_finished_job_lists_its_files_without_their_content(self, harness: QueueHarness) -> None:
        _, final = await self._finished_with_files(harness)
        listed = jobs.without_inputs(jobs.without_file_contents(final))
        assert await harness.store.get("job-a") == listed
        assert await harness.store.wait_finished("job-a", 0.05) == listed
        assert listed.result is not None and [file.content for file in listed.result.files] == [b""] * len(FILES)
        assert [(file.name, file.size, file.sha256) for file in listed.result.files] == [
            (file.name, file.size, file.sha256) for file in FILES
        ]

    async def test_each_returned_file_reads_back_byte_for_byte(self, harness: QueueHarness) -> None:
        await self._finished_with_files(harness)
        for file in FILES:
            assert await harness.store.file("job-a", file.name) == file.content, file.name

    async def test_an_unknown_job_or_file_has_no_content(self, harness: QueueHarness) -> None:
        await self._finished_with_files(harness)
        assert await harness.store.file("no-such-job", "plot.png") is None
        assert await harness.store.file("job-a", "no-such-file") is None
        assert await harness.store.file("job-a", "a.csv") is None  # it is out/a.csv

    async def test_a_finish_resent_under_its_lease_keeps_its_files_once(self, harness: QueueHarness) -> None:
        lease, final = await self._finished_with_files(harness)
        # The same call again, as a worker retries a finish whose reply was lost.
        assert await harness.queue.finish(lease, final)
        read = await harness.store.get("job-a")
        assert read is not None and read.result is not None and len(read.result.files) == len(FILES)
        for file in FILES:
            assert await harness.store.file("job-a", file.name) == file.content, file.name
        other = jobs.complete(lease.job, RunResult(verdict=Verdict.OK, files=(returned("b.txt", b"b"),)), harness.clock.now())
        assert not await harness.queue.finish(lease, other)
        assert await harness.store.file("job-a", "b.txt") is None

    async def test_a_failed_or_cancelled_job_has_no_files(self, harness: QueueHarness) -> None:
        canceller, _ = harness.cancels()
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        failed = jobs.fail(lease.job, JobError(ErrorCode.SANDBOX_ERROR, "no jail"), harness.clock.now())
        assert await harness.queue.finish(lease, failed)
        await harness.queue.submit(new_job(harness.clock, "job-b"))
        running = await harness.queue.claim("w1", LEASE_MS, 1)
        assert running is not None and running.job.id == "job-b"
        assert await canceller.cancel("job-b", harness.clock.now())
        late = jobs.complete(running.job, RunResult(verdict=Verdict.OK, files=FILES), harness.clock.now())
        assert not await harness.queue.finish(running, late)
        for job_id in ("job-a", "job-b"):
            read = await harness.store.get(job_id)
            assert read is not None and read.finished and (read.result is None or read.result.files == ())
            for file in FILES:
                assert await harness.store.file(job_id, file.name) is None

    async def test_claim_marks_the_job_running_under_a_lease(self, harness: QueueHarness) -> None:
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        assert lease.worker_id == "w1"
        assert lease.job.id == "job-a"
        assert lease.job.status is JobStatus.RUNNING
        assert lease.job.attempts == 1
        assert lease.job.started_at == harness.clock.now()
        assert await harness.store.get("job-a") == jobs.without_inputs(lease.job)

    async def test_claim_on_an_empty_queue_times_out(self, harness: QueueHarness) -> None:
        started = time.monotonic()
        assert await harness.queue.claim("w1", LEASE_MS, 0.1) is None
        assert time.monotonic() - started < 2

    async def test_jobs_are_claimed_in_submission_order(self, harness: QueueHarness) -> None:
        for name in ("job-1", "job-2", "job-3"):
            await harness.queue.submit(new_job(harness.clock, name))
        claimed = []
        for _ in range(3):
            lease = await harness.queue.claim("w1", LEASE_MS, 1)
            assert lease is not None
            claimed.append(lease.job.id)
        assert claimed == ["job-1", "job-2", "job-3"]

    async def test_a_claimed_job_is_not_handed_out_again(self, harness: QueueHarness) -> None:
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        assert await harness.queue.claim("w1", LEASE_MS, 1) is not None
        assert await harness.queue.claim("w2", LEASE_MS, 0.1) is None

    async def test_a_blocked_claim_wakes_when_a_job_arrives(self, harness: QueueHarness) -> None:
        waiting = asyncio.ensure_future(harness.queue.claim("w1", LEASE_MS, 5))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        lease = await asyncio.wait_for(waiting, 5)
        assert lease is not None and lease.job.id == "job-a"
        assert time.monotonic() - started < 1

    async def test_a_blocked_claim_stamps_the_time_its_job_started_not_the_time_it_began_to_wait(
        self, harness: QueueHarness
    ) -> None:
        waiting = asyncio.ensure_future(harness.queue.claim("w1", LEASE_MS, 5, ["python"]))
        await asyncio.sleep(0.05)
        harness.clock.advance(60_000)
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        lease = await asyncio.wait_for(waiting, 5)
        assert lease is not None and lease.job.started_at == harness.clock.now()
        stored = await harness.store.get("job-a")
        assert stored is not None and stored.started_at == harness.clock.now()

    @pytest.mark.parametrize("put_back", ["released", "recovered"])
    async def test_a_blocked_claim_stamps_a_job_put_back_in_line_with_the_time_it_took_it(
        self, harness: QueueHarness, put_back: str
    ) -> None:
        # The job was created before the claim began to wait: neither time is when it started.
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        first = await harness.queue.claim("w1", LEASE_MS, 1, ["python"])
        assert first is not None
        waiting = asyncio.ensure_future(harness.queue.claim("w2", LEASE_MS, 5, ["python"]))
        await asyncio.sleep(0.05)
        if put_back == "released":
            harness.clock.advance(60_000)
            assert await harness.queue.release(first)
        else:
            await harness.elapse(LEASE_MS + 60_000)
            assert (await harness.queue.recover(max_attempts=3)).requeued == ("job-a",)
        lease = await asyncio.wait_for(waiting, 5)
        assert lease is not None and lease.job.id == "job-a" and lease.job.started_at == harness.clock.now()
        stored = await harness.store.get("job-a")
        assert stored is not None and stored.started_at == harness.clock.now()

    async def test_finish_stores_the_final_job(self, harness: QueueHarness) -> None:
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        final = jobs.complete(lease.job, ok_result(), harness.clock.now())
        assert await harness.queue.finish(lease, final)
        assert await harness.store.get("job-a") == jobs.without_inputs(final)
        assert await harness.store.wait_finished("job-a", 0.05) == jobs.without_inputs(final)

    async def test_finish_refuses_a_job_that_is_not_final(self, harness: QueueHarness) -> None:
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        with pytest.raises(ValueError):
            await harness.queue.finish(lease, lease.job)

    async def test_a_finished_job_cannot_be_finished_again(self, harness: QueueHarness) -> None:
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        first = jobs.complete(lease.job, ok_result("first\n"), harness.clock.now())
        assert await harness.queue.finish(lease, first)
        second = jobs.complete(lease.job, ok_result("second\n"), harness.clock.now())
        assert not await harness.queue.finish(lease, second)
        assert await harness.store.get("job-a") == jobs.without_inputs(first)

    async def test_recover_leaves_live_leases_alone(self, harness: QueueHarness) -> None:
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        await harness.elapse(LEASE_MS // 2)
        report = await harness.queue.recover(max_attempts=3)
        assert report.requeued == () and report.failed == ()
        assert (await harness.store.get("job-a")).status is JobStatus.RUNNING  # type: ignore[union-attr]

    async def test_renewal_keeps_a_lease_past_its_first_deadline(self, harness: QueueHarness) -> None:
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        await harness.elapse(LEASE_MS * 3 // 4)
        assert await harness.queue.renew(lease, LEASE_MS)
        await harness.elapse(LEASE_MS * 3 // 4)
        assert (await harness.queue.recover(max_attempts=3)).requeued == ()
        final = jobs.complete(lease.job, ok_result(), harness.clock.now())
        assert await harness.queue.finish(lease, final)

    async def test_expired_lease_is_requeued_and_the_late_result_refused(
        self, harness: QueueHarness
    ) -> None:
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        stalled = await harness.queue.claim("w1", LEASE_MS, 1)
        assert stalled is not None
        await harness.elapse(LEASE_MS + 1)
        report = await harness.queue.recover(max_attempts=3)
        assert report.requeued == ("job-a",)
        requeued = await harness.store.get("job-a")
        assert requeued is not None and requeued.status is JobStatus.PENDING

        fresh = await harness.queue.claim("w2", LEASE_MS, 1)
        assert fresh is not None
        assert fresh.token > stalled.token
        assert fresh.job.attempts == 2
        assert not await harness.queue.renew(stalled, LEASE_MS)

        late = jobs.complete(stalled.job, ok_result("late\n"), harness.clock.now())
        assert not await harness.queue.finish(stalled, late)
        final = jobs.complete(fresh.job, ok_result("fresh\n"), harness.clock.now())
        assert await harness.queue.finish(fresh, final)
        assert not await harness.queue.finish(stalled, late)
        stored = await harness.store.get("job-a")
        assert stored is not None and stored.result is not None
        assert stored.result.stdout == "fresh\n"

    async def test_job_fails_as_worker_lost_after_max_attempts(self, harness: QueueHarness) -> None:
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        for attempt in (1, 2):
            lease = await harness.queue.claim(f"w{attempt}", LEASE_MS, 1)
            assert lease is not None and lease.job.attempts == attempt
            await harness.elapse(LEASE_MS + 1)
            report = await harness.queue.recover(max_attempts=2)
        assert report.failed == ("job-a",)
        assert lease is not None
        failed = await harness.store.wait_finished("job-a", 0.05)
        assert failed is not None and failed.status is JobStatus.FAILED
        assert failed.error is not None and failed.error.code is ErrorCode.WORKER_LOST
        assert "worker lost" in failed.error.message
        assert failed.finished_at is not None
        assert await harness.queue.claim("w3", LEASE_MS, 0.1) is None
        late = jobs.complete(lease.job, ok_result(), harness.clock.now())
        assert not await harness.queue.finish(lease, late)

    async def test_released_job_goes_back_to_the_front_uncounted(self, harness: QueueHarness) -> None:
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        await harness.queue.submit(new_job(harness.clock, "job-b"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None and lease.job.id == "job-a"
        assert await harness.queue.release(lease)
        released = await harness.store.get("job-a")
        assert released is not None
        assert released.status is JobStatus.PENDING and released.attempts == 0
        again = await harness.queue.claim("w2", LEASE_MS, 1)
        assert again is not None and again.job.id == "job-a" and again.job.attempts == 1
        assert not await harness.queue.release(lease)

    async def test_a_full_queue_refuses_and_stores_nothing(self, harness: QueueHarness) -> None:
        for index in range(QUEUE_LIMIT):
            await harness.queue.submit(new_job(harness.clock, f"job-{index}"))
        with pytest.raises(QueueFull):
            await harness.queue.submit(new_job(harness.clock, "job-over"))
        assert await harness.store.get("job-over") is None
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        final = jobs.complete(lease.job, ok_result(), harness.clock.now())
        assert await harness.queue.finish(lease, final)
        await harness.queue.submit(new_job(harness.clock, "job-over"))

    async def test_waiting_reader_wakes_when_the_job_finishes(self, harness: QueueHarness) -> None:
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        waiting = asyncio.ensure_future(harness.store.wait_finished("job-a", 10))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        await asyncio.sleep(0.05)
        assert not waiting.done()
        started = time.monotonic()
        final = jobs.complete(lease.job, ok_result(), harness.clock.now())
        assert await harness.queue.finish(lease, final)
        assert await asyncio.wait_for(waiting, 10) == jobs.without_inputs(final)
        assert time.monotonic() - started < 1

    async def test_its_submitter_gets_a_job_that_finished_before_it_began_to_wait(self, harness: QueueHarness) -> None:
        # As the API waits for the job it has just submitted: told when it submitted it.
        listening = asyncio.ensure_future(harness.store.wait_finished("no-such-job", 10))
        await asyncio.sleep(0.1)
        submitted_s = asyncio.get_running_loop().time()
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        await harness.queue.submit(new_job(harness.clock, "job-b"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None and lease.job.id == "job-a"
        final = jobs.complete(lease.job, ok_result(), harness.clock.now())
        assert await harness.queue.finish(lease, final)
        await asyncio.sleep(0.1)  # its notification has come before the wait
        started = time.monotonic()
        assert await harness.store.wait_finished("job-a", 10, submitted_s) == jobs.without_inputs(final)
        assert time.monotonic() - started < 1
        waiting = asyncio.ensure_future(harness.store.wait_finished("job-b", 10, submitted_s))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None and lease.job.id == "job-b"
        final = jobs.complete(lease.job, ok_result(), harness.clock.now())
        assert await harness.queue.finish(lease, final)
        assert await asyncio.wait_for(waiting, 10) == jobs.without_inputs(final)
        timed_out = harness.store.wait_finished("job-c", 0.2, asyncio.get_running_loop().time())
        await harness.queue.submit(new_job(harness.clock, "job-c"))
        as_it_stands = await timed_out
        assert as_it_stands is not None and as_it_stands.status is JobStatus.PENDING
        listening.cancel()

    async def test_waiting_reader_gets_the_unfinished_job_after_its_timeout(
        self, harness: QueueHarness
    ) -> None:
        job = new_job(harness.clock, "job-a")
        await harness.queue.submit(job)
        started = time.monotonic()
        assert await harness.store.wait_finished("job-a", 0.2) == jobs.without_inputs(job)
        assert 0.15 <= time.monotonic() - started < 2

    async def test_a_worker_claims_only_the_languages_it_offers(self, harness: QueueHarness) -> None:
        await harness.queue.submit(new_job(harness.clock, "job-java", language="java"))
        await harness.queue.submit(new_job(harness.clock, "job-py"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1, ["python"])
        assert lease is not None and lease.job.id == "job-py"
        assert await harness.queue.claim("w1", LEASE_MS, 0.1, ["python", "c"]) is None
        lease = await harness.queue.claim("w2", LEASE_MS, 1, ["java"])
        assert lease is not None and lease.job.id == "job-java"

    async def test_a_flood_of_one_language_does_not_starve_another(self, harness: QueueHarness) -> None:
        for index in range(QUEUE_LIMIT - 1):
            await harness.queue.submit(new_job(harness.clock, f"java-{index}", language="java"))
        await harness.queue.submit(new_job(harness.clock, "py"))
        first_two = []
        for _ in range(2):
            lease = await harness.queue.claim("w1", LEASE_MS, 1, ["java", "python"])
            assert lease is not None
            first_two.append(lease.job.id)
        assert "py" in first_two and any(job_id.startswith("java-") for job_id in first_two)

    async def test_a_blocked_claim_wakes_only_for_its_languages(self, harness: QueueHarness) -> None:
        waiting = asyncio.ensure_future(harness.queue.claim("w1", LEASE_MS, 5, ["python"]))
        await asyncio.sleep(0.05)
        await harness.queue.submit(new_job(harness.clock, "job-java", language="java"))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        started = time.monotonic()
        await harness.queue.submit(new_job(harness.clock, "job-py"))
        lease = await asyncio.wait_for(waiting, 5)
        assert lease is not None and lease.job.id == "job-py"
        assert time.monotonic() - started < 1

    async def test_a_released_or_recovered_job_goes_back_to_its_own_language(
        self, harness: QueueHarness
    ) -> None:
        await harness.queue.submit(new_job(harness.clock, "job-java", language="java"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1, ["java"])
        assert lease is not None and await harness.queue.release(lease)
        assert await harness.queue.claim("w2", LEASE_MS, 0.1, ["python"]) is None
        lease = await harness.queue.claim("w2", LEASE_MS, 1, ["java"])
        assert lease is not None and lease.job.id == "job-java"
        await harness.elapse(LEASE_MS + 1)
        assert (await harness.queue.recover(max_attempts=3)).requeued == ("job-java",)
        assert await harness.queue.claim("w3", LEASE_MS, 0.1, ["python"]) is None
        lease = await harness.queue.claim("w3", LEASE_MS, 1, ["java"])
        assert lease is not None and lease.job.id == "job-java"

    async def test_the_size_limit_counts_every_language(self, harness: QueueHarness) -> None:
        for index in range(QUEUE_LIMIT):
            language = "java" if index % 2 else "python"
            await harness.queue.submit(new_job(harness.clock, f"job-{index}", language=language))
        with pytest.raises(QueueFull):
            await harness.queue.submit(new_job(harness.clock, "job-over", language="c"))

    async def test_many_concurrent_claims_share_jobs_without_duplicates(
        self, harness: QueueHarness
    ) -> None:
        for index in range(QUEUE_LIMIT):
            await harness.queue.submit(new_job(harness.clock, f"job-{index}"))
        leases = await asyncio.gather(
            *(harness.queue.claim(f"w{index}", LEASE_MS, 0.3) for index in range(QUEUE_LIMIT + 3))
        )
        claimed = [lease.job.id for lease in leases if lease is not None]
        assert sorted(claimed) == sorted(f"job-{index}" for index in range(QUEUE_LIMIT))

    async def test_a_cancelled_pending_job_is_never_handed_out(self, harness: QueueHarness) -> None:
        canceller, _ = harness.cancels()
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        await harness.queue.submit(new_job(harness.clock, "job-b"))
        harness.clock.advance(5)
        assert await canceller.cancel("job-a", harness.clock.now())
        cancelled = await harness.store.get("job-a")
        assert cancelled is not None and cancelled.status is JobStatus.CANCELLED and cancelled.finished
        assert cancelled.finished_at == harness.clock.now() and cancelled.started_at is None
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None and lease.job.id == "job-b"
        assert await harness.queue.claim("w1", LEASE_MS, 0.1) is None
        assert (await harness.store.get("job-a")).status is JobStatus.CANCELLED  # type: ignore[union-attr]

    async def test_a_cancelled_running_job_refuses_its_worker_s_renewal_result_and_release(
        self, harness: QueueHarness
    ) -> None:
        canceller, _ = harness.cancels()
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        assert await canceller.cancel("job-a", harness.clock.now())
        assert not await harness.queue.renew(lease, LEASE_MS)
        assert not await harness.queue.finish(lease, jobs.complete(lease.job, ok_result(), harness.clock.now()))
        assert not await harness.queue.release(lease)
        await harness.elapse(LEASE_MS + 1)
        assert await harness.queue.recover(max_attempts=1) == RecoveryReport()
        assert await harness.queue.claim("w2", LEASE_MS, 0.1) is None
        cancelled = await harness.store.get("job-a")
        assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
        assert cancelled.result is None and cancelled.attempts == 1 and cancelled.started_at is not None

    async def test_a_finished_or_unknown_job_is_not_cancelled(self, harness: QueueHarness) -> None:
        canceller, _ = harness.cancels()
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        final = jobs.complete(lease.job, ok_result(), harness.clock.now())
        assert await harness.queue.finish(lease, final)
        harness.clock.advance(5)
        assert not await canceller.cancel("job-a", harness.clock.now())
        assert await harness.store.get("job-a") == jobs.without_inputs(final)
        assert not await canceller.cancel("no-such-job", harness.clock.now())
        await harness.queue.submit(new_job(harness.clock, "job-b"))
        assert await canceller.cancel("job-b", harness.clock.now())
        harness.clock.advance(5)
        assert not await canceller.cancel("job-b", harness.clock.now())  # once cancelled, done

    async def test_a_finished_job_is_erased_with_its_files_and_only_once(self, harness: QueueHarness) -> None:
        assert harness.eraser is not None, "bind `eraser`"
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        assert await harness.queue.finish(lease, jobs.complete(lease.job, RunResult(verdict=Verdict.OK, files=FILES), harness.clock.now()))
        assert await harness.eraser.erase("job-a")
        assert await harness.store.get("job-a") is None
        assert await harness.store.file("job-a", FILES[0].name) is None
        assert not await harness.eraser.erase("job-a")  # once erased, gone
        assert not await harness.eraser.erase("no-such-job")

    async def test_a_pending_or_running_job_is_not_erased(self, harness: QueueHarness) -> None:
        assert harness.eraser is not None, "bind `eraser`"
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        assert not await harness.eraser.erase("job-a")
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        assert not await harness.eraser.erase("job-a")
        running = await harness.store.get("job-a")
        assert running is not None and running.status is JobStatus.RUNNING
        # Its worker's result is still taken: nothing of the job was removed under it.
        assert await harness.queue.finish(lease, jobs.complete(lease.job, ok_result(), harness.clock.now()))
        assert await harness.eraser.erase("job-a")

    async def test_a_cancel_wakes_waiting_readers_and_the_worker_s_notice(self, harness: QueueHarness) -> None:
        canceller, notices = harness.cancels()
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        await harness.queue.submit(new_job(harness.clock, "job-b"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None and lease.job.id == "job-a"
        reader = asyncio.ensure_future(harness.store.wait_finished("job-a", 10))
        notice = asyncio.ensure_future(notices.wait_cancelled("job-a"))
        bystander = asyncio.ensure_future(notices.wait_cancelled("job-b"))
        await asyncio.sleep(0.1)
        assert not reader.done() and not notice.done()
        started = time.monotonic()
        assert await canceller.cancel("job-a", harness.clock.now())
        await asyncio.wait_for(notice, 5)
        woken = await asyncio.wait_for(reader, 5)
        assert time.monotonic() - started < 1
        assert woken is not None and woken.status is JobStatus.CANCELLED
        await asyncio.sleep(0.1)
        assert not bystander.done()  # another job's cancel is no notice for it
        bystander.cancel()

    async def test_a_notice_for_a_job_cancelled_before_the_wait_comes_at_once(self, harness: QueueHarness) -> None:
        canceller, notices = harness.cancels()
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        assert await canceller.cancel("job-a", harness.clock.now())
        await asyncio.wait_for(notices.wait_cancelled("job-a"), 5)

    async def test_a_job_cancelled_between_its_claim_and_the_wait_is_noticed(self, harness: QueueHarness) -> None:
        # As a worker waits: told when it claimed the job, with notices heard all along since.
        canceller, notices = harness.cancels()
        listening = asyncio.ensure_future(notices.wait_cancelled("no-such-job"))
        await asyncio.sleep(0.1)
        await harness.queue.submit(new_job(harness.clock, "job-a"))
        await harness.queue.submit(new_job(harness.clock, "job-b"))
        claimed_s = asyncio.get_running_loop().time()
        leases = [await harness.queue.claim("w1", LEASE_MS, 1) for _ in range(2)]
        assert [lease.job.id for lease in leases if lease is not None] == ["job-a", "job-b"]
        assert await canceller.cancel("job-a", harness.clock.now())
        await asyncio.sleep(0.1)  # the notice has come before the wait
        await asyncio.wait_for(notices.wait_cancelled("job-a", claimed_s), 5)
        bystander = asyncio.ensure_future(notices.wait_cancelled("job-b", claimed_s))
        await asyncio.sleep(0.1)
        assert not bystander.done()
        assert await canceller.cancel("job-b", harness.clock.now())
        await asyncio.wait_for(bystander, 5)
        listening.cancel()

    async def _claim_ids(self, harness: QueueHarness, count: int) -> list[str]:
        claimed = []
        for index in range(count):
            lease = await harness.queue.claim(f"w{index}", LEASE_MS, 1)
            assert lease is not None
            claimed.append(lease.job.id)
        return claimed

    async def test_owners_take_turns_so_a_busy_one_does_not_starve_another(self, harness: QueueHarness) -> None:
        for index in range(3):
            await harness.queue.submit(new_job(harness.clock, f"big-{index}", owner="big"))
        for index in range(2):
            await harness.queue.submit(new_job(harness.clock, f"small-{index}", owner="small"))
        assert await self._claim_ids(harness, 5) == ["big-0", "small-0", "big-1", "small-1", "big-2"]

    async def test_jobs_without_an_owner_take_turns_as_one_owner(self, harness: QueueHarness) -> None:
        for index in range(3):
            await harness.queue.submit(new_job(harness.clock, f"anon-{index}"))
        await harness.queue.submit(new_job(harness.clock, "keyed-0", owner="key"))
        await harness.queue.submit(new_job(harness.clock, "keyed-1", owner="key"))
        assert await self._claim_ids(harness, 5) == ["anon-0", "keyed-0", "anon-1", "keyed-1", "anon-2"]

    async def test_a_released_job_is_next_of_its_owner_and_keeps_the_turns(self, harness: QueueHarness) -> None:
        for index in range(2):
            await harness.queue.submit(new_job(harness.clock, f"big-{index}", owner="big"))
        await harness.queue.submit(new_job(harness.clock, "small-0", owner="small"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None and lease.job.id == "big-0"
        assert await harness.queue.release(lease)
        assert await self._claim_ids(harness, 3) == ["small-0", "big-0", "big-1"]

    async def test_a_recovered_job_goes_back_to_its_owner_s_line(self, harness: QueueHarness) -> None:
        await harness.queue.submit(new_job(harness.clock, "solo-0", owner="solo"))
        lease = await harness.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        await harness.queue.submit(new_job(harness.clock, "other-0", owner="other"))
        await harness.elapse(LEASE_MS + 1)
        assert (await harness.queue.recover(max_attempts=3)).requeued == ("solo-0",)
        assert await self._claim_ids(harness, 2) == ["other-0", "solo-0"]
        assert await harness.queue.claim("w9", LEASE_MS, 0.1) is None

    async def test_depth_and_the_size_limit_count_every_owner_s_jobs(self, harness: QueueHarness) -> None:
        owners = ["a", "b", "", "a", "c"]
        for index, owner in enumerate(owners):
            await harness.queue.submit(new_job(harness.clock, f"job-{index}", owner=owner))
        assert await harness.gauge.depth() == QueueDepth(pending=QUEUE_LIMIT, unfinished=QUEUE_LIMIT)
        with pytest.raises(QueueFull):
            await harness.queue.submit(new_job(harness.clock, "job-over", owner="d"))
        assert await harness.queue.claim("w1", LEASE_MS, 1) is not None
        assert await harness.gauge.depth() == QueueDepth(pending=QUEUE_LIMIT - 1, unfinished=QUEUE_LIMIT)
