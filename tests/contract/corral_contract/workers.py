"""The WorkerRegistry contract. Bind it with a fixture `registry` yielding a `RegistryHarness`
whose `elapse(ms)` makes that much time pass for heartbeats and duties (see corral_contract.queue
for how each adapter does that); `clock` stamps the WorkerInfo the suite sends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from corral_contract.clock import ManualClock
from corral_core.ports import Runtime, WorkerInfo, WorkerRegistry


@dataclass
class RegistryHarness:
    registry: WorkerRegistry
    clock: ManualClock
    elapse: Callable[[int], Awaitable[None]]


class WorkerRegistryContract:
    @pytest.fixture
    def registry(self) -> RegistryHarness:
        raise NotImplementedError("bind the contract: provide a `registry` fixture")

    def info(self, harness: RegistryHarness, worker_id: str, version: str = "3.11.2") -> WorkerInfo:
        return WorkerInfo(
            worker_id=worker_id,
            seen_at=harness.clock.now(),
            runtimes=(Runtime("python", version),),
        )

    async def test_no_heartbeat_means_no_live_worker(self, registry: RegistryHarness) -> None:
        assert await registry.registry.live_workers() == []

    async def test_a_heartbeat_makes_a_worker_live(self, registry: RegistryHarness) -> None:
        info = self.info(registry, "w1")
        await registry.registry.heartbeat(info, ttl_ms=5_000)
        assert await registry.registry.live_workers() == [info]

    async def test_the_latest_heartbeat_replaces_the_last(self, registry: RegistryHarness) -> None:
        await registry.registry.heartbeat(self.info(registry, "w1"), ttl_ms=5_000)
        await registry.elapse(1_000)
        latest = self.info(registry, "w1", version="3.11.9")
        await registry.registry.heartbeat(latest, ttl_ms=5_000)
        assert await registry.registry.live_workers() == [latest]

    async def test_live_workers_come_sorted_by_id(self, registry: RegistryHarness) -> None:
        for worker_id in ("w3", "w1", "w2"):
            await registry.registry.heartbeat(self.info(registry, worker_id), ttl_ms=5_000)
        assert [w.worker_id for w in await registry.registry.live_workers()] == ["w1", "w2", "w3"]

    async def test_a_duty_has_one_holder_at_a_time(self, registry: RegistryHarness) -> None:
        assert await registry.registry.hold_duty("recovery", "w1", ttl_ms=10_000)
        assert not await registry.registry.hold_duty("recovery", "w2", ttl_ms=10_000)
        assert await registry.registry.hold_duty("other-duty", "w2", ttl_ms=10_000)

    async def test_a_holder_keeps_its_duty_by_renewing_it(self, registry: RegistryHarness) -> None:
        assert await registry.registry.hold_duty("recovery", "w1", ttl_ms=10_000)
        await registry.elapse(8_000)
        assert await registry.registry.hold_duty("recovery", "w1", ttl_ms=10_000)
        await registry.elapse(8_000)
        assert not await registry.registry.hold_duty("recovery", "w2", ttl_ms=10_000)

    async def test_a_lapsed_duty_passes_to_another_worker(self, registry: RegistryHarness) -> None:
        assert await registry.registry.hold_duty("recovery", "w1", ttl_ms=10_000)
        await registry.elapse(10_001)
        assert await registry.registry.hold_duty("recovery", "w2", ttl_ms=10_000)
        assert not await registry.registry.hold_duty("recovery", "w1", ttl_ms=10_000)

    async def test_a_silent_worker_drops_out_after_its_ttl(self, registry: RegistryHarness) -> None:
        await registry.registry.heartbeat(self.info(registry, "w1"), ttl_ms=5_000)
        await registry.registry.heartbeat(self.info(registry, "w2"), ttl_ms=20_000)
        await registry.elapse(5_001)
        assert [w.worker_id for w in await registry.registry.live_workers()] == ["w2"]
