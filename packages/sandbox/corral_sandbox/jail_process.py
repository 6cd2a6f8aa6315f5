"""Running one NsJail (or any program) to its end on the caller's event loop, without threads.

The program is spawned with posix_spawn (spawn.py: without holding the GIL); its stdout and
stderr pipes and a pidfd are watched with add_reader; the wall deadline, the CPU check and the
output grace period are loop timers.
Stopping is SIGTERM, which NsJail answers by SIGKILLing the jail (its PID 1: the PID namespace
takes every other process with it), reaping it and removing its cgroups; if the program is not
gone kill_grace later, every task in the run's cgroups and the program are SIGKILLed. (SIGKILL to
NsJail alone would not do: its jail outlives it for a moment and is reparented to init.)

Nothing here blocks: the program is reaped when its pidfd says it exited, and a reap that cannot
be watched that way (the pidfd could not be opened) waits in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import select
import signal
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple, Protocol

from corral_core.events import EventKind
from corral_sandbox import spawn
from corral_sandbox.streams import CappedStream, above_stdio
from corral_sandbox.verdict import StopReason

log = logging.getLogger(__name__)

# Once the program has exited every writer of the pipes is usually dead (a jail's are: they die
# with its PID namespace); this bounds how long stray writers keep the result waiting.
_EOF_WAIT_S = 1.0
# The least time between two checks of the CPU time.
_CPU_CHECK_MIN_S = 0.005
# Signals the program must start with at their default action: an ignored signal stays ignored
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


class Accounting(Protocol):
    """What watching a program needs from the run's cgroups (RunCgroups has it)."""

    def spawning(self) -> contextlib.AbstractContextManager[None]: ...

    def cpu_ns(self) -> int: ...

    def kill_all(self) -> None: ...


class Watch(NamedTuple):
    """How to watch one program."""

    wall_time_s: float
    cpu_time_ns: int
    cpu_count: int
    output_cap: int
    # After a stream passes its cap the program gets this long to finish before it is stopped:
    # a program that already wrote its other stream's output can then exit with it flushed.
    output_grace_s: float
    # How long the program gets to end after SIGTERM before everything is SIGKILLed.
    kill_grace_s: float
    # Told each chunk of stdout and stderr as it is read, of the bytes kept under the cap.
    on_output: Callable[[EventKind, bytes], None] | None = None


class Outcome(NamedTuple):
    stopped_for: StopReason | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    # From wait4; None if someone else reaped the program.
    rusage: resource.struct_rusage | None
    wall_time_s: float


async def supervise(
    argv: list[str], stdin_fd: int, accounting: Accounting, watch: Watch, *, extra_fds: Mapping[int, int] = {}
) -> Outcome:
    """Run `argv` to its end with `stdin_fd` as stdin; stop it when `watch` says.

    `extra_fds` maps descriptors of the program to ours (NsJail's log descriptor, say). Its
    environment is empty: nothing of the worker's environment reaches it.
    Cancelling stops the program and still waits until it is reaped before re-raising.
    """
    process = JailProcess(asyncio.get_running_loop(), accounting)
    try:
        await process.start(argv, stdin_fd, extra_fds, watch.output_cap)
    except BaseException:
        await process.close()
        raise
    return await process.watch(watch)


class JailProcess:
    """One program: spawned by `start`, watched from `watch` on (a warm jail waits in between:
    its timers, its CPU count and its wall time all begin at `watch`), closed by either."""

    def __init__(self, loop: asyncio.AbstractEventLoop, accounting: Accounting, stop_signal: int = signal.SIGTERM) -> None:
        """`stop_signal`: SIGKILL for a program that is its jail's PID 1 itself (fork.py): one
        signalled from outside its PID namespace ignores every other signal it has no handler for."""
        self._impl = _Watcher(loop, accounting, stop_signal)

    @property
    def pid(self) -> int:
        return self._impl.pid

    @property
    def exited(self) -> bool:
        return self._impl.reaped_already

    async def start(self, argv: list[str], stdin_fd: int, extra_fds: Mapping[int, int], output_cap: int) -> None:
        """Spawn the program in a thread (see _Watcher.spawn). Cancelled, it still waits for
        the spawn, so that `close` can kill what was spawned."""
        spawned = asyncio.ensure_future(asyncio.to_thread(self._impl.spawn, argv, stdin_fd, extra_fds))
        try:
            await through_cancellation(spawned)
        finally:
            if spawned.done() and not spawned.cancelled() and spawned.exception() is None:
                self._impl.adopt(*spawned.result(), output_cap)

    def adopt(self, pid: int, out_read: int, err_read: int, output_cap: int) -> None:
        """Watch a program someone else started (fork.py) and reaps, which writes to pipes whose
        read ends are given (and owned from now on). Its exit is seen and it is signalled
        through a pidfd only (its PID may be another process's once it is reaped); with no
        wait4 of ours, its Outcome has no rusage."""
        self._impl.external = True
        self._impl.adopt(pid, out_read, err_read, output_cap)

    def running(self) -> bool:
        """Whether the program has not exited, as its pidfd says now."""
        return self._impl.running()

    async def watch(
        self, watch: Watch, accounting: Accounting | None = None, on_watching: Callable[[], None] | None = None
    ) -> Outcome:
        """Watch the started program from now to its end (see `supervise`); close it after.

        `on_watching` runs once the clocks run (a warm jail's hand-over: its job starts then).
        """
        watcher = self._impl
        try:
            watcher.watch(watch, accounting)
            if on_watching is not None:
                on_watching()
            try:
                await watcher.finished()
            except asyncio.CancelledError:
                watcher.stop(StopReason.CANCELLED)
                await watcher.reaped()
                raise
        finally:
            await watcher.close()
        return watcher.outcome()

    async def end(self) -> None:
        """Stop the program (SIGTERM: NsJail kills and reaps its jail; SIGKILL after the kill
        grace), wait until it is reaped, close our ends of its pipes."""
        if self._impl.pid >= 0:
            self._impl.stop(StopReason.CANCELLED)
            await self._impl.reaped()
        await self._impl.close()

    async def close(self) -> None:
        """Kill the program if it still runs, reap it, close our ends of its pipes."""
        await self._impl.close()


