# Corral's warm-jail hand-over for Python (corral_sandbox/warm.py and fork.py say why and how).
#
# Bound read-only at Debian's sitecustomize path in every Python jail, cold or warm, so that
# both see the same files. `site` imports it during start-up, after the standard streams and
# before the program. In a cold jail descriptor 9 is closed and it returns at once. In a warm
# one, started before its job was known as `python3 -s main.py` with a Unix socket at 9, it
# says it is ready, waits for the job (its stdin descriptor and its arguments), puts them where
# a cold start would have them, and closes the socket. Then it fails as if there were no
# sitecustomize at all, which `site` ignores: the interpreter then runs main.py exactly as a
# cold start does (same __main__, frames, traceback and exit handling), with the job's limits
# already set on it by the worker.
#
# A nursery (fork.py) is told "z" instead of a job: it never runs one. It then forks, for each
# "f" it is sent, a child into namespaces of its own (PID, mount, network, IPC, UTS, cgroup),
# with the job's scratch mounts it was sent, the job's user, no capability, and the jail's
# seccomp policy restored. Once the worker has moved it into the job's cgroups, that child goes
# on as a warm jail does, on the hand-over socket it was sent.
#
# Only the standard library, imported inside the functions: what a job finds in sys.modules
# must be what a cold start leaves there, and the modules loaded for the hand-over alone are
# forgotten before the job starts. Imported under any name but sitecustomize (by a test, or a
# tool), it does nothing.

# Types only: mypy takes any name TYPE_CHECKING as true, and at run time this imports nothing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    import ctypes
    from collections.abc import Callable


def _hand_over() -> None:
    import os
    import sys

    try:
        os.fstat(9)
    except OSError:
        return
    modules = set(sys.modules)
    finders = set(sys.path_importer_cache)

    def forget() -> None:
        for name in set(sys.modules) - modules:
            del sys.modules[name]
        for path in set(sys.path_importer_cache) - finders:
            del sys.path_importer_cache[path]

    data, fds = _receive(9)
    if data[:1] == b"z":
        _nursery()  # returns in a child only, its hand-over socket at 9
        _settle(forget)
        data, fds = _receive(9)
    if len(fds) != 1 or data[:1] != b"j":
        os._exit(0)  # the worker let this jail go without a job
    os.dup2(fds[0], 0)
    os.close(fds[0])
    args = [os.fsdecode(arg) for arg in data[1:].split(b"\0")[:-1]]
    sys.argv += args
    sys.orig_argv += args
    forget()


def _receive(fd: int) -> tuple[bytes, list[int]]:
    """Say "r"; then read what comes: "z" alone, or everything to the end."""
    import _socket

    sock = _socket.socket(fileno=fd)
    data = b""
    fds: list[int] = []
    try:
        sock.sendall(b"r")
        while True:
            chunk, ancillary, _, _ = sock.recvmsg(1 << 16, _socket.CMSG_SPACE(4))
            fds += _passed_fds(ancillary)
            if not chunk or (not data and chunk == b"z"):
                data += chunk
                break
            data += chunk
    finally:
        if data == b"z":
            sock.detach()
        else:
            sock.close()
    return data, fds


def _passed_fds(ancillary: "list[tuple[int, int, bytes]]") -> list[int]:
    """The descriptors that the SCM_RIGHTS messages among `ancillary` carry."""
    import _socket
    import sys

    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(payload[i : i + 4], sys.byteorder) for i in range(0, len(payload) - 3, 4)]
    return fds


# clone(2) flags: every namespace NsJail gives a jail, but the user namespace (the nursery's).
_NAMESPACES = 0x20000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x20000000 | 0x40000000
_SIGCHLD = 17
# The job's uid and gid in the jail (the nursery's are others).
_JOB_ID = 1000
# The scratch mounts a child is sent, in this order, and where they go.
_MOUNTS = (b"/box", b"/tmp", b"/dev/shm")


