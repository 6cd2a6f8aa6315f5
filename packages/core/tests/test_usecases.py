"""The use cases, composed with the in-memory adapters (verified by the contract suites)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

import pytest

from corral_contract.clock import ManualClock
from corral_core.access import ANONYMOUS, Caller
from corral_core.events import EventKind, InputChunk, JobEvent
from corral_core.job import ErrorCode, InputFile, Job, JobStatus, RunRequest, RunResult, StdinMode, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY, InvalidSubmission, LimitAboveMaximum, LimitRequest, SizePolicy
from corral_core.ports import (
    JobQueue,
    Lease,
    QueueFull,
    RecoveryReport,
    Runtime,
    Sandbox,
    SandboxError,
    StorageUnavailable,
)
from corral_core.submission import JobRequest, SubmitJob
from corral_core.usecases import (
    CancelJob,
    DeleteJob,
    GetJob,
    JobAlreadyFinished,
    JobNotFound,
    JobUnfinished,
    RecoverAbandonedJobs,
    RunNextJob,
)
from corral_memory.jobs import InMemoryCancelNotices, InMemoryJobQueue, InMemoryJobs, InMemoryJobStore
from corral_memory.runtimes import InMemoryRuntimeCatalog
from corral_memory.sandbox import InMemorySandbox
from corral_system.ids import RandomIds
from corral_testbed.scripted_sandbox import OnOutput, ScriptedSandbox, StdinSource


class World:
    def __init__(self, max_unfinished: int = 100) -> None:
        self.clock = ManualClock()
        self.state = InMemoryJobs(self.clock, max_unfinished=max_unfinished)
        self.queue = InMemoryJobQueue(self.state)
        self.store = InMemoryJobStore(self.state)
        # No live worker offers anything until a test says so: every language is accepted.
        self.runtimes = InMemoryRuntimeCatalog()
        self.submit_job = SubmitJob(
            self.queue, RandomIds(), self.clock, DEFAULT_LIMIT_POLICY, SizePolicy(), runtimes=self.runtimes
        )
        self.get_job = GetJob(self.store)
        self.cancel_job = CancelJob(self.store, self.queue, self.clock)
        self.delete_job = DeleteJob(self.store, self.queue)
        self.notices = InMemoryCancelNotices(self.state)

    # The use cases acting for the caller of a service without keys.
    async def submit(self, request: JobRequest) -> Job:
        return (await self.submit_job(ANONYMOUS, request)).job

    async def get(self, job_id: str, wait_s: float = 0) -> Job:
        return await self.get_job(ANONYMOUS, job_id, wait_s)

    async def cancel(self, job_id: str) -> Job:
        return await self.cancel_job(ANONYMOUS, job_id)

    async def run_one(self, sandbox: Sandbox, request: JobRequest) -> Job:
        """`request` submitted, then run by a worker with `sandbox`: the job as stored after."""
        job = await self.submit(request)
        await RunNextJob(self.queue, sandbox, self.clock)("w1", 1)
        return await self.get(job.id)

    def run_in_outages(
        self, sandbox: Sandbox, *, lease_ms: int, renew_every_ms: int
    ) -> tuple[OutageQueue, asyncio.Task[Job | None]]:
        """A worker's run of the next job with `sandbox`, started, through a queue that fails
        while its `down` says so (retrying every 20 ms): the queue and the run."""
        queue = OutageQueue(self.queue)
        run_next = RunNextJob(queue, sandbox, self.clock, lease_ms=lease_ms, renew_every_ms=renew_every_ms, retry_every_ms=20)
        return queue, asyncio.ensure_future(run_next("w1", 1))


PYTHON = Runtime("python", "3.11.2", "main.py")


class OutageQueue:
    """A queue whose renewals and finishes fail as an unreachable Redis does while `down`."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self.down = False
        self.refused: list[str] = []

    def _check(self, call: str) -> None:
        if self.down:
            self.refused.append(call)
            raise StorageUnavailable("Redis is unreachable: connection refused")

    async def submit(self, job: Job) -> None:
        await self._queue.submit(job)

    async def claim(
        self, worker_id: str, lease_ms: int, timeout_s: float, languages: Collection[str] | None = None
    ) -> Lease | None:
        return await self._queue.claim(worker_id, lease_ms, timeout_s, languages)

    async def renew(self, lease: Lease, lease_ms: int) -> bool:
        self._check("renew")
        return await self._queue.renew(lease, lease_ms)

    async def finish(self, lease: Lease, job: Job) -> bool:
        self._check("finish")
        return await self._queue.finish(lease, job)

    async def release(self, lease: Lease) -> bool:
        self._check("release")
        return await self._queue.release(lease)

    async def recover(self, max_attempts: int) -> RecoveryReport:
        return await self._queue.recover(max_attempts)


