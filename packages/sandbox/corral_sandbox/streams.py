"""A job's streams: stdin as a sealed memfd (or, for an interactive job, a pipe fed as its
client sends), stdout and stderr as capped pipe readers, and NsJail's own log as a memfd nobody
but NsJail and the adapter holds."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Callable

log = logging.getLogger(__name__)

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


def stdin_pipe() -> tuple[int, int]:
    """An interactive job's stdin: (the read end the program gets, numbered above stdio; the
    write end we keep, non-blocking). Both close-on-exec: NsJail gets the read end by dup2
    only, so the program sees its end of input once we close the write end."""
    read, write = os.pipe2(os.O_CLOEXEC)
    try:
        read = above_stdio(read)
        os.set_blocking(write, False)
    except BaseException:
        os.close(read)
        os.close(write)
        raise
    return read, write


async def feed_pipe(write_fd: int, source: AsyncIterator[bytes]) -> None:
    """Copy `source` into a non-blocking pipe until it ends (then close the pipe: end of input)
    or the program closes its end. Waits for room in the pipe on the event loop, never blocking
    it, and takes the next chunk only once the last one is written: a program that does not
    read holds its input back. Owns `write_fd`: closed however this ends (cancelled, say)."""
    loop = asyncio.get_running_loop()
    try:
        async for chunk in source:
            view = memoryview(chunk)
            while view:
                try:
                    view = view[os.write(write_fd, view) :]
                except BlockingIOError:
                    writable = loop.create_future()
                    loop.add_writer(write_fd, writable.set_result, None)
                    try:
                        await writable
                    finally:
                        loop.remove_writer(write_fd)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the program closed its stdin or ended: nobody reads the rest
    finally:
        os.close(write_fd)
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


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

    `on_chunk`, if set, is called with each chunk as it is read, of the bytes kept only: the
    chunks it sees add up to `data`, never more.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, cap: int, on_overflow: Callable[[], None]) -> None:
        self._loop = loop
        self._fd = fd
        # May be changed until the first byte arrives (a warm jail's cap is the job's).
        self.cap = cap
        self._on_overflow = on_overflow
        # May be set until the first byte arrives, like `cap`.
        self.on_chunk: Callable[[bytes], None] | None = None
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
            self._tell(chunk)
            return
        self.data += chunk[:room]
        self._tell(chunk[:room])
        self.truncated = True
        self.close()
        self._on_overflow()

    def _tell(self, chunk: bytes) -> None:
        if self.on_chunk is None or not chunk:
            return
        try:
            self.on_chunk(chunk)
        except Exception:
            # Whoever listens must not break the reading of the program's output.
            log.exception("an output listener failed")

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        if not self.closed.done():
            self.closed.set_result(None)
