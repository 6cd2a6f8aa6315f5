"""Verdicts from evidence: each limit by its own sign, in a fixed order when several apply."""

from __future__ import annotations

import msgspec
import pytest

from corral_core.job import Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_sandbox.nsjail_log import JailLog
from corral_sandbox.verdict import RunFacts, StopReason, decide, nsjail_failure

# The CPU time is the one limit a verdict weighs against a number; the cases sit either side of it.
LIMITS = msgspec.structs.replace(DEFAULT_LIMIT_POLICY.defaults, cpu_time_ms=1_000)
EXITED_0 = JailLog(exit_code=0)
KILLED = JailLog(signal=9)


def facts(**changes: object) -> RunFacts:
    fields: dict[str, object] = {
        "stopped_for": None,
        "stdout_truncated": False,
        "stderr_truncated": False,
        "out_of_memory": False,
        "cpu_time_ms": 10,
        "log": EXITED_0,
    }
    fields.update(changes)
    return RunFacts(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("evidence", "verdict"),
    [
        ({}, Verdict.OK),
        ({"log": JailLog(exit_code=3)}, Verdict.RUNTIME_ERROR),
        # exit(137) is the program's own status, not a kill: nothing else says a limit was hit.
        ({"log": JailLog(exit_code=137)}, Verdict.RUNTIME_ERROR),
        ({"log": JailLog(signal=31)}, Verdict.RUNTIME_ERROR),
        ({"log": KILLED}, Verdict.RUNTIME_ERROR),
        ({"log": KILLED, "out_of_memory": True}, Verdict.MEMORY_LIMIT_EXCEEDED),
        ({"out_of_memory": True}, Verdict.MEMORY_LIMIT_EXCEEDED),
        ({"log": KILLED, "cpu_time_ms": 1_001}, Verdict.TIME_LIMIT_EXCEEDED),
        ({"cpu_time_ms": 1_001}, Verdict.TIME_LIMIT_EXCEEDED),
        ({"cpu_time_ms": 1_000}, Verdict.OK),
        ({"log": KILLED, "stopped_for": StopReason.WALL_TIME}, Verdict.TIME_LIMIT_EXCEEDED),
        ({"log": KILLED, "stopped_for": StopReason.CPU_TIME}, Verdict.TIME_LIMIT_EXCEEDED),
        ({"log": JailLog(signal=9, time_limit=True)}, Verdict.TIME_LIMIT_EXCEEDED),
        ({"stdout_truncated": True}, Verdict.OUTPUT_LIMIT_EXCEEDED),
        ({"stderr_truncated": True, "log": JailLog(exit_code=1)}, Verdict.OUTPUT_LIMIT_EXCEEDED),
        ({"stdout_truncated": True, "out_of_memory": True}, Verdict.OUTPUT_LIMIT_EXCEEDED),
        ({"out_of_memory": True, "stopped_for": StopReason.WALL_TIME}, Verdict.MEMORY_LIMIT_EXCEEDED),
    ],
)
def test_the_verdict_follows_the_evidence(evidence: dict[str, object], verdict: Verdict) -> None:
    assert decide(LIMITS, facts(**evidence)) is verdict


def test_nsjail_errors_are_a_failure_of_the_sandbox_not_a_verdict() -> None:
    failed = facts(log=JailLog(signal=9, errors=("[E][...] Couldn't launch the child process",)))
    assert nsjail_failure(failed) == "[E][...] Couldn't launch the child process"
    assert nsjail_failure(facts(log=JailLog())) is not None
    assert nsjail_failure(facts()) is None


def test_a_jail_the_adapter_stopped_is_judged_whatever_nsjail_logged() -> None:
    assert nsjail_failure(facts(log=JailLog(), stopped_for=StopReason.WALL_TIME)) is None
