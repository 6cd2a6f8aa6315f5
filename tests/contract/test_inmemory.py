"""The contract suites bound to the in-memory adapters and the system clock and ids."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from corral_contract.access import AccessContract, AccessHarness
from corral_contract.clock import ManualClock
from corral_contract.events import JobEventsContract, JobInputContract, StreamsHarness
from corral_contract.identity import ClockContract, IdSourceContract
from corral_contract.queue import QUEUE_LIMIT, JobQueueContract, QueueHarness
from corral_contract.runtimes import CatalogHarness, RuntimeCatalogContract
from corral_contract.sandbox import SandboxContract
from corral_contract.workers import RegistryHarness, WorkerRegistryContract
from corral_core.ports import Runtime
from corral_memory.access import (
    InMemoryAdmittingQueue,
    InMemoryIdempotencyRecords,
    InMemoryKeyStore,
    InMemoryUsageLedger,
)
from corral_memory.events import InMemoryJobEvents, InMemoryJobInput
from corral_memory.jobs import (
    InMemoryCancelNotices,
    InMemoryJobQueue,
    InMemoryJobs,
    InMemoryJobStore,
    InMemoryWorkerRegistry,
)
from corral_memory.runtimes import InMemoryRuntimeCatalog
from corral_memory.sandbox import InMemorySandbox
from corral_system.clock import SystemClock
from corral_system.ids import RandomIds


class TestInMemoryJobQueue(JobQueueContract):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[QueueHarness]:
        clock = ManualClock()
        state = InMemoryJobs(clock, max_unfinished=QUEUE_LIMIT)
        queue = InMemoryJobQueue(state)
        yield QueueHarness(
            queue, InMemoryJobStore(state), clock, clock.elapse, queue, canceller=queue, notices=InMemoryCancelNotices(state), eraser=queue
        )


def _in_memory_streams() -> StreamsHarness:
    state = InMemoryJobs(ManualClock())
    return StreamsHarness(InMemoryJobEvents(state), InMemoryJobInput(state))


class TestInMemoryJobEvents(JobEventsContract):
    @pytest.fixture
    def streams(self) -> StreamsHarness:
        return _in_memory_streams()


class TestInMemoryJobInput(JobInputContract):
    @pytest.fixture
    def streams(self) -> StreamsHarness:
        return _in_memory_streams()


class TestInMemoryAccess(AccessContract):
    @pytest.fixture
    def access(self) -> AccessHarness:
        clock = ManualClock()
        state = InMemoryJobs(clock, max_unfinished=QUEUE_LIMIT)
        keys, usage, queue = InMemoryKeyStore(clock), InMemoryUsageLedger(state), InMemoryJobQueue(state)
        return AccessHarness(
            keys,
            usage,
            InMemoryIdempotencyRecords(clock),
            queue,
            clock,
            clock.elapse,
            InMemoryAdmittingQueue(keys, usage, queue),
            queue,
            queue,
        )


class TestInMemoryWorkerRegistry(WorkerRegistryContract):
    @pytest.fixture
    def registry(self) -> RegistryHarness:
        clock = ManualClock()
        return RegistryHarness(InMemoryWorkerRegistry(clock), clock, clock.elapse)


class TestInMemoryRuntimeCatalog(RuntimeCatalogContract):
    @pytest.fixture
    def catalog(self) -> CatalogHarness:
        catalog = InMemoryRuntimeCatalog()

        async def offer(runtimes: Sequence[Runtime]) -> None:
            catalog.offer(runtimes)

        return CatalogHarness(catalog, offer)


class TestInMemorySandbox(SandboxContract):
    @pytest.fixture
    def sandbox(self) -> InMemorySandbox:
        return InMemorySandbox()


class TestSystemClock(ClockContract):
    @pytest.fixture
    def clock(self) -> SystemClock:
        return SystemClock()


class TestRandomIds(IdSourceContract):
    @pytest.fixture
    def ids(self) -> RandomIds:
        return RandomIds()