class SlowSandbox(ScriptedSandbox):
    """Runs every program successfully after `seconds` of real time."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self.cancelled = asyncio.Event()

    async def outcome(self, *_: object) -> RunResult:
        try:
            await asyncio.sleep(self._seconds)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return RunResult(verdict=Verdict.OK, exit_code=0, stdout="slow\n")


class ClaimsAllSandbox(InMemorySandbox):
    """Lists a language its run then refuses: a worker whose runtime went away meanwhile."""

    def runtimes(self) -> list[Runtime]:
        return [*super().runtimes(), Runtime("brainfuck", "1")]


class BrokenSandbox(ScriptedSandbox):
    async def outcome(self, *_: object) -> RunResult:
        raise SandboxError("nsjail: cannot mount /usr")


class CrashingSandbox(ScriptedSandbox):
    async def outcome(self, *_: object) -> RunResult:
        raise KeyError("a bug in the adapter")


class HangingSandbox(SlowSandbox):
    """Runs for an hour: until cancelled, in every test."""

    def __init__(self) -> None:
        super().__init__(3600)


async def test_a_submitted_job_runs_to_completion() -> None:
    world = World()
    job = await world.submit(JobRequest(code="print(6 * 7)"))
    assert (await world.get(job.id)).status is JobStatus.PENDING
    done = await RunNextJob(world.queue, InMemorySandbox(), world.clock)("w1", 1)
    assert done is not None and done.id == job.id
    stored = await world.get(job.id, wait_s=1)
    assert stored.status is JobStatus.COMPLETED
    assert stored.result is not None and stored.result.stdout == "42\n"
    assert stored.request.limits == DEFAULT_LIMIT_POLICY.defaults


async def test_a_language_no_live_worker_offers_is_refused_and_nothing_is_stored() -> None:
    world = World()
    world.runtimes.offer([PYTHON])
    with pytest.raises(InvalidSubmission) as raised:
        await world.submit(JobRequest(code="", language="ruby"))
    assert raised.value.field == "language" and "'python'" in raised.value.message
    assert world.state.records == {}


async def test_an_input_file_named_like_the_source_file_is_refused() -> None:
    world = World()
    world.runtimes.offer([PYTHON])
    with pytest.raises(InvalidSubmission, match="the program's own source file") as raised:
        await world.submit(JobRequest(code="", files=(InputFile("main.py", b""),)))
    assert raised.value.field == "files[0].name"
    assert world.state.records == {}


async def test_an_offered_language_is_accepted_with_its_files() -> None:
    world = World()
    world.runtimes.offer([PYTHON])
    job = await world.submit(JobRequest(code="", files=(InputFile("data.txt", b"1"),)))
    assert job.request.files == (InputFile("data.txt", b"1"),)
    assert (await world.get(job.id)).status is JobStatus.PENDING


async def test_with_no_live_worker_a_job_in_any_language_is_accepted_and_waits() -> None:
    world = World()
    job = await world.submit(JobRequest(code="", language="ruby"))
    assert (await world.get(job.id)).status is JobStatus.PENDING


async def test_submitting_above_a_limit_maximum_stores_nothing() -> None:
    world = World()
    with pytest.raises(LimitAboveMaximum):
        await world.submit(JobRequest(code="", limits=LimitRequest(memory_mb=10**6)))
    assert world.state.records == {}


async def test_a_full_queue_refuses_submissions() -> None:
    world = World(max_unfinished=1)
    await world.submit(JobRequest(code="1"))
    with pytest.raises(QueueFull):
        await world.submit(JobRequest(code="2"))


async def test_reading_an_unknown_job_raises_not_found() -> None:
    with pytest.raises(JobNotFound):
        await World().get("nope", wait_s=0.01)


async def test_a_sandbox_failure_fails_the_job_with_its_reason() -> None:
    failed = await World().run_one(BrokenSandbox(), JobRequest(code="print(1)"))
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.code is ErrorCode.SANDBOX_ERROR
    assert "cannot mount" in failed.error.message


async def test_a_crashing_sandbox_fails_the_job_instead_of_leaving_it_running() -> None:
    failed = await World().run_one(CrashingSandbox(), JobRequest(code="print(1)"))
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.code is ErrorCode.SANDBOX_ERROR
    assert "a bug in the adapter" not in failed.error.message


async def test_a_job_in_a_language_the_worker_does_not_offer_is_left_for_another_worker() -> None:
    world = World()
    job = await world.submit(JobRequest(code="x", language="brainfuck"))
    assert await RunNextJob(world.queue, InMemorySandbox(), world.clock)("w1", 0.1) is None
    assert (await world.get(job.id)).status is JobStatus.PENDING


async def test_a_language_the_sandbox_turns_out_not_to_run_fails_the_job_as_unsupported() -> None:
    failed = await World().run_one(ClaimsAllSandbox(), JobRequest(code="x", language="brainfuck"))
    assert failed.error is not None and failed.error.code is ErrorCode.UNSUPPORTED_LANGUAGE


async def test_a_run_whose_lease_was_taken_over_is_cancelled_and_stores_nothing() -> None:
    world = World()
    job = await world.submit(JobRequest(code="print(1)"))
    sandbox = HangingSandbox()
    run = asyncio.ensure_future(
        RunNextJob(world.queue, sandbox, world.clock, lease_ms=100, renew_every_ms=20)("w1", 1)
    )
    await asyncio.sleep(0.05)
    world.clock.advance(1_000)
    assert (await RecoverAbandonedJobs(world.queue)()).requeued == (job.id,)
    assert await asyncio.wait_for(run, 2) is None
    assert sandbox.cancelled.is_set()
    assert (await world.get(job.id)).status is JobStatus.PENDING


async def test_a_cancelled_worker_hands_its_job_back() -> None:
    world = World()
    job = await world.submit(JobRequest(code="print(1)"))
    sandbox = HangingSandbox()
    run = asyncio.ensure_future(RunNextJob(world.queue, sandbox, world.clock)("w1", 1))
    await asyncio.sleep(0.05)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert sandbox.cancelled.is_set()
    handed_back = await world.get(job.id)
    assert handed_back.status is JobStatus.PENDING and handed_back.attempts == 0


async def test_a_cancelled_pending_job_never_runs() -> None:
    world = World()
    job = await world.submit(JobRequest(code="print(1)"))
    cancelled = await world.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.finished_at == world.clock.now()
    assert await RunNextJob(world.queue, InMemorySandbox(), world.clock)("w1", 0.05) is None
    assert (await world.get(job.id)).status is JobStatus.CANCELLED


async def test_a_cancelled_running_job_has_its_run_stopped_at_once_and_nothing_stored() -> None:
    world = World()
    job = await world.submit(JobRequest(code="print(1)"))
    sandbox = HangingSandbox()
    # Renewals far apart: only the notice can stop the run this soon.
    run_next = RunNextJob(world.queue, sandbox, world.clock, lease_ms=60_000, renew_every_ms=30_000, cancels=world.notices)
    run = asyncio.ensure_future(run_next("w1", 1))
    await asyncio.sleep(0.05)
    assert (await world.get(job.id)).status is JobStatus.RUNNING
    await world.cancel(job.id)
    assert await asyncio.wait_for(run, 1) is None
    assert sandbox.cancelled.is_set()
    stopped = await world.get(job.id)
    assert stopped.status is JobStatus.CANCELLED and stopped.result is None


async def test_a_worker_without_notices_stops_a_cancelled_run_at_its_next_renewal() -> None:
    world = World()
    job = await world.submit(JobRequest(code="print(1)"))
    sandbox = HangingSandbox()
    run = asyncio.ensure_future(RunNextJob(world.queue, sandbox, world.clock, lease_ms=1_000, renew_every_ms=50)("w1", 1))
    await asyncio.sleep(0.05)
    await world.cancel(job.id)
    assert await asyncio.wait_for(run, 1) is None
    assert sandbox.cancelled.is_set() and (await world.get(job.id)).status is JobStatus.CANCELLED


async def test_a_finished_job_cannot_be_cancelled() -> None:
    world = World()
    job = await world.submit(JobRequest(code="print(1)"))
    await RunNextJob(world.queue, InMemorySandbox(), world.clock)("w1", 1)
    with pytest.raises(JobAlreadyFinished, match="COMPLETED"):
        await world.cancel(job.id)
    assert (await world.get(job.id)).status is JobStatus.COMPLETED
    pending = await world.submit(JobRequest(code="print(1)"))
    await world.cancel(pending.id)
    with pytest.raises(JobAlreadyFinished, match="CANCELLED"):
        await world.cancel(pending.id)


async def test_only_the_owner_or_an_admin_may_cancel_and_others_are_told_it_does_not_exist() -> None:
    world = World()
    owner, stranger, admin = Caller(key_id="k1"), Caller(key_id="k2"), Caller(key_id="k3", admin=True)
    mine = (await world.submit_job(owner, JobRequest(code="print(1)"))).job
    other = (await world.submit_job(owner, JobRequest(code="print(2)"))).job
    with pytest.raises(JobNotFound):
        await world.cancel_job(stranger, mine.id)
    with pytest.raises(JobNotFound):
        await world.cancel_job(owner, "no-such-job")
    assert (await world.get(mine.id)).status is JobStatus.PENDING
    assert (await world.cancel_job(owner, mine.id)).status is JobStatus.CANCELLED
    assert (await world.cancel_job(admin, other.id)).status is JobStatus.CANCELLED


async def test_a_job_whose_worker_keeps_vanishing_fails_as_worker_lost() -> None:
    world = World()
    job = await world.submit(JobRequest(code="print(1)"))
    recover = RecoverAbandonedJobs(world.queue, max_attempts=2)
    for _ in range(2):
        assert await world.queue.claim("doomed", 1_000, 1) is not None
        world.clock.advance(1_001)
        await recover()
    failed = await world.get(job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.code is ErrorCode.WORKER_LOST


async def test_verdicts_are_reported_as_the_sandbox_gives_them() -> None:
    result = (await World().run_one(InMemorySandbox(), JobRequest(code="raise SystemExit(4)"))).result
    assert result is not None and result.verdict is Verdict.RUNTIME_ERROR and result.exit_code == 4


async def test_renewals_failing_for_less_than_a_lease_do_not_stop_the_run() -> None:
    world = World()
    job = await world.submit(JobRequest(code="print(1)"))
    queue, run = world.run_in_outages(SlowSandbox(0.6), lease_ms=400, renew_every_ms=100)
    await asyncio.sleep(0.1)
    queue.down = True
    await asyncio.sleep(0.25)  # several renewals fail, within one lease of the last success
    queue.down = False
    done = await asyncio.wait_for(run, 5)
    assert "renew" in queue.refused
    assert done is not None and done.status is JobStatus.COMPLETED
    stored = await world.get(job.id)
    assert stored.status is JobStatus.COMPLETED and stored.attempts == 1


async def test_a_run_is_given_up_only_once_no_renewal_got_through_for_a_whole_lease() -> None:
    world = World()
    await world.submit(JobRequest(code="print(1)"))
    sandbox = HangingSandbox()
    queue, run = world.run_in_outages(sandbox, lease_ms=300, renew_every_ms=100)
    await asyncio.sleep(0.15)
    queue.down = True
    down_at = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(run, 5) is None
    given_up_after = asyncio.get_running_loop().time() - down_at
    assert sandbox.cancelled.is_set()
    # The last renewal before the outage was at most one renewal period before it.
    assert 0.3 - 0.1 - 0.05 <= given_up_after <= 0.3 + 0.2


async def test_a_result_write_that_fails_is_retried_within_the_lease() -> None:
    world = World()
    job = await world.submit(JobRequest(code="print(1)"))
    queue, run = world.run_in_outages(SlowSandbox(0.05), lease_ms=1_000, renew_every_ms=300)
    queue.down = True  # from before the run ends to after its result was first sent
    await asyncio.sleep(0.2)
    assert "finish" in queue.refused
    queue.down = False
    done = await asyncio.wait_for(run, 5)
    assert done is not None and (await world.get(job.id)).status is JobStatus.COMPLETED


async def test_a_finished_result_is_stored_even_when_the_worker_is_cancelled_meanwhile() -> None:
    world = World()
    job = await world.submit(JobRequest(code="print(1)"))
    queue, run = world.run_in_outages(SlowSandbox(0.05), lease_ms=1_000, renew_every_ms=300)
    queue.down = True
    await asyncio.sleep(0.2)  # the run ended; its result waits for the queue to come back
    run.cancel()
    await asyncio.sleep(0.05)
    assert not run.done()
    queue.down = False
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 5)
    stored = await world.get(job.id)
    assert stored.status is JobStatus.COMPLETED and stored.result is not None and stored.result.stdout == "slow\n"


async def test_a_job_cancelled_while_the_queue_is_down_is_still_handed_back_uncounted() -> None:
    world = World()
    job = await world.submit(JobRequest(code="print(1)"))
    queue, run = world.run_in_outages(HangingSandbox(), lease_ms=1_000, renew_every_ms=300)
    await asyncio.sleep(0.05)
    queue.down = True
    run.cancel()
    await asyncio.sleep(0.1)
    queue.down = False
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 5)
    assert "release" in queue.refused
    handed_back = await world.get(job.id)
    assert handed_back.status is JobStatus.PENDING and handed_back.attempts == 0


class RecordingEvents:
    """JobEvents that keep what is appended, each batch with the job's status in storage then;
    the first `failing` appends fail, as an unreachable Redis does."""

    def __init__(self, world: World, failing: int = 0) -> None:
        self._world = world
        self.failing = failing
        self.batches: list[tuple[JobStatus, list[tuple[EventKind, str]]]] = []
        self.appended = asyncio.Event()

    async def append(self, job_id: str, events: Sequence[tuple[EventKind, str]]) -> None:
        if self.failing:
            self.failing -= 1
            raise StorageUnavailable("redis is restarting")
        self.batches.append(((await self._world.get(job_id)).status, list(events)))
        self.appended.set()

    async def read(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[JobEvent]:
        raise NotImplementedError

    @property
    def all(self) -> list[tuple[EventKind, str]]:
        return [event for _, batch in self.batches for event in batch]

    def output(self) -> str:
        return "".join(data for kind, data in self.all if kind is EventKind.STDOUT)

    async def until_output(self, ending: str) -> None:
        while not self.output().endswith(ending):
            self.appended.clear()
            await self.appended.wait()


class WritingSandbox(ScriptedSandbox):
    """Writes its chunks one at a time (letting the loop run between them), as a program does,
    and answers each line of its stdin; its result holds everything it wrote."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks
        self.stdin_given: list[bool] = []

    async def outcome(self, request: RunRequest, on_output: OnOutput, stdin_source: StdinSource) -> RunResult:
        assert on_output is not None
        self.stdin_given.append(stdin_source is not None)
        written = b""
        for chunk in self.chunks:
            on_output(EventKind.STDOUT, chunk)
            written += chunk
            await asyncio.sleep(0)
        if stdin_source is not None:
            async for line in stdin_source:
                answer = b"got " + line
                on_output(EventKind.STDOUT, answer)
                written += answer
        return RunResult(verdict=Verdict.OK, exit_code=0, stdout=written.decode())


