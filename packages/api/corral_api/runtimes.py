"""The API's runtime catalog: the runtimes the live workers announce in their heartbeats.

Every submission checks its language against it, and the answer only changes when workers come
or go: it is read from the worker registry at most once a `max_age_s`, and while the app runs
`keep_fresh` reads it again every half of that in the background, so that no submission waits
for the read. An empty list (no worker known, when every language is accepted) is never
answered from the cache, so that a first worker's languages count from its first heartbeat,
as /readyz does.
"""

from __future__ import annotations

import asyncio
import logging
import time

from corral_core.ports import Runtime, StorageUnavailable, WorkerRegistry

log = logging.getLogger(__name__)


class RegistryRuntimeCatalog:
    def __init__(self, registry: WorkerRegistry, max_age_s: float = 1.0) -> None:
        self._registry = registry
        self._max_age_s = max_age_s
        self._runtimes: list[Runtime] = []
        self._read_at = float("-inf")

    async def offered(self) -> list[Runtime]:
        if not self._runtimes or time.monotonic() - self._read_at >= self._max_age_s:
            await self._read()
        return list(self._runtimes)

    async def keep_fresh(self) -> None:
        """Read the registry now and every half max_age_s after, until cancelled."""
        failing = False
        while True:
            try:
                await self._read()
            except StorageUnavailable as error:
                if not failing:
                    log.warning("runtime catalog: the worker registry is unreachable, retrying: %s", error)
                failing = True
            except Exception:
                # A bug must not end the reader: submissions would then read the list themselves.
                log.exception("runtime catalog: reading the worker registry failed")
            else:
                if failing:
                    log.info("runtime catalog: the worker registry answers again")
                failing = False
            await asyncio.sleep(self._max_age_s / 2)

    async def _read(self) -> None:
        sent = time.monotonic()
        workers = await self._registry.live_workers()
        # Reads overlap (the refresher's and a submission's): one sent earlier keeps no say.
        if sent >= self._read_at:
            self._runtimes = [runtime for worker in workers for runtime in worker.runtimes]
            self._read_at = sent
