"""The baselines Corral is measured against: a bare NsJail run with Corral's own policy.

`bare_nsjail_argv` prepares what the adapter would (scratch tmpfs with the program in it, run
cgroups) once, and yields the exact NsJail command line the adapter builds, to be run as is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from corral_core.job import Limits
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_sandbox import HostReport, SandboxSettings, prepare_host, runname
from corral_sandbox.jail import jail_command, run_cgroups
from corral_sandbox.scratch import Scratch

LIMITS = DEFAULT_LIMIT_POLICY.defaults
SETTINGS = SandboxSettings(work_root="/run/corral-bench/jobs", jail_uid=99_980, jail_gid=99_980)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextmanager
def bare_nsjail_argv(
    code: str, limits: Limits = LIMITS, host: HostReport | None = None
) -> Iterator[list[str]]:
    host = host or prepare_host(SETTINGS)
    settings = host.settings
    runtime = next(spec for spec in host.runtimes if spec.language == "python")
    # Named as the adapter names its own runs, so that no worker's clean-up takes them for stale.
    run = runname.new_run()
    scratch = Scratch.create(
        settings.work_root, runname.scratch_name(run), 80 << 20, 4096, settings.jail_uid, settings.jail_gid
    )
    cgroups = None
    try:
        scratch.write(runtime.source, code.encode())
        scratch.seal()
        cgroups = run_cgroups(host.cgroups, run, limits.memory_mb << 20)
        yield jail_command(host.jail_host(), runtime, scratch, cgroups, limits, args=())
    finally:
        scratch.remove()
        if cgroups is not None:
            cgroups.remove()
