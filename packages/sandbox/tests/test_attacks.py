"""Hostile programs in real jails: each case checks the verdict, and that the host is unharmed.

After every case the `sandbox` fixture checks that no process of the jail's uid is left, that no
run cgroup, scratch directory or mount of this process is left, and that the next job runs
normally. Cases that try to reach the host check the host side themselves.

Every case runs three times: with jails started cold, with warm jails (each job handed to a jail
started before it, see corral_sandbox/warm.py), and with warm jails forked from a nursery
(corral_sandbox/fork.py). Before looking for leftovers a case removes
the warm jail kept ready for the next job (`settled`): that one is no job's leftover.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import socket
import subprocess
import textwrap
import time
from collections.abc import AsyncIterator

import msgspec
import pytest

from corral_core.job import InputFile, RunRequest, RunResult, SandboxStart, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import SandboxError
from corral_sandbox import HostReport, NsJailSandbox, runname
from corral_sandbox.jail import jail_command, run_cgroups
from corral_sandbox.jailids import JailIds
from corral_sandbox.scratch import Scratch
from corral_testbed.nsjail_host import (
    WAIT_FOR_THE_TEST,
    assert_host_unharmed,
    jail_processes,
    nsjail_host,
    release,
    until_ready,
)
from corral_testbed.time_scale import scaled, scaled_s

LIMITS = msgspec.structs.replace(
    DEFAULT_LIMIT_POLICY.defaults, cpu_time_ms=scaled(1_000), wall_time_ms=scaled(2_000), memory_mb=64, max_processes=16
)


@pytest.fixture
def host() -> HostReport:
    return nsjail_host()


@pytest.fixture(params=["cold", "started", "forked"])
async def sandbox(host: HostReport, request: pytest.FixtureRequest) -> AsyncIterator[NsJailSandbox]:
    # Two slots, as a worker has by default: some cases run two jobs at once.
    sandbox = NsJailSandbox(
        host=host, warm_slots=0 if request.param == "cold" else 2, fork_jails=request.param == "forked"
    )
    sandbox.keep_warm()
    yield sandbox
    await settled(sandbox)
    assert_host_unharmed(host)
    after = await sandbox.run(RunRequest(language="python", code="print('next')", limits=LIMITS))
    assert (after.verdict, after.stdout) == (Verdict.OK, "next\n"), "the next job did not run normally"
    assert after.sandbox_start is (SandboxStart.COLD if request.param == "cold" else SandboxStart.WARM)
    await settled(sandbox)
    assert_host_unharmed(host)


async def settled(sandbox: NsJailSandbox) -> None:
    """Remove the warm jail waiting for the next job, if any: it is no job's leftover."""
    await sandbox.aclose()


async def run(
    sandbox: NsJailSandbox,
    code: str,
    *,
    stdin: str = "",
    args: tuple[str, ...] = (),
    files: tuple[InputFile, ...] = (),
    **limits: int,
) -> RunResult:
    request = RunRequest(
        language="python",
        code=textwrap.dedent(code),
        stdin=stdin,
        args=args,
        files=files,
        limits=msgspec.structs.replace(LIMITS, **limits),
    )
    result = await sandbox.run(request)
    assert result.sandbox_start is (SandboxStart.WARM if sandbox.warm else SandboxStart.COLD)
    return result


async def beside(sandbox: NsJailSandbox, waiting: str, tag: str, other: str) -> tuple[RunResult, RunResult]:
    """`other` run while `waiting` (WAIT_FOR_THE_TEST, then ready(`tag`)) waits for the test
    after its ready; their results, `waiting`'s first (it ends once released)."""
    running = asyncio.ensure_future(run(sandbox, waiting, wall_time_ms=10_000))
    try:
        waiting_pid = await until_ready(sandbox.host, tag)
        result = await run(sandbox, other)
        release(waiting_pid)
        return await running, result
    finally:
        running.cancel()


async def run_unreached(sandbox: NsJailSandbox, code: str, listener: socket.socket) -> RunResult:
    """`code` run while `listener` (not blocking) listens on the host, which it must not reach:
    the listener has no connection to accept after the run. Closes the listener."""
    try:
        result = await run(sandbox, code)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    return result


# -- time -----------------------------------------------------------------------------------


async def test_an_infinite_loop_is_stopped_at_the_cpu_limit(sandbox: NsJailSandbox) -> None:
    result = await run(sandbox, "while True: pass", cpu_time_ms=scaled(500), wall_time_ms=scaled(10_000))
    assert result.verdict is Verdict.TIME_LIMIT_EXCEEDED
    assert scaled(500) <= result.cpu_time_ms < scaled(700)
    assert result.wall_time_ms < scaled(5_000)  # stopped by the CPU limit, long before the wall limit


async def test_sleeping_past_the_wall_limit_is_stopped_at_the_deadline(sandbox: NsJailSandbox) -> None:
    started = time.monotonic()
    result = await run(sandbox, "import time\ntime.sleep(60)", wall_time_ms=scaled(1_000))
    assert result.verdict is Verdict.TIME_LIMIT_EXCEEDED
    assert scaled(1_000) <= result.wall_time_ms < scaled(1_500)
    assert result.cpu_time_ms < scaled(200)
    assert time.monotonic() - started < scaled_s(2_000)


