"""Readiness of a Redis-backed service: Redis answers, a worker is live, and what the start
check found about Redis' durability."""

from __future__ import annotations

from corral_core.ports import ReadinessReport, StorageUnavailable, WorkerRegistry
from corral_redis import Durability


class RedisReadiness:
    def __init__(self, registry: WorkerRegistry, durability: Durability) -> None:
        self._registry = registry
        self._durability = durability

    async def check(self) -> ReadinessReport:
        fsync, warnings = self._durability.appendfsync, self._durability.accepted_risks()
        try:
            live = len(await self._registry.live_workers())
        except StorageUnavailable as error:
            return ReadinessReport(storage=False, live_workers=0, problems=[f"redis: {error}"], durability=fsync, warnings=warnings)
        problems = [] if live else ["no live worker"]
        return ReadinessReport(storage=True, live_workers=live, problems=problems, durability=fsync, warnings=warnings)
