"""Cgroup file plumbing: small reads and writes, a cgroup's tasks, removing a cgroup tree.

Everything here is synchronous; `remove_tree` and `remove_all` may wait for exiting tasks, so
callers on an event loop run them in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time

from corral_sandbox.cgroups.hierarchy import CgroupError


def read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)


def write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def keyed(path: str, key: str) -> int:
    """The value of `key` in a flat keyed file (cpu.stat, memory.events)."""
    for line in read(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def enable_v2_controllers(directory: str) -> None:
    control = os.path.join(directory, "cgroup.subtree_control")
    enabled = set(read(control).split())
    wanted = [name for name in ("memory", "pids", "cpu") if name not in enabled]
    if wanted:
        write(control, " ".join(f"+{name}" for name in wanted))


def tasks(directory: str) -> list[int]:
    """Every process in a cgroup and the cgroups under it (none if it is gone)."""
    pids: list[int] = []
    for path, _, files in os.walk(directory):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError, ValueError):
                pids.extend(int(pid) for pid in read(os.path.join(path, "cgroup.procs")).split())
    return pids


def procs(directory: str) -> list[int]:
    """The processes of one cgroup (not of those under it)."""
    return [int(pid) for pid in read(os.path.join(directory, "cgroup.procs")).split()]


def jail_cgroup(run_directory: str) -> str:
    """The one cgroup NsJail made for its jail under a run's cgroup (`NSJAIL.<pid>`)."""
    names = [name for name in os.listdir(run_directory) if name.startswith("NSJAIL.")]
    if len(names) != 1:
        raise CgroupError(f"{run_directory} holds {len(names)} NsJail cgroups, not one")
    return os.path.join(run_directory, names[0])


def kill_tasks(directory: str) -> None:
    for pid in tasks(directory):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove_tree(directory: str, wait_s: float) -> bool:
    """rmdir a cgroup and the cgroups under it (NsJail's, if NsJail could not); False if busy.

    A cgroup already gone counts as removed: another worker may be cleaning up the same one.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.rmdir(directory)
            return True
        except FileNotFoundError:
            return True
        except OSError as error:
            if error.errno != errno.EBUSY:
                return False
        # Busy: child cgroups left (a forked jail's, or NsJail's when it was killed before it
        # could remove its own), or tasks still exiting. Children removed, it is tried again at
        # once; only tasks still exiting are waited for.
        if _remove_children(directory):
            continue
        if time.monotonic() >= deadline:
            return _rmdir_quietly(directory)
        time.sleep(0.002)


def _remove_children(directory: str) -> bool:
    """rmdir every cgroup under `directory`, deepest first; whether any went."""
    removed = False
    with contextlib.suppress(OSError):
        for path, dirs, _ in os.walk(directory, topdown=False):
            for sub in dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(path, sub))
                    removed = True
    return removed


def remove_all(directories: list[str]) -> None:
    """Remove a run's cgroups, killing what is left in them; CgroupError if some stay."""
    busy = [directory for directory in directories if not remove_tree(directory, wait_s=0.5)]
    if busy:
        for directory in busy:
            kill_tasks(directory)
        still = [directory for directory in busy if not remove_tree(directory, wait_s=1.0)]
        if still:
            raise CgroupError(f"cgroups still busy, left behind: {', '.join(still)}")


def _rmdir_quietly(directory: str) -> bool:
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
