"""A job's streams: stdin as a sealed memfd, stdout and stderr as capped pipe readers, and
NsJail's own log as a memfd nobody but NsJail and the adapter holds."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable

_READ_CHUNK = 1 << 16
# NsJail logs a few lines per run; this bounds what a misbehaving NsJail could make us read.
_LOG_MAX_BYTES = 1 << 20
# The log memfd is moved at least this high: its number must never already be the one NsJail
# gets it as (command.LOG_FD), since dup2 onto itself would leave it close-on-exec.
_LOG_FD_FLOOR = 10


def stdin_memfd(text: str) -> int:
    """The job's stdin as a sealed memfd: no pipe to feed, nothing on any file system."""
    data = text.encode("utf-8", "surrogatepass")
    fd = os.memfd_create("corral-stdin", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        return above_stdio(fd)
    except BaseException:
        os.close(fd)
        raise


def log_memfd() -> int:
    """An empty memfd for NsJail's log (close-on-exec here; the spawn dup2s it into NsJail)."""
    fd = os.memfd_create("corral-nsjail-log", os.MFD_CLOEXEC)
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _LOG_FD_FLOOR)
    finally:
        os.close(fd)


def read_memfd(fd: int) -> str:
    """What was written to a memfd (NsJail's log), from its start, at most 1 MiB."""
    return os.pread(fd, _LOG_MAX_BYTES, 0).decode("utf-8", "replace")


def above_stdio(fd: int) -> int:
    """A descriptor numbered 3 or more, so dup2 onto 0, 1 or 2 always clears close-on-exec."""
    if fd > 2:
        return fd
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return high


class CappedStream:
    """One output pipe, read without blocking and capped at `cap` bytes.

    Past the cap the read end is closed: the program's next write fails (EPIPE, or SIGPIPE for
    a program that does not ignore it) and `on_overflow` is called, once. The caller decides
    how long the program then gets to finish.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, cap: int, on_overflow: Callable[[], None]) -> None:
        self._loop = loop
        self._fd = fd
        # May be changed until the first byte arrives (a warm jail's cap is the job's).
        self.cap = cap
        self._on_overflow = on_overflow
        self.data = bytearray()
        self.truncated = False
        self.closed: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self._fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return
        room = self.cap - len(self.data)
        if len(chunk) <= room:
            self.data += chunk
            return
        self.data += chunk[:room]
        self.truncated = True
        self.close()
        self._on_overflow()

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        if not self.closed.done():
            self.closed.set_result(None)
