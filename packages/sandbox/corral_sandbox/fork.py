"""Forked jails: a warm jail that costs a clone, not an NsJail and an interpreter start.

A cold or warm Python jail pays for NsJail's own start (its libraries loaded, its namespaces and
mounts made) and then the interpreter's start; a warm jail pays all of that too, only earlier.
A forked jail pays only for a clone and its namespaces: the nursery it is cloned from has
started once, for many jobs.

A nursery is a warm jail that is told "z" instead of a job: NsJail started it with the jail's
config, except that it runs as a user of its own (1001, with the jobs' 1000 mapped too), keeps
its capabilities inside its user namespace, and has a seccomp policy that also allows clone into
new namespaces (never a user namespace), mount, move_mount, capset, setresuid and setresgid
(`nursery_policy`). It never runs a job. For each jail asked of it (`fork`), its hook
(nsjail/python_warm_stub.py) clones a child into new PID, mount, network, IPC, UTS and cgroup
namespaces, where the child, before any byte of a job reaches it:
  - moves in /box, /tmp and /dev/shm from a fresh host tmpfs, sent as detached mounts (open_tree);
  - takes the stdout, stderr and hand-over socket it was sent, closes every other descriptor (the
    nursery's control socket among them), becomes the job's user and drops every capability
    (bounding and ambient sets too);
  - adds a seccomp filter that refuses the nursery's six calls again as the jail's policy does:
    the two filters together answer every call as the jail's policy does (test_seccomp.py);
  - says "c", from which the worker learns its host PID (SO_PASSCRED), and waits while the
    worker moves it into the run's cgroups (`RunCgroups.adopt`), as NsJail moves a jail; then
    copies every page of its private writable mappings that it still shares with the nursery
    (`_writable_ranges`: charged to the job, as a cold start's pages are, and off the job's
    clock, where the job's first write to each would fault and copy it), and says "r".
From there it is a warm jail (warm.py): the same hand-over and limits, the same program start.
The worker watches it through a pidfd; its wait status comes from the nursery. A nursery has
one child at a time, so `_Nurseries` in sandbox.py keeps about two per slot.

The worker trusts the nursery no further than it must: it signals a child and sees it end
through a pidfd only (the nursery reaps it, so its PID may be another process's by then), and
ends a nursery that says anything it was not asked or leaves a child unaccounted for.

What a forked jail shares with the jobs before it, and a cold jail does not: the nursery's user
namespace and host uids, the read-only root NsJail built, and the interpreter's start-up state
(hash seed, address layout, stack canary, pointer guard, and freed memory that may hold the PIDs
earlier children had in the nursery's namespace; their wait statuses only ever pass through a
buffer the nursery clears). Nothing a job can write outlives it: its tmpfs, namespaces and
cgroups are its own, and it cannot see the nursery (another PID namespace), reach its memory or
take its user.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import re
import signal
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

from corral_core.job import Limits, RunResult, SandboxStart
from corral_core.ports import SandboxError
from corral_sandbox.command import JAIL_UID, WARM_MAX_AGE_S
from corral_sandbox.jail import JailHost, judge
from corral_sandbox.jail_process import JailProcess, Outcome, through_cancellation
from corral_sandbox.jailids import JailIds
from corral_sandbox.nsjail_log import JailLog
from corral_sandbox.policy_files import RuntimeSpec
from corral_sandbox.warm import READY_TIMEOUT_S, WarmJail, _fd, _warm_limits

log = logging.getLogger(__name__)

_libc = ctypes.CDLL(None, use_errno=True)
_OPEN_TREE = 428
_OPEN_TREE_CLONE = 1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_AT_FDCWD = -100
# What the nursery's policy allows beyond the jail's (the child's filter refuses them again).
# clone: into every namespace but a user namespace (the nursery's children share its own).
_NURSERY_ALLOWS = (
    "clone(clone_flags, newsp, parent_tidptr, child_tidptr, tls) { (clone_flags & 0x10000000) == 0 },\n"
    "    mount, move_mount, capset, setresuid, setresgid"
)
# A nursery's own uid and gid in the jail; its children take the job's (JAIL_UID) and drop it.
_NURSERY_ID = JAIL_UID + 1
_USE_LINE = re.compile(r"^USE (\w+) DEFAULT KILL_PROCESS\s*$", re.MULTILINE)


def nursery_policy(jail_policy: Path, directory: Path) -> Path:
    """The nursery's seccomp policy, written next to the hooks: the jail's, with the calls a
    nursery makes for its children allowed first."""
    text = jail_policy.read_text()
    uses = _USE_LINE.findall(text)
    if len(uses) != 1:
        raise SandboxError(f"{jail_policy} does not end in one 'USE <policy> DEFAULT KILL_PROCESS'")
    nursery = _USE_LINE.sub(
        f"POLICY corral_nursery_allowed {{\n  ALLOW {{\n    {_NURSERY_ALLOWS}\n  }}\n}}\n\n"
        f"POLICY corral_nursery {{\n  USE corral_nursery_allowed,\n  USE {uses[0]}\n}}\n\n"
        "USE corral_nursery DEFAULT KILL_PROCESS\n",
        text,
    )
    path = directory / f"{jail_policy.stem}.nursery.kafel"
    if not path.exists() or path.read_text() != nursery:
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(nursery)
        temporary.replace(path)
    return path


class Nursery(WarmJail):
    """One nursery: `open` it, `fork` jails from it one at a time, `discard` it."""

    _SOCKET_TYPE = socket.SOCK_SEQPACKET
    _RUNS_JOBS = False

    def __init__(
        self, host: JailHost, runtime: RuntimeSpec, ids: JailIds, own_ids: JailIds, give_back: Callable[[], None]
    ) -> None:
        """`ids`: its jobs' user and group (the jail's 1000); `own_ids`: its own (1001 in the jail)."""
        super().__init__(host, runtime, ids, give_back)
        self._owner = own_ids
        self._policy = nursery_policy(Path(host.policy_dir) / runtime.seccomp, Path(host.hook_dir))
        self._forked: asyncio.Future[int] | None = None
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._reading = False
        self.busy = False
        self.ended = False

    @classmethod
    async def open(
        cls, host: JailHost, runtime: RuntimeSpec, ids: JailIds, own_ids: JailIds, give_back: Callable[[], None]
    ) -> Nursery:
        """Start a nursery and wait until it takes requests; SandboxError if it does not."""
        nursery = cls(host, runtime, ids, own_ids, give_back)
        await nursery._start()
        control = nursery._sock()
        try:
            control.send(b"z")
        except OSError as error:
            await nursery.discard()
            raise SandboxError(f"a nursery ended before it took requests: {error}") from error
        asyncio.get_running_loop().add_reader(control.fileno(), nursery._read)
        nursery._reading = True
        return nursery

    def _command(self, limits: Limits) -> list[str]:
        """A warm jail's, with the nursery's policy and capabilities, run as its own user, with
        its jobs' user mapped too."""
        argv = super()._command(limits)
        argv[argv.index("--seccomp_policy") + 1] = str(self._policy)
        for flag, job, own in (("--user", self.ids.uid, self._owner.uid), ("--group", self.ids.gid, self._owner.gid)):
            at = argv.index(flag)
            argv[at : at + 2] = [flag, f"{_NURSERY_ID}:{own}:1", flag, f"{JAIL_UID}:{job}:1"]
        argv.insert(argv.index("--"), "--keep_caps")
        return argv

    @property
    def started(self) -> float:
        return self._started

    @property
    def fresh(self) -> bool:
        """Whether a child forked now still has its whole wall time under NsJail's backstop."""
        return not self.ended and time.monotonic() - self._started < WARM_MAX_AGE_S

    async def fork(self, fds: list[int]) -> tuple[int, asyncio.Future[int]]:
        """A child given `fds` (see the stub): its PID in the nursery, and its wait status to come."""
        if self.ended:
            raise SandboxError("the nursery has ended")
        loop = asyncio.get_running_loop()
        assert self._forked is None
        self._forked = loop.create_future()
        try:
            self._sock().sendmsg([b"f"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"={len(fds)}i", *fds))])
            pid = await asyncio.wait_for(asyncio.shield(self._forked), READY_TIMEOUT_S)
        except (OSError, TimeoutError) as error:
            # A child it may still make would be one the worker knows nothing of.
            self.end(f"could not have a jail of it: {error!r}")
            raise SandboxError("the nursery has ended") from error
        finally:
            self._forked = None
        exit_status = self._exits[pid] = loop.create_future()
        return pid, exit_status

    def forget(self, pid: int) -> None:
        """The child `pid` ended and was judged: its wait status is no longer awaited."""
        self._exits.pop(pid, None)

    def _read(self) -> None:
        try:
            message = self._sock().recv(64)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        # Only what was asked for: a "p" while a fork waits, an "x" for a child of a fork. Anything
        # else ends the nursery, whose children then cannot be accounted for.
        if message[:1] == b"p" and len(message) == 5 and self._forked is not None and not self._forked.done():
            self._forked.set_result(struct.unpack("=i", message[1:])[0])
            return
        if message[:1] == b"x" and len(message) == 9:
            pid, status = struct.unpack("=ii", message[1:])
            future = self._exits.get(pid)
            if future is not None and not future.done():
                future.set_result(status)
                return
        self.end(f"it said {message[:16]!r}")

    def end(self, why: str) -> None:
        if not self.ended:
            log.warning("a %s nursery ended: %s", self.runtime.language, why)
        self.ended = True
        self._stop_reading()
        error = SandboxError(f"the nursery ended: {why}")
        for future in (self._forked, *self._exits.values()):
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a child's run may not ask for it

    async def discard(self) -> None:
        self.ended = True
        self._stop_reading()
        await super().discard()

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            asyncio.get_running_loop().remove_reader(self._sock().fileno())


