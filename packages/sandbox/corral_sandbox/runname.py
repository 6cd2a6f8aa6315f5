"""Run names: who owns a scratch directory or a run cgroup, written into its name.

A run is named `{pid}-{start}-{hex}`: the worker's pid, the worker's start time (clock ticks
since boot, from /proc/<pid>/stat) and a random part. Its scratch directory is `job-<run>`, its
cgroup `corral-<run>`. The name is the only record of ownership, so a worker starting after a
crash can tell a dead worker's leftovers from a live one's without any shared state; the start
time tells a dead worker from a later process that got its pid. Names of the older form
`{pid}-{hex}` (no start time) are still read: they are owned while that pid lives.
"""

from __future__ import annotations

import functools
import os
import secrets
from typing import NamedTuple

SCRATCH_PREFIX = "job-"
CGROUP_PREFIX = "corral-"


class Owner(NamedTuple):
    pid: int
    # None for names of the older form, which did not record it.
    start: int | None


def new_run() -> str:
    pid = os.getpid()
    return f"{pid}-{_start_of(pid)}-{secrets.token_hex(6)}"


def scratch_name(run: str) -> str:
    return f"{SCRATCH_PREFIX}{run}"


def cgroup_name(run: str) -> str:
    return f"{CGROUP_PREFIX}{run}"


def owner(entry: str, prefix: str) -> Owner | None:
    """Who owns a directory named `<prefix><run>`; None if it is not a run's at all."""
    if not entry.startswith(prefix):
        return None
    parts = entry[len(prefix) :].split("-")
    if not all(part.isdigit() for part in parts[:-1]) or not parts[-1].isalnum():
        return None
    if len(parts) == 3:
        return Owner(int(parts[0]), int(parts[1]))
    if len(parts) == 2:
        return Owner(int(parts[0]), None)
    return None


def alive(owner: Owner) -> bool:
    """Whether the owning worker still runs: its pid is there, not a zombie, and started when
    the name says. When /proc cannot tell, the owner counts as alive: a leftover kept is a
    leak, a live worker's jail removed is a broken job."""
    if owner.pid <= 0:
        return False
    try:
        state, start = _stat(owner.pid)
    except (FileNotFoundError, ProcessLookupError):
        return False
    except (OSError, ValueError, IndexError):
        return True
    if state in ("Z", "X"):
        return False
    return owner.start is None or owner.start == start


def _stat(pid: int) -> tuple[str, int]:
    """State and start time of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        fields = stat.read().rsplit(b")", 1)[1].split()
    return fields[0].decode(), int(fields[19])


@functools.cache
def _start_of(pid: int) -> int:
    # Keyed by pid, not cached once: a forked child is a worker of its own.
    return _stat(pid)[1]
