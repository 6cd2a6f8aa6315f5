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
from corral_sandbox.jailids import JailIds
from corral_sandbox.scratch import Scratch

LIMITS = DEFAULT_LIMIT_POLICY.defaults
SETTINGS = SandboxSettings(
    work_root="/run/corral-bench/jobs", jail_uid_first=99_700, jail_gid_first=99_700, jail_id_count=16
)


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
    # The last ids of the range: the adapter hands out the first ones first.
    ids = JailIds(settings.jail_uid_first + settings.jail_id_count - 1, settings.jail_gid_first + settings.jail_id_count - 1)
    scratch = Scratch.create(settings.work_root, runname.scratch_name(run), 80 << 20, 4096, ids.uid, ids.gid)
    cgroups = None
    try:
        scratch.write(runtime.source, code.encode())
        scratch.seal()
        cgroups = run_cgroups(host.cgroups, run, limits.memory_mb << 20, settings.cpu_cores_per_job)
        argv = jail_command(host.jail_host(), runtime, ids, scratch, cgroups, limits, args=())
        # NsJail logs to stderr here, as it would bare: the adapter passes it a memfd instead.
        argv[argv.index("--log_fd") + 1] = "2"
        yield argv
    finally:
        scratch.remove()
        if cgroups is not None:
            cgroups.remove()
