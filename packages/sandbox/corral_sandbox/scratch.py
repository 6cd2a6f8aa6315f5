"""A job's scratch space: one tmpfs per job, mounted by the host and bound into the jail.

Layout of the mount (host path <work_root>/job-<run>/, root-owned, mode 0711):

    box/         the job's working directory, /box in the jail: the source and input files
    tmp/         /tmp in the jail
    shm/         /dev/shm in the jail (multiprocessing's semaphores)

Why a tmpfs of its own: nothing a job writes touches the host's disk; size and inodes are
bounded per job (and the pages are charged to the job's memory cgroup); a hard link cannot reach
a host file across file systems; and removal is one lazy unmount, which follows nothing the job
left behind (symlinks, FIFOs, sockets, deep trees). The host writes into the mount only before
the jail starts, through directory file descriptors with O_CREAT|O_EXCL|O_NOFOLLOW; after the
jail ended it reads back only a compile's artifact and the files a job asked for, through a
descriptor of the mount's root held since its mount, never following a link (NsJail's log is a
memfd of the adapter's, never a file here: a job that fills its tmpfs cannot keep NsJail from
saying how the program ended).

The work root and each mount's root are 0711, not 0700: NsJail binds box/, tmp/ and shm/ from
inside the jail's user namespace, where the path must be searchable by others. Nothing can be
listed; box/, tmp/ and shm/ themselves are 0700 and belong to the jail's user.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from corral_core.policy import InvalidSubmission, check_file_name

_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REMOUNT = 0x20
_MNT_DETACH = 0x2
_UMOUNT_NOFOLLOW = 0x8

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


class ScratchError(Exception):
    pass


class Scratch:
    def __init__(self, root: str, uid: int, gid: int) -> None:
        self.root = root
        self._uid = uid
        self._gid = gid
        self.box = os.path.join(root, "box")
        self.tmp = os.path.join(root, "tmp")
        self.shm = os.path.join(root, "shm")
        self._mounted = False
        # The mount's root, held from its mount to its removal: what the host reads back is
        # opened relative to it, never by a path walked again after the jail ran.
        self._root_fd: int | None = None
        self._box_fd: int | None = None
        self._flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC

    @classmethod
    def create(
        cls, work_root: str, name: str, size_bytes: int, inodes: int, uid: int, gid: int, *, executable: bool = False
    ) -> Scratch:
        """`executable`: without noexec, for a compiled program's artifact (and the compilers'
        own temporary files): no more than the program could do in its own memory, which
        seccomp and the rest of the jail bound the same way."""
        scratch = cls(os.path.join(work_root, name), uid, gid)
        scratch._flags = _MS_NOSUID | _MS_NODEV | (0 if executable else _MS_NOEXEC)
        os.mkdir(scratch.root, 0o700)
        try:
            options = f"size={size_bytes},nr_inodes={inodes},mode=0711,uid=0,gid=0"
            flags = scratch._flags
            if _libc.mount(b"tmpfs", scratch.root.encode(), b"tmpfs", flags, options.encode()) != 0:
                code = ctypes.get_errno()
                raise ScratchError(f"mount tmpfs on {scratch.root}: {os.strerror(code)}")
            scratch._mounted = True
            root_fd = scratch._root_fd = os.open(scratch.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            for sub in ("box", "tmp", "shm"):
                os.mkdir(sub, 0o700, dir_fd=root_fd)
                os.chown(sub, uid, gid, dir_fd=root_fd, follow_symlinks=False)
            scratch._box_fd = os.open("box", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root_fd)
        except BaseException:
            scratch.remove()
            raise
        return scratch

    def resize(self, size_bytes: int, inodes: int) -> None:
        """Give the mount the job's size and inodes (a warm jail's, made before its job was known)."""
        if self._box_fd is None:
            raise ScratchError("the scratch space is sealed: the jail may have started")
        options = f"size={size_bytes},nr_inodes={inodes}".encode()
        if _libc.mount(b"tmpfs", self.root.encode(), b"tmpfs", _MS_REMOUNT | self._flags, options) != 0:
            code = ctypes.get_errno()
            raise ScratchError(f"remount tmpfs on {self.root}: {os.strerror(code)}")

    def write(self, name: str, content: bytes, mode: int = 0o644) -> None:
        """Create box/<name> with `content`, owned by the jail's user. Before the jail starts only."""
        if self._box_fd is None:
            raise ScratchError("the scratch space is sealed: the jail may have started")
        try:  # a name with a '/' in it would reach past box/
            check_file_name("file name", name)
        except (InvalidSubmission, UnicodeError) as error:
            raise ScratchError(f"{name!r} is not a plain file name: {error}") from None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, mode, dir_fd=self._box_fd)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fchown(fd, self._uid, self._gid)
        finally:
            os.close(fd)

    def read_back(self, name: str, max_bytes: int) -> bytes | None:
        """The regular file box/<name> the jail left, after it ended; None if there is none, it
        is anything else (a symlink, a FIFO...), it has other hard links (its content is not
        only the compiler's to decide), or it is larger than `max_bytes`.

        Everything there is the job's and hostile: nothing is followed, nothing waited on.
        """
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            box_fd = self.open_box()
        except OSError:
            return None
        try:
            fd = os.open(name, flags, dir_fd=box_fd)
        except OSError:
            return None
        finally:
            os.close(box_fd)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_size > max_bytes:
                return None
            chunks: list[bytes] = []
            size = 0
            while chunk := os.read(fd, 1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    return None
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def open_box(self) -> int:
        """A new descriptor of box/, opened relative to the mount's root without following a
        link (the caller closes it); OSError if there is none."""
        if self._root_fd is None:
            raise FileNotFoundError(f"{self.root} is not mounted")
        return os.open("box", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self._root_fd)

    def seal(self) -> None:
        """No more writes: from here on everything inside box/, tmp/ and shm/ is the job's."""
        if self._box_fd is not None:
            os.close(self._box_fd)
            self._box_fd = None

    def remove(self) -> None:
        """Unmount (lazily: nothing inside is looked at) and remove the empty mount point."""
        self.seal()
        if self._root_fd is not None:
            os.close(self._root_fd)  # before the unmount: nothing of ours holds the mount
            self._root_fd = None
        if self._mounted:
            _unmount(self.root)
            self._mounted = False
        try:
            os.rmdir(self.root)
        except FileNotFoundError:
            pass


def mount_work_root(work_root: str) -> bool:
    """Make the work root a small tmpfs of its own, unless it is one; True if mounted now.

    Only mount points live there, so it needs inodes, not space; and creating and removing a
    directory on a tmpfs costs microseconds where a journalled disk file system costs a tenth of
    a millisecond per job.
    """
    if _is_tmpfs_mount(work_root):
        return False
    options = b"size=1m,nr_inodes=1048576,mode=0711,uid=0,gid=0"
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    if _libc.mount(b"tmpfs", work_root.encode(), b"tmpfs", flags, options) != 0:
        code = ctypes.get_errno()
        raise ScratchError(f"mount tmpfs on the work root {work_root}: {os.strerror(code)}")
    return True


def _is_tmpfs_mount(path: str) -> bool:
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            head, _, tail = line.partition(" - ")
            fields = head.split()
            if len(fields) > 4 and fields[4].replace("\\040", " ") == path and tail.split()[:1] == ["tmpfs"]:
                return True
    return False


def remove_stale(path: str) -> None:
    """Clean up a scratch space left by a worker that died: unmount whatever is mounted there,
    then rmdir. Idempotent: another worker starting at the same moment may be doing the same,
    so a mount or directory already gone is no error; one that stays is."""
    # A mount point may carry stacked mounts; each umount takes the top one.
    for _ in range(16):
        if not _unmount(path):
            break
    else:
        raise ScratchError(f"{path} is still mounted after 16 unmounts")
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _unmount(path: str) -> bool:
    """Detach the mount at `path` (following nothing inside); False if none was there."""
    if _libc.umount2(path.encode(), _MNT_DETACH | _UMOUNT_NOFOLLOW) == 0:
        return True
    code = ctypes.get_errno()
    # EINVAL: not a mount point (any more); ENOENT: the directory is gone too.
    if code in (errno.EINVAL, errno.ENOENT):
        return False
    raise ScratchError(f"umount {path}: {os.strerror(code)}")