def _nursery() -> None:
    """Fork a child for every "f" (descriptors: hand-over socket, stdout, stderr, then one
    detached mount per _MOUNTS); answer "p" and its PID; "x", its PID and its wait status when
    it ends. Exits when the worker closes the socket, or on anything unexpected (never fails
    on into a program: it holds capabilities). Returns in each child only."""
    import _socket
    import os

    try:
        import ctypes

        if os.getpid() != 1:
            # A child cloned by a bare clone(2) keeps its parent's thread id in glibc's thread
            # block; it is right only because both are PID 1 of their namespaces.
            os._exit(73)
        libc = ctypes.CDLL(None, use_errno=True)
        # Where glibc keeps this thread's robust futex list: a child registers it again, as
        # glibc's fork does.
        robust_head, robust_length = ctypes.c_void_p(), ctypes.c_size_t()
        if libc.syscall(274, 0, ctypes.byref(robust_head), ctypes.byref(robust_length)) != 0:  # get_robust_list
            os._exit(74)
        control = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, fileno=9)
        fds = _fork_on_request(libc, control)
    except BaseException:
        os._exit(76)
    try:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        control.detach()  # its descriptor becomes the child's hand-over socket
        if libc.syscall(273, robust_head, robust_length) != 0:  # set_robust_list
            os._exit(77)
        _become_jail(libc, fds)
        _adopted(libc)
    except BaseException:
        os._exit(78)


def _fork_on_request(libc: "ctypes.CDLL", control: "_socket.socket") -> list[int]:
    """The nursery's loop (see _nursery). Returns in each child only, with the descriptors it
    was sent."""
    import _socket
    import ctypes
    import os
    import select
    import struct

    # A job's wait status never becomes a Python object here, where later jobs' children
    # are cloned from: it is written into this buffer, sent, and cleared.
    report = (ctypes.c_int32 * 2)()
    poll = select.poll()
    poll.register(9, select.POLLIN)
    children: dict[int, int] = {}
    while True:
        for fd, _ in poll.poll():
            if fd != 9:
                report[0] = children.pop(fd)
                poll.unregister(fd)
                os.close(fd)
                if libc.waitpid(report[0], ctypes.byref(report, 4), 0) != report[0]:
                    os._exit(75)
                control.sendmsg([b"x", report])
                report[1] = 0
                continue
            data, ancillary, _, _ = control.recvmsg(16, _socket.CMSG_SPACE(4 * (3 + len(_MOUNTS))))
            if not data:
                os._exit(0)
            fds = _passed_fds(ancillary)
            if data != b"f" or len(fds) != 3 + len(_MOUNTS):
                os._exit(70)
            ctypes.pythonapi.PyOS_BeforeFork()
            pid = libc.syscall(56, _NAMESPACES | _SIGCHLD, 0, 0, 0, 0)  # clone, as fork does
            if pid == 0:
                return fds
            ctypes.pythonapi.PyOS_AfterFork_Parent()
            for fd in fds:
                os.close(fd)
            if pid < 0:
                os._exit(71)
            pidfd = os.pidfd_open(pid)
            children[pidfd] = pid
            poll.register(pidfd, select.POLLIN)
            control.sendmsg([b"p" + struct.pack("=i", pid)])


def _adopted(libc: "ctypes.CDLL") -> None:
    """In the child: say "c" (the worker learns its PID from the kernel) and wait until the
    worker has moved it into the job's cgroups ("a", with the bounds of its private writable
    mappings). Then copy the pages of those it still shares with the nursery: charged to the
    job as a cold start's are, and off the job's clock, where the job's first write to each,
    most of them as its interpreter exits, would fault and copy it."""
    import _socket
    import ctypes
    import os
    import sys

    sock = _socket.socket(fileno=9)
    try:
        sock.sendall(b"c")
        said = sock.recv(1 << 16)
        if said[:1] != b"a" or len(said) < 5:
            os._exit(0)
        length = 5 + 16 * int.from_bytes(said[1:5], sys.byteorder)
        while len(said) < length:
            more = sock.recv(length - len(said))
            if not more:
                os._exit(0)
            said += more
    finally:
        sock.detach()
    bounds = memoryview(said[5:length]).cast("Q")
    page = os.sysconf("SC_PAGE_SIZE")
    MADV_POPULATE_WRITE = 23
    for at in range(0, len(bounds), 2):
        start, end = bounds[at], bounds[at + 1]
        # Only the pages it has (an anonymous page is "in core" when it is mapped): the rest
        # would be new memory the job never asked for.
        present = (ctypes.c_ubyte * ((end - start) // page))()
        if libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(end - start), present) != 0:
            continue
        run = 0
        for index in range(len(present) + 1):
            if index < len(present) and present[index] & 1:
                run += 1
                continue
            if run:
                # A kernel before 5.14 refuses it (EINVAL): the pages are then copied as the
                # job writes them.
                first = start + (index - run) * page
                libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(run * page), MADV_POPULATE_WRITE)
                run = 0


