"""Warm jails (corral_sandbox/warm.py): a program cannot tell one from a cold jail, the client
gets the same verdicts, and no job leaves anything for the next one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from corral_core.job import InputFile, RunRequest, RunResult, SandboxStart, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import SandboxError
from corral_sandbox import HostReport, NsJailSandbox
from corral_testbed.nsjail_host import WAIT_FOR_THE_TEST, assert_host_unharmed, nsjail_host, release, until_ready
from corral_testbed.time_scale import scaled

LIMITS = msgspec.structs.replace(
    DEFAULT_LIMIT_POLICY.defaults, cpu_time_ms=scaled(2_000), wall_time_ms=scaled(5_000), memory_mb=128
)

# What a program can see of how it was started. Descriptors are probed with fstat (there is no
# /proc or /dev/fd in the jail); stdin's inode is the memfd's own, new for every job.
OBSERVE = """
    import gc, json, os, sys, __main__, resource
    # Modules loaded and dropped before the program (their dicts still in memory): a forked
    # jail's nursery loads some that a cold start never does.
    dropped = sorted(
        {o["__name__"] for o in gc.get_objects() if type(o) is dict and type(o.get("__name__")) is str and "__builtins__" in o}
        - set(sys.modules)
    )
    def open_fds():
        found = []
        for fd in range(1024):
            try:
                os.fstat(fd)
                found.append(fd)
            except OSError:
                pass
        return found
    stdin_stat = os.fstat(0)
    def process():
        # Session and group (NsJail makes the program a session leader), whether it is
        # dumpable (a change of user clears it) and whether its thread's robust futex list is
        # registered (glibc's fork registers it again in a child).
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        head, length = ctypes.c_void_p(), ctypes.c_size_t()
        robust = libc.syscall(274, 0, ctypes.byref(head), ctypes.byref(length))
        return [os.getsid(0), os.getpgrp(), libc.prctl(3, 0, 0, 0, 0), robust, bool(head.value), length.value]
    seen = {
        "dropped": dropped,
        "process": process(),
        "argv": sys.argv,
        "orig_argv": sys.orig_argv,
        "cwd": os.getcwd(),
        "environ": dict(os.environ),
        "path": sys.path,
        "name": __name__,
        "file": __file__,
        "cached": __cached__,
        "spec": repr(__spec__),
        "loader": [type(__main__.__loader__).__name__, __main__.__loader__.name, __main__.__loader__.path],
        "main_dict": list(vars(__main__)),
        "flags": repr(sys.flags),
        "fds": open_fds(),
        "stdin": [sys.stdin.read(), stdin_stat.st_mode, stdin_stat.st_size, sys.stdin.seekable(), sys.stdin.encoding],
        "stdout": [sys.stdout.encoding, sys.stdout.line_buffering, os.fstat(1).st_mode],
        "modules": sorted(sys.modules),
        "importer_cache": sorted((key, type(value).__name__) for key, value in sys.path_importer_cache.items()),
        "frames": [frame.f_code.co_filename for frame in [sys._getframe()] if frame.f_back is None],
        "recursion_limit": sys.getrecursionlimit(),
        "pid": [os.getpid(), os.getppid()],
        "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getgroups()],
        "umask": os.umask(0o022),
        "rlimits": {
            name: resource.getrlimit(getattr(resource, name))
            for name in ("RLIMIT_FSIZE", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_STACK", "RLIMIT_AS", "RLIMIT_CORE")
        },
        "box": sorted(os.listdir("/box")),
        "tmp": sorted(os.listdir("/tmp")),
        "root": sorted(os.listdir("/")),
        "etc": sorted(os.listdir("/etc")),
        "signals": [str(__import__("signal").getsignal(number)) for number in range(1, 32)],
        "helper": __import__("helper").VALUE,
    }
    print(json.dumps(seen))
"""

# Programs that end every way a Python program ends: the client must get the same from both.
ENDINGS = {
    "exception": "def f():\n    raise ValueError('deep')\nprint('before', flush=True)\nf()\n",
    "syntax_error": "print('never')\nx = (1,\n",
    "exit_code": "import sys\nprint('out')\nsys.exit(3)\n",
    "exit_message": "import sys\nsys.exit('bye')\n",
    "keyboard_interrupt": "raise KeyboardInterrupt\n",
    "atexit_and_threads": (
        "import atexit, threading, time\natexit.register(print, 'atexit ran')\n"
        "threading.Thread(target=lambda: (time.sleep(0.1), print('thread done'))).start()\nraise SystemExit(0)\n"
    ),
    "stdin_echo": "import sys\nprint(sys.stdin.read().upper(), sys.argv[1:])\n",
    "traceback_from_an_input_file": "import helper\nhelper.fail()\n",
}
HELPER = InputFile("helper.py", b"VALUE = 42\n\ndef fail():\n    return 1 / 0\n")


@pytest.fixture
def host() -> HostReport:
    return nsjail_host()


@pytest.fixture(params=["started", "forked"])
def fork_jails(request: pytest.FixtureRequest) -> bool:
    """Each case runs with warm jails NsJail started, and with jails forked from a nursery (fork.py)."""
    return bool(request.param == "forked")


@pytest.fixture
async def both(host: HostReport, fork_jails: bool) -> AsyncIterator[tuple[NsJailSandbox, NsJailSandbox]]:
    cold, warm = NsJailSandbox(host=host), NsJailSandbox(host=host, warm_slots=1, fork_jails=fork_jails)
    warm.keep_warm()
    yield cold, warm
    await warm.aclose()
    assert_host_unharmed(host)


async def run(sandbox: NsJailSandbox, code: str, **limits: int) -> RunResult:
    request = RunRequest(
        language="python",
        code=textwrap.dedent(code),
        stdin="some input\nmore\n",
        args=("an arg", "", "ünïcode", "--flag"),
        files=(HELPER,),
        limits=msgspec.structs.replace(LIMITS, **limits),
    )
    result = await sandbox.run(request)
    assert result.sandbox_start is (SandboxStart.WARM if sandbox.warm else SandboxStart.COLD)
    return result


async def test_a_program_sees_the_same_start_in_a_warm_jail_as_in_a_cold_one(
    both: tuple[NsJailSandbox, NsJailSandbox], fork_jails: bool
) -> None:
    cold, warm = [await run(sandbox, OBSERVE) for sandbox in both]
    assert (cold.verdict, cold.stderr) == (Verdict.OK, "")
    assert (warm.verdict, warm.stderr) == (Verdict.OK, "")
    cold_seen, warm_seen = json.loads(cold.stdout), json.loads(warm.stdout)
    # The one difference: a nursery's ctypes, dropped before the job, stays in memory (the C part
    # of ctypes holds on to one of its classes). Nothing else a nursery or the stub loaded stays.
    nursery_left = ["ctypes", "ctypes._endian"] if fork_jails else []
    assert warm_seen.pop("dropped") == sorted(cold_seen.pop("dropped") + nursery_left)
    assert warm_seen == cold_seen
    # The facts that make it a cold start, checked once here.
    assert cold_seen["argv"] == ["main.py", "an arg", "", "ünïcode", "--flag"]
    assert cold_seen["fds"] == [0, 1, 2]
    assert cold_seen["frames"] == ["/box/main.py"]  # main.py's frame is the first: no frame above it
    assert cold_seen["stdin"][0] == "some input\nmore\n"
    assert "sitecustomize" not in cold_seen["modules"] and "_socket" not in cold_seen["modules"]
    assert cold_seen["process"] == [1, 1, 1, 0, True, 24]  # session leader, dumpable, robust list


@pytest.mark.parametrize("ending", sorted(ENDINGS))
async def test_a_program_ends_the_same_in_a_warm_jail_as_in_a_cold_one(
    both: tuple[NsJailSandbox, NsJailSandbox], ending: str
) -> None:
    cold, warm = [await run(sandbox, ENDINGS[ending]) for sandbox in both]
    assert (warm.verdict, warm.exit_code, warm.signal) == (cold.verdict, cold.exit_code, cold.signal)
    assert (warm.stdout, warm.stderr) == (cold.stdout, cold.stderr)
    if ending in ("exception", "traceback_from_an_input_file"):
        assert 'File "/box/main.py", line' in warm.stderr


async def test_cpu_time_and_memory_are_the_jobs_own(both: tuple[NsJailSandbox, NsJailSandbox]) -> None:
    # 300 ms of CPU and 64 MiB: a warm jail's CPU time counts from the hand-over (its start-up
    # is not the job's), its peak memory is the job's as in a cold jail.
    code = """
        import time
        block = bytearray(64 << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        end = time.process_time() + 0.3
        while time.process_time() < end:
            pass
    """
    cold, warm = [await run(sandbox, code) for sandbox in both]
    assert cold.verdict is warm.verdict is Verdict.OK
    assert 300 <= warm.cpu_time_ms < scaled(450)
    assert warm.cpu_time_ms <= cold.cpu_time_ms + scaled(50)
    assert 64 << 10 <= warm.memory_kb < (64 << 10) + 32 << 10
    assert abs(warm.memory_kb - cold.memory_kb) < 16 << 10


async def test_a_warm_jails_limits_are_its_jobs(both: tuple[NsJailSandbox, NsJailSandbox]) -> None:
    # Each job twice: a jail started after a job has that job's memory and process limits set
    # while it waits (WarmJail.preset), and a job that asks the same is handed over without them.
    _, warm = both
    for _ in range(2):
        memory = await run(warm, "x = bytearray(100 << 20)\nx[::4096] = b'1' * len(x[::4096])", memory_mb=48)
        assert memory.verdict is Verdict.MEMORY_LIMIT_EXCEEDED
    for _ in range(2):
        cpu = await run(warm, "while True: pass", cpu_time_ms=scaled(300))
        assert cpu.verdict is Verdict.TIME_LIMIT_EXCEEDED
        assert scaled(300) <= cpu.cpu_time_ms < scaled(500)
    for _ in range(2):
        forks = await run(
            warm,
            """
            import os
            born = 0
            try:
                for _ in range(20):
                    if os.fork() == 0:
                        os.pause()
                    born += 1
            except OSError:
                pass
            print(born)
            """,
            max_processes=5,
        )
        assert forks.stdout == "4\n"


async def test_nothing_a_job_leaves_reaches_the_next_job_on_the_same_slot(host: HostReport, fork_jails: bool) -> None:
    sandbox = NsJailSandbox(host=host, warm_slots=1, fork_jails=fork_jails)
    leave = """
        import os, subprocess, time
        for path in ("/tmp/left", "/box/left", "/dev/shm/left"):
            with open(path, "w") as f:
                f.write("from the last job")
        os.environ["LEFT"] = "1"
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
        os.wait()
        print("left")
    """
    look = """
        import os
        others = []
        for pid in range(2, 200):
            try:
                os.kill(pid, 0)
                others.append(pid)
            except ProcessLookupError:
                pass
        print(sorted(os.listdir("/tmp")), sorted(os.listdir("/box")), sorted(os.listdir("/dev/shm")), others, "LEFT" in os.environ)
    """
    try:
        first = await run(sandbox, leave)
        second = await run(sandbox, look)
    finally:
        await sandbox.aclose()
    assert first.stdout == "left\n"
    assert second.stdout == "[] ['helper.py', 'main.py'] [] [] False\n"
    assert_host_unharmed(host)


async def test_a_job_a_warm_jail_cannot_take_starts_cold(host: HostReport, fork_jails: bool) -> None:
    # Arguments go to a warm jail in one message of at most 64 KiB: these are too long for it.
    sandbox = NsJailSandbox(host=host, warm_slots=1, fork_jails=fork_jails)
    request = RunRequest(
        language="python",
        code="import sys\nprint(len(sys.argv[1]))",
        args=("x" * (100 << 10),),
        limits=LIMITS,
    )
    try:
        result = await sandbox.run(request)
        after = await sandbox.run(msgspec.structs.replace(request, args=("short",)))
    finally:
        await sandbox.aclose()
    assert (result.verdict, result.stdout, result.sandbox_start) == (Verdict.OK, f"{100 << 10}\n", SandboxStart.COLD)
    assert (after.verdict, after.stdout, after.sandbox_start) == (Verdict.OK, "5\n", SandboxStart.WARM)
    assert_host_unharmed(host)


async def test_jobs_at_once_each_get_a_jail_of_their_own(host: HostReport, fork_jails: bool) -> None:
    sandbox = NsJailSandbox(host=host, warm_slots=2, fork_jails=fork_jails)
    sandbox.keep_warm()
    request = RunRequest(language="python", code="import os\nprint(os.listdir('/tmp'))\nopen('/tmp/mine', 'w')", limits=LIMITS)
    results: list[RunResult] = []
    try:
        for _ in range(3):  # as many at once as there are slots, three times over
            results += await asyncio.gather(sandbox.run(request), sandbox.run(request))
    finally:
        await sandbox.aclose()
    assert [(result.verdict, result.stdout) for result in results] == [(Verdict.OK, "[]\n")] * 6
    assert {result.sandbox_start for result in results} == {SandboxStart.WARM}
    assert_host_unharmed(host)


async def test_a_run_cancelled_while_its_warm_jail_still_starts_leaves_nothing(host: HostReport, fork_jails: bool) -> None:
    # No jail started ahead: the run waits for the one its take starts, and is cancelled then.
    sandbox = NsJailSandbox(host=host, warm_slots=1, fork_jails=fork_jails)
    running = asyncio.ensure_future(sandbox.run(RunRequest(language="python", code="print(1)", limits=LIMITS)))
    await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await sandbox.aclose()
    assert_host_unharmed(host)


def nursery_pids() -> list[int]:
    """The host PIDs of this test's nurseries (fork.py): each the jailed child of one of our NsJail
    processes started with --keep_caps, the only ones that are."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"--keep_caps" in argv and Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1] == str(os.getpid()):
                found += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return found


def shared_written_kb(pid: int) -> int:
    """KiB of `pid`'s private writable memory that another process maps too, written: pages a
    forked jail still shares with its nursery, which the first write to copies."""
    total, writable = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if not fields[0].endswith(":"):  # a mapping: start-end permissions offset device inode [path]
            writable = fields[1].startswith("rw") and fields[1].endswith("p")
        elif writable and fields[0] == "Shared_Dirty:":
            total += int(fields[1])
    return total


async def test_a_forked_jail_has_copied_the_memory_its_nursery_wrote_before_its_job_comes(host: HostReport) -> None:
    # The job's own first write to each such page (most of them as its interpreter exits) would
    # fault and copy it on the job's clock. Copied before, the pages are charged to the job as a
    # cold start's are.
    sandbox = NsJailSandbox(host=host, warm_slots=1, fork_jails=True)
    sandbox.keep_warm()
    shared: dict[int, int] = {}
    try:
        deadline = asyncio.get_running_loop().time() + scaled(10)
        while asyncio.get_running_loop().time() < deadline and not (shared and 0 in shared.values()):
            await asyncio.sleep(0.05)
            for nursery in nursery_pids():
                with contextlib.suppress(OSError):
                    for child in Path(f"/proc/{nursery}/task/{nursery}/children").read_text().split():
                        shared[int(child)] = shared_written_kb(int(child))
        first = await sandbox.run(RunRequest(language="python", code="print(1)", limits=LIMITS))
    finally:
        await sandbox.aclose()
    assert first.sandbox_start is SandboxStart.WARM
    # One seen ready at least (one seen earlier may not have copied its pages yet).
    assert shared and 0 in shared.values(), shared
    assert_host_unharmed(host)


async def test_a_nursery_that_dies_between_jobs_is_replaced(host: HostReport) -> None:
    # Killed (its NsJail then reaps it and ends): the jail it had forked for the next job dies
    # with it. That job starts cold, the one after it is forked from a new nursery, and nothing
    # of the old one is left.
    sandbox = NsJailSandbox(host=host, warm_slots=1, fork_jails=True)
    request = RunRequest(language="python", code="print(1)", limits=LIMITS)
    try:
        first = await sandbox.run(request)
        await asyncio.sleep(0.2)  # the next job's jail is forked
        killed = nursery_pids()  # the used jail's nursery, if it is not gone yet, and the next job's
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        after = [await sandbox.run(request) for _ in range(3)]
        assert killed and not set(killed) & set(nursery_pids())
    finally:
        await sandbox.aclose()
    assert (first.stdout, first.sandbox_start) == ("1\n", SandboxStart.WARM)
    assert [result.stdout for result in after] == ["1\n"] * 3
    assert after[-1].sandbox_start is SandboxStart.WARM
    assert_host_unharmed(host)


async def test_a_nursery_that_dies_under_a_running_job_fails_the_run_and_leaves_nothing(host: HostReport) -> None:
    # The job dies with its nursery's PID namespace: the run is a SandboxError (as when a cold
    # jail's NsJail is killed), never a verdict, and the next job runs.
    sandbox = NsJailSandbox(host=host, warm_slots=1, fork_jails=True)
    sandbox.keep_warm()
    code = WAIT_FOR_THE_TEST + "ready('running')\nprint('never')\n"
    try:
        running = asyncio.ensure_future(
            sandbox.run(RunRequest(language="python", code=code, limits=msgspec.structs.replace(LIMITS, wall_time_ms=scaled(10_000))))
        )
        await until_ready(host, "running")
        for pid in nursery_pids():
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(SandboxError):
            await running
        after = await sandbox.run(RunRequest(language="python", code="print(2)", limits=LIMITS))
    finally:
        await sandbox.aclose()
    assert after.stdout == "2\n"
    assert_host_unharmed(host)


async def test_a_forked_jails_scratch_mounts_are_no_peers_of_the_hosts(host: HostReport) -> None:
    # Where the host's mounts are shared (systemd makes / shared), a copy of the host's scratch
    # mount would stay in its peer group: a mount made under the jail's /box would show on the
    # host. The forked jail makes its mounts private, as NsJail does a cold jail's.
    work_root = host.settings.work_root
    await asyncio.to_thread(subprocess.run, ["mount", "--make-rshared", work_root], check=True)
    try:
        sandbox = NsJailSandbox(host=host, warm_slots=1, fork_jails=True)
        code = WAIT_FOR_THE_TEST + "ready('mounted')\n"
        job = asyncio.ensure_future(sandbox.run(RunRequest(language="python", code=code, limits=LIMITS)))
        try:
            pid = await until_ready(host, "mounted")
            mounts = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
            release(pid)
            assert (await job).sandbox_start is SandboxStart.WARM
        finally:
            job.cancel()
            await sandbox.aclose()
    finally:
        await asyncio.to_thread(subprocess.run, ["mount", "--make-rprivate", work_root], check=True)
    # Each path twice: the nursery's own (NsJail's bind, covered) and the job's on top of it.
    scratch = [line for line in mounts if line.split()[4] in ("/box", "/tmp", "/dev/shm")]
    assert len(scratch) == 6 and not [line for line in scratch if "shared:" in line], scratch
    assert_host_unharmed(host)
