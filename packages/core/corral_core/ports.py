"""The ports: what the use cases need from the world, as Protocols.

Every adapter (in-memory, Redis, NsJail, or one an outside author writes) implements one of
these and proves it by passing the matching suite in `corral_contract`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from datetime import datetime
from typing import Protocol

import msgspec

from corral_core.events import EventKind
from corral_core.job import Job, LimitRequest, RunRequest, RunResult


class Clock(Protocol):
    """The time stamped on what users read: created_at, started_at, finished_at, seen_at.

    Never the time leases, duties or heartbeats expire by: hosts' clocks differ and step, so
    an adapter shared by many hosts keeps those on one clock of its own (Redis' TIME), and
    each worker counts what is left of its lease on its own monotonic clock (RunNextJob).
    """

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class IdSource(Protocol):
    def new_id(self) -> str:
        """A fresh job id: unguessable (128 random bits) and URL-safe."""
        ...


class Lease(msgspec.Struct, frozen=True):
    """A worker's claim on one running job.

    `token` is the fencing token: it grows with every claim of the job, and the queue refuses
    renewals and results that carry an older token than the job's current one.
    """

    job: Job
    token: int
    worker_id: str


class QueueFull(Exception):
    """The queue holds as many unfinished jobs as it is allowed to: try again later."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the queue is full ({limit} unfinished jobs)")
        self.limit = limit


class StorageFull(Exception):
    """Storing one more job could fill the storage; it is refused until results expire."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"the job store is full ({detail}); try again later")


class StorageUnavailable(Exception):
    """The queue or store cannot be reached right now.

    Every step is atomic, so it either happened whole or not at all; when the reply was lost,
    the caller cannot tell which (a retried submission may then be queued twice).
    """


class RecoveryReport(msgspec.Struct, frozen=True):
    requeued: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


class JobQueue(Protocol):
    """Hands PENDING jobs to workers under leases, so that no accepted job is lost."""

    async def submit(self, job: Job) -> None:
        """Record a PENDING job and put it in line, both or neither.

        Raises QueueFull, or StorageFull when the job's worst-case size (request and result)
        does not fit in the storage's budget.
        """
        ...

    async def claim(
        self, worker_id: str, lease_ms: int, timeout_s: float, languages: Collection[str] | None = None
    ) -> Lease | None:
        """Take the oldest PENDING job of one of `languages` (None: any), mark it RUNNING and
        lease it to `worker_id`.

        Jobs wait in one line per language: a worker takes only what it can run. Between its
        languages a worker takes turns (the first language it looks at rotates from claim to
        claim), so a flood of one language does not starve another.
        Waits up to `timeout_s` for a job; returns None if none came.
        """
        ...

    async def renew(self, lease: Lease, lease_ms: int) -> bool:
        """Extend a lease to `lease_ms` from now, on the queue's own clock. False when the lease
        was lost (expired and taken over)."""
        ...

    async def finish(self, lease: Lease, job: Job) -> bool:
        """Store the job's final state (COMPLETED or FAILED) and let it go.

        Refused (False, nothing written) unless `lease` is the job's current lease: a job gets
        exactly one final state however many times it ran. The same call repeated under the
        same lease is accepted again, so a finish whose reply was lost may be retried.
        """
        ...

    async def release(self, lease: Lease) -> bool:
        """Hand a running job back (graceful shutdown): PENDING again, the attempt not counted."""
        ...

    async def recover(self, max_attempts: int) -> RecoveryReport:
        """Re-queue jobs whose lease expired; fail those that already had `max_attempts`."""
        ...


class JobCanceller(Protocol):
    """Calls unfinished jobs off; the JobQueue adapter of the same storage offers it."""

    async def cancel(self, job_id: str, now: datetime) -> bool:
        """Move a PENDING or RUNNING job to CANCELLED (finished at `now`), atomically.

        True when this call cancelled it: a pending job will never be handed out, a running
        one's lease is gone (its worker's renewals and result are refused from now on), what
        it booked is given back, and waiters on its end are woken. A call re-sent after its
        reply was lost finds its own cancel and answers True again. False, nothing changed,
        when the job is unknown or already finished.
        """
        ...


class JobEraser(Protocol):
    """Removes finished jobs before they expire; the JobQueue adapter of the same storage offers it."""

    async def erase(self, job_id: str) -> bool:
        """Remove a COMPLETED, FAILED or CANCELLED job for good, atomically: its record, returned
        files, events, input and any callback still due; what its owner booked stops counting.

        True when this call erased it. False, nothing changed, when the job is unknown (or
        already erased) or still PENDING or RUNNING.
        """
        ...


class CancelNotices(Protocol):
    """How a worker learns, within a moment, that a job it runs was cancelled."""

    async def wait_cancelled(self, job_id: str, since_s: float | None = None) -> None:
        """Return once the job is CANCELLED (at once if it already is); otherwise never.

        `since_s`: the event loop's time before the job was claimed (by this process). A
        cancel from before then would have kept the claim from starting the job, so an adapter
        whose notices were heard all along since then need not look the job up first.
        The caller cancels the wait when its run ends. A worker that misses a notice still
        learns of the cancel from its next lease renewal, which is refused.
        """
        ...


class QueueDepth(msgspec.Struct, frozen=True):
    pending: int  # in line, not yet claimed
    unfinished: int  # pending or running: what the queue's size limit counts


class QueueGauge(Protocol):
    """How full the queue is, for the operator's metrics (a queue adapter may offer it)."""

    async def depth(self) -> QueueDepth: ...