def _settle(forget: "Callable[[], None]") -> None:
    """In the child, once in the job's cgroups and out of the nursery's frames: drop the modules
    only the nursery loaded and collect what is left of them (a job would find it with
    gc.get_objects(), and the interpreter's exit would collect it on the job's clock)."""
    import os

    try:
        import gc

        forget()
        gc.collect()
    except BaseException:
        os._exit(79)


def _become_jail(libc: "ctypes.CDLL", fds: list[int]) -> None:
    """In the child: its own scratch, its descriptors, its session, the job's user, no
    capability, the jail's policy; any failure ends it before it says it is ready."""
    import ctypes
    import os

    def check(result: int) -> None:
        if result != 0:
            os._exit(72)

    MS_REC, MS_PRIVATE, AT_FDCWD, MOVE_MOUNT_F_EMPTY_PATH = 0x4000, 1 << 18, -100, 4
    for tree, target in zip(fds[3:], _MOUNTS, strict=True):
        check(libc.syscall(429, tree, b"", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH))  # move_mount
    # Private, the moved mounts included: a copy of a host mount would otherwise stay in its
    # peer group, and a mount under it would show on the host.
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None))
    os.chdir("/box")
    os.dup2(fds[1], 1)
    os.dup2(fds[2], 2)
    os.dup2(fds[0], 9)
    os.closerange(3, 9)
    os.closerange(10, 1 << 16)
    # A session of its own, led by the program, as NsJail gives a jail.
    os.setsid()
    # The job's user: the nursery runs as another one, so that it never counts among the
    # job's processes (RLIMIT_NPROC counts a user's). Dumpable again afterwards, as a cold
    # jail's program is (changing users clears it).
    check(libc.setresgid(_JOB_ID, _JOB_ID, _JOB_ID))
    check(libc.setresuid(_JOB_ID, _JOB_ID, _JOB_ID))
    PR_SET_DUMPABLE = 4
    check(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0))
    # No capability, now or after an exec: bounding set, ambient set, then the sets themselves.
    PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
    for capability in range(64):
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
    check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0))
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    check(libc.capset(header, (ctypes.c_uint32 * 6)()))
    # The nursery's policy is the jail's with clone into namespaces, mount, move_mount, capset,
    # setresuid and setresgid allowed; this filter refuses them again as the jail's does (EPERM).
    program = _refusals()
    filters = (ctypes.c_uint64 * len(program))(*program)
    fprog = _sock_fprog()(len(program), ctypes.cast(filters, ctypes.c_void_p))
    PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0))


def _sock_fprog() -> "type[ctypes.Structure]":
    import ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    return SockFprog


def _refusals() -> list[int]:
    """A seccomp BPF program, each instruction packed as the kernel's struct sock_filter."""
    LD_ABS, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
    KILL_THREAD, EPERM, ALLOW = 0, 0x00050001, 0x7FFF0000
    AUDIT_ARCH_X86_64 = 0xC000003E
    CLONE, MOUNT, CAPSET, MOVE_MOUNT, SETRESUID, SETRESGID = 56, 165, 126, 429, 117, 119
    CLONE_NEWUSER = 0x10000000

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> int:
        return code | jt << 16 | jf << 24 | k << 32

    return [
        op(LD_ABS, 4),  # arch
        op(JEQ, AUDIT_ARCH_X86_64, 1, 0),
        op(RET, KILL_THREAD),  # another architecture's ABI: as Kafel's own check does
        op(LD_ABS, 0),  # nr
        op(JEQ, CLONE, 0, 2),
        op(LD_ABS, 16),  # clone's flags (the low half of its first argument)
        op(JSET, _NAMESPACES | CLONE_NEWUSER, 6, 5),
        op(JEQ, MOUNT, 5, 0),
        op(JEQ, MOVE_MOUNT, 4, 0),
        op(JEQ, CAPSET, 3, 0),
        op(JEQ, SETRESUID, 2, 0),
        op(JEQ, SETRESGID, 1, 0),
        op(RET, ALLOW),
        op(RET, EPERM),
    ]


if __name__ == "sitecustomize":
    _hand_over()
    # Nothing of this module may stay for a program to find with gc.get_objects(): its functions
    # and this dictionary refer to each other, a cycle that only a collection would free.
    globals().clear()
    raise ImportError("no sitecustomize", name="sitecustomize")
