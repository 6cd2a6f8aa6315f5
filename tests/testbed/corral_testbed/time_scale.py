"""One knob for slow test hosts: CORRAL_TEST_TIME_SCALE multiplies the time tests allow.

The cgroup v2 test host is a VM under software emulation (tests/vm), where a Python start is
about 40 times slower and CPU-bound code about 8 times. There the tests give jobs longer time
limits and wait longer for them; what they assert about a verdict stays the same. Default 1.
"""

from __future__ import annotations

import os

import msgspec

from corral_core.job import RunRequest, RunResult
from corral_core.ports import RunContext, Runtime, Sandbox

ENV = "CORRAL_TEST_TIME_SCALE"


def _read_scale() -> float:
    text = os.environ.get(ENV, "").strip()
    if not text:
        return 1.0
    try:
        scale = float(text)
    except ValueError:
        raise ValueError(f"{ENV} must be a number, got {text!r}") from None
    if not 1 <= scale <= 100:
        raise ValueError(f"{ENV} must be between 1 and 100, got {scale}")
    return scale


TIME_SCALE = _read_scale()


def scaled(ms: int) -> int:
    """A time limit or bound in milliseconds, stretched for this host."""
    return round(ms * TIME_SCALE)


def scaled_s(ms: int) -> float:
    """The same bound in seconds, for sleeps and timeouts."""
    return ms * TIME_SCALE / 1000


class TimeScaledSandbox:
    """A sandbox whose every run gets its time limits stretched by TIME_SCALE.

    For suites that pass limits but assert only verdicts and outputs (the Sandbox contract):
    binding the contract to this instead of the sandbox itself leaves the suite unchanged.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def runtimes(self) -> list[Runtime]:
        return self._sandbox.runtimes()

    async def run(self, request: RunRequest, context: RunContext = RunContext()) -> RunResult:
        limits = msgspec.structs.replace(
            request.limits,
            cpu_time_ms=scaled(request.limits.cpu_time_ms),
            wall_time_ms=scaled(request.limits.wall_time_ms),
        )
        return await self._sandbox.run(msgspec.structs.replace(request, limits=limits), context)
