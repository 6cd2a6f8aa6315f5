"""NsJailSandbox: the Sandbox port, one fresh NsJail per run, started cold or ahead of time."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable, Coroutine

import msgspec

from corral_core.events import EventKind
from corral_core.job import InputFile, Limits, RunRequest, RunResult, SandboxStart, Verdict, ran_of, result_of_tests
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import Runtime, SandboxError, UnsupportedLanguage
from corral_core.testcases import TEST_OUTPUT_BYTES, CheckerProgram, Ran, TestCase, judge_tests, skipped
from corral_sandbox.compile_cache import CompileCache, cache_key
from corral_sandbox.fork import ForkJail, Nursery
from corral_sandbox.inputs import check_limits, job_files
from corral_sandbox.jail import Compiled, Program, compile_error, compile_program, run_program, with_compile_stage
from corral_sandbox.jailids import JailIdPool
from corral_sandbox.policy_files import RuntimeSpec
from corral_sandbox.report import HostReport
from corral_sandbox.warm import WarmJail, WarmUnusable

log = logging.getLogger(__name__)

# Roomy time limits: the self-test proves that each runtime runs on this host, not how fast. A
# worker starting on a busy or slow host (an emulated VM, say) must not be refused for its speed,
# and a compile is the slowest thing it runs, hence the generous compile limits.
SELFTEST_LIMITS = msgspec.structs.replace(
    DEFAULT_LIMIT_POLICY.defaults,
    cpu_time_ms=5_000,
    wall_time_ms=10_000,
    max_processes=8,
    max_output_bytes=4096,
    compile_cpu_time_ms=120_000,
    compile_wall_time_ms=240_000,
)


def _selftest_limits(runtime: RuntimeSpec) -> Limits:
    """SELFTEST_LIMITS, with the memory and processes the runtime asks for by default (a JVM
    starts a dozen threads before main)."""
    own = runtime.default_limits
    return msgspec.structs.replace(
        SELFTEST_LIMITS,
        memory_mb=max(SELFTEST_LIMITS.memory_mb, own.memory_mb or 0),
        max_processes=max(SELFTEST_LIMITS.max_processes, own.max_processes or 0),
        compile_memory_mb=max(SELFTEST_LIMITS.compile_memory_mb, own.compile_memory_mb or 0),
    )


class NsJailSandbox:
    """Runs each program in a fresh jail (see jail.py for how, and nsjail/ for the policy).

    Give it the HostReport of `prepare_host`: constructing it touches nothing on the host. Runs
    may overlap: each has its own jail, scratch tmpfs, cgroups and host uid/gid (from the
    configured range: more runs at once than it has ids is a JailIdsExhausted SandboxError).

    `warm_slots` > 0: that many warm jails (warm.py) per runtime that has a warm hook are kept
    started ahead of their jobs, from the first run or `keep_warm` on; `aclose` removes them.
    A job a warm jail cannot take starts cold; RunResult.sandbox_start says which it was.
    `fork_jails`: the warm jails are forked from nurseries (fork.py), two host ids each, rather
    than started as cold ones are.
    """

    def __init__(self, *, host: HostReport, warm_slots: int = 0, fork_jails: bool = False) -> None:
        self.host = host
        self._jail_host = host.jail_host()
        self._ids = JailIdPool(host.jail_ids(), host.jail_id_leases())
        self._runtimes = {spec.language: spec for spec in host.runtimes}
        self._nurseries = (
            {spec.language: _Nurseries(self._open_nursery(spec)) for spec in host.runtimes if spec.warmable}
            if fork_jails
            else {}
        )
        self._compiles = CompileCache(host.settings.compile_cache_bytes)
        # Per language, the limits of its last job: a warm jail started after it has them preset.
        self._last_limits: dict[str, Limits] = {}
        self._standby = {
            spec.language: _Standby(spec.language, self._start_warm(spec), warm_slots)
            for spec in host.runtimes
            if spec.warmable and warm_slots > 0
        }

    def _open_nursery(self, runtime: RuntimeSpec) -> Callable[[], Coroutine[None, None, Nursery]]:
        async def open_one() -> Nursery:
            # Its jobs' ids and its own: it gives both back when it is gone.
            ids, give_back = self._ids.lease()
            try:
                own_ids, give_back_own = self._ids.lease()
            except BaseException:
                give_back()
                raise

            def give_back_both() -> None:
                give_back_own()
                give_back()

            return await Nursery.open(self._jail_host, runtime, ids, own_ids, give_back_both)

        return open_one

    def _start_warm(self, runtime: RuntimeSpec) -> Callable[[], Coroutine[None, None, WarmJail]]:
        nurseries = self._nurseries.get(runtime.language)
        if nurseries is not None:

            async def fork() -> WarmJail:
                return self._with_last_limits(await ForkJail.fork(self._jail_host, runtime, await nurseries.take()))

            return fork

        async def start() -> WarmJail:
            ids, give_back = self._ids.lease()  # WarmJail gives them back when it is gone
            return self._with_last_limits(await WarmJail.start(self._jail_host, runtime, ids, give_back))

        return start

    def _with_last_limits(self, jail: WarmJail) -> WarmJail:
        if (limits := self._last_limits.get(jail.runtime.language)) is not None:
            jail.preset(limits)
        return jail

    def keep_warm(self) -> None:
        """Start the warm jails now (in the background), rather than at the first run."""
        for standby in self._standby.values():
            standby.fill()

    @property
    def warm(self) -> bool:
        """Whether warm jails are kept for some runtime."""
        return bool(self._standby)

    async def aclose(self) -> None:
        """Remove the warm jails that wait for a job (a later run starts them again)."""
        await asyncio.gather(*(standby.aclose() for standby in self._standby.values()))
        await asyncio.gather(*(nurseries.aclose() for nurseries in self._nurseries.values()))

    def runtimes(self) -> list[Runtime]:
        return [
            Runtime(
                spec.language,
                spec.version,
                spec.source,
                default_limits=spec.default_limits,
                max_limits=spec.max_limits,
                compiled=spec.compiled,
                compiler_args=spec.takes_compiler_args,
            )
            for spec in self.host.runtimes
        ]

    async def run(
        self,
        request: RunRequest,
        *,
        scope: str = "",
        on_output: Callable[[EventKind, bytes], None] | None = None,
        stdin_source: AsyncIterator[bytes] | None = None,
    ) -> RunResult:
        """See the Sandbox port. A job with tests runs each test as ever: neither its output
        is told as it comes nor its stdin fed while it runs."""
        runtime = self._runtimes.get(request.language)
        if runtime is None:
            raise UnsupportedLanguage(request.language)
        check_limits(request.limits)
        if runtime.source_from:
            # A scan of the whole code (java_source.py): linear, but a long program's is not
            # for the event loop that renews every running job's lease.
            runtime = await asyncio.to_thread(runtime.for_code, request.code)
        files = job_files(runtime, request)
        compiled = await self._compiled(runtime, files, request, scope) if runtime.compiled else None
        if compiled is not None and compiled.artifact is None:
            failed = compile_error(compiled, request.limits)
            return msgspec.structs.replace(failed, tests=tuple(skipped(request.tests)))
        program = Program(runtime, files, compiled)
        if not request.tests:
            return await self._run_program(program, request, on_output, stdin_source)
        tests = _JailTests(self, program, request, scope)
        output_bytes = min(request.limits.max_output_bytes, TEST_OUTPUT_BYTES)
        judged = await judge_tests(request.tests, tests, stop_on_first_failure=request.stop_on_first_failure, output_bytes=output_bytes)
        result = result_of_tests(judged, SandboxStart.WARM if tests.all_warm else SandboxStart.COLD)
        return result if compiled is None else with_compile_stage(result, compiled)

    async def _compiled(self, runtime: RuntimeSpec, files: list[tuple[str, bytes]], request: RunRequest, scope: str) -> Compiled:
        """The compile of these files with the request's compiler arguments, from the cache of
        this scope's programs if it is there."""
        key = cache_key(scope, runtime, files, request.compiler_args)
        if (kept := self._compiles.get(key)) is not None:
            return kept
        with self._ids.taken() as ids:
            compiled = await compile_program(self._jail_host, runtime, ids, files, request.limits, request.compiler_args)
        self._compiles.put(key, compiled)
        return compiled

    async def _run_program(
        self,
        program: Program,
        request: RunRequest,
        on_output: Callable[[EventKind, bytes], None] | None = None,
        stdin_source: AsyncIterator[bytes] | None = None,
    ) -> RunResult:
        """One run in a fresh jail: a warm one for an interpreted runtime that has them, else cold.
        A job that asks files back runs cold: its files are read from the scratch tmpfs of the
        jail it ran in, which a cold jail's clean-up leaves to the end. So does one whose stdin
        is fed while it runs (`stdin_source`): a warm jail gets its stdin as a sealed memfd."""
        language = program.runtime.language
        standby = self._standby.get(language)
        if standby is not None and program.compiled is None and not request.outputs and stdin_source is None:
            self._last_limits[language] = request.limits
            jail = await standby.take()
            if jail is not None:
                try:
                    return await jail.run(program.files, request.limits, request.stdin, request.args, on_output)
                except WarmUnusable as error:
                    log.info("a warm %s jail could not take a job, starting it cold: %s", language, error)
                finally:
                    standby.done(jail)
        with self._ids.taken() as ids:
            return await run_program(self._jail_host, ids, program, request, on_output=on_output, stdin_source=stdin_source)

    async def selftest(self) -> dict[str, str]:
        """Run each runtime's self-test job (runtimes.toml), a few at once; the runtimes that
        did not run right, each with why (none: every runtime works on this host)."""
        gate = asyncio.Semaphore(_selftest_concurrency(self.host))

        async def one(runtime: RuntimeSpec) -> str | None:
            async with gate:
                return await self._selftest_one(runtime)

        reasons = await asyncio.gather(*(one(runtime) for runtime in self.host.runtimes))
        return {runtime.language: reason for runtime, reason in zip(self.host.runtimes, reasons, strict=True) if reason is not None}

    async def _selftest_one(self, runtime: RuntimeSpec) -> str | None:
        request = RunRequest(language=runtime.language, code=runtime.selftest_code, limits=_selftest_limits(runtime))
        try:
            result = await self.run(request)
        except SandboxError as error:
            return f"a first {runtime.language} job failed: {error}"
        if result.verdict is not Verdict.OK or result.stdout != runtime.selftest_stdout:
            return f"a first {runtime.language} job did not run right: {result}"
        return None


