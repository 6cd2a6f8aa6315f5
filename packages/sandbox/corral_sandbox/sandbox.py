"""NsJailSandbox: the Sandbox port, one fresh NsJail per run."""

from __future__ import annotations

import asyncio

import msgspec

from corral_core.job import Limits, RunRequest, RunResult, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import Runtime, SandboxError, UnsupportedLanguage
from corral_sandbox.jail import run_job
from corral_sandbox.jailids import JailIdPool
from corral_sandbox.policy import RuntimeSpec
from corral_sandbox.report import HostReport

# Roomy time limits: a worker starting on a busy host must not be refused for being slow.
# The self-test proves that each runtime runs on this host, not how fast: a slow host (the
# emulated cgroup v2 VM of `make test-cgroup2`, where g++ takes over 10 s of CPU for hello
# world) must not be refused for its speed, so its compile limits are generous.
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
    """

    def __init__(self, *, host: HostReport) -> None:
        self.host = host
        self._jail_host = host.jail_host()
        self._ids = JailIdPool(host.jail_ids(), host.jail_id_leases())
        self._runtimes = {spec.language: spec for spec in host.runtimes}

    def runtimes(self) -> list[Runtime]:
        return [
            Runtime(
                spec.language,
                spec.version,
                spec.source,
                default_limits=spec.default_limits,
                max_limits=spec.max_limits,
                compiled=spec.compiled,
            )
            for spec in self.host.runtimes
        ]

    async def run(self, request: RunRequest) -> RunResult:
        runtime = self._runtimes.get(request.language)
        if runtime is None:
            raise UnsupportedLanguage(request.language)
        with self._ids.taken() as ids:
            return await run_job(self._jail_host, runtime, ids, request)

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
