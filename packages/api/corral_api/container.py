"""The API's composition root: use cases wired to the Redis adapters.

Tests override `queue`, `store` and `registry` with in-memory adapters; nothing else changes.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from corral_api.runtimes import RegistryRuntimeCatalog
from corral_api.settings import ApiSettings
from corral_core.usecases import GetJob, SubmitJob
from corral_redis import RedisJobQueue, RedisJobStore, RedisSettings, RedisWorkerRegistry, connect
from corral_system.clock import SystemClock
from corral_system.ids import RandomIds


class ApiContainer(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=ApiSettings)

    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(RandomIds)

    redis = providers.Singleton(connect, settings.provided.redis_url)
    redis_settings = providers.Singleton(
        RedisSettings,
        max_unfinished=settings.provided.max_unfinished_jobs,
        finished_ttl_s=settings.provided.finished_job_ttl_s,
    )
    queue = providers.Singleton(RedisJobQueue, redis, clock, redis_settings)
    store = providers.Singleton(RedisJobStore, redis, redis_settings)
    registry = providers.Singleton(RedisWorkerRegistry, redis, clock, redis_settings)
    runtimes = providers.Singleton(RegistryRuntimeCatalog, registry)

    submit_job = providers.Singleton(
        SubmitJob,
        queue=queue,
        ids=ids,
        clock=clock,
        limits=settings.provided.limit_policy.call(),
        sizes=settings.provided.size_policy.call(),
        runtimes=runtimes,
    )
    get_job = providers.Singleton(GetJob, store)


async def close(container: ApiContainer) -> None:
    """Stop the store's notification listener and drop the Redis connections."""
    for instance in (container.store(), container.redis()):
        if closer := getattr(instance, "aclose", None):
            await closer()
