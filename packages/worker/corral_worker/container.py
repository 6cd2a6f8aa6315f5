"""The worker's composition root: use cases wired to Redis and NsJail.

Its settings come from corral_system.config (cli.py). Tests override `queue`, `registry` and
`sandbox` with in-memory adapters, which leaves `host` unused: no root, no NsJail.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from corral_core.usecases import RecoverAbandonedJobs, RunNextJob
from corral_redis import RedisContainer, RedisJobQueue, RedisSettings, RedisWorkerRegistry
from corral_sandbox import HostReport, NsJailSandbox
from corral_system.clock import SkewedClock
from corral_worker.service import Worker
from corral_worker.settings import WorkerSettings


class WorkerContainer(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=WorkerSettings)
    redis_settings = providers.Dependency(instance_of=RedisSettings)
    worker_id = providers.Dependency(instance_of=str)
    # What prepare_host found (with the [sandbox] settings in it): the worker prepares its host
    # before anything else is built.
    host = providers.Dependency(instance_of=HostReport)

    clock = providers.Singleton(SkewedClock, settings.provided.clock_skew_s)
    storage = providers.Container(RedisContainer, settings=redis_settings, clock=clock, client_name="corral-worker")
    redis = storage.client
    # Typed because a sub-container's providers are Any to mypy.
    queue: providers.Provider[RedisJobQueue] = storage.queue
    registry: providers.Provider[RedisWorkerRegistry] = storage.registry
    sandbox = providers.Singleton(NsJailSandbox, host=host)

    run_next_job = providers.Singleton(
        RunNextJob,
        queue,
        sandbox,
        clock,
        lease_ms=settings.provided.lease_ms,
        renew_every_ms=settings.provided.renew_every_ms,
    )
    recover = providers.Singleton(RecoverAbandonedJobs, queue, max_attempts=settings.provided.max_attempts)
    worker = providers.Singleton(
        Worker,
        worker_id,
        run_next_job,
        recover,
        registry,
        clock,
        providers.Callable(lambda sandbox: sandbox.runtimes(), sandbox),
        concurrency=settings.provided.concurrency,
        heartbeat_every_ms=settings.provided.heartbeat_every_ms,
        recover_every_ms=settings.provided.recover_every_ms,
        shutdown_grace_s=settings.provided.shutdown_grace_s,
    )