async def test_a_program_ignoring_sigterm_is_stopped_anyway(sandbox: NsJailSandbox) -> None:
    code = """
        import os, signal, time
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_IGN)
        if os.fork() == 0:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
        time.sleep(60)
    """
    result = await run(sandbox, code, wall_time_ms=scaled(1_000))
    assert result.verdict is Verdict.TIME_LIMIT_EXCEEDED
    assert result.wall_time_ms < scaled(1_500)


async def test_cpu_burned_across_many_children_counts_against_one_limit(sandbox: NsJailSandbox) -> None:
    # Eight processes, each far below RLIMIT_CPU: only the jail-wide count stops them.
    code = """
        import os
        for _ in range(8):
            if os.fork() == 0:
                while True:
                    pass
        os.wait()
    """
    result = await run(sandbox, code, cpu_time_ms=scaled(1_000), wall_time_ms=scaled(10_000))
    assert result.verdict is Verdict.TIME_LIMIT_EXCEEDED
    assert scaled(1_000) <= result.cpu_time_ms < scaled(1_300)
    assert result.wall_time_ms < scaled(5_000)  # stopped by the CPU limit, long before the wall limit


async def test_a_fork_bomb_is_held_at_the_process_limit(sandbox: NsJailSandbox) -> None:
    # Children that stay alive: without a process limit the loop would go on until memory or
    # time ran out. With it, fork fails with EAGAIN once the jail holds max_processes.
    code = """
        import errno, os, time
        children = 0
        while True:
            try:
                pid = os.fork()
            except OSError as error:
                print(children, errno.errorcode[error.errno])
                break
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            children += 1
    """
    # Memory enough for many more Pythons: the process limit is what holds it.
    result = await run(sandbox, code, max_processes=16, memory_mb=512, wall_time_ms=scaled(10_000))
    assert result.verdict is Verdict.OK, result
    assert result.stdout == "15 EAGAIN\n"  # 15 children and the program itself


async def test_a_double_forked_daemon_dies_with_the_program(sandbox: NsJailSandbox, host: HostReport) -> None:
    code = """
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)
                print("daemon still alive", flush=True)
            os._exit(0)
        os.wait()
        print("parent done")
    """
    result = await run(sandbox, code, wall_time_ms=scaled(5_000))
    assert result.verdict is Verdict.OK
    assert result.stdout == "parent done\n"
    assert result.wall_time_ms < scaled(1_000)  # the daemon held stdout open, and was not waited for
    await settled(sandbox)
    assert jail_processes(host.jail_ids().uids()) == []


# -- memory ---------------------------------------------------------------------------------


async def test_a_fast_memory_bomb_is_a_memory_limit_verdict(sandbox: NsJailSandbox) -> None:
    result = await run(sandbox, "x = bytearray(512 << 20)\nprint('survived')", memory_mb=64)
    assert result.verdict is Verdict.MEMORY_LIMIT_EXCEEDED
    assert result.stdout == ""
    assert 60 * 1024 <= result.memory_kb <= 64 * 1024


async def test_a_gradual_memory_bomb_is_a_memory_limit_verdict(sandbox: NsJailSandbox) -> None:
    code = """
        chunks = []
        while True:
            chunks.append(b"x" * (1 << 20))
    """
    result = await run(sandbox, code, memory_mb=64)
    assert result.verdict is Verdict.MEMORY_LIMIT_EXCEEDED
    assert result.memory_kb <= 64 * 1024


async def test_a_child_killed_for_memory_makes_the_run_a_memory_limit_verdict(sandbox: NsJailSandbox) -> None:
    code = """
        import os
        if os.fork() == 0:
            x = bytearray(512 << 20)
            os._exit(0)
        os.wait()
        print("parent fine")
    """
    result = await run(sandbox, code, memory_mb=64)
    assert result.verdict is Verdict.MEMORY_LIMIT_EXCEEDED
    assert result.stdout == "parent fine\n"


@pytest.mark.parametrize(
    ("code", "error"),
    [
        # Larger than the host could ever commit: mmap fails at once, Python raises MemoryError.
        # Nothing was charged to the cgroup, so this is the program's error, not the limit's.
        pytest.param("x = bytearray(1 << 44)", "MemoryError", id="one_huge_allocation_fails_inside_the_program"),
        pytest.param("def f(n):\n    return f(n + 1)\nf(0)", "RecursionError", id="deep_recursion_stops_at_pythons_limit"),
    ],
)
async def test_the_programs_own_error_is_a_runtime_error(sandbox: NsJailSandbox, code: str, error: str) -> None:
    result = await run(sandbox, code)
    assert result.verdict is Verdict.RUNTIME_ERROR
    assert error in result.stderr


async def test_memory_in_dev_shm_counts_against_the_job(sandbox: NsJailSandbox) -> None:
    # 40 MiB on the heap and 30 MiB in /dev/shm: each fits (the tmpfs holds half the memory
    # limit and a little, 33 MiB), together they pass 64 MiB. Only the memory cgroup, which is charged the
    # tmpfs pages, sees the sum: the run ends in the memory limit, not in ENOSPC or success.
    code = """
        import errno
        heap = b"h" * (40 << 20)
        chunk = b"s" * (1 << 20)
        try:
            with open("/dev/shm/fill", "wb") as f:
                for _ in range(30):
                    f.write(chunk)
                    f.flush()
        except OSError as error:
            print(errno.errorcode[error.errno])
        print("survived")
    """
    result = await run(sandbox, code, memory_mb=64, max_file_size_kb=200 * 1024)
    assert result.verdict is Verdict.MEMORY_LIMIT_EXCEEDED, result
    assert "survived" not in result.stdout and "ENOSPC" not in result.stdout
    assert 60 * 1024 <= result.memory_kb <= 64 * 1024


