"""The in-memory storage adapters wired as RedisContainer wires the Redis ones, provider for
provider: a test swaps a deployable's storage in one line,
`container.storage.override(InMemoryStorage(clock=clock))`."""

from __future__ import annotations

from dependency_injector import containers, providers

from corral_core.ports import Clock
from corral_memory.access import (
    InMemoryAdmittingQueue,
    InMemoryIdempotencyRecords,
    InMemoryKeyStore,
    InMemoryUsageLedger,
)
from corral_memory.callbacks import InMemoryCallbackDeliveries
from corral_memory.events import InMemoryJobEvents, InMemoryJobInput
from corral_memory.jobs import (
    InMemoryCancelNotices,
    InMemoryJobQueue,
    InMemoryJobs,
    InMemoryJobStore,
    InMemoryWorkerRegistry,
)


class InMemoryStorage(containers.DeclarativeContainer):
    """Its providers bear RedisContainer's names only, as dependency-injector overrides a
    container by name."""

    clock: providers.Dependency[Clock] = providers.Dependency()

    # What every adapter here shares, as the Redis ones share their client: the jobs' state.
    client = providers.Singleton(InMemoryJobs, clock)
    queue = providers.Singleton(InMemoryJobQueue, client)
    store = providers.Singleton(InMemoryJobStore, client)
    cancel_notices = providers.Singleton(InMemoryCancelNotices, client)
    registry = providers.Singleton(InMemoryWorkerRegistry, clock)
    key_store = providers.Singleton(InMemoryKeyStore, clock)
    usage = providers.Singleton(InMemoryUsageLedger, client)
    admitting = providers.Singleton(InMemoryAdmittingQueue, key_store, usage, queue)
    idempotency = providers.Singleton(InMemoryIdempotencyRecords, clock)
    events = providers.Singleton(InMemoryJobEvents, client)
    job_input = providers.Singleton(InMemoryJobInput, client)
    deliveries = providers.Singleton(InMemoryCallbackDeliveries, client)
