"""A jail that fails to start never leads the host to act on an empty or wrong path.

Judge0 PR #579: when `isolate --init` failed, the worker's box path was empty, and it went on to
write into the host's /box and run `rm -rf /box/*`. Here each step of a cold start is made to
fail for real (cgroup creation, the scratch directory, its tmpfs mount, NsJail's exec); the run
ends in a SandboxError with a clear message (RunNextJob makes that a FAILED job with the
sandbox_error code), and every path the host created, changed or removed meanwhile, as Python's
audit hooks see them (os.mkdir, os.rmdir, os.remove, open for writing, chmod, chown, mount and
umount through ctypes), is the run's own scratch directory or one of its own cgroups: never '',
the work root, a parent of it, or a directory beside the scratch one (a canary there stays).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from corral_core.job import RunRequest
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import SandboxError
from corral_sandbox import HostReport, runname
from corral_sandbox.jail import JailHost, Program, run_program
from corral_sandbox.jailids import JailIdPool
from corral_testbed.nsjail_host import assert_host_unharmed, nsjail_host

_WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_RECORDING: list[list[str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _RECORDING:
        return
    paths: list[Any] = []
    if event in ("os.mkdir", "os.rmdir", "os.remove", "os.rename", "os.chmod", "os.chown", "shutil.rmtree", "os.link", "os.symlink"):
        paths = [args[0]] if event != "os.rename" else [args[0], args[1]]
    elif event == "open" and isinstance(args[2], int) and args[2] & _WRITES:
        paths = [args[0]]
    elif event == "ctypes.call_function":  # the scratch space's mount and umount2
        paths = [arg for arg in args[1] if isinstance(arg, bytes) and arg.startswith(b"/")]
    for path in paths:
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        if isinstance(path, str):
            _RECORDING[-1].append(f"{event} {path}")


sys.addaudithook(_audit)


@contextlib.contextmanager
def recorded() -> Iterator[list[str]]:
    """What the host's file system calls act on, meanwhile (absolute paths only; a name
    relative to a directory descriptor is the descriptor's, which its opening recorded)."""
    _RECORDING.append([])
    try:
        yield _RECORDING[-1]
    finally:
        _RECORDING.pop()


@pytest.fixture
def host() -> HostReport:
    return nsjail_host()


@pytest.fixture
def beside(host: HostReport) -> Iterator[Path]:
    """A canary directory beside the jobs' scratch directories, in the work root."""
    directory = Path(host.settings.work_root, f"canary-{os.getpid()}")
    directory.mkdir(exist_ok=True)
    (directory / "kept").write_bytes(b"kept")
    yield directory
    (directory / "kept").unlink()
    directory.rmdir()


def allowed(host: HostReport, jail_host: JailHost, event: str) -> bool:
    """A path of this process's own run: its scratch directory (or what is inside it), or one
    of its cgroups (or a file of one)."""
    path = event.split(" ", 1)[1]
    if not path.startswith("/") or path.startswith("/proc/"):
        return True  # relative to a descriptor whose opening was recorded; the worker's own
    if path.startswith(host.settings.work_root + ".ids/"):
        return True  # the lease of the run's jail ids (jailids.py)
    mounts = {jail_host.cgroups.memory, jail_host.cgroups.pids, jail_host.cgroups.cpu, jail_host.cgroups.cpuacct}
    if any(path in (f"{mount}/tasks", f"{mount}/cgroup.procs") for mount in mounts):
        return True  # the worker's own thread going back to its cgroup after spawning NsJail
    own = f"{runname.SCRATCH_PREFIX}{os.getpid()}-"
    if path.startswith(jail_host.work_root.rstrip("/") + "/" + own):
        return True
    cgroup = f"/{runname.CGROUP_PREFIX}{os.getpid()}-"
    return any(path.startswith(parent + cgroup) for parent in jail_host.cgroups.parent_dirs())


