"""A run never blocks the event loop: a slow clean-up in one slot does not delay another slot's
lease renewals (here a ticker coroutine standing in for them)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import msgspec

from corral_core.job import RunRequest, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_sandbox.runname import CGROUP_PREFIX
from corral_testbed.nsjail_host import assert_host_unharmed, nsjail_host, nsjail_sandbox

LIMITS = msgspec.structs.replace(DEFAULT_LIMIT_POLICY.defaults, wall_time_ms=10_000)
TICK_S = 0.005
# The slow clean-up below takes 0.5 s or more; a blocked loop would miss ticks that long.
MAX_GAP_S = 0.3


async def ticker(gaps: list[float], stop: asyncio.Event) -> None:
    last = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(TICK_S)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


async def straggle_in_the_next_run(memory_parent: str) -> asyncio.subprocess.Process:
    """Put a process of our own into the memory cgroup of this process's next run (as a task
    that outlives the jail would be), so that removing that cgroup has to wait and kill."""
    mine = f"{CGROUP_PREFIX}{os.getpid()}-"
    while True:
        runs = [name for name in os.listdir(memory_parent) if name.startswith(mine)]
        if runs:
            break
        await asyncio.sleep(0.001)
    # A child cgroup: cgroup v2 allows no task beside enabled controllers, and v1 does not mind.
    straggler_cgroup = os.path.join(memory_parent, runs[0], "straggler")
    os.mkdir(straggler_cgroup)
    process = await asyncio.create_subprocess_exec("/bin/sleep", "60")
    Path(straggler_cgroup, "cgroup.procs").write_text(str(process.pid))
    return process


async def test_a_slow_cgroup_removal_does_not_delay_another_coroutine() -> None:
    host = nsjail_host()
    sandbox = nsjail_sandbox()
    request = RunRequest(language="python", code="import time\ntime.sleep(0.5)\nprint('done')", limits=LIMITS)
    gaps: list[float] = []
    stop = asyncio.Event()
    ticks = asyncio.ensure_future(ticker(gaps, stop))
    straggler = asyncio.ensure_future(straggle_in_the_next_run(os.path.join(host.cgroups.memory, host.cgroups.parent)))
    try:
        result = await sandbox.run(request)
        process = await straggler
    finally:
        stop.set()
        await ticks
        straggler.cancel()
    assert (result.verdict, result.stdout) == (Verdict.OK, "done\n")
    # The clean-up had to kill it: the run's cgroup was busy, the slow path was taken.
    assert await asyncio.wait_for(process.wait(), 10) == -signal.SIGKILL
    assert max(gaps) < MAX_GAP_S, f"the event loop stalled for {max(gaps):.3f} s"
    assert_host_unharmed(host)
