"""Host uids and gids for jails: one pair per running job, from a configured range.

Why not one uid for all jobs: the kernel keeps counters and limits per user (RLIMIT_NPROC,
pending signals, message queues...), and whatever is per user would be shared, and could be
exhausted or used to signal, between concurrent jobs. Each job takes a free pair when it starts
and gives it back when its jail is gone (every process of a jail dies with its PID namespace,
and its cgroups are removed before the pair is given back).

Several workers on one host share the range (they start with the same settings): a pair is
leased with an flock on `<lease_dir>/<uid>`, held while the job runs. The kernel drops the lock
when the holder dies, however it dies, so a killed worker leaks nothing. Taking a lease is an
open and a non-blocking flock: nothing waits.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import grp
import os
import pwd
from collections.abc import Callable, Iterator
from typing import NamedTuple

from corral_core.ports import SandboxError


class JailIds(NamedTuple):
    uid: int
    gid: int


class JailIdRange(NamedTuple):
    uid_first: int
    gid_first: int
    size: int

    def uids(self) -> range:
        return range(self.uid_first, self.uid_first + self.size)

    def gids(self) -> range:
        return range(self.gid_first, self.gid_first + self.size)


class JailIdsExhausted(SandboxError):
    """More jobs at once than the configured range has ids for."""


class JailIdPool:
    """The range's pairs, least recently used first, leased across workers (see above)."""

    def __init__(self, ids: JailIdRange, lease_dir: str) -> None:
        self._free = collections.deque(JailIds(ids.uid_first + n, ids.gid_first + n) for n in range(ids.size))
        self._size = ids.size
        self._lease_dir = lease_dir

    @contextlib.contextmanager
    def taken(self) -> Iterator[JailIds]:
        ids, give_back = self.lease()
        try:
            yield ids
        finally:
            give_back()

    def lease(self) -> tuple[JailIds, Callable[[], None]]:
        """A free pair, and the function that gives it back (once its jail is gone)."""
        for _ in range(len(self._free)):
            ids = self._free.popleft()
            lease = _lease(self._lease_dir, ids.uid)
            if lease is None:  # another worker's job runs under it
                self._free.append(ids)
                continue

            def give_back(ids: JailIds = ids, lease: int = lease) -> None:
                os.close(lease)
                self._free.append(ids)

            return ids, give_back
        raise JailIdsExhausted(
            f"all {self._size} jail ids are in use: run fewer jobs at once or raise jail_id_count"
        )


def ready_lease_dir(lease_dir: str) -> None:
    """Create the directory of the id leases: root's, nobody else's business."""
    os.makedirs(lease_dir, mode=0o700, exist_ok=True)


def ids_in_use(ids: JailIdRange, lease_dir: str) -> list[str]:
    """Accounts, groups and processes using ids of the range that no lease accounts for.

    A process under a leased uid is a live worker's job; under any other uid of the range it is
    a stranger (another service configured with the same ids), and jobs would share its uid.
    """
    uids, gids = ids.uids(), ids.gids()
    found = [f"user {user.pw_name!r} has uid {user.pw_uid}" for user in pwd.getpwall() if user.pw_uid in uids]
    found += [f"group {group.gr_name!r} has gid {group.gr_gid}" for group in grp.getgrall() if group.gr_gid in gids]
    for pid, process_uids, process_gids in _processes():
        leased_uids = [uid - ids.uid_first for uid in process_uids if uid in uids and _leased(lease_dir, uid)]
        # A job's gid is its uid's partner: a leased uid covers the same slot's gid.
        leased_gids = {ids.gid_first + slot for slot in leased_uids}
        strange_uids = [uid for uid in process_uids if uid in uids and uid - ids.uid_first not in leased_uids]
        strange_gids = [gid for gid in process_gids if gid in gids and gid not in leased_gids]
        if strange_uids or strange_gids:
            found.append(f"process {pid} runs as uid {sorted(process_uids)} gid {sorted(process_gids)}")
    return found


def _lease(lease_dir: str, uid: int) -> int | None:
    """An open descriptor holding the lease on `uid`, or None if someone else holds it."""
    fd = os.open(os.path.join(lease_dir, str(uid)), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def _leased(lease_dir: str, uid: int) -> bool:
    lease = _lease(lease_dir, uid)
    if lease is None:
        return True
    os.close(lease)
    return False


def _processes() -> Iterator[tuple[int, set[int], set[int]]]:
    """(pid, uids, gids) of every process that can still run code of its own: not a zombie, not
    exiting and not killed (a dead worker's jail just killed by the clean-up is all three in
    turn; its PID 1 stays exiting, out of its cgroup, until the kernel has reaped the rest)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
            with open(f"/proc/{pid}/status") as status:
                fields = dict(line.split(":", 1) for line in status if line.startswith(_STATUS_FIELDS))
            with open(f"/proc/{pid}/stat") as stat:
                flags = int(stat.read().rpartition(")")[2].split()[6])
            if fields["State"].split()[0] in ("Z", "X") or flags & _PF_EXITING or _killed(fields):
                continue
            yield int(pid), {int(value) for value in fields["Uid"].split()}, {int(value) for value in fields["Gid"].split()}


_STATUS_FIELDS = ("State:", "Uid:", "Gid:", "SigPnd:", "ShdPnd:")
_PF_EXITING = 0x4  # include/linux/sched.h: the process is in do_exit
_SIGKILL_BIT = 1 << 8  # signal 9, in /proc/<pid>/status's pending masks


def _killed(fields: dict[str, str]) -> bool:
    """A SIGKILL is pending: the process never runs code of its own again."""
    return any(int(fields[name], 16) & _SIGKILL_BIT for name in ("SigPnd", "ShdPnd"))