async def test_deep_recursion_past_a_raised_limit_overflows_the_stack(sandbox: NsJailSandbox) -> None:
    # Recursion through C (repr) with the limit lifted: the 64 MiB stack runs out -> SIGSEGV.
    code = """
        import sys
        sys.setrecursionlimit(10**8)
        class Deep:
            def __repr__(self):
                return repr(Deep())
        repr(Deep())
    """
    result = await run(sandbox, code, memory_mb=256)
    assert result.verdict is Verdict.RUNTIME_ERROR
    assert result.signal == 11


async def test_deep_recursion_of_python_frames_is_a_memory_limit_verdict(sandbox: NsJailSandbox) -> None:
    # Python 3.11 keeps Python-to-Python calls off the C stack: the frames fill the memory.
    code = "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1)\nf(0)"
    result = await run(sandbox, code, memory_mb=64)
    assert result.verdict is Verdict.MEMORY_LIMIT_EXCEEDED


# -- files ----------------------------------------------------------------------------------


async def test_filling_tmp_ends_in_enospc_inside_the_jail(sandbox: NsJailSandbox) -> None:
    code = """
        import errno
        chunk = b"t" * (512 << 10)
        written = 0
        try:
            for index in range(1000):
                with open(f"/tmp/fill{index}", "wb") as f:
                    f.write(chunk)
                written += len(chunk)
        except OSError as error:
            print(errno.errorcode[error.errno], written >> 20)
    """
    result = await run(sandbox, code, memory_mb=64)
    assert result.verdict is Verdict.OK
    name, megabytes = result.stdout.split()
    assert name == "ENOSPC" and 20 <= int(megabytes) <= 33


async def test_exhausting_inodes_ends_in_enospc_inside_the_jail(sandbox: NsJailSandbox, host: HostReport) -> None:
    code = """
        import errno
        count = 0
        try:
            while True:
                open(f"/box/f{count}", "w").close()
                count += 1
        except OSError as error:
            print(errno.errorcode[error.errno], count)
    """
    result = await run(sandbox, code)
    assert result.verdict is Verdict.OK
    name, count = result.stdout.split()
    assert name == "ENOSPC" and int(count) <= host.settings.scratch_inodes + 16


async def test_a_file_past_the_size_limit_cannot_be_written(sandbox: NsJailSandbox) -> None:
    code = """
        with open("big", "wb") as f:
            f.write(b"b" * (1 << 20))
            f.flush()
        print("1 MiB fine", flush=True)
        with open("bigger", "wb") as f:
            f.write(b"b" * (2 << 20))
    """
    result = await run(sandbox, code, max_file_size_kb=1024)
    assert result.verdict is Verdict.RUNTIME_ERROR
    assert result.stdout == "1 MiB fine\n"
    assert "File too large" in result.stderr


async def test_open_files_are_limited(sandbox: NsJailSandbox) -> None:
    code = """
        import errno
        files = []
        try:
            while True:
                files.append(open("/dev/null"))
        except OSError as error:
            print(errno.errorcode[error.errno], len(files))
    """
    result = await run(sandbox, code)
    assert result.verdict is Verdict.OK
    name, count = result.stdout.split()
    assert name == "EMFILE" and int(count) < 256


async def test_writing_to_system_paths_fails_and_touches_nothing_on_the_host(sandbox: NsJailSandbox) -> None:
    targets = [
        "/usr/corral-attack",
        "/usr/bin/corral-attack",
        "/etc/corral-attack",
        "/corral-attack",
        "/bin/corral-attack",
        "/dev/corral-attack",
        "/usr/lib/python3.11/os.py",
    ]
    code = f"""
        import os
        for path in {targets!r}:
            try:
                with open(path, "a") as f:
                    f.write("pwned")
                print(path, "WRITTEN")
            except OSError as error:
                print(path, type(error).__name__)
        for path in ("/proc", "/sys", "/root"):
            try:
                os.mkdir(path)
                print(path, "CREATED")
            except OSError as error:
                print(path, type(error).__name__)
    """
    os_py = os.stat("/usr/lib/python3.11/os.py")
    result = await run(sandbox, code)
    assert result.verdict is Verdict.OK
    assert "WRITTEN" not in result.stdout and "CREATED" not in result.stdout
    for path in targets[:-1]:
        assert not os.path.exists(path)
    after = os.stat("/usr/lib/python3.11/os.py")
    assert (after.st_size, after.st_mtime_ns) == (os_py.st_size, os_py.st_mtime_ns)


