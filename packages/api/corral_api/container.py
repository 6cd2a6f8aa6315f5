"""The API's composition root: use cases wired to the Redis adapters.

Its settings come from corral_system.config (cli.py). Tests override `queue`, `store`,
`registry`, `key_store`, `usage`, `admitting` and `idempotency` with in-memory adapters; nothing
else changes.
"""

from __future__ import annotations

from dependency_injector import containers, providers
from prometheus_client import CollectorRegistry

from corral_api.longpolls import LongPolls
from corral_api.runtimes import RegistryRuntimeCatalog
from corral_api.settings import ApiSettings
from corral_api.telemetry import ApiMetrics
from corral_core.access import AdmittingQueue
from corral_core.usecases import CancelJob, GetJob, SubmitJob
from corral_redis import (
    Durability,
    RedisContainer,
    RedisIdempotencyRecords,
    RedisJobQueue,
    RedisJobStore,
    RedisKeyStore,
    RedisSettings,
    RedisUsageLedger,
    RedisWorkerRegistry,
)
from corral_system.clock import SystemClock
from corral_system.ids import RandomIds


class ApiContainer(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=ApiSettings)
    redis_settings = providers.Dependency(instance_of=RedisSettings)
    # What the start check found (corral_redis.require_durable_redis); /readyz reports it.
    durability = providers.Dependency(instance_of=Durability, default=Durability())

    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(RandomIds)

    storage = providers.Container(RedisContainer, settings=redis_settings, clock=clock, client_name="corral-api")
    redis = storage.client
    # Typed because a sub-container's providers are Any to mypy.
    queue: providers.Provider[RedisJobQueue] = storage.queue
    store: providers.Provider[RedisJobStore] = storage.store
    registry: providers.Provider[RedisWorkerRegistry] = storage.registry
    key_store: providers.Provider[RedisKeyStore] = storage.key_store
    usage: providers.Provider[RedisUsageLedger] = storage.usage
    admitting: providers.Provider[AdmittingQueue] = storage.admitting
    idempotency: providers.Provider[RedisIdempotencyRecords] = storage.idempotency
    runtimes = providers.Singleton(RegistryRuntimeCatalog, registry)

    submit_job = providers.Singleton(
        SubmitJob,
        queue=queue,
        ids=ids,
        clock=clock,
        limits=settings.provided.limit_policy.call(),
        sizes=settings.provided.size_policy.call(),
        runtimes=runtimes,
        usage=usage,
        admitting=admitting,
    )
    get_job = providers.Singleton(GetJob, store)
    cancel_job = providers.Singleton(CancelJob, store, queue, clock)
    long_polls = providers.Singleton(LongPolls, settings.provided.max_waiters)

    # In the served API, samples go to the multiprocess files (corral_system.metrics) and this
    # registry stays empty; tests read it.
    metrics_registry = providers.Singleton(CollectorRegistry)
    metrics = providers.Singleton(ApiMetrics, metrics_registry)


async def close(container: ApiContainer) -> None:
    """Stop the store's notification listener and drop the Redis connections."""
    for instance in (container.store(), container.redis()):
        if closer := getattr(instance, "aclose", None):
            await closer()