class ForkJail(WarmJail):
    """One jail forked from a nursery: run one job in it (as in a warm jail), or discard it."""

    def __init__(self, host: JailHost, runtime: RuntimeSpec, nursery: Nursery) -> None:
        super().__init__(host, runtime, nursery.ids, lambda: None)
        self._nursery = nursery
        # Its wall time is covered by its nursery's NsJail backstop: it is as old as its nursery.
        self._started = nursery.started
        self._pid = -1
        self._exit_status: asyncio.Future[int] | None = None

    @classmethod
    async def fork(cls, host: JailHost, runtime: RuntimeSpec, nursery: Nursery) -> ForkJail:
        """Fork a jail from `nursery`, which `_Nurseries.take` made busy (until this jail is
        discarded, as it is when it fails to start), and wait until it is ready."""
        jail = cls(host, runtime, nursery)
        await jail._start()
        return jail

    async def _spawn(self) -> bytes:
        limits = _warm_limits()
        await through_cancellation(asyncio.to_thread(self._make_room, limits))
        assert self._scratch is not None and self._cgroups is not None
        scratch = self._scratch
        process = self._process = JailProcess(asyncio.get_running_loop(), self._cgroups, stop_signal=signal.SIGKILL)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket = ours
        ours.setblocking(False)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        mounts: list[int] = []
        try:
            with theirs, _fd(out_write), _fd(err_write):
                for path in (scratch.box, scratch.tmp, scratch.shm):
                    mounts.append(_open_tree(path))
                self._pid, self._exit_status = await self._nursery.fork([theirs.fileno(), out_write, err_write, *mounts])
        except BaseException:
            os.close(out_read)
            os.close(err_read)
            raise
        finally:
            for fd in mounts:
                os.close(fd)
        try:
            # The child's "c" comes with its host PID; then it is moved into the run's cgroups.
            said, host_pid = await asyncio.wait_for(_credentials(ours), READY_TIMEOUT_S)
            if said != b"c" or host_pid <= 0:
                raise SandboxError(f"a forked jail ended before it was ready ({await self._status_text()})")
            process.adopt(host_pid, out_read, err_read, limits.max_output_bytes)
        except BaseException:
            os.close(out_read)
            os.close(err_read)
            raise
        await through_cancellation(
            asyncio.to_thread(self._cgroups.adopt, host_pid, 2 * (limits.memory_mb << 20), limits.max_processes)
        )
        if not process.running():
            # It ended while it was being moved: the PID moved may already be another process's.
            raise SandboxError("a forked jail ended before it was ready")
        ranges = await asyncio.to_thread(_writable_ranges, host_pid)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(ours, b"a" + struct.pack(f"=I{len(ranges)}Q", len(ranges) // 2, *ranges))
        return await asyncio.wait_for(loop.sock_recv(ours, 1), READY_TIMEOUT_S)

    async def _status_text(self) -> str:
        assert self._exit_status is not None
        try:
            status = await asyncio.wait_for(asyncio.shield(self._exit_status), READY_TIMEOUT_S)
        except (SandboxError, TimeoutError) as error:
            return str(error)
        return f"wait status {status:#x}"

    async def _judge(self, limits: Limits, outcome: Outcome, cpu_before_ns: int) -> RunResult:
        assert self._cgroups is not None and self._exit_status is not None
        try:
            status = await asyncio.wait_for(asyncio.shield(self._exit_status), READY_TIMEOUT_S)
        except (SandboxError, TimeoutError) as error:
            raise SandboxError("the forked jail's nursery did not say how its program ended") from error
        if os.WIFSIGNALED(status):
            jail_log = JailLog(signal=os.WTERMSIG(status))
        else:
            jail_log = JailLog(exit_code=os.WEXITSTATUS(status))
        return judge(
            self._run, limits, outcome, self._cgroups, "", cpu_before_ns=cpu_before_ns, start=SandboxStart.WARM, jail_log=jail_log
        )

    async def discard(self) -> None:
        if self._done:
            return
        if self._exit_status is not None and self._process is not None and self._process.pid < 0:
            # Forked but never watched: only its nursery can stop it, by ending.
            self._nursery.end("a child it forked did not become ready")
        try:
            await super().discard()
            if self._exit_status is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._exit_status), READY_TIMEOUT_S)
                except TimeoutError:
                    # Still there, as far as the worker knows: its nursery is no place for another.
                    self._nursery.end("a child it forked did not end")
                except SandboxError:
                    pass
        finally:
            self._nursery.forget(self._pid)
            self._nursery.busy = False