async def test_planted_symlinks_hardlinks_and_fifos_are_not_followed_by_the_host(
    sandbox: NsJailSandbox,
) -> None:
    # The job replaces its own files with links to host paths (as the host would see them),
    # leaves FIFOs named like the outputs and the NsJail log, and an unreadable deep tree.
    code = """
        import errno, os
        for name in ("main.py", "data.txt"):
            os.unlink(name)
        os.symlink("/etc/passwd", "main.py")
        os.symlink("/run/corral-test", "data.txt")
        os.symlink("/", "root")
        for name in ("stdout", "stderr", "nsjail.log", "/tmp/nsjail.log", "/dev/shm/stdout"):
            os.mkfifo(name)
        try:
            os.link("/usr/bin/python3", "python3")
            print("hardlink MADE")
        except OSError as error:
            print("hardlink", errno.errorcode[error.errno])
        os.makedirs("d/" * 50)
        os.chmod("d", 0)
        os.chmod("/box", 0)
        print("planted")
    """
    passwd = os.stat("/etc/passwd")
    result = await run(sandbox, code, files=(InputFile("data.txt", b"x"),))
    assert result.verdict is Verdict.OK, result.stderr
    assert result.stdout == "hardlink EXDEV\nplanted\n"
    after = os.stat("/etc/passwd")
    assert (after.st_mode, after.st_uid, after.st_size, after.st_mtime_ns) == (
        passwd.st_mode,
        passwd.st_uid,
        passwd.st_size,
        passwd.st_mtime_ns,
    )


# -- output ---------------------------------------------------------------------------------


async def test_a_100_mb_stdout_flood_is_cut_at_the_cap(sandbox: NsJailSandbox) -> None:
    code = """
        import sys
        block = b"o" * (1 << 20)
        for _ in range(100):
            sys.stdout.buffer.write(block)
    """
    result = await run(sandbox, code, max_output_bytes=64 * 1024, wall_time_ms=scaled(10_000))
    assert result.verdict is Verdict.OUTPUT_LIMIT_EXCEEDED
    assert result.stdout == "o" * 64 * 1024
    assert result.stdout_truncated and not result.stderr_truncated
    assert result.wall_time_ms < scaled(1_000)


async def test_a_stderr_flood_while_stdout_is_idle_is_cut_at_the_cap(sandbox: NsJailSandbox) -> None:
    code = """
        import signal, sys
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        while True:
            try:
                sys.stderr.write("e" * 4096)
            except OSError:
                pass
    """
    result = await run(sandbox, code, max_output_bytes=10_000, wall_time_ms=scaled(10_000))
    assert result.verdict is Verdict.OUTPUT_LIMIT_EXCEEDED
    assert result.stderr == "e" * 10_000 and result.stderr_truncated
    assert result.stdout == "" and not result.stdout_truncated
    # Stopped after the output grace period, not at the 10 s wall limit. The bound has room for a
    # loaded machine (1.1 s was seen under CI load); without the stop the run takes the whole 10 s.
    assert result.wall_time_ms < scaled(5_000)


async def test_one_giant_line_without_a_newline_is_cut_at_the_cap(sandbox: NsJailSandbox) -> None:
    result = await run(sandbox, "import sys\nsys.stdout.write('y' * (20 << 20))", max_output_bytes=100_000)
    assert result.verdict is Verdict.OUTPUT_LIMIT_EXCEEDED
    assert result.stdout == "y" * 100_000


async def test_both_streams_flooding_are_both_cut(sandbox: NsJailSandbox) -> None:
    code = """
        import os
        fd, block = (2, b"e" * 65536) if os.fork() == 0 else (1, b"o" * 65536)
        while True:
            try:
                os.write(fd, block)
            except OSError:
                pass
    """
    result = await run(sandbox, code, max_output_bytes=1_000)
    assert result.verdict is Verdict.OUTPUT_LIMIT_EXCEEDED
    assert (result.stdout, result.stderr) == ("o" * 1_000, "e" * 1_000)
    assert result.stdout_truncated and result.stderr_truncated


async def test_invalid_utf8_and_nul_bytes_are_replaced_not_fatal(sandbox: NsJailSandbox) -> None:
    # The cap cuts the last character in half: that is replaced too.
    code = "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\x00ok\\xc3' + 'é'.encode() * 10)"
    result = await run(sandbox, code, max_output_bytes=11)
    assert result.verdict is Verdict.OUTPUT_LIMIT_EXCEEDED
    assert result.stdout == "\ufffd\ufffd\x00ok\ufffd" + "é" * 2 + "\ufffd"


async def test_closing_stdout_early_does_not_end_the_run_early(sandbox: NsJailSandbox) -> None:
    code = """
        import os, sys, time
        os.close(1)
        time.sleep(0.3)
        sys.stderr.write("still here")
    """
    result = await run(sandbox, code)
    assert result.verdict is Verdict.OK
    assert (result.stdout, result.stderr) == ("", "still here")
    assert result.wall_time_ms >= 300


async def test_a_large_unread_stdin_does_not_block_anything(sandbox: NsJailSandbox) -> None:
    result = await run(sandbox, "print('ignored stdin')", stdin="z" * (4 << 20))
    assert result.verdict is Verdict.OK
    assert result.stdout == "ignored stdin\n"


async def test_stdin_cannot_be_written_back(sandbox: NsJailSandbox) -> None:
    code = """
        import os
        try:
            os.write(0, b"overwrite")
            print("WROTE")
        except OSError as error:
            print(type(error).__name__)
    """
    result = await run(sandbox, code, stdin="original")
    assert result.stdout in ("PermissionError\n", "UnsupportedOperation\n", "OSError\n")