def _selftest_concurrency(host: HostReport) -> int:
    """How many self-tests run at once. Each is mostly one program's start-up (a JVM, a
    compiler), which leaves a CPU idle now and then: one more than the CPUs keeps them busy,
    more would only queue for them (and slow each one past its limits on a loaded host)."""
    return max(1, min(len(host.runtimes), host.cpu_count + 1, host.settings.jail_id_count))


class _JailTests:
    """A job's tests on this sandbox: each test a fresh jail of the job's program (its compile
    made once), each checker program a job of its own of the same scope (its compile cached)."""

    def __init__(self, sandbox: NsJailSandbox, program: Program, request: RunRequest, scope: str) -> None:
        self._sandbox = sandbox
        self._program = program
        self._request = msgspec.structs.replace(request, tests=())
        self._scope = scope
        self.all_warm = True

    async def run_test(self, test: TestCase) -> Ran:
        request = msgspec.structs.replace(self._request, stdin=test.stdin, args=test.args)
        result = await self._sandbox._run_program(self._program, request)
        self.all_warm = self.all_warm and result.sandbox_start is SandboxStart.WARM
        return ran_of(result)

    async def run_checker(self, checker: CheckerProgram, files: dict[str, bytes]) -> Ran:
        request = RunRequest(
            language=checker.language,
            code=checker.code,
            files=tuple(InputFile(name, data) for name, data in files.items()),
            limits=self._request.limits,
        )
        return ran_of(await self._sandbox.run(request, scope=self._scope))


