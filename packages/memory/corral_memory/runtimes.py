"""An in-memory runtime catalog: the runtimes on offer are whatever the test says they are."""

from __future__ import annotations

from collections.abc import Iterable

from corral_core.ports import Runtime


class InMemoryRuntimeCatalog:
    def __init__(self, runtimes: Iterable[Runtime] = ()) -> None:
        self.runtimes = list(runtimes)

    def offer(self, runtimes: Iterable[Runtime]) -> None:
        """From now on exactly these runtimes are offered (none: as if no worker were live)."""
        self.runtimes = list(runtimes)

    async def offered(self) -> list[Runtime]:
        return list(self.runtimes)
