"""The Redis adapters wired once, for every deployable that keeps its jobs in Redis.

A deployable includes it with `providers.Container(RedisContainer, settings=…, clock=…)`.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from corral_core.ports import Clock
from corral_redis.apikeys import RedisIdempotencyRecords, RedisKeyStore, RedisUsageLedger
from corral_redis.callbacks import RedisCallbackDeliveries
from corral_redis.connection import connect_to
from corral_redis.settings import RedisSettings
from corral_redis.shards import (
    make_admitting,
    make_cancel_notices,
    make_events,
    make_job_input,
    make_queue,
    make_store,
)
from corral_redis.workers import RedisWorkerRegistry


class RedisContainer(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=RedisSettings)
    clock: providers.Dependency[Clock] = providers.Dependency()
    # Shown by Redis's CLIENT LIST for every connection: which deployable holds it.
    client_name = providers.Object("corral")

    client = providers.Singleton(connect_to, settings, client_name=client_name)
    # One RedisJobQueue and RedisJobStore, or their shards (corral_redis.shards).
    queue = providers.Singleton(make_queue, client, clock, settings)
    store = providers.Singleton(make_store, client, settings)
    cancel_notices = providers.Singleton(make_cancel_notices, client, settings)
    registry = providers.Singleton(RedisWorkerRegistry, client, settings)
    key_store = providers.Singleton(RedisKeyStore, client, settings)
    usage = providers.Singleton(RedisUsageLedger, client, settings)
    # One script (ADMIT), or in steps on shards or with replicated submits.
    admitting = providers.Singleton(make_admitting, client, queue, settings)
    idempotency = providers.Singleton(RedisIdempotencyRecords, client, settings)
    # A running job's events and an interactive job's input, each beside the job (events.py).
    events = providers.Singleton(make_events, client, settings)
    job_input = providers.Singleton(make_job_input, client, settings)
    # The line of callbacks to deliver (its queue shards' lines as one).
    deliveries = providers.Singleton(RedisCallbackDeliveries, client, settings)
