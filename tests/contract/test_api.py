"""The contract suites bound to the API's own adapters: its runtime catalog, read from the
worker registry (here the in-memory one; the Redis registry passes the same registry suite)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import pytest

from corral_api.runtimes import RegistryRuntimeCatalog
from corral_contract.clock import ManualClock
from corral_contract.runtimes import CatalogHarness, RuntimeCatalogContract
from corral_core.ports import Runtime, StorageUnavailable, WorkerInfo
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


PYTHON = Runtime("python", "3.11.2", "main.py")
C = Runtime("c", "12.2", "main.c")


async def test_the_registry_is_read_at_most_once_per_max_age() -> None:
    clock = ManualClock()
    registry = CountingRegistry(clock)
    await registry.heartbeat(WorkerInfo("w", clock.now(), (PYTHON,)), HEARTBEAT_TTL_MS)
    catalog = RegistryRuntimeCatalog(registry, max_age_s=60)
    for _ in range(3):
        assert await catalog.offered() == [PYTHON]
    assert registry.reads == 1


async def test_with_no_worker_known_every_read_asks_the_registry_so_a_first_worker_counts_at_once() -> None:
    # /readyz reads the registry itself: once it says ready, a submission sees the same worker,
    # and a language that worker does not offer is refused, not accepted to wait.
    clock = ManualClock()
    registry = CountingRegistry(clock)
    catalog = RegistryRuntimeCatalog(registry, max_age_s=60)
    assert await catalog.offered() == []
    assert await catalog.offered() == []
    await registry.heartbeat(WorkerInfo("w", clock.now(), (PYTHON,)), HEARTBEAT_TTL_MS)
    assert await catalog.offered() == [PYTHON]
    assert registry.reads == 3


class GatedRegistry(InMemoryWorkerRegistry):
    """Its first read takes the registry as it is, then answers only once `gate` is set."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.gate = asyncio.Event()
        self._gated = True

    async def live_workers(self) -> list[WorkerInfo]:
        found = await super().live_workers()
        if self._gated:
            self._gated = False
            await self.gate.wait()
        return found


async def test_a_read_sent_before_a_later_one_does_not_overwrite_its_answer() -> None:
    clock = ManualClock()
    registry = GatedRegistry(clock)
    await registry.heartbeat(WorkerInfo("w1", clock.now(), (PYTHON,)), HEARTBEAT_TTL_MS)
    catalog = RegistryRuntimeCatalog(registry, max_age_s=60)
    early = asyncio.create_task(catalog.offered())
    await asyncio.sleep(0)
    await registry.heartbeat(WorkerInfo("w2", clock.now(), (C,)), HEARTBEAT_TTL_MS)
    # Nothing stored yet, so this reads too, and answers after the early read was sent.
    assert await catalog.offered() == [PYTHON, C]
    registry.gate.set()
    assert await early == [PYTHON, C]
    assert await catalog.offered() == [PYTHON, C]


class ReadersRegistry(InMemoryWorkerRegistry):
    """Records which task made each read; `down` makes it answer as an unreachable Redis does."""

    down = False

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.readers: list[asyncio.Task[object] | None] = []

    async def live_workers(self) -> list[WorkerInfo]:
        self.readers.append(asyncio.current_task())
        if self.down:
            raise StorageUnavailable("connection refused")
        return await super().live_workers()


async def test_while_keep_fresh_runs_no_submission_reads_the_registry_and_a_new_worker_is_seen() -> None:
    clock = ManualClock()
    registry = ReadersRegistry(clock)
    await registry.heartbeat(WorkerInfo("w1", clock.now(), (PYTHON,)), HEARTBEAT_TTL_MS)
    catalog = RegistryRuntimeCatalog(registry, max_age_s=2.0)
    refresher = asyncio.create_task(catalog.keep_fresh())
    try:
        await asyncio.sleep(0.1)
        await registry.heartbeat(WorkerInfo("w2", clock.now(), (C,)), HEARTBEAT_TTL_MS)
        seen = []
        end = time.monotonic() + 3.0  # one and a half of max_age_s: the list must have aged past it
        while time.monotonic() < end:
            seen.append(await catalog.offered())
            await asyncio.sleep(0.05)
        assert seen[0] == [PYTHON] and seen[-1] == [PYTHON, C]
        assert len(registry.readers) >= 3
        assert set(registry.readers) == {refresher}
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher


async def test_a_list_the_refresher_could_not_renew_is_read_on_the_spot_once_older_than_max_age() -> None:
    registry = ReadersRegistry(ManualClock())
    catalog = RegistryRuntimeCatalog(registry, max_age_s=0.2)
    refresher = asyncio.create_task(catalog.keep_fresh())
    try:
        await asyncio.sleep(0.05)
        registry.down = True
        await asyncio.sleep(0.3)
        with pytest.raises(StorageUnavailable):
            await catalog.offered()
        registry.down = False
        assert await catalog.offered() == []
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
