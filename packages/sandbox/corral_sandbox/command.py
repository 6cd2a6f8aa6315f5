"""The NsJail command line for one job, built as a list in one place.

--config comes first: NsJail 3.6 lets the config file overwrite every flag given before it.
Everything per job follows it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

from corral_core.job import Limits
from corral_sandbox.policy_files import RuntimeSpec

# The job's user inside the jail; mapped to the host's unprivileged jail uid/gid.
JAIL_UID = 1000
JAIL_GID = 1000
# Where the per-job tmpfs directories appear in the jail.
BOX = "/box"
TMP = "/tmp"
SHM = "/dev/shm"
# NsJail's own log goes to this descriptor of NsJail (a memfd of the adapter's, see jail.py):
# no file the job could fill or reach. NsJail closes it in the jail before the program starts.
LOG_FD = 3
# A warm jail's end of its hand-over socket (warm.py; the runtime's warm hook expects it here).
HANDOVER_FD = 9
# A warm jail waits for its job for at most WARM_MAX_AGE_S, and its job then runs for at most
# the wall-time ceiling below: NsJail's backstop, counted from its start, covers both.
WARM_MAX_AGE_S = 600
WARM_MAX_WALL_S = 300


class JailPaths(NamedTuple):
    """Host paths of one job's scratch directories."""

    box: str
    tmp: str
    shm: str


def nsjail_command(
    *,
    binary: str,
    policy: Path,
    runtime: RuntimeSpec,
    paths: JailPaths,
    limits: Limits,
    jail_uid: int,
    jail_gid: int,
    cgroup_flags: list[str],
    args: tuple[str, ...],
    stage: str = "run",
    warm: bool = False,
    hook_dir: Path | None = None,
) -> list[str]:
    """The command line of the run, or (stage "compile") of a compiled runtime's compile.

    `warm`: a warm jail's, started before its job is known (warm.py): no arguments yet, the
    hand-over socket kept open, NsJail's wall backstop covering the wait; its other limits are
    set on it at hand-over.
    """
    compiling = stage == "compile"
    # Arguments are argv elements, never a shell's words: a compile takes its compiler's here.
    program = runtime.compile_command(args) if compiling else runtime.command(args)
    hook = [] if compiling or not runtime.warm_hook else ["--bindmount_ro", runtime.warm_hook_bind(hook_dir or policy)]
    rlimits = limit_flags(limits)
    if warm:
        rlimits[1] = str(WARM_MAX_AGE_S + WARM_MAX_WALL_S)
        hook += ["--pass_fd", str(HANDOVER_FD)]
    seccomp = (runtime.compile_seccomp or runtime.seccomp) if compiling else runtime.seccomp
    # fmt: off
    return [
        binary,
        "--config", str(policy / runtime.config),
        "--log_fd", str(LOG_FD),
        "--user", f"{JAIL_UID}:{jail_uid}:1",
        "--group", f"{JAIL_GID}:{jail_gid}:1",
        "--cwd", BOX,
        "--bindmount", f"{paths.box}:{BOX}",
        "--bindmount", f"{paths.tmp}:{TMP}",
        "--bindmount", f"{paths.shm}:{SHM}",
        "--seccomp_policy", str(policy / seccomp),
        *rlimits,
        *cgroup_flags,
        *(flag for bind in runtime.bind_ro for flag in ("--bindmount_ro", bind)),
        *(flag for link in runtime.symlinks for flag in ("--symlink", link)),
        *hook,
        *(flag for variable in runtime.env for flag in ("--env", variable)),
        "--",
        *program,
    ]
    # fmt: on


def limit_flags(limits: Limits) -> list[str]:
    """The job's rlimits, and NsJail's whole-second wall limit as a backstop above ours.

    RLIMIT_CPU is per process and also a backstop (whole seconds, one above the limit): the
    adapter stops the jail when the CPU time of all its processes together reaches the limit.
    RLIMIT_FSIZE is in MiB on NsJail's command line, so the file-size limit is rounded up to
    whole MiB.
    """
    # fmt: off
    return [
        "--time_limit", str(math.ceil(limits.wall_time_ms / 1000) + 1),
        "--rlimit_cpu", str(math.ceil(limits.cpu_time_ms / 1000) + 1),
        "--rlimit_fsize", str(max(1, math.ceil(limits.max_file_size_kb / 1024))),
        "--rlimit_nproc", str(limits.max_processes),
    ]
    # fmt: on
