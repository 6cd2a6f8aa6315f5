"""The worker's composition root: use cases wired to Redis and NsJail.

Its settings come from corral_system.config (cli.py). What the worker opens and closes are the
Resource providers below: `await container.init_resources()` before it serves,
`await container.shutdown_resources()` after. Tests swap the storage in one line,
`container.storage.override(InMemoryStorage(clock=...))`, and override `sandbox`, which leaves
`host` unused: no root, no NsJail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

from dependency_injector import containers, providers
from prometheus_client import CollectorRegistry

from corral_core.events import JobEvents, JobInput
from corral_core.usecases import RecoverAbandonedJobs, RunNextJob
from corral_redis import (
    RedisCancelNotices,
    RedisContainer,
    RedisJobQueue,
    RedisSettings,
    RedisWorkerRegistry,
    ShardedCancelNotices,
)
from corral_sandbox import HostReport, NsJailSandbox
from corral_system.clock import SystemClock
from corral_worker.service import Worker
from corral_worker.settings import WorkerSettings
from corral_worker.telemetry import InstrumentedJobQueue, InstrumentedWorkerRegistry, TimedSandbox, WorkerMetrics


class Closable(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=Closable)


async def closing(opened: C, *needs: object) -> AsyncIterator[C]:
    """`opened` as a resource, closed when the container shuts its resources down. `needs` are
    the resources it uses: naming them is what makes dependency-injector close those after it."""
    try:
        yield opened
    finally:
        await opened.aclose()


async def warm(sandbox: NsJailSandbox) -> AsyncIterator[NsJailSandbox]:
    """The sandbox keeping its warm jails until the container shuts its resources down."""
    sandbox.keep_warm()
    try:
        yield sandbox
    finally:
        await sandbox.aclose()


def storage_port(storage: containers.Container, name: str) -> Any:
    """The storage container's provider `name`, provided; None when that storage has none.

    For ports a storage may not offer yet (its job events, its jobs' input): a worker over such
    a storage runs its jobs as ever, telling nothing while they run."""
    provider = getattr(storage, name, None)
    return None if provider is None else provider()


def warm_slots(concurrency: int, warm_jails: bool) -> int:
    """One warm jail per job slot (per runtime that can be warmed), unless [sandbox] warm_jails is off."""
    return concurrency if warm_jails else 0


class WorkerContainer(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=WorkerSettings)
    redis_settings = providers.Dependency(instance_of=RedisSettings)
    worker_id = providers.Dependency(instance_of=str)
    # What prepare_host found (with the [sandbox] settings in it): the worker prepares its host
    # before anything else is built.
    host = providers.Dependency(instance_of=HostReport)

    clock = providers.Singleton(SystemClock)
    storage = providers.Container(RedisContainer, settings=redis_settings, clock=clock, client_name="corral-worker")
    # Typed because a sub-container's providers are Any to mypy.
    queue: providers.Provider[RedisJobQueue] = storage.queue
    registry: providers.Provider[RedisWorkerRegistry] = storage.registry
    cancel_notices: providers.Provider[RedisCancelNotices | ShardedCancelNotices] = storage.cancel_notices
    # Read from the storage by name, not `storage.events`: a storage without them gives None.
    events: providers.Provider[JobEvents | None] = providers.Singleton(storage_port, storage, "events")
    job_input: providers.Provider[JobInput | None] = providers.Singleton(storage_port, storage, "job_input")
    sandbox = providers.Singleton(
        NsJailSandbox,
        host=host,
        warm_slots=providers.Callable(warm_slots, settings.provided.concurrency, host.provided.settings.warm_jails),
        fork_jails=host.provided.settings.fork_jails,
    )

    # What the worker opens: the Redis client its adapters share, closed after the cancel
    # notices' subscription that uses it, and the sandbox's warm jails.
    redis_lifetime = providers.Resource(closing, storage.client)
    cancel_notices_lifetime = providers.Resource(closing, cancel_notices, redis_lifetime)
    sandbox_lifetime = providers.Resource(warm, sandbox)

    # Metrics, job log lines and the process title, observed at the ports (telemetry.py). The
    # CLI sets `title` to show the slots' jobs in `ps`; the metrics live in the registry below
    # unless the process runs in multiprocess mode (corral_system.metrics).
    title: providers.Provider[Callable[[str], None] | None] = providers.Object(None)
    metrics_registry = providers.Singleton(CollectorRegistry)
    metrics = providers.Singleton(WorkerMetrics, metrics_registry, settings.provided.concurrency)
    observed_queue = providers.Singleton(InstrumentedJobQueue, queue, metrics, title)
    observed_registry = providers.Singleton(InstrumentedWorkerRegistry, registry, metrics)
    timed_sandbox = providers.Singleton(TimedSandbox, sandbox, metrics)

    run_next_job = providers.Singleton(
        RunNextJob,
        observed_queue,
        timed_sandbox,
        clock,
        lease_ms=settings.provided.lease_ms,
        renew_every_ms=settings.provided.renew_every_ms,
        cancels=cancel_notices,
        events=events,
        job_input=job_input,
        # Checked again at the worker: a record altered in Redis is refused, never run unbounded.
        limits=settings.provided.limits.policy.call(),
    )
    recover = providers.Singleton(RecoverAbandonedJobs, observed_queue, max_attempts=settings.provided.max_attempts)
    worker = providers.Singleton(
        Worker,
        worker_id,
        run_next_job,
        recover,
        observed_registry,
        clock,
        sandbox.provided.runtimes.call(),
        concurrency=settings.provided.concurrency,
        heartbeat_every_ms=settings.provided.heartbeat_every_ms,
        recover_every_ms=settings.provided.recover_every_ms,
        shutdown_grace_s=settings.provided.shutdown_grace_s,
    )