# -- the host's secrets ---------------------------------------------------------------------


async def test_the_jail_gets_an_environment_of_its_own_even_from_an_nsjail_given_the_workers(
    host: HostReport,
) -> None:
    # NsJail started with the worker's environment (the adapter never does that: see the next
    # test) must still pass the program only what the policy lists: keep_env is off.
    runtime = next(spec for spec in host.runtimes if spec.language == "python")
    code = "import os\nprint(sorted(os.environ))"
    ids = JailIds(host.jail_ids().uids()[-1], host.jail_ids().gids()[-1])
    run_name = runname.new_run()
    scratch = Scratch.create(host.settings.work_root, runname.scratch_name(run_name), 8 << 20, 64, *ids)
    cgroups = None
    try:
        scratch.write(runtime.source, code.encode())
        scratch.seal()
        cgroups = run_cgroups(host.cgroups, run_name, LIMITS.memory_mb << 20, 1.0)
        argv = jail_command(host.jail_host(), runtime, ids, scratch, cgroups, LIMITS, args=())
        argv[argv.index("--log_fd") + 1] = "2"
        environment = {**os.environ, "CORRAL_HOST_CANARY": "canary-5e21"}
        done = await asyncio.to_thread(
            subprocess.run, argv, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
    finally:
        scratch.remove()
        if cgroups is not None:
            cgroups.remove()
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "['HOME', 'LANG', 'LC_ALL', 'PATH', 'PYTHONDONTWRITEBYTECODE', 'PYTHONIOENCODING', 'TMPDIR']\n"
    )


