"""CPU time shares of two jobs running side by side, from their cgroups' CPU accounting
(cpuacct.usage on cgroup v1, cpu.stat on v2: RunResult.cpu_time_ms), not from latencies.

A hog (16 threads spinning) and a steady job (one thread spinning) start together on two slots
and run until their wall limit; each one's CPU time over both jobs' CPU time is its share. With
the per-job CPU quota (SandboxSettings.cpu_cores_per_job) the hog cannot take more than its
cores, and the steady job keeps about half; without it, CFS weighs the hog's 16 runnable
threads against one and the steady job gets less. Used by bench/cpu_fairness.py and by
packages/sandbox/tests/test_cpu_fairness.py.
"""

from __future__ import annotations

import asyncio
import textwrap

import msgspec

from corral_core.job import RunRequest, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_sandbox import HostReport, NsJailSandbox

SPIN = """
import threading
def spin():
    while True:
        pass
for _ in range({threads} - 1):
    threading.Thread(target=spin, daemon=True).start()
spin()
"""


class Shares(msgspec.Struct, frozen=True):
    hog_cpu_ms: int
    steady_cpu_ms: int

    @property
    def steady_share(self) -> float:
        """The steady job's part of the CPU time both jobs got."""
        return self.steady_cpu_ms / max(1, self.hog_cpu_ms + self.steady_cpu_ms)


def with_cpu_cores(host: HostReport, cores: float) -> HostReport:
    """The host with another per-job CPU quota (1024 cores: as good as none)."""
    return msgspec.structs.replace(host, settings=msgspec.structs.replace(host.settings, cpu_cores_per_job=cores))


async def measure(host: HostReport, *, wall_time_ms: int = 3_000, hog_threads: int = 16) -> Shares:
    sandbox = NsJailSandbox(host=host)
    limits = msgspec.structs.replace(
        DEFAULT_LIMIT_POLICY.defaults, wall_time_ms=wall_time_ms, cpu_time_ms=10_000, max_processes=hog_threads + 8
    )

    async def one(threads: int) -> int:
        code = textwrap.dedent(SPIN.format(threads=threads))
        result = await sandbox.run(RunRequest(language="python", code=code, limits=limits))
        assert result.verdict is Verdict.TIME_LIMIT_EXCEEDED, result
        return result.cpu_time_ms

    hog, steady = await asyncio.gather(one(hog_threads), one(1))
    return Shares(hog, steady)
