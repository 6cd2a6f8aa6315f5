"""A pre-fork supervisor: N copies of one process, kept alive, stopped together.

Both deployables use it (`corral-api serve --processes N`, `corral-worker run --processes N`),
as gunicorn and uvicorn keep their workers. Children are forked, not spawned: they inherit what
the supervisor prepared once (the API's listening socket, the worker's checked sandbox host),
and no PEX has to find its own command line again.

The supervisor is single-threaded and takes its signals synchronously (blocked, then
`sigtimedwait`), so a SIGCHLD and a SIGTERM arriving together are handled one after the other,
never inside each other. A child that dies is forked again after a backoff that doubles with
every quick death and resets once a child has lived `stable_s`; a slot whose child dies quickly
`crash_loop` times in a row means something is broken for good, and the supervisor stops
everything and exits with CRASH_LOOP_EXIT rather than fork forever. SIGTERM or SIGINT is
forwarded as SIGTERM to every child, whose own graceful shutdown runs; those still alive after
`stop_timeout_s` are killed.

Each child asks the kernel for SIGTERM when its supervisor dies (PR_SET_PDEATHSIG), so a
supervisor killed with SIGKILL leaves no orphan behind: its children shut down gracefully, and
whatever restarts the supervisor starts a fresh set.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# What a supervisor that gave up exits with (EX_SOFTWARE): whatever runs it must not simply
# restart it, since its children cannot stay up.
CRASH_LOOP_EXIT = 70
_PR_SET_PDEATHSIG = 1
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}


@dataclass(frozen=True)
class Restarts:
    """How a supervisor restarts a dead child."""

    first_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    # A child that lived this long was healthy: its slot's backoff and crash count start over.
    stable_s: float = 10.0
    # Quick deaths in a row, in one slot, that make the supervisor give up.
    crash_loop: int = 5


@dataclass
class _Slot:
    index: int  # as `child` gets it, from 0; logs count slots from 1, as process titles do
    pid: int | None = None
    started: float = 0.0
    quick_deaths: int = 0
    backoff_s: float = 0.0
    restart_at: float = 0.0
    exits: list[int] = field(default_factory=list)


class ProcessSupervisor:
    """Runs `child(index)` in `processes` forked children until SIGTERM or SIGINT.

    `child` runs in the forked process and returns its exit status. `on_child_exit(pid)` runs
    in the supervisor after each child is reaped (metrics use it to retire the pid's files).
    """

    def __init__(
        self,
        role: str,
        processes: int,
        child: Callable[[int], int],
        *,
        restarts: Restarts | None = None,
        stop_timeout_s: float = 60.0,
        on_child_exit: Callable[[int], None] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("a supervisor needs at least one process")
        self.role = role
        self._child = child
        self._restarts = restarts or Restarts()
        self._stop_timeout_s = stop_timeout_s
        self._on_child_exit = on_child_exit
        self._slots = [_Slot(index) for index in range(processes)]

    def run(self) -> int:
        """Supervise until told to stop; the exit status for the supervisor process."""
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            return self._supervise()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def children(self) -> dict[int, int]:
        """The live children: slot index -> pid."""
        return {slot.index: slot.pid for slot in self._slots if slot.pid is not None}

    def _supervise(self) -> int:
        log.info("%s: supervising %d processes", self.role, len(self._slots))
        while True:
            now = time.monotonic()
            for slot in self._slots:
                if slot.pid is None and slot.restart_at <= now:
                    self._fork(slot)
            waiting = [slot.restart_at - now for slot in self._slots if slot.pid is None]
            received = signal.sigtimedwait(_SIGNALS, max(min(waiting, default=5.0), 0.01))
            if received is not None and received.si_signo in (signal.SIGTERM, signal.SIGINT):
                log.info("%s: %s, stopping every process", self.role, signal.Signals(received.si_signo).name)
                self._stop_all()
                return 0
            if given_up := self._reap():
                log.critical(
                    "%s: slot %d died %d times in a row within %gs of starting (exit statuses %s): "
                    "giving up, stopping every process",
                    self.role,
                    given_up.index + 1,
                    given_up.quick_deaths,
                    self._restarts.stable_s,
                    given_up.exits[-given_up.quick_deaths :],
                )
                self._stop_all()
                return CRASH_LOOP_EXIT

    def _fork(self, slot: _Slot) -> None:
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:
            os._exit(self._run_child(slot.index, supervisor))
        slot.pid, slot.started = pid, time.monotonic()
        log.info("%s: slot %d started as pid %d", self.role, slot.index + 1, pid)

    def _run_child(self, index: int, supervisor: int) -> int:
        status = 1
        try:
            for signum in _SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            _die_with_parent()
            if os.getppid() != supervisor:  # it died before the request took effect
                return 0
            status = self._child(index)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            logging.shutdown()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
        return status

    def _reap(self) -> _Slot | None:
        """Collect every dead child and schedule its restart; the slot in a crash loop, if any."""
        given_up = None
        now = time.monotonic()
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return given_up
            if pid == 0:
                return given_up
            slot = next((slot for slot in self._slots if slot.pid == pid), None)
            if slot is None:
                continue
            self._retire(pid)
            code = os.waitstatus_to_exitcode(status)
            slot.pid = None
            slot.exits.append(code)
            lived = now - slot.started
            if lived >= self._restarts.stable_s:
                slot.quick_deaths, slot.backoff_s = 0, 0.0
            else:
                slot.quick_deaths += 1
                slot.backoff_s = min(max(slot.backoff_s * 2, self._restarts.first_backoff_s), self._restarts.max_backoff_s)
            slot.restart_at = now + slot.backoff_s
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
            log.warning(
                "%s: slot %d (pid %d) %s after %.1fs; restarting in %.1fs",
                self.role,
                slot.index + 1,
                pid,
                how,
                lived,
                slot.backoff_s,
            )
            if slot.quick_deaths >= self._restarts.crash_loop:
                given_up = slot

    def _stop_all(self) -> None:
        for slot in self._slots:
            if slot.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout_s
        while any(slot.pid is not None for slot in self._slots):
            left = deadline - time.monotonic()
            if left <= 0:
                for slot in self._slots:
                    if slot.pid is not None:
                        log.error("%s: slot %d (pid %d) did not stop in time; killing it", self.role, slot.index + 1, slot.pid)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(slot.pid, signal.SIGKILL)
                        with contextlib.suppress(ChildProcessError):
                            os.waitpid(slot.pid, 0)
                        self._retire(slot.pid)
                        slot.pid = None
                break
            # A second SIGTERM or SIGINT while stopping changes nothing: the children have theirs.
            signal.sigtimedwait(_SIGNALS, min(left, 1.0))
            for slot in self._slots:
                if slot.pid is None:
                    continue
                with contextlib.suppress(ChildProcessError):
                    pid, _ = os.waitpid(slot.pid, os.WNOHANG)
                    if pid == 0:
                        continue
                self._retire(slot.pid)
                slot.pid = None
        log.info("%s: every process stopped", self.role)

    def _retire(self, pid: int) -> None:
        if self._on_child_exit is not None:
            try:
                self._on_child_exit(pid)
            except Exception:
                log.exception("%s: cleaning up after pid %d failed", self.role, pid)


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when the supervisor dies; elsewhere, nothing (no such request)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
