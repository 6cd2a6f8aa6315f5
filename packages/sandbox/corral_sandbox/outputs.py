"""The files a job asked back, read from its working directory after its jail has ended.

Everything there is the job's and hostile. The walk never uses a path from the host's root:
it holds a descriptor of box/ and opens each directory and file relative to its parent's
descriptor with O_NOFOLLOW (a symbolic link anywhere is left out, never followed), O_NONBLOCK
(a FIFO is never waited on) and, for directories, O_DIRECTORY. A file is read only when the
descriptor it was opened as is a regular file with one link and a size within the bounds, all
checked on that descriptor (a 1 TiB sparse file is refused by its size before any read; a file
swapped for a link after the walk listed it is refused by O_NOFOLLOW). Names must be UTF-8 text
without control characters. The walk is bounded in depth, in entries and in time. What matched a
pattern and was not returned is listed with why, up to a bound, then counted.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import stat
import time
from collections.abc import Iterator
from functools import lru_cache

import msgspec

from corral_core.job import LeftOut, ReturnedFile

MAX_DEPTH = 32
MAX_ENTRIES = 10_000
MAX_LISTED_LEFT_OUT = 100
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
# Python's own table only, never the host's /etc/mime.types: the same name, the same type.
_TYPES = mimetypes.MimeTypes(filenames=())


class Bounds(msgspec.Struct, frozen=True, kw_only=True):
    files: int
    file_bytes: int
    total_bytes: int
    seconds: float = 5.0


class Collected(msgspec.Struct, frozen=True):
    files: list[ReturnedFile]
    left_out: list[LeftOut]


def collect(box: str | int, patterns: tuple[str, ...], bounds: Bounds) -> Collected:
    """The files below `box` (a path, or a directory descriptor the caller keeps) whose path
    relative to it matches one of `patterns`."""
    matchers = [_matcher(pattern).match for pattern in patterns]
    walk = _Walk(bounds)
    try:
        root = os.open(box, _DIRECTORY) if isinstance(box, str) else os.open(".", _DIRECTORY, dir_fd=box)
    except OSError as error:
        return Collected([], [LeftOut("", f"the working directory could not be read: {error.strerror}")])
    try:
        for parent, name, path in walk.files(root):
            if any(match(path) for match in matchers):
                walk.take(parent, name, path)
    finally:
        os.close(root)
    return walk.collected()


class _Walk:
    def __init__(self, bounds: Bounds) -> None:
        self._bounds = bounds
        self._deadline = time.monotonic() + bounds.seconds
        self._entries = 0
        self._total = 0
        self._files: list[ReturnedFile] = []
        self._left_out: list[LeftOut] = []
        self._unlisted = 0

    def files(self, directory: int, prefix: str = "", depth: int = 0) -> Iterator[tuple[int, str, str]]:
        """(parent descriptor, name, relative path) of every entry that is not a directory,
        depth first; a directory is opened relative to its parent's descriptor."""
        try:
            entries = sorted(os.listdir(directory))
        except OSError as error:
            self._leave(prefix or ".", f"could not be listed: {error.strerror}")
            return
        for name in entries:
            self._entries += 1
            path = prefix + name
            if self._entries > MAX_ENTRIES or time.monotonic() > self._deadline:
                self._leave(path, "not examined: the walk stopped at its bound of entries or time")
                return
            if (problem := _bad_name(name)) is not None:
                self._leave(path.encode(errors="backslashreplace").decode(), problem)
                continue
            try:
                child = os.open(name, _DIRECTORY, dir_fd=directory)
            except OSError:
                yield directory, name, path  # not a directory (or a link to one): a file to try
                continue
            try:
                if depth + 1 >= MAX_DEPTH:
                    self._leave(path + "/", f"nested deeper than {MAX_DEPTH} directories")
                else:
                    yield from self.files(child, path + "/", depth + 1)
            finally:
                os.close(child)

    def take(self, parent: int, name: str, path: str) -> None:
        if len(self._files) >= self._bounds.files:
            self._leave(path, f"past the job's max_returned_files ({self._bounds.files})")
            return
        try:
            fd = os.open(name, _FILE, dir_fd=parent)
        except OSError as error:
            self._leave(path, "a symbolic link" if error.errno == 40 else f"could not be opened: {error.strerror}")
            return
        try:
            self._read(fd, path)
        finally:
            os.close(fd)

    def _read(self, fd: int, path: str) -> None:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            self._leave(path, "not a regular file")
            return
        if info.st_nlink != 1:
            self._leave(path, "a file with other hard links")
            return
        if info.st_size > self._bounds.file_bytes:
            self._leave(path, f"larger than the job's max_file_size_kb ({self._bounds.file_bytes // 1024} KiB)")
            return
        if self._total + info.st_size > self._bounds.total_bytes:
            self._leave(path, f"past the job's max_returned_files_kb ({self._bounds.total_bytes // 1024} KiB in all)")
            return
        content = os.pread(fd, info.st_size + 1, 0)
        if len(content) != info.st_size:
            self._leave(path, "changed while it was read")
            return
        self._total += len(content)
        media_type = _TYPES.guess_type(path, strict=True)[0] or "application/octet-stream"
        digest = hashlib.sha256(content).hexdigest()
        self._files.append(ReturnedFile(name=path, size=len(content), sha256=digest, media_type=media_type, content=content))

    def _leave(self, path: str, reason: str) -> None:
        if len(self._left_out) < MAX_LISTED_LEFT_OUT:
            self._left_out.append(LeftOut(path, reason))
        else:
            self._unlisted += 1

    def collected(self) -> Collected:
        left_out = list(self._left_out)
        if self._unlisted:
            left_out.append(LeftOut("", f"{self._unlisted} more left out, not listed"))
        return Collected(self._files, left_out)


def _bad_name(name: str) -> str | None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not UTF-8"
    if not name.isprintable():
        return "its name has control characters"
    return None


@lru_cache(maxsize=256)
def _matcher(pattern: str) -> re.Pattern[str]:
    """A glob over "/"-separated paths: `*` and `?` within one part, `**` as a whole part any
    number of parts (none included), `[...]` a class."""
    parts = []
    for index, part in enumerate(pattern.split("/")):
        last = index == len(pattern.split("/")) - 1
        if part == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
            continue
        parts.append(_part(part) + ("" if last else "/"))
    return re.compile("".join(parts) + r"\Z")


def _part(part: str) -> str:
    out, index = [], 0
    while index < len(part):
        char = part[index]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := part.find("]", index + 2)) != -1:
            inner = part[index + 1 : end].replace("\\", "\\\\")
            out.append(f"[{'^' + inner[1:] if inner.startswith('!') else inner}]")
            index = end
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)
