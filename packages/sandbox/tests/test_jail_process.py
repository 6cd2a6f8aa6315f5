"""Watching a program (jail_process.py) on ordinary programs, without NsJail, cgroups or root: stops, caps, reaps."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

import pytest

from corral_sandbox.jail_process import Outcome, Watch, supervise
from corral_sandbox.streams import stdin_memfd
from corral_sandbox.verdict import StopReason

WATCH = Watch(
    wall_time_s=5.0,
    cpu_time_ns=10**12,
    cpu_count=1,
    output_cap=64 * 1024,
    output_grace_s=0.05,
    kill_grace_s=0.2,
)


class Unaccounted:
    """No cgroups: nothing to account, nothing to kill but the program itself."""

    def __init__(self) -> None:
        self.kills = 0

    def spawning(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def cpu_ns(self) -> int:
        return 0

    def kill_all(self) -> None:
        self.kills += 1


async def run(argv: list[str], stdin: str = "", accounting: Unaccounted | None = None, watch: Watch = WATCH) -> Outcome:
    stdin_fd = stdin_memfd(stdin)
    try:
        return await supervise(argv, stdin_fd, accounting or Unaccounted(), watch)
    finally:
        os.close(stdin_fd)


def children() -> list[str]:
    """This process's child processes, zombies included: a reaped program is none of them."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                found.append(f"{pid} ({fields[0]})")
    return found


async def test_a_program_ends_on_its_own_with_both_streams_read() -> None:
    outcome = await run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (outcome.stdout, outcome.stderr, outcome.stopped_for) == (b"out\n", b"err\n", None)
    assert outcome.rusage is not None
    assert children() == []


async def test_stdin_comes_from_the_memfd() -> None:
    outcome = await run(["/bin/cat"], stdin="hello\nworld\n")
    assert outcome.stdout == b"hello\nworld\n"


async def test_a_program_past_its_wall_time_is_stopped_and_reaped() -> None:
    started = time.monotonic()
    outcome = await run(["/bin/sleep", "30"], watch=WATCH._replace(wall_time_s=0.2))
    assert outcome.stopped_for is StopReason.WALL_TIME
    assert 0.2 <= outcome.wall_time_s < 2.0
    assert time.monotonic() - started < 3.0
    assert children() == []


async def test_output_past_the_cap_is_cut_and_the_program_stopped() -> None:
    outcome = await run(["/usr/bin/yes"], watch=WATCH._replace(output_cap=1000))
    assert outcome.stdout == b"y\n" * 500
    assert outcome.stdout_truncated and not outcome.stderr_truncated
    assert outcome.stopped_for is StopReason.OUTPUT
    assert children() == []


async def test_a_program_ignoring_sigterm_is_killed_after_the_grace() -> None:
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)"
    accounting = Unaccounted()
    started = time.monotonic()
    watch = WATCH._replace(wall_time_s=1.0, kill_grace_s=0.2)
    outcome = await run([sys.executable, "-c", code], accounting=accounting, watch=watch)
    assert outcome.stopped_for is StopReason.WALL_TIME
    assert outcome.stdout == b"ready\n"
    assert accounting.kills == 1
    assert time.monotonic() - started < 5.0
    assert children() == []


async def test_a_cancelled_supervision_stops_and_reaps_the_program() -> None:
    task = asyncio.ensure_future(run(["/bin/sleep", "30"]))
    await asyncio.sleep(0.2)
    assert children() != []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert children() == []


async def test_a_program_that_cannot_be_spawned_is_an_oserror() -> None:
    with pytest.raises(FileNotFoundError):
        await run(["/nonexistent/program"])
    assert children() == []
