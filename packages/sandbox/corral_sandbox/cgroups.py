"""Cgroups: finding the controllers, and one parent cgroup per run that outlives NsJail's own.

NsJail puts a jail in `<parent>/NSJAIL.<pid>` and removes that cgroup when it reaps the jail,
taking its counters with it. So each run gets its own parent, `<cgroup_parent>/corral-<run>`,
created here before NsJail starts and removed after: the run's limits, peak memory, OOM events
and CPU time are read from it once NsJail is done.

cgroup v1 (tested): memory, pids and cpuacct hierarchies.
  - memory: the run's limit is set on the run's parent (memory.limit_in_bytes, and
    memory.memsw.limit_in_bytes equal to it when swap accounting exists, so no swap is used).
    NsJail's own cgroup gets twice that, so the parent is always the one to run out: v1 records
    an OOM only in the cgroup that ran out and does not pass it up, and NsJail's cgroup is gone
    when we look. The OOM is caught by an eventfd registered on the parent's memory.oom_control;
    the peak is its memory.max_usage_in_bytes.
  - pids: NsJail's cgroup carries pids.max; the parent only collects it for removal.
  - cpuacct: NsJail does not place jails in cpuacct. A v1 cgroup holds threads, and a child
    starts in its creator's cgroup, so the thread that spawns NsJail steps into the run's
    cpuacct cgroup for the spawn and back out: NsJail and everything it starts are accounted
    there from their first instruction (NsJail's own few milliseconds included).
cgroup v2 (UNTESTED here: this host is v1 hybrid): the run's parent is NsJail's cgroupv2_mount,
  with memory and pids enabled for its children; memory.max (and memory.swap.max 0) on it;
  OOM from memory.events, peak from memory.peak, CPU from cpu.stat, kill with cgroup.kill.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Protocol

import msgspec

RUN_PREFIX = "corral-"


class CgroupError(Exception):
    pass


class HostCgroups(msgspec.Struct, frozen=True, kw_only=True):
    """Where the controllers are on this host (found once, at worker start)."""

    version: int
    parent: str
    # v1: each controller's mount point; v2: all three are the unified hierarchy's mount.
    memory: str
    pids: str
    cpuacct: str
    swap_accounting: bool

    def parent_dirs(self) -> list[str]:
        mounts = dict.fromkeys((self.memory, self.pids, self.cpuacct))
        return [os.path.join(mount, self.parent) for mount in mounts]

    def new_run(self, name: str, memory_bytes: int) -> RunCgroups:
        if self.version == 1:
            return V1RunCgroups(self, name, memory_bytes)
        return V2RunCgroups(self, name, memory_bytes)


class RunCgroups(Protocol):
    def nsjail_flags(self, max_processes: int) -> list[str]: ...

    def spawning(self) -> contextlib.AbstractContextManager[None]:
        """Wrap the spawn of NsJail: afterwards everything it starts is accounted to the run."""
        ...

    def cpu_ns(self) -> int: ...

    def peak_bytes(self) -> int: ...

    def out_of_memory(self) -> bool: ...

    def kill_all(self) -> None:
        """SIGKILL every process left in the run's cgroups (the fallback when NsJail is stuck)."""
        ...

    def remove(self) -> None: ...


# -- host level -----------------------------------------------------------------------------


def detect(mode: str, cgroup_root: str, parent: str) -> HostCgroups:
    """v2 when `cgroup_root` is a unified hierarchy offering memory and pids, else v1 mounts."""
    controllers_file = os.path.join(cgroup_root, "cgroup.controllers")
    if mode in ("auto", "v2") and os.path.exists(controllers_file):
        offered = set(_read(controllers_file).split())
        if {"memory", "pids"} <= offered:
            swap = _v2_swap_accounting(cgroup_root)
            return HostCgroups(
                version=2,
                parent=parent,
                memory=cgroup_root,
                pids=cgroup_root,
                cpuacct=cgroup_root,
                swap_accounting=swap,
            )
        if mode == "v2":
            raise CgroupError(f"{cgroup_root} offers {sorted(offered)}, not memory and pids")
    if mode == "v2":
        raise CgroupError(f"no cgroup v2 hierarchy at {cgroup_root}")
    mounts = _v1_mounts(cgroup_root)
    missing = [name for name in ("memory", "pids", "cpuacct") if name not in mounts]
    if missing:
        raise CgroupError(
            f"cgroup v1 controllers not mounted: {', '.join(missing)} (and no cgroup v2 with "
            f"memory and pids at {cgroup_root})"
        )
    memory = mounts["memory"]
    return HostCgroups(
        version=1,
        parent=parent,
        memory=memory,
        pids=mounts["pids"],
        cpuacct=mounts["cpuacct"],
        swap_accounting=os.path.exists(os.path.join(memory, "memory.memsw.limit_in_bytes")),
    )


