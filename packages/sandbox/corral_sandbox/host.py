"""Preparing a worker host once at start, and refusing to run jobs on one that cannot hold them.

`prepare_host` finds the nsjail binary and the policy, detects cgroup v1 or v2 and creates the
parent cgroups NsJail needs, checks swap accounting, readies the work root, cleans up what dead
workers left behind (leftovers.py), resolves the runtimes' versions, and finally runs each
runtime's self-test job (NsJailSandbox.selftest). Anything missing is a HostNotReady with the
reason: a worker that cannot enforce every limit must not take jobs.
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

from corral_sandbox import leftovers
from corral_sandbox.binary import BinaryError, locate_nsjail
from corral_sandbox.cgroups.detect import detect, ensure_parents
from corral_sandbox.cgroups.hierarchy import CgroupError
from corral_sandbox.policy import PolicyError, RuntimeSpec, load_runtimes, policy_dir, resolve_version
from corral_sandbox.report import HostNotReady, HostReport
from corral_sandbox.sandbox import NsJailSandbox
from corral_sandbox.scratch import ScratchError, mount_work_root
from corral_sandbox.settings import SandboxSettings


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
        host_cgroups = detect(settings.cgroup_mode, settings.cgroup_root, settings.cgroup_parent)
        with leftovers.preparing(settings.work_root):
            ensure_parents(host_cgroups)
            # The cgroups first: that kills a dead worker's jails, which may hold its mounts busy.
            cleaned = leftovers.sweep_cgroups(host_cgroups)
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
        _run_selftest(NsJailSandbox(host=report))
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
    """Create the work root, clean up dead workers' scratch spaces in it, mount it.

    Root's, mode 0711: searchable (NsJail binds from inside the jail's user namespace, see
    scratch.py), never listable or writable by anyone else.
    """
    os.makedirs(work_root, mode=0o711, exist_ok=True)
    info = os.lstat(work_root)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
        raise HostNotReady(f"work root {work_root} must be a directory owned by root")
    if stat.S_IMODE(info.st_mode) != 0o711:
        os.chmod(work_root, 0o711)
    try:
        cleaned = leftovers.clean_work_root(work_root)
    except (OSError, ScratchError) as error:
        raise HostNotReady(f"could not clean up after a dead worker in {work_root}: {error}") from None
    if not os.listdir(work_root):  # never hide a live worker's mounts under a new one
        mount_work_root(work_root)
    return cleaned


def _swap_in_use() -> bool:
    with contextlib.suppress(OSError):
        return len(Path("/proc/swaps").read_text().splitlines()) > 1
    return False


def _run_selftest(sandbox: NsJailSandbox) -> None:
    """Run the async self-test to its end: prepare_host is a start-up step, called before a
    worker's loop runs, or from inside a loop (tests), where it needs a loop of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_a_loop = False
    else:
        in_a_loop = True
    if not in_a_loop:
        asyncio.run(sandbox.selftest())
        return
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="corral-selftest") as pool:
        pool.submit(asyncio.run, sandbox.selftest()).result()
