"""The API's runtime catalog: the runtimes the live workers announce in their heartbeats.

Read from the worker registry at most once a second: every submission checks its language,
and the answer only changes when workers come or go.
"""

from __future__ import annotations

import time

from corral_core.ports import Runtime, WorkerRegistry


class RegistryRuntimeCatalog:
    def __init__(self, registry: WorkerRegistry, max_age_s: float = 1.0) -> None:
        self._registry = registry
        self._max_age_s = max_age_s
        self._runtimes: list[Runtime] = []
        self._read_at = float("-inf")

    async def offered(self) -> list[Runtime]:
        if time.monotonic() - self._read_at >= self._max_age_s:
            workers = await self._registry.live_workers()
            self._runtimes = [runtime for worker in workers for runtime in worker.runtimes]
            self._read_at = time.monotonic()
        return list(self._runtimes)
