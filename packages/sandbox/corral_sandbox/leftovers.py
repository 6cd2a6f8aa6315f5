"""Cleaning up after workers that died: their scratch mounts and run cgroups.

A worker killed with SIGKILL leaves its jobs' scratch tmpfs mounts, their run cgroups, and
NsJail with its jails still running. The next worker to start on the host removes them; which
are whose is in the names (runname.py), so a live worker's are never touched.

Several workers may start at the same moment (a supervisor restarting its children, a reboot):
preparations take turns on a lock beside the work root, and every step is idempotent anyway, so a
leftover that another worker removed first (directory, mount or cgroup gone) is no error. Only
one that stays and cannot be removed is.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from corral_sandbox import runname
from corral_sandbox.cgroups import files
from corral_sandbox.cgroups.hierarchy import CgroupError, HostCgroups
from corral_sandbox.scratch import remove_stale

# A dead worker's jails are SIGKILLed, then their cgroups removed; tasks take a moment to exit.
_CGROUP_ATTEMPTS = 50
_CGROUP_WAIT_S = 0.1


@contextmanager
def preparing(work_root: str) -> Iterator[None]:
    """Hold the host's preparation lock: `<work_root>.lock`, an flock released even on SIGKILL.

    Not in the work root itself: preparing may mount a tmpfs over it.
    """
    os.makedirs(os.path.dirname(work_root), mode=0o755, exist_ok=True)
    fd = os.open(f"{work_root}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def sweep_cgroups(host: HostCgroups) -> list[str]:
    """Kill the tasks in, and remove, the run cgroups of workers that are gone; return them."""
    removed: list[str] = []
    for parent in host.parent_dirs():
        try:
            entries = list(os.scandir(parent))
        except FileNotFoundError:
            continue
        for entry in entries:
            owner = runname.owner(entry.name, runname.CGROUP_PREFIX)
            if owner is None or runname.alive(owner) or not entry.is_dir(follow_symlinks=False):
                continue
            for _ in range(_CGROUP_ATTEMPTS):
                files.kill_tasks(entry.path)
                if files.remove_tree(entry.path, wait_s=_CGROUP_WAIT_S):
                    break
            else:
                raise CgroupError(f"could not remove {entry.path}: it stays busy")
            removed.append(entry.path)
    return removed


def clean_work_root(work_root: str) -> list[str]:
    """Unmount and remove the scratch spaces of workers that are gone; return them."""
    removed: list[str] = []
    for entry in os.scandir(work_root):
        owner = runname.owner(entry.name, runname.SCRATCH_PREFIX)
        if owner is None or runname.alive(owner):
            continue
        remove_stale(entry.path)
        removed.append(entry.path)
    return removed
