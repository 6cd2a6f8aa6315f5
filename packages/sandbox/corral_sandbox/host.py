"""Preparing a worker host once at start, and refusing to run jobs on one that cannot hold them.

`prepare_host` finds the nsjail binary and the policy, refuses a seccomp policy that would let
x32 calls through on a host that runs them, detects cgroup v1 or v2 and creates the parent
cgroups NsJail needs, checks swap accounting, readies the work root, cleans up what dead workers
left behind (leftovers.py), checks that no account or process uses the jail ids, resolves the
runtimes' versions, and finally runs each runtime's self-test job (NsJailSandbox.selftest). Anything missing is a HostNotReady with the
reason: a worker that cannot enforce every limit must not take jobs. A runtime whose self-test fails is
not offered (the report and the log say why); a host where none passes is not ready.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from corral_sandbox import leftovers, x32
from corral_sandbox.binary import BinaryError, locate_nsjail
from corral_sandbox.cgroups.detect import detect, ensure_parents
from corral_sandbox.cgroups.hierarchy import CgroupError
from corral_sandbox.jailids import JailIdRange, ids_in_use, ready_lease_dir
from corral_sandbox.policy_files import PolicyError, RuntimeSpec, load_runtimes, policy_dir, resolve_version
from corral_sandbox.report import HostNotReady, HostReport, hook_dir, lease_dir
from corral_sandbox.sandbox import NsJailSandbox
from corral_sandbox.scratch import ScratchError, mount_work_root
from corral_sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)


def prepare_host(settings: SandboxSettings | None = None) -> HostReport:
    settings = settings or SandboxSettings()
    if os.geteuid() != 0:
        raise HostNotReady("the worker must run as root: NsJail needs namespaces and cgroups")
    try:
        binary = locate_nsjail(settings.nsjail_bin, settings.binary_cache)
        policy = policy_dir(settings.policy_dir)
        # A runtime this host lacks (no JDK, say) is not offered; jobs for it go to workers that have it.
        runtimes = tuple(resolve_version(spec) for spec in load_runtimes(policy).values() if spec.installed())
        if not runtimes:
            raise PolicyError(f"none of the runtimes in {policy} is installed on this host")
        _check_not_writable_by_others(binary, policy, runtimes)
        _check_x32(policy, runtimes)
        host_cgroups = detect(settings.cgroup_mode, settings.cgroup_root, settings.cgroup_parent)
        with leftovers.preparing(settings.work_root):
            ensure_parents(host_cgroups)
            # The cgroups first: that kills a dead worker's jails, which may hold its mounts busy.
            cleaned = leftovers.sweep_cgroups(host_cgroups)
            cleaned += _ready_work_root(settings.work_root)
            ready_lease_dir(lease_dir(settings.work_root))
            hooks = _ready_hooks(policy, runtimes, hook_dir(settings.work_root))
            # After the clean-up: a dead worker's jails, killed just now, may still have held ids.
            ids = JailIdRange(settings.jail_uid_first, settings.jail_gid_first, settings.jail_id_count)
            _check_jail_ids(ids, lease_dir(settings.work_root), lambda: leftovers.sweep_cgroups(host_cgroups))
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
        hook_dir=hooks,
    )
    if settings.selftest:
        return _proven(report, _run_selftest(NsJailSandbox(host=report)))
    return report


def _proven(report: HostReport, failed: dict[str, str]) -> HostReport:
    """The report with only the runtimes whose self-test passed; HostNotReady if none did."""
    for language, reason in failed.items():
        log.warning("runtime %s is not offered: its self-test failed: %s", language, reason)
    if len(failed) == len(report.runtimes):
        raise HostNotReady("no runtime passed its self-test: " + "; ".join(failed.values()))
    return msgspec.structs.replace(
        report,
        runtimes=tuple(spec for spec in report.runtimes if spec.language not in failed),
        failed_selftest=tuple(failed.items()),
    )


def _check_jail_ids(
    ids: JailIdRange, leases: str, sweep: Callable[[], object], pause: Callable[[], None] = lambda: time.sleep(0.2)
) -> None:
    """The jails' ids must be nobody's: no host account's files to reach, and no process but
    the jobs of this host's live workers (which hold leases on theirs).

    A worker killed just after this host's sweep found it alive leaves jails whose ids nobody
    leases any more (its warm jails, say). So before calling them strangers: `pause`, `sweep`
    the dead workers' runs again, and look again, a few times. A stranger stays."""
    for attempt in range(_ID_CHECKS):
        used = ids_in_use(ids, leases)
        if not used:
            return
        if attempt + 1 < _ID_CHECKS:
            pause()
            sweep()
    shown = "; ".join(used[:5]) + ("; ..." if len(used) > 5 else "")
    raise HostNotReady(
        f"the jail ids (uids from {ids.uid_first}, gids from {ids.gid_first}, {ids.size} of each) are in use: {shown}"
    )


_ID_CHECKS = 5


def _check_x32(policy: Path, runtimes: tuple[RuntimeSpec, ...]) -> None:
    """On a host that runs x32 calls, refuse any seccomp policy that would let one through."""
    permissive = [
        spec.seccomp
        for spec in runtimes
        if x32.lets_unlisted_calls_through((policy / spec.seccomp).read_text())
    ]
    if permissive and x32.host_accepts_x32():
        raise HostNotReady(
            f"this kernel runs x32 system calls and the seccomp policies {sorted(set(permissive))} would "
            "let them through: use an allow-list policy (DEFAULT KILL_PROCESS), or boot with syscall.x32=n"
        )


def _check_not_writable_by_others(binary: Path, policy: Path, runtimes: tuple[RuntimeSpec, ...]) -> None:
    """Whoever can change the binary or the policy can change what every jail allows."""
    paths = [binary, binary.parent, policy, policy / "runtimes.toml"]
    for spec in runtimes:
        paths += [policy / spec.config, policy / spec.seccomp]
        if spec.compile_seccomp:
            paths.append(policy / spec.compile_seccomp)
        if spec.warm_hook:
            paths.append(policy / spec.warm_hook.partition(":")[0])
    for path in paths:
        info = path.stat()
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or info.st_uid not in (0, os.geteuid()):
            raise HostNotReady(f"{path} must be owned by root and writable by root only")


def _ready_hooks(policy: Path, runtimes: tuple[RuntimeSpec, ...], directory: str) -> str:
    """Copy the runtimes' warm hooks to `directory` (root's, 0755) and return it.

    NsJail binds them from inside the jail's user namespace, where every directory on the way
    must be searchable by others: the policy's own directory may not be (a worker PEX unpacked
    under /root). Several workers may start at once: each writes a copy and renames it over.
    """
    os.makedirs(directory, mode=0o755, exist_ok=True)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
        raise HostNotReady(f"{directory} must be a directory owned by root")
    os.chmod(directory, 0o755)
    for spec in runtimes:
        if not spec.warm_hook:
            continue
        name = spec.warm_hook.partition(":")[0]
        content = (policy / name).read_bytes()
        target = os.path.join(directory, name)
        with contextlib.suppress(OSError):
            if Path(target).read_bytes() == content:
                continue
        partial = f"{target}.{os.getpid()}"
        with open(partial, "wb") as file:
            file.write(content)
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    return directory


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


def _run_selftest(sandbox: NsJailSandbox) -> dict[str, str]:
    """Run the async self-test to its end: prepare_host is a start-up step, called before a
    worker's loop runs, or from inside a loop (tests), where it needs a loop of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(sandbox.selftest())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="corral-selftest") as pool:
        return pool.submit(asyncio.run, sandbox.selftest()).result()
