"""The seccomp allow-list (nsjail/seccomp.kafel): what it lets through, what it stops, and how.

The x32 cases cannot run on this kernel (it refuses x32), so they are checked on the filter
itself: the BPF program NsJail compiled from the policy and installed on a real jailed process
is read back through ptrace and evaluated here, call by call.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import struct
import textwrap
from pathlib import Path

import msgspec
import pytest

from corral_core.job import RunRequest, RunResult, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_sandbox import HostNotReady, NsJailSandbox, prepare_host, x32
from corral_sandbox.policy_files import policy_dir
from corral_testbed.nsjail_host import TEST_SETTINGS, WAIT_FOR_THE_TEST, nsjail_host, release, until_ready

LIMITS = msgspec.structs.replace(
    DEFAULT_LIMIT_POLICY.defaults, cpu_time_ms=10_000, wall_time_ms=20_000, memory_mb=512, max_processes=64
)

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
RET_KILL_THREAD = 0x00000000
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

SIGSYS = 31


async def run(code: str, **limits: int) -> RunResult:
    sandbox = NsJailSandbox(host=nsjail_host())
    request = RunRequest(
        language="python", code=textwrap.dedent(code), limits=msgspec.structs.replace(LIMITS, **limits)
    )
    return await sandbox.run(request)


# -- what Python needs runs --------------------------------------------------------------------

# Python with subprocess, multiprocessing (fork, spawn, forkserver), threads, asyncio, sqlite3,
# tempfile and the usual file, time, signal and socketpair calls: the syscalls the allow-list was
# built from (strace -f of this program in the jail).
WORKLOAD = """
import asyncio, concurrent.futures, fcntl, hashlib, mmap, multiprocessing, os, random, select
import shutil, signal, socket, sqlite3, subprocess, sys, tempfile, threading, time, zlib

def square(x):
    return x * x

async def amain():
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "print(2)", stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    r, w = socket.socketpair()
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(w, b"x")
    await loop.sock_recv(r, 1)
    await asyncio.gather(*(asyncio.to_thread(time.sleep, 0.001) for _ in range(3)))
    return out

if __name__ == "__main__":
    assert subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True).stdout == b"1\\n"
    subprocess.run("echo hi | cat > /dev/null", shell=True, check=True)
    for method in ("fork", "spawn", "forkserver"):
        ctx = multiprocessing.get_context(method)
        with ctx.Pool(2) as pool:
            assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]
        queue = ctx.Queue(); queue.put(1); queue.get()
        lock = ctx.Lock(); lock.acquire(); lock.release()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(square, range(10)))
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        list(pool.map(square, range(10)))
    assert asyncio.run(amain()) == b"2\\n"
    db = sqlite3.connect(":memory:"); db.execute("create table t(x)"); db.commit()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.db")
        disk = sqlite3.connect(path); disk.execute("pragma journal_mode=wal"); disk.execute("create table t(x)")
        disk.execute("insert into t values (1)"); disk.commit(); disk.close()
        shutil.copy(path, path + ".2"); os.rename(path + ".2", path + ".3"); os.chmod(path, 0o600)
        os.utime(path); os.symlink(path, path + ".l"); os.readlink(path + ".l"); os.link(path, path + ".h")
        os.truncate(path + ".h", 0); list(os.walk(d)); os.statvfs(d); os.mkfifo(path + ".fifo")
    with tempfile.NamedTemporaryFile() as f:
        f.write(b"x"); f.flush(); os.fsync(f.fileno()); os.fdatasync(f.fileno())
        fcntl.lockf(f.fileno(), fcntl.LOCK_EX); fcntl.lockf(f.fileno(), fcntl.LOCK_UN)
        mmap.mmap(f.fileno(), 1).close()
    event = threading.Event(); threading.Timer(0.01, event.set).start(); event.wait()
    select.select([], [], [], 0); select.poll().poll(0); select.epoll().close()
    signal.signal(signal.SIGALRM, lambda *a: None); signal.setitimer(signal.ITIMER_REAL, 0.01); time.sleep(0.05)
    os.urandom(16); random.SystemRandom().random(); hashlib.sha256(b"x").hexdigest(); zlib.compress(b"x")
    os.sched_getaffinity(0); os.times(); os.uname()
    os.memfd_create("x"); os.eventfd(0); os.pipe2(os.O_CLOEXEC); os.getgroups(); os.getsid(0)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    print("done")
