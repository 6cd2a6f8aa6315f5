"""Warm jails: a jail started before its job is known, handed exactly one job, then destroyed.

Why: much of a cold Python jail's start is the interpreter starting. A warm jail does that
while no client waits.

A warm jail is a cold jail started early: the same NsJail policy, namespaces, mounts, seccomp
policy, host ids and run cgroups, an empty scratch tmpfs, and the runtime's own command with
no arguments (`python3 -s main.py`). The runtime's warm hook (nsjail/python_warm_stub.py, bound in
cold jails too so that both see the same files) stops the interpreter during its start-up and
says "ready" on the hand-over socket (command.HANDOVER_FD).

Hand-over, in this order: the scratch tmpfs gets the job's size and the job's files, written
as for a cold start; the run cgroups get the job's limits (memory, NsJail's cgroup's memory and
processes) and the jailed process its rlimits (prlimit: CPU, file size, processes); the CPU the
cgroups used so far is noted, and not counted; the wall clock and CPU watch start; then the
stdin memfd and the arguments go down the socket. The hook puts them where a cold start has
them, closes the socket and returns, and the interpreter runs main.py as a cold start does.

Nothing is reused: after its job the jail is removed like a cold one (NsJail, its processes,
its tmpfs, its cgroups) and a fresh one starts in the background (sandbox.py). The removal
happens after `run` has returned the result, in the background too: by then NsJail has reaped
the jail (its processes died with its PID namespace), and what is left (the tmpfs, the cgroups,
the host ids) waits for nobody. A hand-over that fails before the job is sent (the jail died, a
limit could not be set) leaves the program unrun: the jail is discarded and the job starts cold.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import resource
import socket
import sys
import time
from collections.abc import Callable, Iterator

import msgspec

from corral_core.events import EventKind
from corral_core.job import Limits, RunResult, SandboxStart
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import SandboxError
from corral_sandbox import runname
from corral_sandbox.cgroups.hierarchy import CgroupError, RunCgroups
from corral_sandbox.command import HANDOVER_FD, LOG_FD, WARM_MAX_AGE_S, WARM_MAX_WALL_S
from corral_sandbox.jail import JailHost, clean_up, jail_command, judge, run_cgroups, scratch_size, watch_of
from corral_sandbox.jail_process import JailProcess, Outcome, through_cancellation
from corral_sandbox.jailids import JailIds
from corral_sandbox.policy_files import RuntimeSpec
from corral_sandbox.scratch import Scratch, ScratchError
from corral_sandbox.streams import above_stdio, log_memfd, read_memfd, stdin_memfd

log = logging.getLogger(__name__)

# What a warm jail starts with, until its job's limits replace them. Its rlimits start at the
# highest any job may get (see `_warm_limits`): at hand-over they are only ever lowered, which
# needs no privilege (raising a hard limit needs CAP_SYS_RESOURCE in the initial user
# namespace, which a worker in a container lacks). Its memory is the server's default until then.
WARM_LIMITS = msgspec.structs.replace(
    DEFAULT_LIMIT_POLICY.defaults, cpu_time_ms=3_600_000, max_processes=1 << 16, max_file_size_kb=1 << 30
)
# A warm jail that is not ready this long after its start is given up.
READY_TIMEOUT_S = 30.0
# Arguments are sent in one message; a job with more goes cold.
_MAX_ARGS_BYTES = 64 << 10


class WarmUnusable(Exception):
    """This warm jail cannot take this job; its program never ran: start the job cold."""


class WarmJail:
    """One warm jail: `start` it, then `run` one job in it or `discard` it."""

    # What the hand-over socket carries: one job (a nursery's carries messages, fork.py).
    _SOCKET_TYPE = socket.SOCK_STREAM
    # Whether `run` may hand it a job: a nursery only forks the jails that run them (fork.py).
    _RUNS_JOBS = True

    def __init__(self, host: JailHost, runtime: RuntimeSpec, ids: JailIds, give_back: Callable[[], None]) -> None:
        self._host = host
        self.runtime = runtime
        self.ids = ids
        # Whose the scratch tmpfs is: the jail's user's (a nursery's own, fork.py).
        self._owner = ids
        self._give_back = give_back
        self._run = runname.new_run()
        self._scratch: Scratch | None = None
        self._cgroups: RunCgroups | None = None
        # The memory (bytes) and process limits `preset` gave its cgroups, if it did.
        self._preset: tuple[int, int] | None = None
        self._process: JailProcess | None = None
        self._socket: socket.socket | None = None
        self._log_fd = -1
        self._started = time.monotonic()
        self._done = False

    @classmethod
    async def start(cls, host: JailHost, runtime: RuntimeSpec, ids: JailIds, give_back: Callable[[], None]) -> WarmJail:
        """Start a jail and wait until its interpreter waits for a job; SandboxError if it does not."""
        jail = cls(host, runtime, ids, give_back)
        await jail._start()
        return jail

    async def _start(self) -> None:
        try:
            ready = await self._spawn()
        except BaseException as error:
            await through_cancellation(self.discard())
            if isinstance(error, OSError | ScratchError | CgroupError | TimeoutError):
                raise SandboxError(f"a warm jail could not start: {error}") from error
            raise
        if ready != b"r":
            log_text = read_memfd(self._log_fd) if self._log_fd >= 0 else ""
            await self.discard()
            raise SandboxError(f"a warm jail ended before it was ready; NsJail's log:\n{log_text}")

    async def _spawn(self) -> bytes:
        """Start the jail; what it said first ("r": ready)."""
        limits = _warm_limits()
        # In a thread: a jail starts while the worker stores the result of the job before it,
        # and the mount and cgroups take about a millisecond the loop need not wait for. Cancelled,
        # it still waits for them, so that `discard` finds what was made.
        await through_cancellation(asyncio.to_thread(self._make_room, limits))
        assert self._scratch is not None and self._cgroups is not None
        self._log_fd = log_memfd()
        ours, theirs = socket.socketpair(socket.AF_UNIX, self._SOCKET_TYPE)
        self._socket = ours
        ours.setblocking(False)
        argv = self._command(limits)
        process = JailProcess(asyncio.get_running_loop(), self._cgroups)
        self._process = process
        # The jail's end of the socket goes above every descriptor the spawn writes to (0-3 and
        # HANDOVER_FD), as the log memfd does; ours close once NsJail has them.
        with (
            theirs,
            _fd(above_stdio(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))) as devnull,
            _fd(fcntl.fcntl(theirs.fileno(), fcntl.F_DUPFD_CLOEXEC, 10)) as handover,
        ):
            await process.start(argv, devnull, {LOG_FD: self._log_fd, HANDOVER_FD: handover}, limits.max_output_bytes)
        return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(ours, 1), READY_TIMEOUT_S)

    def _command(self, limits: Limits) -> list[str]:
        assert self._scratch is not None and self._cgroups is not None
        return jail_command(self._host, self.runtime, self.ids, self._scratch, self._cgroups, limits, (), warm=True)

    def _make_room(self, limits: Limits) -> None:
        """The jail's scratch tmpfs and run cgroups."""
        host = self._host
        self._scratch = Scratch.create(
            host.work_root, runname.scratch_name(self._run), 1 << 20, host.scratch_inodes + 8, *self._owner
        )
        self._cgroups = run_cgroups(host.cgroups, self._run, limits.memory_mb << 20, host.cpu_cores_per_job)

    def _sock(self) -> socket.socket:
        assert self._socket is not None
        return self._socket

    def preset(self, limits: Limits) -> None:
        """Give its cgroups `limits`' memory and process limits now, while it waits: those of the
        job before it, which most jobs repeat. A job with the same ones is then handed over
        without writing them; one with others has its own written, as if none had been."""
        if self._cgroups is None or self._done:
            return
        wanted = (limits.memory_mb << 20, limits.max_processes)
        self._preset = None
        try:
            self._cgroups.hand_over(*wanted)
        except (OSError, ValueError, CgroupError) as error:  # the hand-over tries them again
            log.debug("run %s: limits not preset: %s", self._run, error)
            return
        self._preset = wanted

    async def run(
        self,
        files: list[tuple[str, bytes]],
        limits: Limits,
        stdin: str,
        args: tuple[str, ...],
        on_output: Callable[[EventKind, bytes], None] | None = None,
    ) -> RunResult:
        """Hand the job over, run it to its end and judge it. The caller `discard`s the jail
        after (its program has ended then: what is left to remove waits for nobody); when this
        raises, the jail is gone already.

        WarmUnusable if the job could not be handed over: its program did not run.
        `on_output` is told its output as it comes (from the hand-over on: the jail's own start
        writes nothing).
        """
        if not self._RUNS_JOBS:
            raise TypeError("a nursery never runs a job")
        try:
            pid, cpu_before_ns = self._prepare(files, limits, args)
        except BaseException:
            await through_cancellation(self.discard())
            raise
        stdin_fd = -1
        try:
            try:
                stdin_fd = stdin_memfd(stdin)
                # "j", then each argument NUL-terminated: never empty (an empty message would
                # carry no descriptor), and an empty argument stays one.
                payload = b"j" + b"".join(os.fsencode(arg) + b"\0" for arg in args)
            except (OSError, UnicodeError) as error:
                raise WarmUnusable(f"stdin or arguments: {error}") from error
            assert self._process is not None and self._cgroups is not None

            def release() -> None:
                sock = self._sock()
                try:
                    sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, stdin_fd.to_bytes(4, sys.byteorder))])
                except OSError as error:  # the jail ended just now: nothing of the job ran
                    raise WarmUnusable(f"the warm jail did not take the job: {error}") from error
                sock.close()
                self._socket = None

            try:
                outcome = await self._process.watch(
                    watch_of(self._host, limits, on_output), _Since(self._cgroups, cpu_before_ns), on_watching=release
                )
            except OSError as error:
                log.error("run %s: could not hand the job to warm jail pid %d: %s", self._run, pid, error)
                raise SandboxError("could not start the sandbox") from error
            return await self._judge(limits, outcome, cpu_before_ns)
        except BaseException:
            await through_cancellation(self.discard())
            raise
        finally:
            if stdin_fd >= 0:
                os.close(stdin_fd)

    async def _judge(self, limits: Limits, outcome: Outcome, cpu_before_ns: int) -> RunResult:
        assert self._cgroups is not None
        return judge(
            self._run,
            limits,
            outcome,
            self._cgroups,
            read_memfd(self._log_fd),
            cpu_before_ns=cpu_before_ns,
            start=SandboxStart.WARM,
        )

    def _prepare(self, files: list[tuple[str, bytes]], limits: Limits, args: tuple[str, ...]) -> tuple[int, int]:
        """Everything before the job is sent: (the jailed pid, the CPU time used so far)."""
        assert self._scratch is not None and self._cgroups is not None and self._process is not None
        if self._process.exited:
            raise WarmUnusable("the warm jail ended while it waited")
        age_s = time.monotonic() - self._started
        if age_s > WARM_MAX_AGE_S or math.ceil(limits.wall_time_ms / 1000) + 1 > WARM_MAX_WALL_S:
            raise WarmUnusable("NsJail's wall backstop would not cover this job")
        if sum(len(arg) for arg in args) > _MAX_ARGS_BYTES:
            raise WarmUnusable("arguments too long for one message")
        memory_bytes = limits.memory_mb << 20
        try:
            self._scratch.resize(*scratch_size(self._host, files, memory_bytes))
            for file_name, data in files:
                self._scratch.write(file_name, data)
            self._scratch.seal()
            if self._preset != (memory_bytes, limits.max_processes):
                self._cgroups.hand_over(memory_bytes, limits.max_processes)
            pids = self._cgroups.jail_pids()
            if len(pids) != 1:
                raise WarmUnusable(f"the warm jail has {len(pids)} processes, not one")
            cpu_before_ns = self._cgroups.cpu_ns()
            for limit, value in _rlimits(limits, cpu_before_ns):
                resource.prlimit(pids[0], limit, (value, value))
        except (OSError, ValueError, ScratchError, CgroupError) as error:
            raise WarmUnusable(str(error)) from error
        return pids[0], cpu_before_ns

    async def discard(self) -> None:
        """Stop the jail (if it runs) and remove everything it had; idempotent."""
        if self._done:
            return
        self._done = True
        if self._socket is not None:
            self._socket.close()  # a waiting hook then exits on its own
            self._socket = None
        try:
            if self._process is not None:
                await self._process.end()
        finally:
            if self._log_fd >= 0:
                os.close(self._log_fd)
                self._log_fd = -1
            if self._scratch is not None or self._cgroups is not None:
                await asyncio.to_thread(clean_up, self._scratch, self._cgroups)
            self._give_back()