async def test_host_secrets_are_not_in_the_jail(sandbox: NsJailSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_HOST_CANARY", "canary-7f3a91")
    code = """
        import os
        print(sorted(os.environ.items()))
        for path in ("/etc/shadow", "/etc/passwd", "/root", "/root/.ssh", "/proc/self/environ",
                     "/proc/1/cmdline", "/sys/kernel", "/home", "/var/run", "/run/corral-test"):
            try:
                if os.path.isdir(path):
                    print(path, "LISTED", os.listdir(path))
                else:
                    with open(path, "rb") as f:
                        print(path, "READ", f.read(100))
            except OSError as error:
                print(path, type(error).__name__)
        print("root:", sorted(os.listdir("/")))
        print("etc:", sorted(os.listdir("/etc")))
        print("dev:", sorted(os.listdir("/dev")))
    """
    result = await run(sandbox, code)
    assert result.verdict is Verdict.OK
    assert "canary-7f3a91" not in result.stdout
    assert "LISTED" not in result.stdout and "READ" not in result.stdout
    environment = result.stdout.splitlines()[0]
    assert "'PATH'" in environment and "CORRAL" not in environment
    assert "root: ['bin', 'box', 'dev', 'etc', 'lib', 'lib64', 'tmp', 'usr']" in result.stdout
    # The linker cache, and Python's read-only warm-jail hook (nsjail/python_warm_stub.py).
    assert "etc: ['ld.so.cache', 'python3.11']" in result.stdout
    assert "dev: ['null', 'random', 'shm', 'urandom', 'zero']" in result.stdout


async def test_the_jail_runs_as_an_unprivileged_user_that_cannot_become_root(sandbox: NsJailSandbox) -> None:
    code = """
        import os
        print(os.getuid(), os.getgid(), os.geteuid())
        for change in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.setgroups([0])):
            try:
                change()
                print("CHANGED")
            except OSError as error:
                print("refused")
    """
    result = await run(sandbox, code)
    assert result.stdout == "1000 1000 1000\nrefused\nrefused\nrefused\n"


async def test_the_jail_holds_no_capability(sandbox: NsJailSandbox) -> None:
    # A nursery keeps its capabilities to make forked jails (corral_sandbox/fork.py), and maps its
    # own user (1001) beside the job's: a jail must hold none of them. Reading a file with no
    # permission bits takes CAP_DAC_OVERRIDE; taking the nursery's ids, CAP_SETUID and CAP_SETGID.
    code = """
        import os
        with open("/tmp/sealed", "w") as f:
            f.write("secret")
        os.chmod("/tmp/sealed", 0)
        try:
            print(open("/tmp/sealed").read())
        except PermissionError:
            print("refused")
        for change in (lambda: os.setresuid(1001, 1001, 1001), lambda: os.setresgid(1001, 1001, 1001)):
            try:
                change()
                print("CHANGED")
            except OSError:
                print("refused")
    """
    result = await run(sandbox, code)
    assert result.stdout == "refused\nrefused\nrefused\n"


async def test_another_jobs_files_are_out_of_reach(sandbox: NsJailSandbox) -> None:
    # The writer's files exist (it is waiting in ready()) for as long as the reader runs.
    writer = WAIT_FOR_THE_TEST + """
for path in ("/tmp/secret", "/box/secret", "/dev/shm/secret"):
    open(path, "w").write("s")
ready("written")
print(sorted(os.listdir("/tmp")), sorted(os.listdir("/box")), os.listdir("/dev/shm"))
"""
    reader = """
        import os
        print(os.listdir("/tmp"), os.listdir("/box"), os.listdir("/dev/shm"))
    """
    wrote, read = await beside(sandbox, writer, "written", reader)
    assert wrote.stdout == "['secret', 'written'] ['main.py', 'secret'] ['secret']\n"
    assert read.stdout == "[] ['main.py'] []\n"


# -- the network ----------------------------------------------------------------------------


async def test_the_network_is_unreachable(sandbox: NsJailSandbox) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    code = f"""
        import socket
        attempts = {{
            "loopback": lambda: socket.create_connection(("127.0.0.1", {port}), timeout=1),
            "outside": lambda: socket.create_connection(("1.1.1.1", 53), timeout=1),
            "ipv6": lambda: socket.create_connection(("::1", {port}), timeout=1),
            "dns": lambda: socket.getaddrinfo("example.com", 80),
            "udp": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53)),
        }}
        for name, attempt in attempts.items():
            try:
                attempt()
                print(name, "CONNECTED")
            except (OSError, socket.gaierror) as error:
                print(name, type(error).__name__)
    """
    result = await run_unreached(sandbox, code, listener)
    assert result.verdict is Verdict.OK
    assert "CONNECTED" not in result.stdout
    assert result.stdout.count("\n") == 5


async def test_the_hosts_abstract_unix_sockets_are_unreachable(sandbox: NsJailSandbox) -> None:
    name = f"\0corral-attack-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(name)
    listener.listen()
    listener.setblocking(False)
    code = f"""
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect({name!r})
            print("CONNECTED")
        except OSError as error:
            print(type(error).__name__)
    """
    result = await run_unreached(sandbox, code, listener)
    assert result.stdout == "ConnectionRefusedError\n"


async def test_vsock_netlink_packet_and_raw_sockets_are_refused(sandbox: NsJailSandbox) -> None:
    code = """
        import errno, socket
        kinds = {
            "vsock": (40, socket.SOCK_STREAM, 0),
            "netlink": (socket.AF_NETLINK, socket.SOCK_RAW, 0),
            "packet": (socket.AF_PACKET, socket.SOCK_RAW, 0),
            "raw": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
            "inet6": (socket.AF_INET6, socket.SOCK_STREAM, 0),
            "alg": (38, socket.SOCK_SEQPACKET, 0),
        }
        for name, (family, kind, proto) in kinds.items():
            try:
                socket.socket(family, kind, proto)
                print(name, "OPENED")
            except OSError as error:
                print(name, errno.errorcode[error.errno])
        a, b = socket.socketpair()
        a.sendall(b"unix ok")
        print(b.recv(16).decode())
    """
    result = await run(sandbox, code)
    assert result.stdout == (
        "vsock EAFNOSUPPORT\nnetlink EAFNOSUPPORT\npacket EAFNOSUPPORT\nraw EAFNOSUPPORT\n"
        "inet6 EAFNOSUPPORT\nalg EAFNOSUPPORT\nunix ok\n"
    )


# -- the kernel -----------------------------------------------------------------------------

_SYSCALLS = """
    import ctypes, errno
    libc = ctypes.CDLL(None, use_errno=True)
    def call(name, number, *args):
        result = libc.syscall(number, *[ctypes.c_long(a) for a in args])
        print(name, "OK" if result >= 0 else errno.errorcode[ctypes.get_errno()])
"""


async def test_nested_namespaces_mount_and_ptrace_are_refused(sandbox: NsJailSandbox) -> None:
    code = (
        _SYSCALLS
        + """
    CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, SIGCHLD = 0x10000000, 0x20000, 0x40000000, 17
    call("unshare-user", 272, CLONE_NEWUSER)
    call("unshare-mount", 272, CLONE_NEWNS)
    call("unshare-net", 272, CLONE_NEWNET)
    call("clone-newuser", 56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
    call("setns", 308, 0, 0)
    call("mount", 165, 0, 0, 0, 0, 0)
    call("umount", 166, 0, 0)
    call("chroot", 161, 0)
    call("pivot_root", 155, 0, 0)
    call("ptrace-traceme", 101, 0, 0, 0, 0)
    call("process_vm_readv", 310, 1, 0, 0, 0, 0, 0)
    """
    )
    result = await run(sandbox, code)
    assert result.verdict is Verdict.OK
    assert result.stdout == (
        "unshare-user EPERM\nunshare-mount EPERM\nunshare-net EPERM\nclone-newuser EPERM\n"
        "setns EPERM\nmount EPERM\numount EPERM\nchroot EPERM\npivot_root EPERM\n"
        "ptrace-traceme EPERM\nprocess_vm_readv EPERM\n"
    )


async def test_io_uring_bpf_keyrings_userfaultfd_and_perf_are_refused(sandbox: NsJailSandbox) -> None:
    code = (
        _SYSCALLS
        + """
    call("clone3", 435, 0, 0)
    call("io_uring_setup", 425, 8, 0)
    call("bpf", 321, 0, 0, 0)
    call("keyctl", 250, 0, 0)
    call("add_key", 248, 0, 0, 0, 0, 0)
    call("userfaultfd", 323, 0)
    call("perf_event_open", 298, 0, 0, -1, -1, 0)
    call("open_by_handle_at", 304, 0, 0, 0)
    call("kexec_load", 246, 0, 0, 0, 0)
    call("init_module", 175, 0, 0, 0)
    call("modify_ldt", 154, 0, 0, 0)
    call("personality-read-implies-exec", 135, 0x0400000)
    call("personality-query", 135, 0xffffffff)
    """
    )
    result = await run(sandbox, code)
    assert result.stdout == (
        "clone3 ENOSYS\nio_uring_setup ENOSYS\nbpf EPERM\nkeyctl EPERM\nadd_key EPERM\n"
        "userfaultfd EPERM\nperf_event_open EPERM\nopen_by_handle_at EPERM\nkexec_load EPERM\n"
        "init_module EPERM\nmodify_ldt EPERM\npersonality-read-implies-exec EPERM\n"
        "personality-query OK\n"
    )


async def test_the_32_bit_syscall_abi_is_killed(sandbox: NsJailSandbox) -> None:
    # int 0x80 from a 64-bit process: unshare(CLONE_NEWUSER) by its i386 number, which a
    # filter checking only x86_64 numbers would let through. Kafel's arch check kills it.
    code = """
        import ctypes, mmap
        page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(bytes.fromhex("b836010000" "bb00000010" "cd80" "c3"))
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        print("returned", ctypes.CFUNCTYPE(ctypes.c_long)(address)(), flush=True)
    """
    result = await run(sandbox, code)
    assert result.verdict is Verdict.RUNTIME_ERROR
    assert result.signal == 31  # SIGSYS
    assert result.stdout == ""


async def test_x32_syscall_numbers_are_refused(sandbox: NsJailSandbox) -> None:
    # x32 calls carry the x86-64 audit arch with bit 30 set in the number, so a policy that
    # matches x86-64 numbers only would let them through. This host's kernel has x32 off
    # (ENOSYS either way); the cgroup v2 VM boots with syscall.x32=y, where only the policy
    # stands between these calls and the kernel (tests/vm).
    code = """
        import ctypes, errno
        libc = ctypes.CDLL(None, use_errno=True)
        X32 = 0x40000000
        CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x20000
        for name, number, flags in (("unshare-user", 272, CLONE_NEWUSER), ("unshare-mount", 272, CLONE_NEWNS)):
            result = libc.syscall(ctypes.c_long(X32 | number), ctypes.c_long(flags))
            print(name, "OK" if result >= 0 else errno.errorcode[ctypes.get_errno()], flush=True)
    """
    result = await run(sandbox, code)
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.endswith(" OK")] == [], "an x32 system call got through"
    if result.verdict is Verdict.OK:
        assert [line.split()[0] for line in lines] == ["unshare-user", "unshare-mount"]
    else:
        assert (result.verdict, result.signal) == (Verdict.RUNTIME_ERROR, 31)  # killed by the policy