"""


async def test_python_with_its_standard_library_runs_under_the_allow_list() -> None:
    result = await run(WORKLOAD)
    assert (result.verdict, result.stdout, result.stderr) == (Verdict.OK, "done\n", "")


# -- what is not listed is stopped -------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        462,  # mseal: a real syscall of this kernel that the list does not name
        469,  # newer still (file_setattr on 6.17+)
        999,  # a number no kernel has yet
    ],
)
async def test_an_unlisted_syscall_kills_the_program_with_sigsys(number: int) -> None:
    code = f"""
        import ctypes
        print("before", flush=True)
        ctypes.CDLL(None).syscall({number}, 0, 0, 0)
        print("after", flush=True)
    """
    result = await run(code)
    assert result.verdict is Verdict.RUNTIME_ERROR
    assert result.signal == SIGSYS
    assert result.stdout == "before\n"


async def test_an_unlisted_syscall_in_a_thread_ends_the_whole_program() -> None:
    # KILL_PROCESS, not KILL: a thread silently gone would leave the program hanging.
    code = """
        import ctypes, threading
        thread = threading.Thread(target=lambda: ctypes.CDLL(None).syscall(462, 0, 0, 0))
        thread.start()
        thread.join()
        print("main thread went on")
    """
    result = await run(code, wall_time_ms=5_000)
    assert result.verdict is Verdict.RUNTIME_ERROR
    assert result.signal == SIGSYS
    assert result.stdout == ""


# -- the compiled filter, x32 numbers included -------------------------------------------------

_PTRACE_SEIZE = 0x4206
_PTRACE_INTERRUPT = 0x4207
_PTRACE_DETACH = 17
_PTRACE_SECCOMP_GET_FILTER = 0x420C
_WALL = 0x40000000


def installed_filter(pid: int, index: int = 0) -> list[tuple[int, int, int, int]]:
    """A seccomp filter of process `pid`, as (code, jt, jf, k) instructions: the one installed
    last (index 0), or the one before it (1)..."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)

    def ptrace(request: int, data: int | ctypes.Array[ctypes.c_char] | None = None, addr: int = 0) -> int:
        result = libc.ptrace(request, pid, addr, data)
        if result < 0:
            raise OSError(ctypes.get_errno(), f"ptrace {request:#x}")
        return int(result)

    ptrace(_PTRACE_SEIZE)
    try:
        ptrace(_PTRACE_INTERRUPT)
        os.waitpid(pid, _WALL)
        count = ptrace(_PTRACE_SECCOMP_GET_FILTER, addr=index)
        buffer = ctypes.create_string_buffer(count * 8)
        ptrace(_PTRACE_SECCOMP_GET_FILTER, buffer, addr=index)
    finally:
        ptrace(_PTRACE_DETACH)
    return list(struct.iter_unpack("=HBBI", buffer.raw))