async def _credentials(sock: socket.socket) -> tuple[bytes, int]:
    """One byte from the child, and its host PID from the credentials the kernel attached."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[tuple[bytes, int]] = loop.create_future()

    def read() -> None:
        try:
            data, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(12))
        except BlockingIOError:
            return
        except OSError:
            data, ancillary = b"", []
        pid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= 12:
                pid = struct.unpack("=iII", payload[:12])[0]
        if not received.done():
            received.set_result((data, pid))

    loop.add_reader(sock.fileno(), read)
    try:
        return await received
    finally:
        loop.remove_reader(sock.fileno())


def _writable_ranges(pid: int) -> list[int]:
    """The start and end of each private writable mapping of process `pid`, flat: what a
    forked child shares with its nursery until either writes to it; none once it has ended."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError:
        return []
    ranges = []
    for line in lines:
        bounds, permissions = line.split(maxsplit=2)[:2]
        if permissions.startswith("rw") and permissions.endswith("p"):
            start, _, end = bounds.partition("-")
            ranges += [int(start, 16), int(end, 16)]
    return ranges


def _open_tree(path: str) -> int:
    """A detached bind mount of `path` (open_tree OPEN_TREE_CLONE), as a descriptor."""
    fd: int = _libc.syscall(_OPEN_TREE, _AT_FDCWD, os.fsencode(path), _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC)
    if fd < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"open_tree {path}: {os.strerror(error)}")
    return fd
