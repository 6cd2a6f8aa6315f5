"""One job in one fresh jail: set it up, run NsJail, watch it, judge it, clean up.

Everything runs on the caller's event loop, without threads: NsJail is spawned with
posix_spawn, its stdout and stderr pipes and a pidfd are watched with add_reader, and the wall
deadline, the jail-wide CPU check and the output grace period are loop timers. Stopping a jail
is SIGTERM to NsJail, which SIGKILLs the jail (its PID 1: the PID namespace takes every other
process with it), reaps it and removes its cgroups; if NsJail does not exit within
kill_grace_ms, every task in the run's cgroups and NsJail are SIGKILLed. (SIGKILL to NsJail
alone would not do: its jail outlives it for a moment and is reparented to the host's init.)
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import resource
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from corral_core.job import Limits, RunRequest, RunResult
from corral_core.ports import SandboxError
from corral_sandbox import nsjail_log
from corral_sandbox.cgroups import CgroupError, RunCgroups
from corral_sandbox.command import JailPaths, nsjail_command
from corral_sandbox.policy import RuntimeSpec
from corral_sandbox.scratch import Scratch, ScratchError, check_file_name
from corral_sandbox.settings import SandboxSettings
from corral_sandbox.verdict import RunFacts, StopReason, decide, nsjail_failure

if TYPE_CHECKING:
    from corral_sandbox.host import HostReport

log = logging.getLogger(__name__)

_READ_CHUNK = 1 << 16
# Once NsJail has exited every writer of the pipes is dead; this only bounds a broken case.
_EOF_WAIT_S = 1.0
# The least time between two checks of the jail's CPU time.
_CPU_CHECK_MIN_S = 0.005
# Limits no client may have, whatever a caller passes (the server's maxima are far below).
_CEILINGS = {
    "cpu_time_ms": 3_600_000,
    "wall_time_ms": 3_600_000,
    "memory_mb": 1 << 20,
    "max_processes": 1 << 16,
    "max_output_bytes": 1 << 30,
    "max_file_size_kb": 1 << 30,
}
# Signals NsJail must start with at their default action: an ignored signal stays ignored
# across exec, and Python ignores SIGPIPE and SIGXFSZ (a worker might ignore others).
_DEFAULT_SIGNALS = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGCHLD,
)


def jail_command(
    host: HostReport,
    runtime: RuntimeSpec,
    scratch: Scratch,
    cgroups: RunCgroups,
    limits: Limits,
    args: tuple[str, ...],
) -> list[str]:
    """The NsJail command line for one job whose scratch space and cgroups are ready."""
    return nsjail_command(
        binary=host.nsjail_bin,
        policy=Path(host.policy_dir),
        runtime=runtime,
        paths=JailPaths(scratch.box, scratch.tmp, scratch.shm, scratch.log),
        limits=limits,
        jail_uid=host.settings.jail_uid,
        jail_gid=host.settings.jail_gid,
        cgroup_flags=cgroups.nsjail_flags(limits.max_processes),
        args=args,
    )


async def run_job(host: HostReport, runtime: RuntimeSpec, request: RunRequest) -> RunResult:
    limits = request.limits
    _check_limits(limits)
    inputs = _inputs(runtime, request)
    settings = host.settings
    loop = asyncio.get_running_loop()
    name = f"{os.getpid()}-{secrets.token_hex(6)}"
    memory_bytes = limits.memory_mb << 20
    scratch: Scratch | None = None
    cgroups: RunCgroups | None = None
    stdin_fd = -1
    jail: _Jail | None = None
    try:
        try:
            # The job's files count once; its own writes get half its memory (tmpfs pages are
            # charged to its memory cgroup anyway, so ENOSPC comes before the OOM killer).
            size = sum(len(data) for _, data in inputs) + memory_bytes // 2 + (1 << 20)
            inodes = settings.scratch_inodes + len(inputs) + 8
            scratch = Scratch.create(
                settings.work_root, f"job-{name}", size, inodes, settings.jail_uid, settings.jail_gid
            )
            for file_name, data in inputs:
                scratch.write(file_name, data)
            scratch.seal()
            cgroups = host.cgroups.new_run(name, memory_bytes)
            stdin_fd = _stdin(request.stdin)
            argv = jail_command(host, runtime, scratch, cgroups, limits, request.args)
            jail = _Jail(loop, argv, stdin_fd, cgroups, limits, settings, host.cpu_count)
        except (OSError, ScratchError, CgroupError) as error:
            raise SandboxError(f"could not set up the jail: {error}") from error
        os.close(stdin_fd)
        stdin_fd = -1
        try:
            await jail.wait()
        except asyncio.CancelledError:
            await jail.stop_and_wait(StopReason.CANCELLED)
            raise
        return _result(limits, jail, cgroups, scratch)
    finally:
        if jail is not None:
            jail.close()
        if stdin_fd >= 0:
            os.close(stdin_fd)
        _clean_up(scratch, cgroups)


def _result(limits: Limits, jail: _Jail, cgroups: RunCgroups, scratch: Scratch) -> RunResult:
    try:
        cpu_ns = cgroups.cpu_ns()
        peak = cgroups.peak_bytes()
        out_of_memory = cgroups.out_of_memory()
    except (OSError, ValueError) as error:
        raise SandboxError(f"could not read the run's cgroups: {error}") from error
    log_text = scratch.read_log()
    if cpu_ns == 0 and jail.rusage is not None:
        cpu_ns = int((jail.rusage.ru_utime + jail.rusage.ru_stime) * 1e9)
    facts = RunFacts(
        stopped_for=jail.stopped_for,
        stdout_truncated=jail.stdout.truncated,
        stderr_truncated=jail.stderr.truncated,
        out_of_memory=out_of_memory,
        cpu_time_ms=cpu_ns // 1_000_000,
        log=nsjail_log.parse(log_text),
    )
    failure = nsjail_failure(facts)
    if failure is not None:
        if not log_text:
            # NsJail stopped before opening its log (a bad config, say): the program never
            # ran, so what is on stderr is NsJail's own complaint.
            failure += f"; NsJail wrote: {jail.stderr.data[-2000:].decode('utf-8', 'replace').strip()}"
        raise SandboxError(f"NsJail could not run the program: {failure}")
    return RunResult(
        verdict=decide(limits, facts),
        exit_code=facts.log.exit_code,
        signal=facts.log.signal,
        stdout=jail.stdout.data.decode("utf-8", "replace"),
        stderr=jail.stderr.data.decode("utf-8", "replace"),
        stdout_truncated=jail.stdout.truncated,
        stderr_truncated=jail.stderr.truncated,
        cpu_time_ms=facts.cpu_time_ms,
        wall_time_ms=max(0, round((jail.ended - jail.started) * 1000)),
        memory_kb=peak // 1024,
    )


def _clean_up(scratch: Scratch | None, cgroups: RunCgroups | None) -> None:
    # The scratch tmpfs first: its pages are charged to the run's memory cgroup.
    if scratch is not None:
        try:
            scratch.remove()
        except (OSError, ScratchError):
            log.exception("could not remove the scratch space %s", scratch.root)
    if cgroups is not None:
        try:
            cgroups.remove()
        except (OSError, CgroupError):
            log.exception("could not remove a run's cgroups")


def _check_limits(limits: Limits) -> None:
    for field, ceiling in _CEILINGS.items():
        value = getattr(limits, field)
        if not isinstance(value, int) or not 1 <= value <= ceiling:
            raise SandboxError(f"limit {field}={value!r} is outside 1..{ceiling}")


def _inputs(runtime: RuntimeSpec, request: RunRequest) -> list[tuple[str, bytes]]:
    """The files the host writes before the jail starts: the source first, then the inputs."""
    inputs = [(runtime.source, request.code.encode("utf-8", "surrogatepass"))]
    seen = {runtime.source}
    for file in request.files:
        try:
            check_file_name(file.name)
        except ScratchError as error:
            raise SandboxError(str(error)) from None
        if file.name in seen:
            raise SandboxError(f"input file {file.name!r} clashes with another file of the job")
        seen.add(file.name)
        inputs.append((file.name, bytes(file.content)))
    for arg in request.args:
        if "\0" in arg:
            raise SandboxError("an argument contains a NUL character")
    return inputs


def _stdin(text: str) -> int:
    """The job's stdin as a sealed memfd: no pipe to feed, nothing on any file system."""
    data = text.encode("utf-8", "surrogatepass")
    fd = os.memfd_create("corral-stdin", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        return _above_stdio(fd)
    except BaseException:
        os.close(fd)
        raise


def _above_stdio(fd: int) -> int:
    """A descriptor numbered 3 or more, so dup2 onto 0, 1 or 2 always clears close-on-exec."""
    if fd > 2:
        return fd
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return high


class _Stream:
    """One output pipe, read without blocking and capped at `cap` bytes.

    Past the cap the read end is closed: the program's next write fails (EPIPE, or SIGPIPE for
    a program that does not ignore it) and it gets output_grace_ms to finish before the jail is
    stopped. That grace lets a program that already wrote its other stream's output exit with
    it flushed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, cap: int, on_overflow: Callable[[], None]) -> None:
        self._loop = loop
        self._fd = fd
        self._cap = cap
        self._on_overflow = on_overflow
        self.data = bytearray()
        self.truncated = False
        self.closed: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self._fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return
        room = self._cap - len(self.data)
        if len(chunk) <= room:
            self.data += chunk
            return
        self.data += chunk[:room]
        self.truncated = True
        self.close()
        self._on_overflow()

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        if not self.closed.done():
            self.closed.set_result(None)


class _Jail:
    """A running NsJail and the watch over it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        argv: list[str],
        stdin_fd: int,
        cgroups: RunCgroups,
        limits: Limits,
        settings: SandboxSettings,
        cpu_count: int,
    ) -> None:
        self._loop = loop
        self._cgroups = cgroups
        self._settings = settings
        self._cpu_limit_ns = limits.cpu_time_ms * 1_000_000
        self._cpu_count = max(1, cpu_count)
        self.stopped_for: StopReason | None = None
        self.rusage: resource.struct_rusage | None = None
        self._terminating = False
        # Set only once NsJail is reaped (not from the future: a caller's cancel can cancel it).
        self._reaped = False
        self._timers: list[asyncio.TimerHandle] = []
        self.exited: asyncio.Future[None] = loop.create_future()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            out_write, err_write = _above_stdio(out_write), _above_stdio(err_write)
            actions = [
                (os.POSIX_SPAWN_DUP2, stdin_fd, 0),
                (os.POSIX_SPAWN_DUP2, out_write, 1),
                (os.POSIX_SPAWN_DUP2, err_write, 2),
            ]
            with cgroups.spawning():
                self.pid = os.posix_spawn(
                    argv[0],
                    argv,
                    {},
                    file_actions=actions,
                    setsid=True,
                    setsigdef=_DEFAULT_SIGNALS,
                    setsigmask=(),
                )
        except BaseException:
            os.close(out_read)
            os.close(err_read)
            raise
        finally:
            os.close(out_write)
            os.close(err_write)
        self.started = self.ended = loop.time()
        self._pidfd = -1
        try:
            cap = limits.max_output_bytes
            self.stdout = _Stream(loop, out_read, cap, self._overflow)
            self.stderr = _Stream(loop, err_read, cap, self._overflow)
            self._pidfd = os.pidfd_open(self.pid)
            loop.add_reader(self._pidfd, self._reap)
        except BaseException:
            self._kill_now()
            for timer in self._timers:
                timer.cancel()
            for fd in (out_read, err_read, self._pidfd):
                with contextlib.suppress(OSError):
                    if fd >= 0:
                        loop.remove_reader(fd)
                        os.close(fd)
            raise
        self._timers.append(loop.call_at(self.started + limits.wall_time_ms / 1000, self.stop, StopReason.WALL_TIME))
        first_check = self._cpu_limit_ns / 1e9 / self._cpu_count
        self._timers.append(loop.call_later(max(first_check, _CPU_CHECK_MIN_S), self._check_cpu))

    async def wait(self) -> None:
        # Shielded: cancelling the caller must not cancel the futures the watch itself relies on.
        await asyncio.shield(self.exited)
        await asyncio.shield(asyncio.gather(self.stdout.closed, self.stderr.closed))

    def stop(self, reason: StopReason) -> None:
        if self.stopped_for is None:
            self.stopped_for = reason
        if self._reaped or self._terminating:
            return
        self._terminating = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        self._timers.append(self._loop.call_later(self._settings.kill_grace_ms / 1000, self._force))

    async def stop_and_wait(self, reason: StopReason) -> None:
        """Stop the jail and wait until NsJail has reaped it, even while being cancelled."""
        self.stop(reason)
        try:
            await asyncio.wait_for(asyncio.shield(self.exited), self._settings.kill_grace_ms / 1000 + 1)
        except (TimeoutError, asyncio.CancelledError):
            self._kill_now()

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if not self._reaped:
            self._kill_now()
        self.stdout.close()
        self.stderr.close()
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    def _overflow(self) -> None:
        if self.stopped_for is None:
            self.stopped_for = StopReason.OUTPUT
        if not self._reaped:
            grace = self._settings.output_grace_ms / 1000
            self._timers.append(self._loop.call_later(grace, self.stop, StopReason.OUTPUT))

    def _check_cpu(self) -> None:
        if self._reaped:
            return
        try:
            left = self._cpu_limit_ns - self._cgroups.cpu_ns()
        except (OSError, ValueError):
            return
        if left <= 0:
            self.stop(StopReason.CPU_TIME)
            return
        # No earlier: even with every CPU busy the jail cannot use up the rest before then.
        delay = max(left / 1e9 / self._cpu_count, _CPU_CHECK_MIN_S)
        self._timers.append(self._loop.call_later(delay, self._check_cpu))

    def _reap(self) -> None:
        try:
            pid, _, rusage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else's waitpid(-1): the log still tells
            pid, rusage = self.pid, None
        if pid == 0:
            return
        self._exited(rusage)

    def _exited(self, rusage: resource.struct_rusage | None) -> None:
        self._reaped = True
        self.ended = self._loop.time()
        self.rusage = rusage
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
        for timer in self._timers:
            timer.cancel()
        self._timers = [self._loop.call_later(_EOF_WAIT_S, self._close_streams)]
        if not self.exited.done():
            self.exited.set_result(None)

    def _close_streams(self) -> None:
        self.stdout.close()
        self.stderr.close()

    def _force(self) -> None:
        if not self._reaped:
            log.warning(
                "NsJail pid %d ignored SIGTERM for %d ms: killing its jail", self.pid, self._settings.kill_grace_ms
            )
            self._cgroups.kill_all()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def _kill_now(self) -> None:
        """The last resort, synchronous: SIGKILL the jail's tasks and NsJail, and reap NsJail."""
        if self._reaped:
            return
        self._cgroups.kill_all()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        rusage = None
        with contextlib.suppress(ChildProcessError):
            _, _, rusage = os.wait4(self.pid, 0)
        self._exited(rusage)
