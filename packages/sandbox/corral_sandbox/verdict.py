"""How a run ended, told from facts rather than guessed from an exit status.

Exit status 137 alone could be the wall limit, RLIMIT_CPU, the OOM killer or the program's own
exit(137). Each limit leaves its own evidence instead:
  - output:  the adapter cut a stream at its cap (and stopped the jail shortly after);
  - memory:  the run's memory cgroup ran out (OOM event on the run's parent cgroup);
  - time:    the adapter stopped the jail at the wall deadline or when the jail's total CPU time
             (all its processes, from the cgroup) reached the limit; or the measured CPU time is
             past the limit (RLIMIT_CPU's SIGKILL, or a finish between two CPU checks); or
             NsJail's own time-limit backstop fired (its log says so);
  - otherwise the program ended on its own: NsJail's log says "exited with status N" (ok when
    0) or "terminated with signal N" (a runtime error: seccomp's SIGSYS, SIGSEGV...).
When two apply, the first in that order wins: the cut output is what the client sees, and
running out of memory is usually why a program then also ran out of time (a hung Pool).
"""

from __future__ import annotations

import enum

import msgspec

from corral_core.job import Limits, Verdict
from corral_sandbox.nsjail_log import JailLog


class StopReason(enum.StrEnum):
    """Why the adapter stopped a jail itself."""

    WALL_TIME = "wall_time"
    CPU_TIME = "cpu_time"
    OUTPUT = "output"
    CANCELLED = "cancelled"


class RunFacts(msgspec.Struct, frozen=True, kw_only=True):
    stopped_for: StopReason | None
    stdout_truncated: bool
    stderr_truncated: bool
    out_of_memory: bool
    cpu_time_ms: int
    log: JailLog


def decide(limits: Limits, facts: RunFacts) -> Verdict:
    if facts.stdout_truncated or facts.stderr_truncated or facts.stopped_for is StopReason.OUTPUT:
        return Verdict.OUTPUT_LIMIT_EXCEEDED
    if facts.out_of_memory:
        return Verdict.MEMORY_LIMIT_EXCEEDED
    if (
        facts.stopped_for in (StopReason.WALL_TIME, StopReason.CPU_TIME)
        or facts.cpu_time_ms > limits.cpu_time_ms
        or facts.log.time_limit
    ):
        return Verdict.TIME_LIMIT_EXCEEDED
    if facts.log.signal is None and facts.log.exit_code == 0:
        return Verdict.OK
    return Verdict.RUNTIME_ERROR


def nsjail_failure(facts: RunFacts) -> str | None:
    """NsJail's own failure to run the program (a SandboxError, never a verdict), if any."""
    if facts.stopped_for is not None:
        return None
    if facts.log.errors:
        return "; ".join(facts.log.errors)
    if not facts.log.ended:
        return "NsJail ended without reporting how the program ended"
    return None
