"""Judge0's `additional_files`: a zip archive, opened here in the API, every bound checked before
a byte of it is trusted, and turned into the job's input files.

Judge0 unzips the archive inside its sandbox (`unzip -n` under isolate's limits). Corral opens
it with Python's zipfile before the job exists, so what it refuses is told to the client as
a 422: an archive that is not one, too many entries, a link, an absolute name, `..`, a file in a
directory (Corral's input files are flat), an encrypted or oddly compressed entry, or contents
that expand past the job's files budget however small the archive (a zip bomb). Entries are
read in chunks against that budget, never by the size their header claims.
"""

from __future__ import annotations

import io
import stat
import zipfile

from corral_core.job import InputFile
from corral_core.policy import SizePolicy

_CHUNK = 64 * 1024
# Entries looked at in all (directories included): past this the archive is refused unread.
_MOST_ENTRIES_PER_FILE = 4


class ArchiveRefused(Exception):
    """The archive cannot become the job's files; the message says why."""


def input_files(archive: bytes, sizes: SizePolicy) -> tuple[InputFile, ...]:
    """The files of a zip archive, checked against `sizes` (max_files, max_files_bytes)."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            entries = opened.infolist()
            if len(entries) > _MOST_ENTRIES_PER_FILE * sizes.max_files:
                raise ArchiveRefused(f"has more than {sizes.max_files} files")
            files = [entry for entry in entries if not entry.is_dir()]
            if len(files) > sizes.max_files:
                raise ArchiveRefused(f"has more than {sizes.max_files} files")
            for entry in entries:
                _check_entry(entry)
            return _read(opened, files, sizes.max_files_bytes)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as error:
        raise ArchiveRefused(f"is not a zip archive this API can open ({error})") from None


def _check_entry(entry: zipfile.ZipInfo) -> None:
    name = entry.filename
    if name.startswith("/") or "\\" in name or ":" in name.split("/")[0]:
        raise ArchiveRefused(f"{name!r} is not a relative path")
    parts = name.rstrip("/").split("/")
    if ".." in parts or "." in parts or "" in parts:
        raise ArchiveRefused(f"{name!r} is not a plain path")
    if entry.is_dir():
        return
    if len(parts) > 1:
        raise ArchiveRefused(f"{name!r} is in a directory: only files at the archive's top are supported")
    # Unix mode bits, when the archive has them: a file type other than a regular file (a
    # symbolic link, most of all) is refused; many archivers write permissions alone.
    if stat.S_IFMT(entry.external_attr >> 16) not in (0, stat.S_IFREG):
        raise ArchiveRefused(f"{name!r} is not a regular file (a link or a device)")
    if entry.flag_bits & 0x1:
        raise ArchiveRefused(f"{name!r} is encrypted")
    if entry.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ArchiveRefused(f"{name!r} is compressed with a method other than deflate")


def _read(opened: zipfile.ZipFile, entries: list[zipfile.ZipInfo], budget: int) -> tuple[InputFile, ...]:
    files: list[InputFile] = []
    left = budget
    for entry in entries:
        chunks: list[bytes] = []
        with opened.open(entry) as reading:
            while chunk := reading.read(min(_CHUNK, left + 1)):
                left -= len(chunk)
                if left < 0:
                    raise ArchiveRefused(f"expands to more than {budget} bytes")
                chunks.append(chunk)
        files.append(InputFile(entry.filename, b"".join(chunks)))
    return tuple(files)