def ensure_parents(host: HostCgroups) -> None:
    """Create the parent cgroup in every controller NsJail and Corral use (NsJail does not)."""
    for directory in host.parent_dirs():
        os.makedirs(directory, mode=0o755, exist_ok=True)
    if host.version == 2:
        root = host.memory
        for directory in (root, os.path.join(root, host.parent)):
            _enable_v2_controllers(directory)


def sweep_stale(host: HostCgroups) -> list[str]:
    """Remove run cgroups of workers that are gone (their pid is in the name). Returns them."""
    removed: list[str] = []
    for parent in host.parent_dirs():
        try:
            entries = list(os.scandir(parent))
        except FileNotFoundError:
            continue
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False) or not entry.name.startswith(RUN_PREFIX):
                continue
            if process_alive(owner_pid(entry.name[len(RUN_PREFIX) :])):
                continue
            for _ in range(50):
                _kill_tasks(entry.path)
                if _remove_tree(entry.path, wait_s=0.1):
                    removed.append(entry.path)
                    break
    return removed


def owner_pid(run_name: str) -> int:
    head = run_name.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- one run, v1 ----------------------------------------------------------------------------


class V1RunCgroups:
    def __init__(self, host: HostCgroups, name: str, memory_bytes: int) -> None:
        self._host = host
        self._relative = f"{host.parent}/{RUN_PREFIX}{name}"
        self._memory = os.path.join(host.memory, self._relative)
        self._pids = os.path.join(host.pids, self._relative)
        self._cpuacct = os.path.join(host.cpuacct, self._relative)
        self._memory_bytes = memory_bytes
        self._created: list[str] = []
        self._oom_fds: tuple[int, int] | None = None
        self._oom_seen = False
        try:
            for directory in (self._memory, self._pids, self._cpuacct):
                os.mkdir(directory, 0o700)
                self._created.append(directory)
            _write(os.path.join(self._memory, "memory.limit_in_bytes"), str(memory_bytes))
            if host.swap_accounting:
                _write(os.path.join(self._memory, "memory.memsw.limit_in_bytes"), str(memory_bytes))
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
        _write(os.path.join(self._memory, "cgroup.event_control"), f"{event_fd} {control_fd}")

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
        home = _home_tasks(self._host.cpuacct)
        _write(os.path.join(self._cpuacct, "tasks"), tid)
        try:
            yield
        finally:
            try:
                _write(home, tid)
            except OSError:
                _write(os.path.join(self._host.cpuacct, "tasks"), tid)

    def cpu_ns(self) -> int:
        return int(_read(os.path.join(self._cpuacct, "cpuacct.usage")))

    def peak_bytes(self) -> int:
        return int(_read(os.path.join(self._memory, "memory.max_usage_in_bytes")))

    def out_of_memory(self) -> bool:
        if self._oom_fds is not None and not self._oom_seen:
            try:
                self._oom_seen = int.from_bytes(os.read(self._oom_fds[0], 8), "little") > 0
            except BlockingIOError:
                pass
        return self._oom_seen

    def kill_all(self) -> None:
        for directory in self._created:
            _kill_tasks(directory)

    def remove(self) -> None:
        if self._oom_fds is not None:
            self.out_of_memory()
            for fd in self._oom_fds:
                os.close(fd)
            self._oom_fds = None
        _remove_all(self._created)
        self._created = []


# -- one run, v2 (untested on this host) ----------------------------------------------------


