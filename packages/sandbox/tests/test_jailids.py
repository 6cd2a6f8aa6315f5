"""Jail ids: one pair per running job, never the same pair for two jobs, across workers too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral_core.ports import SandboxError
from corral_sandbox.jailids import JailIdPool, JailIdRange, JailIds, JailIdsExhausted, ids_in_use

RANGE = JailIdRange(uid_first=4_000_000, gid_first=5_000_000, size=3)


def test_running_jobs_get_different_pairs_and_freed_pairs_come_back_last(tmp_path: Path) -> None:
    pool = JailIdPool(RANGE, str(tmp_path))
    with pool.taken() as first, pool.taken() as second:
        assert first == JailIds(4_000_000, 5_000_000)
        assert second == JailIds(4_000_001, 5_000_001)
    with pool.taken() as third:
        assert third == JailIds(4_000_002, 5_000_002)  # the least recently used


def test_more_jobs_at_once_than_ids_is_a_clear_sandbox_error(tmp_path: Path) -> None:
    pool = JailIdPool(RANGE, str(tmp_path))
    with contextlib.ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(pool.taken())
        with pytest.raises(JailIdsExhausted, match="all 3 jail ids are in use") as raised:
            stack.enter_context(pool.taken())
        assert isinstance(raised.value, SandboxError)
    with pool.taken() as ids:  # given back
        assert ids.uid in RANGE.uids()


def test_two_workers_sharing_the_range_never_hand_out_the_same_pair(tmp_path: Path) -> None:
    one, other = JailIdPool(RANGE, str(tmp_path)), JailIdPool(RANGE, str(tmp_path))
    with one.taken() as mine, other.taken() as theirs, other.taken() as also_theirs:
        assert len({mine, theirs, also_theirs}) == 3
        with pytest.raises(JailIdsExhausted), one.taken():
            pass
    with one.taken() as again:
        assert again.uid in RANGE.uids()


FREEZER = Path("/sys/fs/cgroup/freezer")


def test_a_killed_jail_still_exiting_does_not_hold_its_ids(tmp_path: Path) -> None:
    """A dead worker's jail, killed by the clean-up, leaves its cgroup before its PID 1 is gone:
    that PID 1 waits, exiting, for the kernel to reap the rest of its PID namespace. A worker
    starting then must not take it for a stranger using the ids (and refuse to start).

    The test holds that moment: the namespace's other process is frozen (cgroup v1's freezer
    keeps a frozen process from dying), so its PID 1, killed, stays exiting."""
    if os.geteuid() != 0 or not FREEZER.is_dir():
        # CI runs on cgroup v1 hosts as root: there, a missing freezer is a failure.
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)("needs root and cgroup v1's freezer")
    ids = JailIdRange(uid_first=4_100_000 + os.getpid() % 1000 * 2, gid_first=4_100_000 + os.getpid() % 1000 * 2, size=2)
    with _jail_whose_init_waits(ids.uid_first, FREEZER / f"corral-test-{os.getpid()}") as (init, child):
        assert [entry.split()[1] for entry in ids_in_use(ids, str(tmp_path))] == sorted(map(str, (init, child)))
        os.kill(init, signal.SIGKILL)
        _wait_until(lambda: _flags(init) & 0x4 != 0)  # PF_EXITING
        assert ids_in_use(ids, str(tmp_path)) == []


@contextlib.contextmanager
def _jail_whose_init_waits(uid: int, freezer: Path) -> Iterator[tuple[int, int]]:
    """A PID namespace as `uid`: its PID 1 (sh) and a child, frozen; (their host pids)."""
    jail = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", "setpriv", f"--reuid={uid}", f"--regid={uid}",
         "--clear-groups", "sh", "-c", "sleep 600 & wait"],
    )
    freezer.mkdir()
    try:
        _wait_until(lambda: len(_processes_of(uid)) == 2)
        init, child = sorted(_processes_of(uid))
        (freezer / "cgroup.procs").write_text(str(child))
        (freezer / "freezer.state").write_text("FROZEN")
        _wait_until(lambda: (freezer / "freezer.state").read_text().strip() == "FROZEN")
        yield init, child
    finally:
        for pid in _processes_of(uid):
            os.kill(pid, signal.SIGKILL)
        (freezer / "freezer.state").write_text("THAWED")
        jail.kill()
        jail.wait()
        _wait_until(lambda: _processes_of(uid) == [])
        _wait_until(lambda: (freezer / "cgroup.procs").read_text() == "")
        freezer.rmdir()


def _processes_of(uid: int) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}").st_uid == uid and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text():
                found.append(int(pid))
    return found


def _flags(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[6])


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
