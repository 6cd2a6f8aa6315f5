"""Preparing a worker host once at start, and refusing to run jobs on one that cannot hold them.

`prepare_host` finds the nsjail binary and the policy, detects cgroup v1 or v2 and creates the
parent cgroups NsJail needs, checks swap accounting, readies the work root, cleans up what a
dead worker left behind (scratch mounts, run cgroups), resolves the runtimes' versions, and
finally runs each runtime's self-test job. Anything missing is a HostNotReady with the reason: a worker that
cannot enforce every limit must not take jobs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import grp
import os
import pwd
import stat
from pathlib import Path

import msgspec

from corral_core.job import Limits, RunRequest, Verdict
from corral_core.ports import SandboxError
from corral_sandbox import cgroups as cgroup_host
from corral_sandbox.binary import BinaryError, locate_nsjail
from corral_sandbox.cgroups import CgroupError, HostCgroups, owner_pid, process_alive
from corral_sandbox.policy import PolicyError, RuntimeSpec, load_runtimes, policy_dir, resolve_version
from corral_sandbox.scratch import ScratchError, mount_work_root, remove_stale
from corral_sandbox.settings import SandboxSettings

SELFTEST_LIMITS = Limits(
    cpu_time_ms=5_000,
    wall_time_ms=10_000,
    memory_mb=128,
    max_processes=8,
    max_output_bytes=4096,
    max_file_size_kb=1024,
)


class HostNotReady(SandboxError):
    """This host cannot run jobs safely; the message says why."""


class HostReport(msgspec.Struct, frozen=True, kw_only=True):
    settings: SandboxSettings
    nsjail_bin: str
    policy_dir: str
    cgroups: HostCgroups
    runtimes: tuple[RuntimeSpec, ...]
    cpu_count: int
    cleaned_up: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        c = self.cgroups
        lines = [
            f"nsjail: {self.nsjail_bin}",
            f"policy: {self.policy_dir}",
            f"jail user: host uid {self.settings.jail_uid}, gid {self.settings.jail_gid}",
            f"work root: {self.settings.work_root} (a tmpfs, with one tmpfs per job in it)",
        ]
        if c.version == 1:
            lines.append(
                f"cgroups: v1, parents {c.parent} under memory={c.memory} pids={c.pids} " f"cpuacct={c.cpuacct}"
            )
        else:
            lines.append(f"cgroups: v2 at {c.memory}, parent {c.parent} (untested mode)")
        lines.append(
            "swap: accounted, each job's memory+swap limit equals its memory limit"
            if c.swap_accounting
            else "swap: not accounted (no swap limit is set; the host must have no swap)"
        )
        lines.append(f"cpus: {self.cpu_count}")
        lines += [f"runtime: {spec.language} {spec.version}" for spec in self.runtimes]
        lines += [f"cleaned up after a dead worker: {path}" for path in self.cleaned_up]
        return lines


def prepare_host(settings: SandboxSettings | None = None) -> HostReport:
    settings = settings or SandboxSettings()
    if os.geteuid() != 0:
        raise HostNotReady("the worker must run as root: NsJail needs namespaces and cgroups")
    _check_jail_ids(settings)
    try:
        binary = locate_nsjail(settings.nsjail_bin, settings.binary_cache)
        policy = policy_dir(settings.policy_dir)
        runtimes = tuple(resolve_version(spec) for spec in load_runtimes(policy).values())
        _check_not_writable_by_others(binary, policy, runtimes)
        host_cgroups = cgroup_host.detect(settings.cgroup_mode, settings.cgroup_root, settings.cgroup_parent)
        cgroup_host.ensure_parents(host_cgroups)
        cleaned = cgroup_host.sweep_stale(host_cgroups)
        cleaned += _ready_work_root(settings.work_root)
    except (BinaryError, PolicyError, CgroupError, ScratchError, OSError) as error:
        raise HostNotReady(str(error)) from None
    if not host_cgroups.swap_accounting and _swap_in_use():
        raise HostNotReady("the host has swap but cgroups do not account it: jobs could swap")
    report = HostReport(
        settings=settings,
        nsjail_bin=str(binary),
        policy_dir=str(policy),
        cgroups=host_cgroups,
        runtimes=runtimes,
        cpu_count=len(os.sched_getaffinity(0)),
        cleaned_up=tuple(cleaned),
    )
    if settings.selftest:
        _selftest(report)
    return report


def _check_jail_ids(settings: SandboxSettings) -> None:
    """The jail's ids must be nobody's: no host account's files or processes to reach."""
    with contextlib.suppress(KeyError):
        user = pwd.getpwuid(settings.jail_uid)
        raise HostNotReady(f"jail_uid {settings.jail_uid} belongs to the host user {user.pw_name!r}")
    with contextlib.suppress(KeyError):
        group = grp.getgrgid(settings.jail_gid)
        raise HostNotReady(f"jail_gid {settings.jail_gid} belongs to the host group {group.gr_name!r}")


def _check_not_writable_by_others(binary: Path, policy: Path, runtimes: tuple[RuntimeSpec, ...]) -> None:
    """Whoever can change the binary or the policy can change what every jail allows."""
    paths = [binary, binary.parent, policy, policy / "runtimes.toml"]
    for spec in runtimes:
        paths += [policy / spec.config, policy / spec.seccomp]
    for path in paths:
        info = path.stat()
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or info.st_uid not in (0, os.geteuid()):
            raise HostNotReady(f"{path} must be owned by root and writable by root only")


def _ready_work_root(work_root: str) -> list[str]:
    """Create the work root and clean up scratch mounts of dead workers.

    Root's, mode 0711: searchable (NsJail binds from inside the jail's user namespace, see
    scratch.py), never listable or writable by anyone else.
    """
    os.makedirs(work_root, mode=0o711, exist_ok=True)
    info = os.lstat(work_root)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
        raise HostNotReady(f"work root {work_root} must be a directory owned by root")
    if stat.S_IMODE(info.st_mode) != 0o711:
        os.chmod(work_root, 0o711)
    cleaned: list[str] = []
    for entry in os.scandir(work_root):
        if not entry.name.startswith("job-") or process_alive(owner_pid(entry.name[4:])):
            continue
        try:
            remove_stale(work_root, entry.name)
        except (OSError, ScratchError) as error:
            raise HostNotReady(f"could not clean up {entry.path}: {error}") from None
        cleaned.append(entry.path)
    if not os.listdir(work_root):  # never hide a live worker's mounts under a new one
        mount_work_root(work_root)
    return cleaned


def _swap_in_use() -> bool:
    with contextlib.suppress(OSError):
        return len(Path("/proc/swaps").read_text().splitlines()) > 1
    return False


def _selftest(report: HostReport) -> None:
    """Run each runtime's self-test job, on a loop of its own (the caller may be in one)."""
    from corral_sandbox.jail import run_job  # jail.py needs HostReport: import at call time

    for runtime in report.runtimes:
        request = RunRequest(language=runtime.language, code=runtime.selftest_code, limits=SELFTEST_LIMITS)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="corral-selftest") as pool:
            try:
                result = pool.submit(asyncio.run, run_job(report, runtime, request)).result()
            except SandboxError as error:
                raise HostNotReady(f"a first {runtime.language} job failed: {error}") from None
        if result.verdict is not Verdict.OK or result.stdout != runtime.selftest_stdout:
            raise HostNotReady(f"a first {runtime.language} job did not run right: {result}")
