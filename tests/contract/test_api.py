"""The contract suites bound to the API's own adapters: its runtime catalog, read from the
worker registry (here the in-memory one; the Redis registry passes the same registry suite)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from corral_api.runtimes import RegistryRuntimeCatalog
from corral_contract.clock import ManualClock
from corral_contract.runtimes import CatalogHarness, RuntimeCatalogContract
from corral_core.ports import Runtime, WorkerInfo
from corral_memory.jobs import InMemoryWorkerRegistry

HEARTBEAT_TTL_MS = 5_000


class TestRegistryRuntimeCatalog(RuntimeCatalogContract):
    @pytest.fixture
    def catalog(self) -> CatalogHarness:
        clock = ManualClock()
        registry = InMemoryWorkerRegistry(clock)
        # Uncached, so that what is offered is current by the next read, as the contract asks.
        catalog = RegistryRuntimeCatalog(registry, max_age_s=0)

        async def offer(runtimes: Sequence[Runtime]) -> None:
            # One worker per runtime; a worker that offers nothing more lets its heartbeat lapse.
            clock.advance(HEARTBEAT_TTL_MS + 1)
            for index, runtime in enumerate(runtimes):
                await registry.heartbeat(WorkerInfo(f"w{index}", clock.now(), (runtime,)), HEARTBEAT_TTL_MS)

        return CatalogHarness(catalog, offer)


class CountingRegistry(InMemoryWorkerRegistry):
    reads = 0

    async def live_workers(self) -> list[WorkerInfo]:
        self.reads += 1
        return await super().live_workers()


async def test_the_registry_is_read_at_most_once_per_max_age() -> None:
    registry = CountingRegistry(ManualClock())
    catalog = RegistryRuntimeCatalog(registry, max_age_s=60)
    for _ in range(3):
        assert await catalog.offered() == []
    assert registry.reads == 1