class _Standby:
    """One runtime's warm jails: at most `slots` of them, waiting or running, each started in
    the background when a run takes one (or at the first `fill`)."""

    # After this many failed starts in a row the runtime runs cold: something is wrong with
    # the host or the hook, and failing in the background would only burn CPU.
    _MAX_FAILURES = 3
    # A used jail is removed, and the next one started, this long after its job's end: by then
    # the worker has stored the result, which the removal and the start (a burst of CPU) would
    # otherwise slow down. A job that comes sooner starts its jail at once (`take`).
    _AFTER_JOB_S = 0.005

    def __init__(self, language: str, start: Callable[[], Coroutine[None, None, WarmJail]], slots: int) -> None:
        self._language = language
        self._start = start
        self._slots = slots
        self._waiting: collections.deque[asyncio.Task[WarmJail]] = collections.deque()
        self._taken = 0
        self._failures = 0
        self._closed = False
        self._discarding: set[asyncio.Task[None]] = set()
        self._abandoned: set[asyncio.Task[WarmJail]] = set()
        self._used: list[WarmJail] = []
        self._after_job: asyncio.TimerHandle | None = None

    def fill(self) -> None:
        while not self._closed and self._failures < self._MAX_FAILURES and len(self._waiting) + self._taken < self._slots:
            self._waiting.append(asyncio.create_task(self._start()))

    async def take(self) -> WarmJail | None:
        """A warm jail for one job (one that is ready first, else the oldest still starting), or
        None: start the job cold. Give it back with `done` after the run."""
        self.fill()
        if not self._waiting:
            return None
        ready = [task for task in self._waiting if task.done()]
        task = ready[0] if ready else self._waiting[0]
        self._waiting.remove(task)
        self._taken += 1
        try:
            jail = await asyncio.shield(task)
        except asyncio.CancelledError:
            self._taken -= 1
            # Still starting, perhaps: removed once started, and `aclose` waits for that.
            self._abandoned.add(task)
            task.add_done_callback(self._discard_abandoned)
            raise
        except Exception as error:
            self._taken -= 1
            self._failures += 1
            log.error("a warm %s jail failed to start (%d in a row): %s", self._language, self._failures, error)
            return None
        self._failures = 0
        return jail

    def done(self, jail: WarmJail) -> None:
        """The job of a taken jail ended: remove that jail in the background (the result need
        not wait for it; `aclose` does) and start the next one, both a moment later."""
        self._taken -= 1
        self._used.append(jail)
        if self._after_job is None:
            self._after_job = asyncio.get_running_loop().call_later(self._AFTER_JOB_S, self._clear_up)

    def _clear_up(self) -> None:
        self._after_job = None
        used, self._used = self._used, []
        for jail in used:
            self._discard(jail)
        self.fill()

    async def aclose(self) -> None:
        self._closed = True
        try:
            if self._after_job is not None:
                self._after_job.cancel()
                self._clear_up()
            waiting, self._waiting = list(self._waiting), collections.deque()
            for result in await asyncio.gather(*waiting, return_exceptions=True):
                if isinstance(result, WarmJail):
                    await result.discard()
            # A jail a cancelled run left starting is discarded once started: wait for both.
            while self._abandoned or self._discarding:
                await asyncio.gather(*self._abandoned, *self._discarding, return_exceptions=True)
        finally:
            self._closed = False

    def _discard_abandoned(self, task: asyncio.Task[WarmJail]) -> None:
        self._abandoned.discard(task)
        if task.cancelled() or task.exception() is not None:
            return
        self._discard(task.result())

    def _discard(self, jail: WarmJail) -> None:
        discarding = asyncio.ensure_future(jail.discard())
        self._discarding.add(discarding)
        discarding.add_done_callback(self._discarded)

    def _discarded(self, discarding: asyncio.Future[None]) -> None:
        self._discarding.discard(discarding)
        if not discarding.cancelled() and discarding.exception() is not None:
            log.error("a used %s jail could not be removed: %s", self._language, discarding.exception())


class _Nurseries:
    """One runtime's nurseries (fork.py): a forked jail takes one with no child, else a new one.
    A nursery too old for NsJail's backstop to cover another job is removed once it is free."""

    def __init__(self, open_one: Callable[[], Coroutine[None, None, Nursery]]) -> None:
        self._open = open_one
        self._all: list[Nursery] = []
        self._lock = asyncio.Lock()

    async def take(self) -> Nursery:
        async with self._lock:
            for nursery in [nursery for nursery in self._all if not nursery.busy and not nursery.fresh]:
                self._all.remove(nursery)
                await nursery.discard()
            free = next((nursery for nursery in self._all if not nursery.busy), None)
            if free is None:
                free = await self._open()
                self._all.append(free)
            free.busy = True
            return free

    async def aclose(self) -> None:
        async with self._lock:
            nurseries, self._all = self._all, []
            await asyncio.gather(*(nursery.discard() for nursery in nurseries), return_exceptions=True)
