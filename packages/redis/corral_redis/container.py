"""The Redis adapters wired once, for every deployable that keeps its jobs in Redis.

A deployable includes it with `providers.Container(RedisContainer, settings=…, clock=…)`.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from corral_core.ports import Clock
from corral_redis.connection import connect_to
from corral_redis.keys import RedisAdmittingQueue, RedisIdempotencyRecords, RedisKeyStore, RedisUsageLedger
from corral_redis.queue import RedisJobQueue
from corral_redis.settings import RedisSettings
from corral_redis.store import RedisJobStore
from corral_redis.workers import RedisWorkerRegistry


class RedisContainer(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=RedisSettings)
    clock: providers.Dependency[Clock] = providers.Dependency()
    # Shown by Redis's CLIENT LIST for every connection: which deployable holds it.
    client_name = providers.Object("corral")

    client = providers.Singleton(connect_to, settings, client_name=client_name)
    queue = providers.Singleton(RedisJobQueue, client, clock, settings)
    store = providers.Singleton(RedisJobStore, client, settings)
    registry = providers.Singleton(RedisWorkerRegistry, client, settings)
    key_store = providers.Singleton(RedisKeyStore, client, settings)
    usage = providers.Singleton(RedisUsageLedger, client, settings)
    admitting = providers.Singleton(RedisAdmittingQueue, client, queue, settings)
    idempotency = providers.Singleton(RedisIdempotencyRecords, client, settings)