class JobStore(Protocol):
    """Reads jobs for clients, without their inputs (core's `without_inputs`): code, stdin and
    files are the worker's, read from its lease, and may be dropped once the job finishes. A
    finished job's returned files (RunResult.files) are listed without their content, which
    `file` reads."""

    async def get(self, job_id: str) -> Job | None: ...

    async def file(self, job_id: str, name: str) -> bytes | None:
        """The content of one file the job returned; None if the job or the file is unknown
        (or has expired with the job)."""
        ...

    async def wait_finished(self, job_id: str, timeout_s: float, submitted_s: float | None = None) -> Job | None:
        """The job once it is finished, or as it stands after `timeout_s`; None if unknown.

        Waits on a notification, never by polling in a loop. `submitted_s`: the event loop's
        time before this process submitted the job (it exists, and was unfinished then); an
        adapter whose notifications were heard all along since then need not read it first.
        """
        ...


class Runtime(msgspec.Struct, frozen=True):
    language: str
    version: str
    # The file the program's code is written to; no input file may take its name.
    source_file: str = ""
    # Limits (Limits field names) this runtime needs other than the server's: its defaults
    # replace the server's, its maxima can only lower them (LimitPolicy.for_runtime).
    default_limits: LimitRequest = LimitRequest()
    max_limits: LimitRequest = LimitRequest()
    # Whether it has a compile stage (a compile_error verdict is possible).
    compiled: bool = False
    # Whether its compile command takes Program.compiler_args.
    compiler_args: bool = False


class RuntimeCatalog(Protocol):
    """The runtimes submissions are checked against: what the live workers offer."""

    async def offered(self) -> list[Runtime]:
        """Every runtime some live worker offers; empty when no worker is live.

        May lag behind the workers by a moment (an adapter may cache it): a worker that just
        came or went changes the answer soon, not at once.
        """
        ...


class WorkerInfo(msgspec.Struct, frozen=True):
    worker_id: str
    seen_at: datetime
    runtimes: tuple[Runtime, ...] = ()


class WorkerRegistry(Protocol):
    """Worker heartbeats: who is alive and which runtimes they offer."""

    async def heartbeat(self, info: WorkerInfo, ttl_ms: int) -> None: ...

    async def live_workers(self) -> list[WorkerInfo]:
        """Workers whose last heartbeat is younger than the ttl it was sent with."""
        ...

    async def hold_duty(self, duty: str, worker_id: str, ttl_ms: int) -> bool:
        """Whether `worker_id` holds `duty` (one holder at a time) for the next `ttl_ms`.

        Takes the duty when it is free or its holder let it lapse; renews it for its holder.
        """
        ...


class SandboxError(Exception):
    """The sandbox could not run the program at all: Corral's failure, not the program's."""


class UnsupportedLanguage(SandboxError):
    def __init__(self, language: str) -> None:
        super().__init__(f"no runtime for language {language!r}")
        self.language = language


class Sandbox(Protocol):
    def runtimes(self) -> list[Runtime]: ...

    async def run(
        self,
        request: RunRequest,
        *,
        scope: str = "",
        on_output: Callable[[EventKind, bytes], None] | None = None,
        stdin_source: AsyncIterator[bytes] | None = None,
    ) -> RunResult:
        """Run one program in a fresh sandbox; with test cases, once per test, each in a fresh
        sandbox, and each run judged (corral_core.testcases). Raises SandboxError when it
        cannot start it.

        `scope`: who the job is for (the key that submitted it). What a sandbox keeps between
        jobs (compiled programs) serves only later jobs of the same scope.

        `on_output` (a program without tests): called on the event loop with each chunk of its
        stdout (EventKind.STDOUT) or stderr as it is written, of the bytes kept under the output
        limit only, so that each stream's chunks add up to exactly its stored bytes. It must
        return at once and not raise. A sandbox that cannot tell output as it comes may tell it
        all at the end.
        `stdin_source` (a program without tests): its stdin while it runs, in place of
        `request.stdin`; the program's input ends when the iterator does. The sandbox stops
        taking from it when the program ends.

        Cancelling the call kills the program and cleans up before it returns.
        """
        ...


class ReadinessReport(msgspec.Struct, frozen=True, kw_only=True):
    """Whether the service can take and run jobs now, and why not."""

    storage: bool  # storage answers
    live_workers: int
    problems: list[str] = []
    # How storage keeps accepted jobs (Redis: its appendfsync as found at start).
    durability: str = "unchecked"
    # Risks the operator accepted, reported in every answer, ready or not.
    warnings: list[str] = []

    @property
    def ready(self) -> bool:
        return self.storage and self.live_workers > 0


class Readiness(Protocol):
    async def check(self) -> ReadinessReport: ...
