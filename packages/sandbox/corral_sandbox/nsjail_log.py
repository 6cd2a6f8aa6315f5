"""Reading NsJail's own log: how the jailed program ended, and whether NsJail itself failed.

The log goes to a memfd the jail cannot reach (see jail.py), so nothing in it was written by
the program; NsJail logs no program output or arguments. Lines look like:

    [I][2026-11-26T14:04:28+0000] pid=14363 ([STANDALONE MODE]) exited with status: 0, (PIDs left: 0)
    [I][...] pid=14372 ([STANDALONE MODE]) terminated with signal: SIGKILL (9), (PIDs left: 0)
    [I][...] pid=24274 run time >= time limit (1 >= 1) ([STANDALONE MODE]). Killing it
    [E][...][1] newProc():232 execve('/usr/bin/nonexistent') failed: No such file or directory
    [F][...][17872] main():359 Couldn't prepare sandboxing policy
"""

from __future__ import annotations

import re

import msgspec

_EXITED = re.compile(r"^\[I\]\[[^\]]*\] pid=\d+ \(\[STANDALONE MODE\]\) exited with status: (\d+),")
_SIGNALLED = re.compile(r"^\[I\]\[[^\]]*\] pid=\d+ \(\[STANDALONE MODE\]\) terminated with signal: \S+ \((\d+)\),")
_TIME_LIMIT = re.compile(r"^\[I\]\[[^\]]*\] pid=\d+ run time >= time limit")
_FAILURE = re.compile(r"^\[[EF]\]")


class JailLog(msgspec.Struct, frozen=True, kw_only=True):
    exit_code: int | None = None
    signal: int | None = None
    time_limit: bool = False
    # NsJail's own errors ([E] and [F] lines): it could not set up or start the program.
    errors: tuple[str, ...] = ()

    @property
    def ended(self) -> bool:
        return self.exit_code is not None or self.signal is not None


def parse(text: str) -> JailLog:
    exit_code: int | None = None
    signal: int | None = None
    time_limit = False
    errors: list[str] = []
    for line in text.splitlines():
        if match := _EXITED.match(line):
            exit_code, signal = int(match.group(1)), None
        elif match := _SIGNALLED.match(line):
            exit_code, signal = None, int(match.group(1))
        elif _TIME_LIMIT.match(line):
            time_limit = True
        elif _FAILURE.match(line):
            errors.append(line)
    return JailLog(exit_code=exit_code, signal=signal, time_limit=time_limit, errors=tuple(errors))