def evaluate(program: list[tuple[int, int, int, int]], nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Run a classic BPF seccomp program on one call: its return value."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, *(list(args) + [0] * 6)[:6])
    a = x = 0
    memory = [0] * 16
    pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        klass = code & 0x07
        if klass == 0x00:  # BPF_LD
            if code == 0x20:  # LD W ABS
                a = struct.unpack_from("=I", data, k)[0]
            elif code == 0x00:  # LD IMM
                a = k
            elif code == 0x60:  # LD MEM
                a = memory[k]
            else:
                raise AssertionError(f"unknown load {code:#x}")
        elif klass == 0x01:  # BPF_LDX
            x = memory[k] if code == 0x61 else k
        elif klass == 0x02:  # BPF_ST
            memory[k] = a
        elif klass == 0x03:  # BPF_STX
            memory[k] = x
        elif klass == 0x04:  # BPF_ALU
            operand = x if code & 0x08 else k
            operation = code & 0xF0
            if operation == 0x50:
                a &= operand
            elif operation == 0x40:
                a |= operand
            elif operation == 0x00:
                a = (a + operand) & 0xFFFFFFFF
            elif operation == 0x10:
                a = (a - operand) & 0xFFFFFFFF
            elif operation == 0xA0:
                a ^= operand
            else:
                raise AssertionError(f"unknown alu {code:#x}")
        elif klass == 0x05:  # BPF_JMP
            operand = x if code & 0x08 else k
            operation = code & 0xF0
            if operation == 0x00:  # JA
                pc += k
                continue
            taken = {
                0x10: a == operand,
                0x20: a > operand,
                0x30: a >= operand,
                0x40: bool(a & operand),
            }[operation]
            pc += jt if taken else jf
        elif klass == 0x06:  # BPF_RET
            return a if code & 0x18 == 0x10 else k
        elif klass == 0x07:  # BPF_MISC
            if code == 0x07:
                x = a
            else:
                a = x
        else:
            raise AssertionError(f"unknown instruction {code:#x}")


@pytest.fixture(scope="module")
def compiled() -> list[tuple[int, int, int, int]]:
    """The filter NsJail installed on a real job, read while the job waits for the test."""
    (program,) = asyncio.run(filters_of_a_job(NsJailSandbox(host=nsjail_host()), 1))
    return program


async def filters_of_a_job(sandbox: NsJailSandbox, count: int) -> list[list[tuple[int, int, int, int]]]:
    """The `count` filters installed last on a real job of `sandbox`, the last one first."""
    request = RunRequest(language="python", code=WAIT_FOR_THE_TEST + 'ready("filtered")\n', limits=LIMITS)
    job = asyncio.ensure_future(sandbox.run(request))
    try:
        pid = await until_ready(sandbox.host, "filtered")
        programs = [installed_filter(pid, index) for index in range(count)]
        release(pid)
        assert (await job).verdict is Verdict.OK
    finally:
        job.cancel()
        await sandbox.aclose()
    return programs


# What the kernel does when several filters answer: the action that comes first here wins
# (among equals, the filter installed last).
_PRECEDENCE = (RET_KILL_PROCESS, RET_KILL_THREAD, 0x00030000, RET_ERRNO, 0x7FC00000, 0x7FF00000, 0x7FFC0000, RET_ALLOW)


def evaluate_all(programs: list[list[tuple[int, int, int, int]]], nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    answers = [evaluate(program, nr, arch, args) for program in programs]
    return min(answers, key=lambda answer: _PRECEDENCE.index(answer & 0xFFFF0000 if answer & 0xFFFF0000 != 0x80000000 else answer))


def test_a_forked_jails_two_filters_together_are_the_jails_policy(compiled: list[tuple[int, int, int, int]]) -> None:
    # A forked jail (corral_sandbox/fork.py) runs under its nursery's policy, which allows the
    # calls that make jails, and under its own filter, which refuses them again. What the two
    # answer together must be what a cold jail's policy answers, for every call, every
    # architecture the filters tell apart, and the arguments they look at.
    forked = NsJailSandbox(host=nsjail_host(), warm_slots=1, fork_jails=True)
    programs = asyncio.run(filters_of_a_job(forked, 2))
    assert programs[1] != compiled  # the nursery's policy is not the jail's on its own
    arguments = [(), (0x11,), *((0x11 | flag,) for flag in (0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000))]
    arguments += [(1, 1, 0), (2, 1, 0), (40, 1, 0), (0xFFFFFFFF,), (8,)]
    for number in range(1024):
        for arch_number, arch in ((number, AUDIT_ARCH_X86_64), (x32.X32_BIT | number, AUDIT_ARCH_X86_64), (number, AUDIT_ARCH_I386)):
            for args in arguments:
                expected = evaluate(compiled, arch_number, arch, args)
                assert evaluate_all(programs, arch_number, arch, args) == expected, (number, arch_number, arch, args)


def test_the_filter_allows_listed_calls_and_refuses_by_argument(compiled: list[tuple[int, int, int, int]]) -> None:
    assert evaluate(compiled, 39, AUDIT_ARCH_X86_64) == RET_ALLOW  # getpid
    assert evaluate(compiled, 41, AUDIT_ARCH_X86_64, (1, 1, 0)) == RET_ALLOW  # socket(AF_UNIX)
    assert evaluate(compiled, 41, AUDIT_ARCH_X86_64, (2, 1, 0)) == RET_ERRNO | 97  # socket(AF_INET)
    assert evaluate(compiled, 56, AUDIT_ARCH_X86_64, (0x11,)) == RET_ALLOW  # clone(SIGCHLD): fork
    assert evaluate(compiled, 56, AUDIT_ARCH_X86_64, (0x10000011,)) == RET_ERRNO | 1  # CLONE_NEWUSER
    assert evaluate(compiled, 435, AUDIT_ARCH_X86_64) == RET_ERRNO | 38  # clone3
    assert evaluate(compiled, 272, AUDIT_ARCH_X86_64) == RET_ERRNO | 1  # unshare
    assert evaluate(compiled, 294, AUDIT_ARCH_X86_64) == RET_ERRNO | 38  # inotify_init1
    assert evaluate(compiled, 73, AUDIT_ARCH_X86_64) == RET_ERRNO | 37  # flock


def test_the_filter_kills_every_x32_number_and_every_unlisted_one(compiled: list[tuple[int, int, int, int]]) -> None:
    for number in range(1024):
        # x32: the x86_64 architecture, bit 30 set in the number. Even for calls whose x86_64
        # number is allowed or refused with an errno, the x32 one reaches the default: KILL.
        assert evaluate(compiled, x32.X32_BIT | number, AUDIT_ARCH_X86_64) == RET_KILL_PROCESS, number
        # Any other architecture (int 0x80), whatever the number: Kafel's own architecture
        # check, which kills the calling thread (the call never runs either way).
        assert evaluate(compiled, number, AUDIT_ARCH_I386) == RET_KILL_THREAD, number
    assert evaluate(compiled, x32.X32_BIT | 272, AUDIT_ARCH_X86_64, (0x10000000,)) == RET_KILL_PROCESS
    for number in (163, 462, 469, 999, 0xFFFF, 0x3FFFFFFF):  # acct is EPERM; the rest unlisted
        expected = RET_ERRNO | 1 if number == 163 else RET_KILL_PROCESS
        assert evaluate(compiled, number, AUDIT_ARCH_X86_64) == expected, number


# -- the policy text, and refusing to serve where x32 runs -------------------------------------


def test_the_policy_in_force_refuses_what_it_does_not_list() -> None:
    text = (policy_dir() / "seccomp.kafel").read_text()
    assert not x32.lets_unlisted_calls_through(text)


@pytest.mark.parametrize(
    ("policy", "lets_through"),
    [
        ("POLICY p { KILL { bpf } } USE p DEFAULT ALLOW", True),
        ("POLICY p { ALLOW { read } } USE p DEFAULT LOG", True),
        ("POLICY p { ALLOW { read, SYSCALL[0x40000027] } } USE p DEFAULT KILL", True),
        ("/* DEFAULT KILL */ POLICY p { ALLOW { read } } USE p DEFAULT ALLOW", True),
        ("POLICY p { ALLOW { read } } USE p DEFAULT KILL_PROCESS", False),
        ("POLICY p { ALLOW { read } } USE p DEFAULT ERRNO(38)", False),
    ],
)
def test_policies_that_would_let_x32_calls_through_are_recognised(policy: str, lets_through: bool) -> None:
    assert x32.lets_unlisted_calls_through(policy) is lets_through


def test_a_deny_list_policy_is_refused_on_a_host_that_runs_x32(tmp_path: Path) -> None:
    # This kernel refuses x32 (the VM host of `make test-cgroup2` runs it): the same check then
    # refuses the worker. Either way the answer follows the probe.
    nsjail_host()
    policy = tmp_path / "policy"
    policy.mkdir(mode=0o755)
    for source in policy_dir().iterdir():
        if source.is_file():
            (policy / source.name).write_bytes(source.read_bytes())
    (policy / "seccomp.kafel").write_text("POLICY p { ERRNO(1) { unshare } } USE p DEFAULT ALLOW\n")
    tmp_path.chmod(0o755)
    settings = msgspec.structs.replace(TEST_SETTINGS, policy_dir=str(policy), selftest=False)
    if x32.host_accepts_x32():
        with pytest.raises(HostNotReady, match="x32"):
            prepare_host(settings)
    else:
        assert prepare_host(settings).policy_dir == str(policy)
