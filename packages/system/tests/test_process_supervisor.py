"""The supervisor, over tiny children that crash or stop on cue: no root, no Corral.

Each test runs a supervisor in a process of its own (it forks and takes over signals), whose
children append what happens to them to a file: `start <slot> <time>`, `stopping <slot>`,
`stopped <slot>`.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from corral_system.process_supervisor import CRASH_LOOP_EXIT

SUPERVISOR = """
import os, signal, sys, time
from corral_system.process_supervisor import ProcessSupervisor, Restarts

events, crashing, crash_after_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

def note(text):
    with open(events, "a") as out:
        out.write(text + "\\n")

def child(index):
    note(f"start {index} {time.monotonic()}")
    if index < crashing:
        time.sleep(crash_after_s)
        return 3
    def stop(signum, frame):
        note(f"stopping {index}")
        time.sleep(0.3)  # a graceful shutdown takes a moment
        note(f"stopped {index}")
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    while True:
        time.sleep(1)

restarts = Restarts(first_backoff_s=0.2, max_backoff_s=5, stable_s=5, crash_loop=int(sys.argv[4]))
sys.exit(ProcessSupervisor("test", 2, child, restarts=restarts, stop_timeout_s=10).run())
"""


def start(tmp_path: Path, *, crashing: int, crash_after_s: float = 0.05, crash_loop: int = 100) -> tuple[subprocess.Popen[bytes], Path]:
    events = tmp_path / "events"
    events.touch()
    process = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(events), str(crashing), str(crash_after_s), str(crash_loop)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return process, events


def lines(events: Path, first_word: str, slot: int) -> list[list[str]]:
    found = [line.split() for line in events.read_text().splitlines()]
    return [words for words in found if words[0] == first_word and words[1] == str(slot)]


def wait_for(condition: object, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_a_crashed_child_is_restarted_with_a_growing_backoff(tmp_path: Path) -> None:
    supervisor, events = start(tmp_path, crashing=1)
    try:
        wait_for(lambda: len(lines(events, "start", 0)) >= 4)
        starts = [float(words[2]) for words in lines(events, "start", 0)[:4]]
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        # Each gap is the child's 0.05 s of life plus a backoff of 0.2, 0.4, 0.8 s.
        assert [round(gap - 0.05, 1) for gap in gaps] == [0.2, 0.4, 0.8], gaps
        assert len(lines(events, "start", 1)) == 1, "the healthy slot was left alone"
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=20) == 0


def test_sigterm_waits_for_every_childs_graceful_shutdown(tmp_path: Path) -> None:
    supervisor, events = start(tmp_path, crashing=0)
    wait_for(lambda: len(lines(events, "start", 0)) == len(lines(events, "start", 1)) == 1)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=20) == 0
    # The supervisor returned only after both children finished their own shutdown.
    assert len(lines(events, "stopped", 0)) == len(lines(events, "stopped", 1)) == 1


def test_a_crash_loop_stops_everything_and_exits_loudly(tmp_path: Path) -> None:
    supervisor, events = start(tmp_path, crashing=1, crash_after_s=0, crash_loop=3)
    assert supervisor.wait(timeout=20) == CRASH_LOOP_EXIT
    assert len(lines(events, "start", 0)) == 3
    assert len(lines(events, "stopped", 1)) == 1, "the healthy child was stopped gracefully"


def test_children_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    supervisor, events = start(tmp_path, crashing=0)
    wait_for(lambda: len(lines(events, "start", 0)) == len(lines(events, "start", 1)) == 1)
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait(timeout=10)
    # No orphans: each child got SIGTERM from the kernel and shut down gracefully.
    wait_for(lambda: len(lines(events, "stopped", 0)) == len(lines(events, "stopped", 1)) == 1)
