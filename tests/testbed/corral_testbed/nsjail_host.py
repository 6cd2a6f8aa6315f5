"""A prepared NsJail host for tests: real jails, or a skip (a failure on CI) saying why not.

Tests get their own jail uid/gid and work root, so that "no process of the jail's uid is left"
and "nothing is left in the work root" are about the test's own jails, not about a worker or
another test run on the same machine.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import pytest

from corral_sandbox import HostNotReady, HostReport, NsJailSandbox, SandboxSettings, prepare_host, runname

# Each test process jails its jobs under ids of its own (no host account has ids this high), so
# that test runs side by side on one machine do not see each other's jails.
TEST_JAIL_UID = TEST_JAIL_GID = 3_000_000 + os.getpid() % 1_000_000
TEST_WORK_ROOT = "/run/corral-test/jobs"

TEST_SETTINGS = SandboxSettings(jail_uid=TEST_JAIL_UID, jail_gid=TEST_JAIL_GID, work_root=TEST_WORK_ROOT)


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


def jail_processes(uid: int = TEST_JAIL_UID) -> list[str]:
    """Processes (zombies too) running as the jail's host uid: there must be none between jobs."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            status = {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}
            real, effective = (int(value) for value in status["Uid"].split()[:2])
            if uid in (real, effective):
                found.append(f"{pid} {status['Name']} ({status['State']})")
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
    assert jail_processes(host.settings.jail_uid) == [], "a jailed process outlived its job"
    assert leftovers(host) == [], "a job left something behind on the host"
