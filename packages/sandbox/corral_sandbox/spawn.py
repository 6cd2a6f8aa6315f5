"""posix_spawn without holding the GIL.

Python 3.11's os.posix_spawn holds the GIL until the child has exec'd. glibc's posix_spawn
uses vfork: the calling thread sleeps until the child's execve, which on a busy host waits for
a CPU. A worker spawns an NsJail per job, and for that long every other thread, its event loop
included, would stand still. The same libc call through ctypes releases the GIL while it runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Iterable, Sequence

_libc = ctypes.CDLL(None, use_errno=True)
# glibc's <spawn.h> flags.
_SETSIGDEF = 0x04
_SETSIGMASK = 0x08
_SETSID = 0x80
# Opaque glibc types, with room to spare: posix_spawnattr_t is 336 bytes on x86-64,
# posix_spawn_file_actions_t 80, sigset_t 128.
_ATTR_SIZE = 1024
_ACTIONS_SIZE = 512
_SIGSET_SIZE = 256


def spawn(path: str, argv: Sequence[str], dup2: Iterable[tuple[int, int]], default_signals: Iterable[int]) -> int:
    """Spawn `path` with `argv`, an empty environment, in a session of its own, with `dup2`'s
    (from, to) descriptor pairs applied in order, `default_signals` at their default action and
    no signal blocked; its pid. OSError if it could not be spawned (exec failing included)."""
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    actions = ctypes.create_string_buffer(_ACTIONS_SIZE)
    _check(_libc.posix_spawnattr_init(attr))
    try:
        _check(_libc.posix_spawn_file_actions_init(actions))
        try:
            for source, target in dup2:
                _check(_libc.posix_spawn_file_actions_adddup2(actions, source, target))
            _check(_libc.posix_spawnattr_setsigdefault(attr, _sigset(default_signals)))
            _check(_libc.posix_spawnattr_setsigmask(attr, _sigset(())))
            _check(_libc.posix_spawnattr_setflags(attr, ctypes.c_short(_SETSIGDEF | _SETSIGMASK | _SETSID)))
            args = (ctypes.c_char_p * (len(argv) + 1))(*(os.fsencode(arg) for arg in argv), None)
            environment = (ctypes.c_char_p * 1)(None)
            pid = ctypes.c_int(-1)
            _check(_libc.posix_spawn(ctypes.byref(pid), os.fsencode(path), actions, attr, args, environment))
            return pid.value
        finally:
            _libc.posix_spawn_file_actions_destroy(actions)
    finally:
        _libc.posix_spawnattr_destroy(attr)


def _sigset(signals: Iterable[int]) -> ctypes.Array[ctypes.c_char]:
    sigset = ctypes.create_string_buffer(_SIGSET_SIZE)
    _libc.sigemptyset(sigset)
    for number in signals:
        if _libc.sigaddset(sigset, int(number)) != 0:
            raise OSError(ctypes.get_errno(), f"sigaddset {signal.Signals(number).name}")
    return sigset


def _check(error: int) -> None:
    """The posix_spawn family returns an errno value (0: done)."""
    if error != 0:
        raise OSError(error, os.strerror(error))
