"""The API's runtime catalog: the runtimes the live workers announce in their heartbeats.

Read from the worker registry at most once a second: every submission checks its language,
and the answer only changes when workers come or go. While the app runs, `keep_fresh` reads it
again every half second in the background, so that no submission waits for that read (a wait of
one more round trip to Redis, for every submission that came a second or more after the last
one); a list older than a second is still read on the spot, as when that reader is stopped or
Redis was unreachable for it.

An empty list is never answered from the cache: it means no worker is known, and then every
language is accepted (core's check_language). A worker's first heartbeat would otherwise take
up to half a second to reach submissions, while /readyz, which reads the registry itself,
already says ready: in that window a job for a language no worker offers was accepted, where a
moment later it is refused. Reading on the spot costs a round trip only while no worker is live.
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
