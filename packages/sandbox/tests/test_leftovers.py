"""Workers starting together clean up after a `kill -9`ed worker: every one starts, nothing is
left, and a live worker's running job is untouched (issue 15).

Each round forks a worker that runs two real jobs and is SIGKILLed while they run (leaving its
scratch mounts, run cgroups, NsJail and the jails behind), forks a live worker holding a running
job, then forks several workers that prepare the host at the same moment (self-test included:
each runs a first job).

In a file of its own: the test forks, so no other test's threads may be around.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from pathlib import Path

import msgspec
import pytest

from corral_core.job import RunRequest, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_sandbox import HostNotReady, HostReport, NsJailSandbox, leftovers, prepare_host, runname
from corral_sandbox.scratch import remove_stale
from corral_testbed.nsjail_host import nsjail_host, run_leftovers

ROUNDS = 20
PREPARERS = 4
LIMITS = msgspec.structs.replace(DEFAULT_LIMIT_POLICY.defaults, wall_time_ms=60_000)
# The live job runs until told to finish (SIGUSR1), so that it is still running whatever the
# preparers take.
LIVE_JOB = """
import signal
signal.signal(signal.SIGUSR1, lambda *_: None)
signal.pause()
print("done")
"""
forking = multiprocessing.get_context("fork")
_libc = ctypes.CDLL(None, use_errno=True)


def _run_jobs(host: HostReport, code: str, count: int, results: Connection | None) -> None:
    async def main() -> None:
        sandbox = NsJailSandbox(host=host)
        request = RunRequest(language="python", code=code, limits=LIMITS)
        done = await asyncio.gather(*(sandbox.run(request) for _ in range(count)))
        if results is not None:
            results.send([(result.verdict, result.stdout, result.stderr) for result in done])

    asyncio.run(main())


def _prepare(host: HostReport, start: Barrier, errors: Connection) -> None:
    start.wait()
    try:
        # With the self-test: a worker that started must also run a job right.
        prepare_host(msgspec.structs.replace(host.settings, selftest=True))
    except HostNotReady as error:
        errors.send(str(error))
        os._exit(1)


def jailed_pids(host: HostReport, pid: int) -> list[int]:
    """The processes in the jails of `pid`'s runs (NsJail's own cgroups in the memory controller)."""
    memory = os.path.join(host.cgroups.memory, host.cgroups.parent)
    pids = []
    for run in os.listdir(memory):
        owner = runname.owner(run, runname.CGROUP_PREFIX)
        if owner is None or owner.pid != pid:
            continue
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(f"{memory}/{run}"):
                if name.startswith("NSJAIL."):
                    with contextlib.suppress(FileNotFoundError):
                        pids += [int(line) for line in Path(f"{memory}/{run}/{name}/cgroup.procs").read_text().split()]
    return pids


def children(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the jobs to start"
        time.sleep(0.01)


@contextlib.contextmanager
def live_worker(host: HostReport) -> Iterator[tuple[int, Connection]]:
    receive, send = forking.Pipe(duplex=False)
    worker = forking.Process(target=_run_jobs, args=(host, LIVE_JOB, 1, send))
    worker.start()
    assert worker.pid is not None
    try:
        yield worker.pid, receive
    finally:
        for pid in jailed_pids(host, worker.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
        worker.join(30)
        if worker.exitcode is None:
            worker.kill()
            worker.join()


def dead_worker_leftovers(host: HostReport) -> tuple[int, list[int]]:
    """A worker SIGKILLed while running two jobs; its pid and its NsJail processes."""
    worker = forking.Process(target=_run_jobs, args=(host, "import time\ntime.sleep(60)", 2, None))
    worker.start()
    pid = worker.pid
    assert pid is not None
    wait_until(lambda: len(jailed_pids(host, pid)) >= 2)
    nsjails = children(pid)
    os.kill(pid, signal.SIGKILL)
    worker.join()
    return pid, nsjails


def prepare_together(host: HostReport) -> list[str]:
    """PREPARERS workers preparing the host at the same moment; what each one failed with."""
    start = forking.Barrier(PREPARERS)
    receive, send = forking.Pipe(duplex=False)
    workers = [forking.Process(target=_prepare, args=(host, start, send)) for _ in range(PREPARERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    send.close()
    failures = []
    with contextlib.suppress(EOFError):
        while True:
            failures.append(receive.recv())
    failures += [f"preparer exited with {worker.exitcode}" for worker in workers if worker.exitcode != 0]
    return failures


@pytest.mark.timeout(900)
def test_workers_starting_together_clean_up_a_dead_worker_and_spare_a_live_one() -> None:
    host = nsjail_host()
    for round_ in range(ROUNDS):
        with live_worker(host) as (live, results):
            wait_until(lambda: jailed_pids(host, live) != [])
            live_artefacts = run_leftovers(host, live)
            dead, nsjails = dead_worker_leftovers(host)
            left = run_leftovers(host, dead)
            assert {entry.split()[0] for entry in left} == {"cgroup", "scratch", "mount"}
            failures = prepare_together(host)
            assert failures == [], f"round {round_}: a worker refused to start"
            assert run_leftovers(host, dead) == [], f"round {round_}: the dead worker's leftovers stayed"
            assert [pid for pid in nsjails if running(pid)] == [], "the dead worker's NsJail still runs"
            assert run_leftovers(host, live) == live_artefacts, "the live worker's job was touched"
        assert results.poll(30), "the live worker's job never finished"
        assert results.recv() == [(Verdict.OK, "done\n", "")], "the live worker's job was disturbed"
        assert run_leftovers(host, live) == []


def test_a_leftover_another_worker_removed_first_is_no_error() -> None:
    host = nsjail_host()
    dead = f"{dead_pid()}-0-0badc0ffee"
    scratch = f"{host.settings.work_root}/{runname.scratch_name(dead)}"
    os.mkdir(scratch)
    for _ in range(2):  # stacked mounts: each umount takes one
        assert _libc.mount(b"tmpfs", scratch.encode(), b"tmpfs", 0, b"size=1m") == 0
    cgroups = [f"{parent}/{runname.cgroup_name(dead)}" for parent in host.cgroups.parent_dirs()]
    for path in cgroups:
        os.makedirs(f"{path}/NSJAIL.1")
    assert set(cgroups) <= set(leftovers.sweep_cgroups(host.cgroups))
    assert not set(cgroups) & set(leftovers.sweep_cgroups(host.cgroups))  # gone already: no error
    remove_stale(scratch)
    remove_stale(scratch)
    assert not any(os.path.exists(path) for path in (scratch, *cgroups))
    assert scratch not in Path("/proc/self/mountinfo").read_text()


def dead_pid() -> int:
    process = forking.Process(target=os._exit, args=(0,))
    process.start()
    process.join()
    assert process.pid is not None
    return process.pid