async def start_failing(host: HostReport, jail_host: JailHost, beside: Path, message: str) -> None:
    runtime = next(spec for spec in host.runtimes if spec.language == "python")
    pool = JailIdPool(host.jail_ids(), host.jail_id_leases())
    files = [("main.py", b"print('ran')"), ("data.txt", b"x")]
    request = RunRequest(language="python", code="print('ran')", outputs=("*",), limits=DEFAULT_LIMIT_POLICY.defaults)
    with recorded() as events, pool.taken() as ids, pytest.raises(SandboxError, match=message):
        await run_program(jail_host, ids, Program(runtime, files), request)
    stray = [event for event in events if not allowed(host, jail_host, event)]
    assert stray == [], f"the host acted outside the run's own scratch and cgroups: {stray}"
    assert sorted(os.listdir(beside)) == ["kept"] and (beside / "kept").read_bytes() == b"kept"
    assert os.path.isdir(host.settings.work_root)
    assert_host_unharmed(host)


async def test_a_cgroup_parent_that_is_missing_fails_the_run_and_cleans_only_its_own(host: HostReport, beside: Path) -> None:
    cgroups = msgspec.structs.replace(host.jail_host().cgroups, parent=f"corral-missing-{os.getpid()}")
    jail_host = msgspec.structs.replace(host.jail_host(), cgroups=cgroups)
    await start_failing(host, jail_host, beside, "could not set up the sandbox")


async def test_a_controller_that_fails_after_others_were_made_removes_only_the_runs_own(host: HostReport, beside: Path) -> None:
    # The memory cgroup is made, then the pids one cannot be: only the first is removed.
    cgroups = msgspec.structs.replace(host.jail_host().cgroups, pids=f"/run/corral-missing-{os.getpid()}")
    jail_host = msgspec.structs.replace(host.jail_host(), cgroups=cgroups)
    await start_failing(host, jail_host, beside, "could not set up the sandbox")


async def test_a_missing_work_root_fails_the_run_and_removes_nothing(host: HostReport, beside: Path) -> None:
    jail_host = msgspec.structs.replace(host.jail_host(), work_root=f"/run/corral-missing-{os.getpid()}/jobs")
    await start_failing(host, jail_host, beside, "could not set up the sandbox")


async def test_a_read_only_work_root_fails_the_run_and_removes_nothing(host: HostReport, beside: Path) -> None:
    read_only = f"/run/corral-test/read-only-{os.getpid()}"
    os.makedirs(read_only, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", read_only], check=True)  # noqa: ASYNC101
    try:
        jail_host = msgspec.structs.replace(host.jail_host(), work_root=read_only)
        await start_failing(host, jail_host, beside, "could not set up the sandbox")
    finally:
        subprocess.run(["umount", read_only], check=True)  # noqa: ASYNC101
        os.rmdir(read_only)


async def test_a_tmpfs_mount_that_fails_removes_only_its_own_empty_mount_point(host: HostReport, beside: Path) -> None:
    # A negative inode count: the kernel refuses the tmpfs (EINVAL) after its directory was made.
    jail_host = msgspec.structs.replace(host.jail_host(), scratch_inodes=-1_000)
    await start_failing(host, jail_host, beside, "could not set up the sandbox")


async def test_an_nsjail_binary_that_is_missing_fails_the_run_and_cleans_only_its_own(host: HostReport, beside: Path) -> None:
    jail_host = msgspec.structs.replace(host.jail_host(), nsjail_bin=f"/run/corral-missing-{os.getpid()}/nsjail")
    await start_failing(host, jail_host, beside, "could not start the sandbox")


async def test_an_nsjail_binary_that_is_not_executable_fails_the_run_and_cleans_only_its_own(
    host: HostReport, beside: Path, tmp_path: Path
) -> None:
    binary = tmp_path / "nsjail"
    binary.write_bytes(b"not a program")
    binary.chmod(0o644)
    jail_host = msgspec.structs.replace(host.jail_host(), nsjail_bin=str(binary))
    await start_failing(host, jail_host, beside, "could not start the sandbox")