class _Watcher:
    def __init__(self, loop: asyncio.AbstractEventLoop, accounting: Accounting, stop_signal: int) -> None:
        self._loop = loop
        self._accounting = accounting
        self._stop_signal = stop_signal
        # A program someone else reaps (JailProcess.adopt): never wait4'ed, signalled by pidfd.
        self.external = False
        # Until `watch`: no limit but a kill grace, for a program closed before it was watched.
        self._watch = Watch(0.0, 0, 1, 0, 0.0, 1.0)
        self.pid = -1
        self._pidfd = -1
        self._stdout: CappedStream | None = None
        self._stderr: CappedStream | None = None
        self._stopped_for: StopReason | None = None
        self._rusage: resource.struct_rusage | None = None
        self._terminating = False
        # Set only once the program is reaped (not from the future: a caller's cancel can cancel it).
        self._reaped = False
        self._exited: asyncio.Future[None] = loop.create_future()
        self._timers: list[asyncio.TimerHandle] = []
        self._started = self._ended = loop.time()

    @property
    def reaped_already(self) -> bool:
        return self._reaped

    def spawn(self, argv: list[str], stdin_fd: int, extra_fds: Mapping[int, int]) -> tuple[int, int, int]:
        """Spawn the program: (pid, stdout read end, stderr read end). Touches nothing of the
        loop's, so it may run in a thread: on cgroup v1 stepping into the run's cgroups for the
        spawn (Accounting.spawning) can take milliseconds, which the loop must not wait for."""
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            out_write, err_write = above_stdio(out_write), above_stdio(err_write)
            dup2 = [(stdin_fd, 0), (out_write, 1), (err_write, 2), *((ours, theirs) for theirs, ours in extra_fds.items())]
            with self._accounting.spawning():
                pid = spawn.spawn(argv[0], argv, dup2, _DEFAULT_SIGNALS)
        except BaseException:
            os.close(out_read)
            os.close(err_read)
            raise
        finally:
            os.close(out_write)
            os.close(err_write)
        return pid, out_read, err_read

    def adopt(self, pid: int, out_read: int, err_read: int, output_cap: int) -> None:
        """Watch the spawned program's exit and read its output (on the loop)."""
        self.pid = pid
        self._started = self._ended = self._loop.time()
        # From here on a failure leaves a running program: close() kills and reaps it.
        cap = output_cap
        try:
            self._stdout = CappedStream(self._loop, out_read, cap, self._overflow)
        except BaseException:
            os.close(out_read)
            os.close(err_read)
            raise
        try:
            self._stderr = CappedStream(self._loop, err_read, cap, self._overflow)
        except BaseException:
            os.close(err_read)
            raise
        self._pidfd = os.pidfd_open(self.pid)
        self._loop.add_reader(self._pidfd, self._reap)

    def watch(self, watch: Watch, accounting: Accounting | None) -> None:
        """From now on: the wall deadline, the CPU checks, the output cap of `watch`."""
        self._watch = watch
        if accounting is not None:
            self._accounting = accounting
        assert self._stdout is not None and self._stderr is not None
        self._stdout.cap = self._stderr.cap = watch.output_cap
        if watch.on_output is not None:
            self._stdout.on_chunk = functools.partial(watch.on_output, EventKind.STDOUT)
            self._stderr.on_chunk = functools.partial(watch.on_output, EventKind.STDERR)
        if self._reaped:
            return
        self._started = self._ended = self._loop.time()
        self._timers.append(
            self._loop.call_at(self._started + self._watch.wall_time_s, self.stop, StopReason.WALL_TIME)
        )
        first_check = self._watch.cpu_time_ns / 1e9 / max(1, watch.cpu_count)
        self._timers.append(self._loop.call_later(max(first_check, _CPU_CHECK_MIN_S), self._check_cpu))

    async def finished(self) -> None:
        """The program exited and both streams are read to their end (or cut)."""
        # Shielded: cancelling the caller must not cancel the futures the watch itself relies on.
        await asyncio.shield(self._exited)
        assert self._stdout is not None and self._stderr is not None
        await asyncio.shield(asyncio.gather(self._stdout.closed, self._stderr.closed))

    def stop(self, reason: StopReason) -> None:
        if self._stopped_for is None:
            self._stopped_for = reason
        if self._reaped or self._terminating or self.pid < 0:
            return
        self._terminating = True
        if self._stop_signal == signal.SIGKILL:
            self._kill()
            return
        self._signal(self._stop_signal)
        self._timers.append(self._loop.call_later(self._watch.kill_grace_s, self._force))

    async def reaped(self) -> None:
        """Wait until the program is reaped, through any cancellation: each one kills it at once."""
        await through_cancellation(self._reaped_or_reap(), on_cancel=self._kill)

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers = []
        if self.pid >= 0 and not self._reaped:
            self._kill()
            await self.reaped()
        for stream in (self._stdout, self._stderr):
            if stream is not None:
                stream.close()
        self._unwatch_pid()

    def outcome(self) -> Outcome:
        assert self._stdout is not None and self._stderr is not None
        return Outcome(
            stopped_for=self._stopped_for,
            stdout=bytes(self._stdout.data),
            stderr=bytes(self._stderr.data),
            stdout_truncated=self._stdout.truncated,
            stderr_truncated=self._stderr.truncated,
            rusage=self._rusage,
            wall_time_s=max(0.0, self._ended - self._started),
        )

    def _reaped_or_reap(self) -> Awaitable[object]:
        if self._reaped or self._pidfd >= 0:
            return self._exited
        # No pidfd to watch (opening it failed right after the spawn): wait4 in a thread.
        return asyncio.ensure_future(self._reap_in_thread())

    async def _reap_in_thread(self) -> None:
        rusage = None
        with contextlib.suppress(ChildProcessError):
            _, _, rusage = await asyncio.to_thread(os.wait4, self.pid, 0)
        self._exited_now(rusage)

    def _overflow(self) -> None:
        if self._stopped_for is None:
            self._stopped_for = StopReason.OUTPUT
        if not self._reaped:
            self._timers.append(self._loop.call_later(self._watch.output_grace_s, self.stop, StopReason.OUTPUT))

    def _check_cpu(self) -> None:
        if self._reaped:
            return
        try:
            left = self._watch.cpu_time_ns - self._accounting.cpu_ns()
        except (OSError, ValueError):
            return
        if left <= 0:
            self.stop(StopReason.CPU_TIME)
            return
        # No earlier: even with every CPU busy the jail cannot use up the rest before then.
        delay = max(left / 1e9 / max(1, self._watch.cpu_count), _CPU_CHECK_MIN_S)
        self._timers.append(self._loop.call_later(delay, self._check_cpu))

    def running(self) -> bool:
        if self._reaped or self._pidfd < 0:
            return False
        return not select.select([self._pidfd], [], [], 0)[0]

    def _reap(self) -> None:
        if self.external:
            self._exited_now(None)
            return
        try:
            pid, _, rusage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else's waitpid(-1): the log still tells
            pid, rusage = self.pid, None
        if pid == 0:
            return
        self._exited_now(rusage)

    def _exited_now(self, rusage: resource.struct_rusage | None) -> None:
        if self._reaped:
            return
        self._reaped = True
        self._ended = self._loop.time()
        self._rusage = rusage
        self._unwatch_pid()
        for timer in self._timers:
            timer.cancel()
        self._timers = [self._loop.call_later(_EOF_WAIT_S, self._close_streams)]
        if not self._exited.done():
            self._exited.set_result(None)

    def _unwatch_pid(self) -> None:
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    def _close_streams(self) -> None:
        for stream in (self._stdout, self._stderr):
            if stream is not None:
                stream.close()

    def _force(self) -> None:
        if not self._reaped:
            log.warning("pid %d ignored SIGTERM for %.0f ms: killing it", self.pid, self._watch.kill_grace_s * 1000)
            self._kill()

    def _kill(self) -> None:
        """SIGKILL every task in the run's cgroups and the program; the reap comes through the pidfd."""
        if self._reaped or self.pid < 0:
            return
        self._accounting.kill_all()
        self._signal(signal.SIGKILL)

    def _signal(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self._pidfd >= 0:
                signal.pidfd_send_signal(self._pidfd, number)
            elif not self.external:
                os.kill(self.pid, number)


async def through_cancellation(awaitable: Awaitable[object], on_cancel: Callable[[], None] | None = None) -> None:
    """Wait for `awaitable` to finish even when cancelled; re-raise the cancellation after it."""
    future = asyncio.ensure_future(awaitable)
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled():
                break
            cancelled = True
            if on_cancel is not None:
                on_cancel()
    if cancelled:
        raise asyncio.CancelledError
