"""A sandbox for the tests of what runs one (the use cases, the worker, the HTTP layer): each
run ends as the test's subclass says, whatever the program."""

from __future__ import annotations

from corral_core.job import RunRequest, RunResult
from corral_core.ports import RunContext, Runtime


class ScriptedSandbox:
    """Offers Python 3 (`runtimes` may say otherwise); every run ends as its `outcome` does."""

    def runtimes(self) -> list[Runtime]:
        return [Runtime("python", "3")]

    async def run(self, request: RunRequest, context: RunContext = RunContext()) -> RunResult:
        return await self.outcome(request, context)

    async def outcome(self, request: RunRequest, context: RunContext, /) -> RunResult:
        raise NotImplementedError
