"""A prepared NsJail host for tests: real jails, or a skip (a failure on CI) saying why not.

Tests get their own jail id range and work root, so that "no process of the jails' uids is
left" and "nothing is left in the work root" are about the test's own jails, not about a worker
or another test run on the same machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
from pathlib import Path

import pytest

from corral_sandbox import HostNotReady, HostReport, NsJailSandbox, SandboxSettings, prepare_host, runname

# Each test process jails its jobs under an id range of its own (no host account has ids this
# high), so that test runs side by side on one machine do not see each other's jails.
TEST_JAIL_IDS = 16
TEST_JAIL_UID = TEST_JAIL_GID = 3_000_000 + (os.getpid() % 1_000_000) * TEST_JAIL_IDS
TEST_WORK_ROOT = "/run/corral-test/jobs"

# CORRAL_NSJAIL_POLICY_DIR, as the worker reads it: the cgroup v2 VM (tests/vm/guest.sh) offers
# a subset of the runtimes, since a JVM or rustc under emulation takes minutes to start.
TEST_SETTINGS = SandboxSettings(
    jail_uid_first=TEST_JAIL_UID,
    jail_gid_first=TEST_JAIL_GID,
    jail_id_count=TEST_JAIL_IDS,
    work_root=TEST_WORK_ROOT,
    policy_dir=os.environ.get("CORRAL_NSJAIL_POLICY_DIR") or None,
)


@functools.cache
def _prepare() -> HostReport | str:
    if os.geteuid() != 0:
        return "NsJail tests need root (namespaces, cgroups, mounts)"
    try:
        return prepare_host(TEST_SETTINGS)
    except HostNotReady as error:
        return f"this host cannot run NsJail: {error}"


def nsjail_host() -> HostReport:
    """The prepared host, or skip the test (fail it when CI=true) with the reason."""
    prepared = _prepare()
    if isinstance(prepared, str):
        if os.environ.get("CI") == "true":
            pytest.fail(prepared)
        pytest.skip(prepared)
    return prepared


def nsjail_sandbox() -> NsJailSandbox:
    return NsJailSandbox(host=nsjail_host())


def jail_processes(uids: range = range(TEST_JAIL_UID, TEST_JAIL_UID + TEST_JAIL_IDS)) -> list[str]:
    """Processes (zombies too) running as a jail's host uid: there must be none between jobs.

    Each entry is "<pid> <name> (<state>) uid <uid>".
    """
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            status = {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}
            real, effective = (int(value) for value in status["Uid"].split()[:2])
            if real in uids or effective in uids:
                found.append(f"{pid} {status['Name']} ({status['State']}) uid {real}")
    return found


def leftovers(host: HostReport) -> list[str]:
    """What this process's jobs left on the host: run cgroups, scratch directories, mounts."""
    return run_leftovers(host, os.getpid())


def run_leftovers(host: HostReport, pid: int) -> list[str]:
    """The run cgroups, scratch directories and scratch mounts of worker `pid`'s jobs."""

    def owned(name: str, prefix: str) -> bool:
        owner = runname.owner(name, prefix)
        return owner is not None and owner.pid == pid

    left = []
    for parent in host.cgroups.parent_dirs():
        with contextlib.suppress(FileNotFoundError):
            left += [f"cgroup {parent}/{name}" for name in os.listdir(parent) if owned(name, runname.CGROUP_PREFIX)]
    work_root = host.settings.work_root
    with contextlib.suppress(FileNotFoundError):
        left += [f"scratch {work_root}/{name}" for name in os.listdir(work_root) if owned(name, runname.SCRATCH_PREFIX)]
    with open("/proc/self/mountinfo") as mounts:
        points = [line.split()[4] for line in mounts]
    for point in points:
        directory, _, name = point.rpartition("/")
        if directory == work_root and owned(name, runname.SCRATCH_PREFIX):
            left.append(f"mount {point}")
    return left


def assert_host_unharmed(host: HostReport) -> None:
    assert jail_processes(host.jail_ids().uids()) == [], "a jailed process outlived its job"
    assert leftovers(host) == [], "a job left something behind on the host"


# Jobs that must wait for the test (a bystander, a lock holder) block SIGUSR1, leave a file
# named after their tag in their /tmp once they are where the test wants them, and wait for
# SIGUSR1: no sleep decides who runs when.
WAIT_FOR_THE_TEST = """
import os, signal
def ready(tag):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    open(f"/tmp/{tag}", "w").close()
    signal.sigwait({signal.SIGUSR1})
"""


async def until_ready(host: HostReport, tag: str, timeout_s: float = 10.0) -> int:
    """Wait until a job of this process called ready(tag); return the host pid of its PID 1.

    Looks at the job's scratch space from the host with lstat only (nothing a job leaves is
    followed or opened).
    """
    pattern = f"{runname.SCRATCH_PREFIX}{os.getpid()}-"
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        for entry in os.listdir(host.settings.work_root):
            if entry.startswith(pattern):
                with contextlib.suppress(OSError):
                    info = os.lstat(f"{host.settings.work_root}/{entry}/tmp/{tag}")
                    pid = jail_init_pid(info.st_uid)
                    if pid is not None:
                        return pid
        await asyncio.sleep(0.005)
    raise AssertionError(f"no job became ready as {tag!r}")


def jail_init_pid(uid: int) -> int | None:
    """The host pid of the jailed program running as host uid `uid`: the process of that uid
    whose parent (NsJail) runs as another uid."""
    parents: dict[int, int] = {}
    uids: dict[int, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, KeyError, ValueError):
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            status = {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}
            uids[int(pid)] = int(status["Uid"].split()[0])
            parents[int(pid)] = int(status["PPid"])
    tops = [pid for pid, owner in uids.items() if owner == uid and uids.get(parents[pid]) != uid]
    return min(tops) if tops else None


def release(pid: int) -> None:
    """Let a job waiting in ready() go on."""
    os.kill(pid, signal.SIGUSR1)
