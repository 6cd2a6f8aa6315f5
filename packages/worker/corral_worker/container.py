"""The worker's composition root: use cases wired to Redis and NsJail."""

from __future__ import annotations

from dependency_injector import containers, providers

from corral_core.usecases import RecoverAbandonedJobs, RunNextJob
from corral_redis import RedisJobQueue, RedisSettings, RedisWorkerRegistry, connect
from corral_sandbox import HostReport, NsJailSandbox, SandboxSettings
from corral_system.clock import SystemClock
from corral_worker.service import Worker
from corral_worker.settings import WorkerSettings


def sandbox_settings(settings: WorkerSettings) -> SandboxSettings:
    return SandboxSettings(
        nsjail_bin=settings.nsjail_bin or None,
        policy_dir=settings.nsjail_policy_dir or None,
        # The first of the range of ids (one per running job): see SandboxSettings.
        jail_uid_first=settings.jail_uid,
        jail_gid_first=settings.jail_gid,
        work_root=settings.work_root,
    )


class WorkerContainer(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=WorkerSettings)
    worker_id = providers.Dependency(instance_of=str)
    # What prepare_host found: the worker prepares its host before anything else is built.
    host = providers.Dependency(instance_of=HostReport)

    clock = providers.Singleton(SystemClock)
    redis = providers.Singleton(connect, settings.provided.redis_url)
    redis_settings = providers.Singleton(
        RedisSettings,
        max_unfinished=settings.provided.max_unfinished_jobs,
        finished_ttl_s=settings.provided.finished_job_ttl_s,
    )
    queue = providers.Singleton(RedisJobQueue, redis, clock, redis_settings)
    registry = providers.Singleton(RedisWorkerRegistry, redis, clock, redis_settings)
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
