"""Programs compiled before, kept in the worker's memory so that a job whose compile would be
the same runs the program again without compiling it.

An entry is found by the hash of everything that decides the compile's result: the scope (the
API key that submitted the job: programs are never shared between keys, so one key cannot
learn another's programs or hand it one), the runtime's language and version, its compile
command, and the name and bytes of every file in the compile jail. Only compiles that left a
program are kept. Entries are evicted least recently used first once their bytes pass the
bound; a bound of 0 keeps nothing.
"""

from __future__ import annotations

import collections
import hashlib

import msgspec

from corral_sandbox.jail import Compiled
from corral_sandbox.policy_files import RuntimeSpec


def cache_key(scope: str, runtime: RuntimeSpec, files: list[tuple[str, bytes]], compiler_args: tuple[str, ...] = ()) -> str:
    """The compile's key: who asked, the runtime, the whole compile command (the compiler
    arguments in it: other flags, another program) and every file."""
    command = runtime.compile_command(compiler_args)
    parts = [text.encode() for text in (scope, runtime.language, runtime.version, *command)]
    parts += [part for name, data in files for part in (name.encode(), data)]
    digest = hashlib.sha256()
    for part in parts:
        # Length-prefixed: no two different sequences of parts hash alike.
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class CompileCache:
    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: collections.OrderedDict[str, Compiled] = collections.OrderedDict()
        self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> Compiled | None:
        """The compile kept under `key`, marked as cached, or None."""
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return msgspec.structs.replace(found, stage=msgspec.structs.replace(found.stage, cached=True))

    def put(self, key: str, compiled: Compiled) -> None:
        size = _size(compiled)
        if compiled.artifact is None or size > self._max_bytes:
            return
        if (old := self._entries.pop(key, None)) is not None:
            self._bytes -= _size(old)
        self._entries[key] = compiled
        self._bytes += size
        while self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= _size(evicted)


def _size(compiled: Compiled) -> int:
    return len(compiled.artifact or b"") + len(compiled.output.encode())
