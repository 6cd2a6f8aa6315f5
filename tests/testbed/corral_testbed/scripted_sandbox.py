"""A sandbox for the tests of what runs one (the use cases, the worker, the HTTP layer): each
run ends as the test's subclass says, whatever the program."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from corral_core.events import EventKind
from corral_core.job import RunRequest, RunResult
from corral_core.ports import Runtime

# What an `outcome` is handed besides the request: whom to tell the output as it comes, and the
# stdin fed while it runs (the Sandbox port's on_output and stdin_source).
OnOutput = Callable[[EventKind, bytes], None] | None
StdinSource = AsyncIterator[bytes] | None


class ScriptedSandbox:
    """Offers Python 3 (`runtimes` may say otherwise); every run ends as its `outcome` does."""

    def runtimes(self) -> list[Runtime]:
        return [Runtime("python", "3")]

    async def run(
        self,
        request: RunRequest,
        *,
        scope: str = "",
        on_output: OnOutput = None,
        stdin_source: StdinSource = None,
    ) -> RunResult:
        return await self.outcome(request, on_output, stdin_source)

    async def outcome(self, request: RunRequest, on_output: OnOutput, stdin_source: StdinSource, /) -> RunResult:
        raise NotImplementedError