class ScriptedInput:
    """JobInput: what the test sends, read in order by id."""

    def __init__(self) -> None:
        self.chunks: list[InputChunk] = []
        self.sent = asyncio.Condition()

    async def send(self, job_id: str, data: bytes, *, eof: bool = False, max_bytes: int = 1 << 20) -> bool:
        async with self.sent:
            self.chunks.append(InputChunk(str(len(self.chunks) + 1), data, eof))
            self.sent.notify_all()
        return True

    async def receive(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[InputChunk]:
        async with self.sent:
            await asyncio.wait_for(self.sent.wait_for(lambda: len(self.chunks) > int(after or 0)), timeout_s)
            return self.chunks[int(after or 0) :]


async def test_a_running_job_tells_running_then_its_output_then_its_stored_end() -> None:
    world = World()
    await world.submit(JobRequest(code="print('é!')"))
    events = RecordingEvents(world)
    sandbox = WritingSandbox("é".encode()[:1], "é".encode()[1:] + b"!\n")
    done = await RunNextJob(world.queue, sandbox, world.clock, events=events)("w1", 1)
    assert done is not None and done.result is not None and done.result.stdout == "é!\n"
    assert events.all[0] == (EventKind.STATUS, "RUNNING")
    assert events.all[-2:] == [(EventKind.STATUS, "COMPLETED"), (EventKind.RESULT, "")]
    assert events.output() == "é!\n" and not any("\ufffd" in data for _, data in events.all)
    # The end is told once the job is stored finished: a reader woken by it finds the result.
    assert events.batches[-1][0] is JobStatus.COMPLETED
    assert stdin_not_fed(sandbox)


def stdin_not_fed(sandbox: WritingSandbox) -> bool:
    return sandbox.stdin_given == [False]


async def test_a_job_runs_and_is_stored_though_its_events_cannot_be() -> None:
    world = World()
    job = await world.submit(JobRequest(code="print(1)"))
    events = RecordingEvents(world, failing=1000)
    done = await RunNextJob(world.queue, WritingSandbox(b"1\n"), world.clock, events=events)("w1", 1)
    assert done is not None
    stored = await world.get(job.id)
    assert stored.status is JobStatus.COMPLETED and stored.result is not None and stored.result.stdout == "1\n"
    assert events.batches == []


async def test_an_interactive_job_is_driven_line_by_line_by_what_its_client_sends() -> None:
    world = World()
    job = await world.submit(JobRequest(code="...", stdin_mode=StdinMode.INTERACTIVE))
    events, job_input = RecordingEvents(world), ScriptedInput()
    sandbox = WritingSandbox(b"ready\n")
    running = asyncio.ensure_future(
        RunNextJob(world.queue, sandbox, world.clock, events=events, job_input=job_input)("w1", 1)
    )
    await events.until_output("ready\n")
    await job_input.send(job.id, b"one\n")
    await events.until_output("got one\n")
    await job_input.send(job.id, b"two\n")
    await events.until_output("got two\n")
    await job_input.send(job.id, b"", eof=True)
    done = await running
    assert done is not None and done.result is not None
    assert done.result.stdout == "ready\ngot one\ngot two\n" == events.output()
    assert sandbox.stdin_given == [True]


async def test_an_ordinary_job_gets_no_live_stdin() -> None:
    world = World()
    await world.submit(JobRequest(code="print(1)"))
    sandbox = WritingSandbox(b"1\n")
    await RunNextJob(world.queue, sandbox, world.clock, events=RecordingEvents(world), job_input=ScriptedInput())("w1", 1)
    assert stdin_not_fed(sandbox)


async def test_only_a_finished_job_is_deleted_and_only_by_whoever_may_read_it() -> None:
    world = World()
    owner, stranger, admin = Caller(key_id="k1"), Caller(key_id="k2"), Caller(key_id="k3", admin=True)
    mine = (await world.submit_job(owner, JobRequest(code="print(1)"))).job
    with pytest.raises(JobUnfinished, match="PENDING"):
        await world.delete_job(owner, mine.id)
    await RunNextJob(world.queue, InMemorySandbox(), world.clock)("w1", 1)
    with pytest.raises(JobNotFound):
        await world.delete_job(stranger, mine.id)
    deleted = await world.delete_job(owner, mine.id)
    assert deleted.id == mine.id and deleted.status is JobStatus.COMPLETED
    with pytest.raises(JobNotFound):
        await world.get_job(owner, mine.id)
    with pytest.raises(JobNotFound):
        await world.delete_job(owner, mine.id)
    other = (await world.submit_job(owner, JobRequest(code="print(2)"))).job
    await world.cancel_job(owner, other.id)
    assert (await world.delete_job(admin, other.id)).status is JobStatus.CANCELLED
