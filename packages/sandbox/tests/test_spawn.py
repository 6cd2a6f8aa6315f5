"""spawn.spawn: what the program starts with (the worker's own state must not leak into it)."""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest

from corral_sandbox import spawn

# The spawned program reports its session, its signals' dispositions and mask, its environment
# and whether a descriptor it was not given is open, then exits.
REPORT = """
import json, os, signal, sys
print(json.dumps({
    "session_leader": os.getsid(0) == os.getpid(),
    # (not SIGPIPE: Python ignores it itself as it starts)
    "ignored": sorted(s for s in (signal.SIGTERM, signal.SIGUSR1) if signal.getsignal(s) == signal.SIG_IGN),
    "blocked": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    "environment": open("/proc/self/environ").read(),  # as exec gave it (Python may add LC_CTYPE)
    "fd_5": os.read(5, 100).decode(),
    "stray_open": os.path.exists("/proc/self/fd/40"),
}), flush=True)
"""


def test_the_program_starts_clean_with_only_its_descriptors() -> None:
    out_read, out_write = os.pipe()
    data_read, data_write = os.pipe()
    stray_read, stray_write = os.pipe2(os.O_CLOEXEC)
    os.write(data_write, b"hello")
    os.close(data_write)
    # What a worker may carry: ignored and blocked signals (Python ignores SIGPIPE itself).
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        os.dup2(stray_read, 40, inheritable=False)  # a descriptor the spawn does not hand over
        pid = spawn.spawn(sys.executable, [sys.executable, "-c", REPORT], [(out_write, 1), (data_read, 5)],
                          (signal.SIGPIPE, signal.SIGUSR1))  # fmt: skip
    finally:
        signal.signal(signal.SIGUSR1, previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR2})
        for fd in (out_write, data_read, stray_read, stray_write, 40):
            os.close(fd)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(out_read) as output:
        report = json.loads(output.read())
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == {
        "session_leader": True,
        "ignored": [],
        "blocked": [],
        "environment": "",
        "fd_5": "hello",
        "stray_open": False,
    }


def test_a_program_that_cannot_be_executed_is_an_oserror_with_its_errno() -> None:
    with pytest.raises(FileNotFoundError):
        spawn.spawn("/nonexistent/program", ["program"], [], ())