async def test_kill_minus_one_reaches_only_the_jail(sandbox: NsJailSandbox) -> None:
    # The bystander is another job, running while the attacker signals everything it can: only
    # the PID namespace (and a uid of its own) keeps kill(-1) from reaching it.
    bystander = WAIT_FOR_THE_TEST + """
ready("bystanding")
print("bystander survived")
"""
    attacker = """
        import os, signal
        child = os.fork()
        if child == 0:
            os.kill(-1, signal.SIGKILL)
            os._exit(0)
        os.waitpid(child, 0)
        print("init survived")
    """
    stood, result = await beside(sandbox, bystander, "bystanding", attacker)
    assert (result.verdict, result.stdout) == (Verdict.OK, "init survived\n")
    assert (stood.verdict, stood.stdout) == (Verdict.OK, "bystander survived\n")


# -- per-user kernel state and CPU shared between jobs -----------------------------------------


async def test_one_jobs_pipe_buffers_do_not_shrink_anothers_pipes(sandbox: NsJailSandbox) -> None:
    # The kernel counts pipe buffers per host user (fs.pipe-user-pages-soft): past the limit a
    # user's new pipes get 2 pages and cannot grow. With one host uid for all jobs, one job
    # holding big pipes would shrink every other job's. Each job has a uid of its own.
    holder = WAIT_FOR_THE_TEST + """
import errno, fcntl
pipes = []
try:
    while True:
        pipes.append(os.pipe())
        fcntl.fcntl(pipes[-1][1], fcntl.F_SETPIPE_SZ, 1 << 20)
except OSError as error:
    outcome = errno.errorcode[error.errno]
ready("piped")
print(outcome)
"""
    other = """
        import errno, fcntl, os
        read_end, write_end = os.pipe()
        size = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        try:
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 1 << 20)
            grown = "grown"
        except OSError as error:
            grown = errno.errorcode[error.errno]
        print(size, grown)
    """
    held, result = await beside(sandbox, holder, "piped", other)
    assert held.stdout == "EPERM\n"  # the holder did reach its user's limit
    assert result.stdout == "65536 grown\n"


async def test_a_lock_on_a_shared_read_only_file_does_not_reach_another_job(sandbox: NsJailSandbox) -> None:
    # /usr is the same files for every job, and flock needs only a read-only descriptor: a
    # lock held by one job would be "busy" for the next. flock is refused (ENOLCK).
    attempt = """
import errno, fcntl
shared = open("/usr/lib/python3.11/os.py")
try:
    fcntl.flock(shared, fcntl.LOCK_EX | fcntl.LOCK_NB)
    outcome = "locked"
except OSError as error:
    outcome = errno.errorcode[error.errno]
"""
    holder = WAIT_FOR_THE_TEST + attempt + 'ready("tried")\nprint(outcome)\n'
    # The second attempt comes while the holder holds the lock, if it got it.
    held, second = await beside(sandbox, holder, "tried", attempt + "print(outcome)\n")
    assert second.stdout == "ENOLCK\n"  # never EWOULDBLOCK: no lock of another job is visible
    assert held.stdout == "ENOLCK\n"


