"""Where the cgroup controllers are on this host, and what one run's cgroups offer."""

from __future__ import annotations

import contextlib
import os
from typing import Protocol

import msgspec

# The CPU quota's period: a throttled job waits at most this long; short periods cost little.
CPU_PERIOD_US = 100_000


class CgroupError(Exception):
    pass


def cpu_quota_us(cpu_cores: float) -> int:
    """The quota per CPU_PERIOD_US for `cpu_cores` cores (the kernel's least is 1 ms)."""
    return max(1_000, round(cpu_cores * CPU_PERIOD_US))


class HostCgroups(msgspec.Struct, frozen=True, kw_only=True):
    """Where the controllers are on this host (found once, at worker start)."""

    version: int
    parent: str
    # v1: each controller's mount point (cpu and cpuacct are often the same, co-mounted);
    # v2: all four are the unified hierarchy's mount.
    memory: str
    pids: str
    cpuacct: str
    cpu: str
    swap_accounting: bool

    def parent_dirs(self) -> list[str]:
        mounts = dict.fromkeys((self.memory, self.pids, self.cpuacct, self.cpu))
        return [os.path.join(mount, self.parent) for mount in mounts]


class RunCgroups(Protocol):
    def nsjail_flags(self, max_processes: int) -> list[str]: ...

    def spawning(self) -> contextlib.AbstractContextManager[None]:
        """Wrap the spawn of NsJail: afterwards everything it starts is accounted to the run."""
        ...

    def cpu_ns(self) -> int: ...

    def peak_bytes(self) -> int: ...

    def out_of_memory(self) -> bool: ...

    def hand_over(self, memory_bytes: int, max_processes: int) -> None:
        """A warm jail's limits become the job's: the memory limit, and NsJail's own cgroup's
        memory (twice that, as at a cold start) and process limits (see warm.py)."""
        ...

    def adopt(self, pid: int, jail_memory_bytes: int, max_processes: int) -> None:
        """Put a process started elsewhere (a forked jail, fork.py) where NsJail puts its jail:
        a cgroup of its own under the run's (`NSJAIL.<pid>`, with that memory and process limit),
        and the run's CPU cgroups."""
        ...

    def jail_pids(self) -> list[int]:
        """The processes NsJail put in the run's memory cgroup (the jail's, never NsJail itself)."""
        ...

    def kill_all(self) -> None:
        """SIGKILL every process left in the run's cgroups (the fallback when NsJail is stuck)."""
        ...

    def remove(self) -> None:
        """Remove the run's cgroups, waiting for tasks still exiting: call it off the event loop."""
        ...