class V2RunCgroups:
    def __init__(self, host: HostCgroups, name: str, memory_bytes: int) -> None:
        self._directory = os.path.join(host.memory, host.parent, f"{RUN_PREFIX}{name}")
        self._memory_bytes = memory_bytes
        self._created: list[str] = []
        try:
            os.mkdir(self._directory, 0o700)
            self._created.append(self._directory)
            _enable_v2_controllers(self._directory)
            _write(os.path.join(self._directory, "memory.max"), str(memory_bytes))
            swap_max = os.path.join(self._directory, "memory.swap.max")
            if os.path.exists(swap_max):
                _write(swap_max, "0")
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
        return _keyed(os.path.join(self._directory, "cpu.stat"), "usage_usec") * 1000

    def peak_bytes(self) -> int:
        try:
            return int(_read(os.path.join(self._directory, "memory.peak")))
        except (OSError, ValueError):
            return 0

    def out_of_memory(self) -> bool:
        events = os.path.join(self._directory, "memory.events")
        return _keyed(events, "oom") > 0 or _keyed(events, "oom_kill") > 0

    def kill_all(self) -> None:
        try:
            _write(os.path.join(self._directory, "cgroup.kill"), "1")
        except OSError:
            _kill_tasks(self._directory)

    def remove(self) -> None:
        _remove_all(self._created)
        self._created = []


# -- file plumbing --------------------------------------------------------------------------


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _keyed(path: str, key: str) -> int:
    for line in _read(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


_homes = threading.local()


def _home_tasks(cpuacct_mount: str) -> str:
    """The tasks file of the calling thread's own cpuacct cgroup (read once per thread)."""
    home = getattr(_homes, "cpuacct", None)
    if home is None:
        path = "/"
        with open("/proc/thread-self/cgroup") as lines:
            for line in lines:
                _, controllers, cgroup = line.rstrip("\n").split(":", 2)
                if "cpuacct" in controllers.split(","):
                    path = cgroup
        home = _homes.cpuacct = os.path.join(cpuacct_mount, path.lstrip("/"), "tasks")
    return home


def _v1_mounts(cgroup_root: str) -> dict[str, str]:
    """controller -> mount point of each cgroup v1 hierarchy, preferring those under cgroup_root."""
    found: dict[str, str] = {}
    with open("/proc/self/mountinfo") as lines:
        for line in lines:
            head, _, tail = line.partition(" - ")
            fields, tail_fields = head.split(), tail.split()
            if len(fields) < 5 or len(tail_fields) < 3 or tail_fields[0] != "cgroup":
                continue
            mount_point = fields[4].replace("\\040", " ")
            for option in tail_fields[2].split(","):
                if option in ("memory", "pids", "cpuacct"):
                    under_root = mount_point.startswith(cgroup_root.rstrip("/") + "/")
                    if option not in found or under_root:
                        found[option] = mount_point
    return found


def _v2_swap_accounting(root: str) -> bool:
    """Whether cgroups under `root` account swap (memory.swap.max exists in them)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            if entry.is_dir(follow_symlinks=False):
                return os.path.exists(os.path.join(entry.path, "memory.swap.max"))
    return False


def _enable_v2_controllers(directory: str) -> None:
    control = os.path.join(directory, "cgroup.subtree_control")
    enabled = set(_read(control).split())
    wanted = [name for name in ("memory", "pids") if name not in enabled]
    if wanted:
        _write(control, " ".join(f"+{name}" for name in wanted))


def _tasks(directory: str) -> list[int]:
    pids: list[int] = []
    for path, _, files in os.walk(directory):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError, ValueError):
                pids.extend(int(pid) for pid in _read(os.path.join(path, "cgroup.procs")).split())
    return pids


def _kill_tasks(directory: str) -> None:
    for pid in _tasks(directory):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _remove_tree(directory: str, wait_s: float) -> bool:
    """rmdir a cgroup and the cgroups under it (NsJail's, if NsJail could not); False if busy."""
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
        # Busy: child cgroups left (NsJail was killed before it could remove its own), or
        # tasks still exiting.
        with contextlib.suppress(OSError):
            for path, dirs, _ in os.walk(directory, topdown=False):
                for sub in dirs:
                    with contextlib.suppress(OSError):
                        os.rmdir(os.path.join(path, sub))
        if time.monotonic() >= deadline:
            return _rmdir_quietly(directory)
        time.sleep(0.002)


def _rmdir_quietly(directory: str) -> bool:
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _remove_all(directories: list[str]) -> None:
    busy = [directory for directory in directories if not _remove_tree(directory, wait_s=0.5)]
    if busy:
        for directory in busy:
            _kill_tasks(directory)
        still = [directory for directory in busy if not _remove_tree(directory, wait_s=1.0)]
        if still:
            raise CgroupError(f"cgroups still busy, left behind: {', '.join(still)}")
