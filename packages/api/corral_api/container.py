"""The API's composition root: the use cases wired to the Redis adapters, and the services the
HTTP routes call (corral_http.services).

Its settings come from corral_system.config (cli.py). Tests swap the storage in one line,
`container.storage.override(InMemoryStorage(clock=...))`; nothing else changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress

from dependency_injector import containers, providers
from prometheus_client import CollectorRegistry

from corral_api.deliveries import CallbackSender, DeliverCallbacks, DeliveryMetrics, delivering_while_serving
from corral_api.readiness import RedisReadiness
from corral_api.runtimes import RegistryRuntimeCatalog
from corral_api.settings import ApiSettings
from corral_core.access import AdmittingQueue, IdempotencyRecords, KeyStore, UsageLedger
from corral_core.callbacks import CallbackDeliveries
from corral_core.events import JobEvents, JobInput
from corral_core.ports import JobQueue, JobStore, WorkerRegistry
from corral_core.submission import SubmitJob, SubmitJobOnce
from corral_core.usecases import CancelJob, DeleteJob, GetJob
from corral_http.live import LiveStreams
from corral_http.longpolls import LongPolls
from corral_http.services import JobRoutes, ServiceRoutes
from corral_http.telemetry import ApiMetrics
from corral_redis import Durability, RedisContainer, RedisSettings
from corral_system.clock import SystemClock
from corral_system.ids import RandomIds


async def held_while_serving(catalog: RegistryRuntimeCatalog, *storage: object) -> AsyncIterator[None]:
    """What the API holds while it serves: the runtime catalog's refresher, and the storage's
    connections (the notification listeners of the store, the events and the input, then the
    Redis client they use), closed at the end in that order."""
    refresher = asyncio.get_running_loop().create_task(catalog.keep_fresh(), name="corral runtime catalog")
    try:
        yield
    finally:
        refresher.cancel()
        with suppress(asyncio.CancelledError):
            await refresher
        for instance in storage:
            if closer := getattr(instance, "aclose", None):
                await closer()


class ApiContainer(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=ApiSettings)
    redis_settings = providers.Dependency(instance_of=RedisSettings)
    # What the start check found (corral_redis.require_durable_redis); /readyz reports it.
    durability = providers.Dependency(instance_of=Durability, default=Durability())

    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(RandomIds)

    storage = providers.Container(RedisContainer, settings=redis_settings, clock=clock, client_name="corral-api")
    # Typed by port because a sub-container's providers are Any to mypy.
    queue: providers.Provider[JobQueue] = storage.queue
    store: providers.Provider[JobStore] = storage.store
    registry: providers.Provider[WorkerRegistry] = storage.registry
    key_store: providers.Provider[KeyStore] = storage.key_store
    usage: providers.Provider[UsageLedger] = storage.usage
    admitting: providers.Provider[AdmittingQueue] = storage.admitting
    idempotency: providers.Provider[IdempotencyRecords] = storage.idempotency
    events: providers.Provider[JobEvents] = storage.events
    job_input: providers.Provider[JobInput] = storage.job_input
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
    submit_job_once = providers.Singleton(SubmitJobOnce, submit_job, store, idempotency, settings.provided.idempotency_ttl_s)
    get_job = providers.Singleton(GetJob, store)
    cancel_job = providers.Singleton(CancelJob, store, queue, clock)
    delete_job = providers.Singleton(DeleteJob, store, queue)
    long_polls = providers.Singleton(LongPolls, settings.provided.max_waiters)
    streams = providers.Singleton(LiveStreams, settings.provided.max_streams, settings.provided.key_max_streams)
    readiness = providers.Singleton(RedisReadiness, registry, durability)

    # In the served API, samples go to the multiprocess files (corral_system.metrics) and this
    # registry stays empty; tests read it.
    metrics_registry = providers.Singleton(CollectorRegistry)
    metrics = providers.Singleton(ApiMetrics, metrics_registry)

    http_options = settings.provided.http_options.call(redis_settings.provided.max_unfinished)
    job_routes = providers.Singleton(
        JobRoutes,
        submit=submit_job,
        submit_once=submit_job_once,
        get=get_job,
        cancel=cancel_job,
        delete=delete_job,
        store=store,
        runtimes=runtimes,
        long_polls=long_polls,
        events=events,
        job_input=job_input,
        streams=streams,
        metrics=metrics,
        options=http_options,
    )
    service_routes = providers.Singleton(
        ServiceRoutes, registry=registry, readiness=readiness, queue_gauge=queue, metrics=metrics
    )

    serving = providers.Resource(held_while_serving, runtimes, store, events, job_input, storage.client)

    # Callbacks: the loop that delivers them, running while the API serves (deliveries.py).
    delivery_options = settings.provided.delivery_options.call()
    deliveries: providers.Provider[CallbackDeliveries] = storage.deliveries
    callback_sender = providers.Singleton(CallbackSender, delivery_options.provided.allowed_hosts)
    delivery_metrics = providers.Singleton(DeliveryMetrics, metrics_registry)
    deliver_callbacks = providers.Singleton(
        DeliverCallbacks, deliveries, store, key_store, callback_sender, clock, delivery_options, delivery_metrics
    )
    delivering = providers.Resource(delivering_while_serving, deliver_callbacks, callback_sender, serving)
