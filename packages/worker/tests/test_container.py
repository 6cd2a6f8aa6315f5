"""The worker's container, built from the loader's settings with in-memory adapters for Redis
and the sandbox: no root, no NsJail, no Redis."""

from __future__ import annotations

import asyncio

from dependency_injector import providers

from corral_memory.jobs import InMemoryCancelNotices, InMemoryJobQueue, InMemoryJobs, InMemoryWorkerRegistry
from corral_memory.sandbox import InMemorySandbox
from corral_redis import RedisSettings
from corral_system.clock import SystemClock
from corral_system.config import load_settings
from corral_worker.container import WorkerContainer
from corral_worker.service import Worker
from corral_worker.settings import SECTIONS, WorkerSettings


async def test_the_container_resolves_the_worker_over_the_overridden_adapters() -> None:
    settings = load_settings(SECTIONS, {"CORRAL_CONCURRENCY": "3", "CORRAL_REDIS_URL": "redis://nowhere:1/0"})
    # `host` stays unset: only the NsJail sandbox, overridden here, would ask for it.
    container = WorkerContainer(
        settings=settings.get(WorkerSettings), redis_settings=settings.get(RedisSettings), worker_id="test-worker"
    )
    clock = SystemClock()
    state = InMemoryJobs(clock)
    registry = InMemoryWorkerRegistry(clock)
    container.queue.override(providers.Object(InMemoryJobQueue(state)))
    container.registry.override(providers.Object(registry))
    container.cancel_notices.override(providers.Object(InMemoryCancelNotices(state)))
    container.sandbox.override(providers.Object(InMemorySandbox()))

    worker = container.worker()
    assert isinstance(worker, Worker)
    assert container.settings().concurrency == 3
    # An empty in-memory queue answers at once; a Redis client would fail to connect.
    assert await container.run_next_job()("test-worker", 0.01) is None
    # The worker serves over the same adapters: its first heartbeat lands in the in-memory
    # registry, with the runtimes of the in-memory sandbox.
    serving = asyncio.create_task(worker.serve())
    async with asyncio.timeout(5):
        while not (live := await registry.live_workers()):
            await asyncio.sleep(0.01)
    worker.stop()
    await asyncio.wait_for(serving, 5)
    assert [info.worker_id for info in live] == ["test-worker"]
    assert [runtime.language for runtime in live[0].runtimes] == [r.language for r in InMemorySandbox().runtimes()]
