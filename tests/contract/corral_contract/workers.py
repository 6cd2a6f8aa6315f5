"""The WorkerRegistry contract. Bind it with a fixture `registry` yielding a `RegistryHarness`
whose registry reads time from `harness.clock`."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from corral_contract.clock import ManualClock
from corral_core.ports import Runtime, WorkerInfo, WorkerRegistry


@dataclass
class RegistryHarness:
    registry: WorkerRegistry
    clock: ManualClock


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
        registry.clock.advance(1_000)
        latest = self.info(registry, "w1", version="3.11.9")
        await registry.registry.heartbeat(latest, ttl_ms=5_000)
        assert await registry.registry.live_workers() == [latest]

    async def test_a_silent_worker_drops_out_after_its_ttl(self, registry: RegistryHarness) -> None:
        await registry.registry.heartbeat(self.info(registry, "w1"), ttl_ms=5_000)
        await registry.registry.heartbeat(self.info(registry, "w2"), ttl_ms=20_000)
        registry.clock.advance(5_001)
        assert [w.worker_id for w in await registry.registry.live_workers()] == ["w2"]
