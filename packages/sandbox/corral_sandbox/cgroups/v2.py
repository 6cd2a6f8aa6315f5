"""One run's cgroups on cgroup v2 (tested in a VM by `make test-cgroup2`: this host is v1 hybrid).

The run's parent is NsJail's cgroupv2_mount, with memory and pids enabled for its children;
memory.max (and memory.swap.max 0) and the CPU quota cpu.max on it; OOM from memory.events,
peak from memory.peak, CPU from cpu.stat, kill with cgroup.kill.
"""

from __future__ import annotations

import contextlib
import os

from corral_sandbox import runname
from corral_sandbox.cgroups import files
from corral_sandbox.cgroups.hierarchy import CPU_PERIOD_US, HostCgroups, cpu_quota_us


class V2RunCgroups:
    def __init__(self, host: HostCgroups, run: str, memory_bytes: int, cpu_cores: float) -> None:
        self._directory = os.path.join(host.memory, host.parent, runname.cgroup_name(run))
        self._memory_bytes = memory_bytes
        # NsJail's cgroup under the run's, once `hand_over` has looked it up.
        self._jail: str | None = None
        self._created: list[str] = []
        try:
            os.mkdir(self._directory, 0o700)
            self._created.append(self._directory)
            files.enable_v2_controllers(self._directory)
            files.write(os.path.join(self._directory, "memory.max"), str(memory_bytes))
            files.write(os.path.join(self._directory, "cpu.max"), f"{cpu_quota_us(cpu_cores)} {CPU_PERIOD_US}")
            swap_max = os.path.join(self._directory, "memory.swap.max")
            if os.path.exists(swap_max):
                files.write(swap_max, "0")
        except BaseException:
            self.remove()
            raise

    def nsjail_flags(self, max_processes: int) -> list[str]:
        # fmt: off
        return [
            "--use_cgroupv2",
            "--cgroupv2_mount", self._directory,
            "--cgroup_mem_max", str(2 * self._memory_bytes),
            "--cgroup_pids_max", str(max_processes),
        ]
        # fmt: on

    def spawning(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def cpu_ns(self) -> int:
        return files.keyed(os.path.join(self._directory, "cpu.stat"), "usage_usec") * 1000

    def peak_bytes(self) -> int:
        try:
            return int(files.read(os.path.join(self._directory, "memory.peak")))
        except (OSError, ValueError):
            return 0

    def out_of_memory(self) -> bool:
        events = os.path.join(self._directory, "memory.events")
        return files.keyed(events, "oom") > 0 or files.keyed(events, "oom_kill") > 0

    def hand_over(self, memory_bytes: int, max_processes: int) -> None:
        files.write(os.path.join(self._directory, "memory.max"), str(memory_bytes))
        self._memory_bytes = memory_bytes
        self._jail = files.jail_cgroup(self._directory)
        files.write(os.path.join(self._jail, "memory.max"), str(2 * memory_bytes))
        files.write(os.path.join(self._jail, "pids.max"), str(max_processes))

    def adopt(self, pid: int, jail_memory_bytes: int, max_processes: int) -> None:
        jail = os.path.join(self._directory, f"NSJAIL.{pid}")
        os.mkdir(jail, 0o700)
        files.write(os.path.join(jail, "memory.max"), str(jail_memory_bytes))
        files.write(os.path.join(jail, "pids.max"), str(max_processes))
        files.write(os.path.join(jail, "cgroup.procs"), str(pid))

    def jail_pids(self) -> list[int]:
        # Only NsJail's cgroup holds processes (NsJail itself stays out of the run's cgroup):
        # one read, not a walk of the tree.
        return files.procs(self._jail) if self._jail is not None else files.tasks(self._directory)

    def kill_all(self) -> None:
        try:
            files.write(os.path.join(self._directory, "cgroup.kill"), "1")
        except OSError:
            files.kill_tasks(self._directory)

    def remove(self) -> None:
        files.remove_all(self._created)
        self._created = []
