"""A job's standard streams: stdin as a sealed memfd, stdout and stderr as capped pipe readers."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable

_READ_CHUNK = 1 << 16


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
        self._cap = cap
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
        room = self._cap - len(self.data)
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
