"""One run's cgroups on cgroup v1: memory, pids, cpuacct and cpu hierarchies.

- memory: the run's limit is set on the run's parent (memory.limit_in_bytes, and
  memory.memsw.limit_in_bytes equal to it when swap accounting exists, so no swap is used).
  NsJail's own cgroup gets twice that, so the parent is always the one to run out: v1 records
  an OOM only in the cgroup that ran out and does not pass it up, and NsJail's cgroup is gone
  when we look. The OOM is caught by an eventfd registered on the parent's memory.oom_control;
  the peak is its memory.max_usage_in_bytes.
- pids: NsJail's cgroup carries pids.max; the parent only collects it for removal.
- cpuacct and cpu: NsJail places jails in neither (its own cpu quota has a 1 s period, which
  lets a job burst on every core for a whole period). A v1 cgroup holds threads, and a child
  starts in its creator's cgroups, so the thread that spawns NsJail steps into the run's
  cpuacct and cpu cgroups for the spawn and back out: NsJail and everything it starts are
  accounted, and held to the run's CPU quota (cpu.cfs_quota_us per 100 ms period), from their
  first instruction (NsJail's own few milliseconds included).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from corral_sandbox import runname
from corral_sandbox.cgroups import files
from corral_sandbox.cgroups.hierarchy import CPU_PERIOD_US, HostCgroups, cpu_quota_us


class V1RunCgroups:
    def __init__(self, host: HostCgroups, run: str, memory_bytes: int, cpu_cores: float) -> None:
        self._host = host
        self._relative = f"{host.parent}/{runname.cgroup_name(run)}"
        self._memory = os.path.join(host.memory, self._relative)
        self._pids = os.path.join(host.pids, self._relative)
        self._cpuacct = os.path.join(host.cpuacct, self._relative)
        self._cpu = os.path.join(host.cpu, self._relative)
        self._memory_bytes = memory_bytes
        # NsJail's cgroup under the run's memory cgroup, once `hand_over` has looked it up.
        self._jail: str | None = None
        self._created: list[str] = []
        self._oom_fds: tuple[int, int] | None = None
        self._oom_seen = False
        try:
            # cpu and cpuacct may be one co-mounted hierarchy: one directory then.
            for directory in dict.fromkeys((self._memory, self._pids, self._cpuacct, self._cpu)):
                os.mkdir(directory, 0o700)
                self._created.append(directory)
            files.write(os.path.join(self._cpu, "cpu.cfs_period_us"), str(CPU_PERIOD_US))
            files.write(os.path.join(self._cpu, "cpu.cfs_quota_us"), str(cpu_quota_us(cpu_cores)))
            files.write(os.path.join(self._memory, "memory.limit_in_bytes"), str(memory_bytes))
            if host.swap_accounting:
                files.write(os.path.join(self._memory, "memory.memsw.limit_in_bytes"), str(memory_bytes))
            self._watch_oom()
        except BaseException:
            self.remove()
            raise

    def _watch_oom(self) -> None:
        event_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            control_fd = os.open(os.path.join(self._memory, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            os.close(event_fd)
            raise
        self._oom_fds = (event_fd, control_fd)
        files.write(os.path.join(self._memory, "cgroup.event_control"), f"{event_fd} {control_fd}")

    def nsjail_flags(self, max_processes: int) -> list[str]:
        # fmt: off
        return [
            "--cgroup_mem_mount", self._host.memory,
            "--cgroup_mem_parent", self._relative,
            # Above the parent's limit on purpose: the parent must be the one to run out.
            "--cgroup_mem_max", str(2 * self._memory_bytes),
            "--cgroup_pids_mount", self._host.pids,
            "--cgroup_pids_parent", self._relative,
            "--cgroup_pids_max", str(max_processes),
        ]
        # fmt: on

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        tid = str(threading.get_native_id())
        entered: list[tuple[str, str]] = []
        try:
            for mount, controller in self._cpu_hierarchies():
                home = _home_tasks(mount, controller)
                files.write(os.path.join(mount, self._relative, "tasks"), tid)
                entered.append((mount, home))
            yield
        finally:
            for mount, home in entered:
                try:
                    files.write(home, tid)
                except OSError:
                    files.write(os.path.join(mount, "tasks"), tid)

    def _cpu_hierarchies(self) -> list[tuple[str, str]]:
        """(mount, controller) of cpuacct and cpu: one entry when they are co-mounted."""
        if self._host.cpuacct == self._host.cpu:
            return [(self._host.cpu, "cpuacct")]
        return [(self._host.cpuacct, "cpuacct"), (self._host.cpu, "cpu")]

    def cpu_ns(self) -> int:
        return int(files.read(os.path.join(self._cpuacct, "cpuacct.usage")))

    def peak_bytes(self) -> int:
        return int(files.read(os.path.join(self._memory, "memory.max_usage_in_bytes")))

    def out_of_memory(self) -> bool:
        if self._oom_fds is not None and not self._oom_seen:
            try:
                self._oom_seen = int.from_bytes(os.read(self._oom_fds[0], 8), "little") > 0
            except BlockingIOError:
                pass
        return self._oom_seen

    def hand_over(self, memory_bytes: int, max_processes: int) -> None:
        # memsw may never be below the memory limit: raise memsw first, lower it last.
        limits = [("memory.limit_in_bytes", memory_bytes)]
        if self._host.swap_accounting:
            memsw = ("memory.memsw.limit_in_bytes", memory_bytes)
            limits = [memsw, *limits] if memory_bytes > self._memory_bytes else [*limits, memsw]
        for name, value in limits:
            files.write(os.path.join(self._memory, name), str(value))
        self._memory_bytes = memory_bytes
        self._jail = files.jail_cgroup(self._memory)
        files.write(os.path.join(self._jail, "memory.limit_in_bytes"), str(2 * memory_bytes))
        # NsJail names its cgroup alike in every controller (NSJAIL.<pid>).
        files.write(os.path.join(self._pids, os.path.basename(self._jail), "pids.max"), str(max_processes))

    def adopt(self, pid: int, jail_memory_bytes: int, max_processes: int) -> None:
        name = f"NSJAIL.{pid}"
        memory, pids = os.path.join(self._memory, name), os.path.join(self._pids, name)
        for directory in (memory, pids):
            os.mkdir(directory, 0o700)
        files.write(os.path.join(memory, "memory.limit_in_bytes"), str(jail_memory_bytes))
        files.write(os.path.join(pids, "pids.max"), str(max_processes))
        for directory in dict.fromkeys((memory, pids, self._cpuacct, self._cpu)):
            files.write(os.path.join(directory, "cgroup.procs"), str(pid))

    def jail_pids(self) -> list[int]:
        # Only NsJail's cgroup holds processes (NsJail itself is in none of the run's memory
        # cgroups): one read, not a walk of the tree.
        return files.procs(self._jail) if self._jail is not None else files.tasks(self._memory)

    def kill_all(self) -> None:
        for directory in self._created:
            files.kill_tasks(directory)

    def remove(self) -> None:
        if self._oom_fds is not None:
            self.out_of_memory()
            for fd in self._oom_fds:
                os.close(fd)
            self._oom_fds = None
        files.remove_all(self._created)
        self._created = []


_homes = threading.local()


def _home_tasks(mount: str, controller: str) -> str:
    """The tasks file of the calling thread's own cgroup of `controller` (read once per thread)."""
    cached: dict[str, str] = getattr(_homes, "tasks", None) or {}
    _homes.tasks = cached
    home = cached.get(controller)
    if home is None:
        path = "/"
        with open("/proc/thread-self/cgroup") as lines:
            for line in lines:
                _, controllers, cgroup = line.rstrip("\n").split(":", 2)
                if controller in controllers.split(","):
                    path = cgroup
        home = cached[controller] = os.path.join(mount, path.lstrip("/"), "tasks")
    return home
