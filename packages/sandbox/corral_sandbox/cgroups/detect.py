"""Finding the cgroup controllers at worker start, and creating the parents NsJail needs."""

from __future__ import annotations

import contextlib
import os

from corral_sandbox.cgroups.files import enable_v2_controllers, read
from corral_sandbox.cgroups.hierarchy import CgroupError, HostCgroups

# cpu: the per-job CPU quota; cpuacct: the jail-wide CPU time the time limit is checked against.
_V1_CONTROLLERS = ("memory", "pids", "cpuacct", "cpu")


def detect(mode: str, cgroup_root: str, parent: str) -> HostCgroups:
    """v2 when `cgroup_root` is a unified hierarchy offering memory, pids and cpu, else v1 mounts."""
    controllers_file = os.path.join(cgroup_root, "cgroup.controllers")
    if mode in ("auto", "v2") and os.path.exists(controllers_file):
        offered = set(read(controllers_file).split())
        if {"memory", "pids", "cpu"} <= offered:
            swap = _v2_swap_accounting(cgroup_root)
            return HostCgroups(
                version=2,
                parent=parent,
                memory=cgroup_root,
                pids=cgroup_root,
                cpuacct=cgroup_root,
                cpu=cgroup_root,
                swap_accounting=swap,
            )
        if mode == "v2":
            raise CgroupError(f"{cgroup_root} offers {sorted(offered)}, not memory, pids and cpu")
    if mode == "v2":
        raise CgroupError(f"no cgroup v2 hierarchy at {cgroup_root}")
    mounts = _v1_mounts(cgroup_root)
    missing = [name for name in _V1_CONTROLLERS if name not in mounts]
    if missing:
        raise CgroupError(
            f"cgroup v1 controllers not mounted: {', '.join(missing)} (and no cgroup v2 with "
            f"memory, pids and cpu at {cgroup_root})"
        )
    memory = mounts["memory"]
    return HostCgroups(
        version=1,
        parent=parent,
        memory=memory,
        pids=mounts["pids"],
        cpuacct=mounts["cpuacct"],
        cpu=mounts["cpu"],
        swap_accounting=os.path.exists(os.path.join(memory, "memory.memsw.limit_in_bytes")),
    )


def ensure_parents(host: HostCgroups) -> None:
    """Create the parent cgroup in every controller NsJail and Corral use (NsJail does not)."""
    for directory in host.parent_dirs():
        os.makedirs(directory, mode=0o755, exist_ok=True)
    if host.version == 2:
        root = host.memory
        for directory in (root, os.path.join(root, host.parent)):
            enable_v2_controllers(directory)


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
                if option in _V1_CONTROLLERS:
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