async def test_a_job_cannot_use_up_the_hosts_inotify_instances(sandbox: NsJailSandbox) -> None:
    # inotify instances are counted per user, and the user namespace NsJail (root) creates
    # charges them to host root too: a job holding them all would starve the host's daemons.
    code = WAIT_FOR_THE_TEST + """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
held = []
while len(held) < 250:
    fd = libc.inotify_init1(0)
    if fd < 0:
        break
    held.append(fd)
outcome = f"{len(held)} {errno.errorcode[ctypes.get_errno()]}"
ready("exhausted")
print(outcome)
"""
    job = asyncio.ensure_future(run(sandbox, code, wall_time_ms=10_000))
    try:
        job_pid = await until_ready(sandbox.host, "exhausted")
        libc = ctypes.CDLL(None, use_errno=True)
        host_fd = libc.inotify_init1(os.O_CLOEXEC)  # while the job holds all it could get
        host_errno = ctypes.get_errno()
        if host_fd >= 0:
            os.close(host_fd)
        release(job_pid)
        result = await job
    finally:
        job.cancel()
    assert host_fd >= 0, f"the host could not create an inotify instance: {errno.errorcode[host_errno]}"
    assert result.stdout == "0 ENOSYS\n"


async def test_filling_its_scratch_space_cannot_turn_a_verdict_into_a_sandbox_error(sandbox: NsJailSandbox) -> None:
    # NsJail's log is no file the job could fill (or reach through an inherited descriptor):
    # the run still ends with the program's own verdict.
    code = """
        import errno, os
        chunk = b"f" * (1 << 20)
        for directory in ("/tmp", "/box", "/dev/shm"):
            try:
                for index in range(1000):
                    with open(f"{directory}/fill{index}", "wb") as f:
                        f.write(chunk)
            except OSError as error:
                print(directory, errno.errorcode[error.errno])
        reached = []
        for fd in range(3, 256):
            try:
                os.write(fd, b"forged log line\\n")
                reached.append(fd)
            except OSError:
                pass
        print("descriptors reached:", reached)
    """
    result = await run(sandbox, code, memory_mb=64, max_file_size_kb=200 * 1024)
    assert result.verdict is Verdict.OK, result
    assert result.stdout == "/tmp ENOSPC\n/box ENOSPC\n/dev/shm ENOSPC\ndescriptors reached: []\n"


async def test_a_job_with_many_busy_threads_is_held_to_its_cpu_quota(host: HostReport) -> None:
    # A quarter of a core: 16 spinning threads get at most a quarter second of CPU per second of
    # wall time, whatever the number of cores (without the quota: a second per idle core). Less
    # when other work on the machine takes the cores first.
    quarter = msgspec.structs.replace(host.settings, cpu_cores_per_job=0.25)
    sandbox = NsJailSandbox(host=msgspec.structs.replace(host, settings=quarter))
    code = """
        import threading
        def spin():
            while True:
                pass
        for _ in range(16):
            threading.Thread(target=spin, daemon=True).start()
        threading.Event().wait()
    """
    result = await run(sandbox, code, wall_time_ms=2_000, cpu_time_ms=10_000, max_processes=32)
    assert result.verdict is Verdict.TIME_LIMIT_EXCEEDED
    share = result.cpu_time_ms / result.wall_time_ms
    assert 0.1 <= share <= 0.3, f"{result.cpu_time_ms} ms of CPU in {result.wall_time_ms} ms"
    assert_host_unharmed(host)


# -- what the client sends ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../escape", "a/b", "/etc/passwd", ".", "..", "nul\0byte", "back\\slash", "lone\udc80surrogate", "main.py"]
)
async def test_unsafe_or_clashing_file_names_are_refused(sandbox: NsJailSandbox, name: str) -> None:
    with pytest.raises(SandboxError):
        await run(sandbox, "print(1)", files=(InputFile(name, b"x"),))


@pytest.mark.parametrize(
    "limits",
    [{"memory_mb": 0}, {"wall_time_ms": -1}, {"max_processes": 0}, {"cpu_time_ms": 10**12}],
)
async def test_impossible_limits_are_refused(sandbox: NsJailSandbox, limits: dict[str, int]) -> None:
    with pytest.raises(SandboxError):
        await run(sandbox, "print(1)", **limits)  # type: ignore[arg-type]  # mypy reads **limits as any keyword


async def test_a_cancelled_run_kills_its_jail_and_cleans_up(sandbox: NsJailSandbox, host: HostReport) -> None:
    task = asyncio.ensure_future(
        run(sandbox, "import time\nprint('started', flush=True)\ntime.sleep(60)", wall_time_ms=scaled(30_000))
    )
    await asyncio.sleep(scaled_s(300))
    assert jail_processes(host.jail_ids().uids()) != []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settled(sandbox)
    assert_host_unharmed(host)