def _warm_limits() -> Limits:
    """WARM_LIMITS within the worker's own hard rlimits: NsJail sets them in the jail's user
    namespace, where no hard limit can be raised (a job asking for more would fail cold too)."""

    def hard(limit: int) -> int | None:
        value = resource.getrlimit(limit)[1]
        return None if value == resource.RLIM_INFINITY else value

    limits = WARM_LIMITS
    if (cpu_s := hard(resource.RLIMIT_CPU)) is not None:  # --rlimit_cpu: the limit's seconds plus one
        limits = msgspec.structs.replace(limits, cpu_time_ms=min(limits.cpu_time_ms, max(1, cpu_s - 1) * 1000))
    if (processes := hard(resource.RLIMIT_NPROC)) is not None:
        limits = msgspec.structs.replace(limits, max_processes=min(limits.max_processes, processes))
    if (size := hard(resource.RLIMIT_FSIZE)) is not None:  # --rlimit_fsize: whole MiB
        limits = msgspec.structs.replace(limits, max_file_size_kb=min(limits.max_file_size_kb, max(1, size >> 20) << 10))
    return limits


def _rlimits(limits: Limits, cpu_before_ns: int) -> list[tuple[int, int]]:
    """What command.limit_flags has NsJail set at a cold start, as prlimit values. RLIMIT_CPU
    counts from the process's start: the CPU its start-up took is added to the backstop."""
    return [
        (resource.RLIMIT_CPU, math.ceil(limits.cpu_time_ms / 1000) + 1 + math.ceil(cpu_before_ns / 1e9)),
        (resource.RLIMIT_FSIZE, max(1, math.ceil(limits.max_file_size_kb / 1024)) << 20),
        (resource.RLIMIT_NPROC, limits.max_processes),
    ]


class _Since:
    """The run cgroups' accounting, counting CPU time from the hand-over."""

    def __init__(self, cgroups: RunCgroups, cpu_before_ns: int) -> None:
        self._cgroups = cgroups
        self._before = cpu_before_ns

    def spawning(self) -> contextlib.AbstractContextManager[None]:
        return self._cgroups.spawning()

    def cpu_ns(self) -> int:
        return self._cgroups.cpu_ns() - self._before

    def kill_all(self) -> None:
        self._cgroups.kill_all()


@contextlib.contextmanager
def _fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)

