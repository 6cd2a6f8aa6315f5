"""The x32 syscall ABI: whether this host accepts it, and whether a seccomp policy would let it in.

x32 calls carry the x86_64 architecture with bit 30 set in the number (unshare is 272, its x32
number 0x40000000|272). Kafel checks only the architecture, so a policy that allows by default
(`DEFAULT ALLOW`, a deny-list) lets every call it denies through by its x32 number, on a kernel
with x32 enabled (Debian builds it in, off unless booted with `syscall.x32=y`). An allow-list
refuses them: no rule names an x32 number, so they all reach the default.
"""

from __future__ import annotations

import re
import subprocess
import sys

X32_BIT = 0x40000000

# getpid by its x32 number, in a child (a worker confined by a seccomp policy of its own could be
# killed for trying): ENOSYS (38) means the kernel refuses the x32 ABI.
_PROBE = (
    "import ctypes\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    f"result = libc.syscall(ctypes.c_long({X32_BIT} | 39))\n"
    "print(ctypes.get_errno() if result < 0 else 0)\n"
)

_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
_DEFAULT = re.compile(r"\bUSE\s+\w+\s+DEFAULT\s+(\w+)")
_NUMBERED = re.compile(r"\bSYSCALL\s*\[\s*(0x[0-9a-fA-F]+|\d+)\s*\]")
_REFUSING = {"KILL", "KILL_PROCESS", "KILL_THREAD", "DENY", "ERRNO", "TRAP"}


def host_accepts_x32() -> bool:
    """Whether this kernel runs x32 system calls (probed in a child process)."""
    done = subprocess.run([sys.executable, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        # Killed for trying (a seccomp policy around the worker): it does not get through here.
        return False
    return done.stdout.strip() != "38"


def lets_unlisted_calls_through(policy_text: str) -> bool:
    """Whether a Kafel policy would run a call it does not name, x32 numbers included.

    Structural, from the text: the top-level default must refuse (KILL*, ERRNO, TRAP), and no
    rule may name a raw number with the x32 bit set.
    """
    text = _COMMENTS.sub(" ", policy_text)
    defaults = _DEFAULT.findall(text)
    if len(defaults) != 1 or defaults[0] not in _REFUSING:
        return True
    return any(int(number, 0) & X32_BIT for number in _NUMBERED.findall(text))
