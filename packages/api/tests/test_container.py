"""The API's container, built from the loader's settings with in-memory adapters for Redis."""

from __future__ import annotations

import pytest
from dependency_injector import providers

from corral_api.container import ApiContainer
from corral_api.settings import SECTIONS, ApiSettings
from corral_core.ports import Runtime, WorkerInfo
from corral_core.usecases import GetJob, JobNotFound, SubmitJob
from corral_memory.jobs import InMemoryJobQueue, InMemoryJobs, InMemoryJobStore, InMemoryWorkerRegistry
from corral_redis import RedisSettings
from corral_system.clock import SystemClock
from corral_system.config import load_settings


async def test_the_container_resolves_its_use_cases_over_the_overridden_adapters() -> None:
    settings = load_settings(SECTIONS, {"CORRAL_MAX_CODE_BYTES": "1000", "CORRAL_REDIS_URL": "redis://nowhere:1/0"})
    container = ApiContainer(settings=settings.get(ApiSettings), redis_settings=settings.get(RedisSettings))
    clock = SystemClock()
    state = InMemoryJobs(clock)
    registry = InMemoryWorkerRegistry(clock)
    container.queue.override(providers.Object(InMemoryJobQueue(state)))
    container.store.override(providers.Object(InMemoryJobStore(state)))
    container.registry.override(providers.Object(registry))

    assert isinstance(container.submit_job(), SubmitJob)
    assert container.settings().max_code_bytes == 1000
    # Neither use case reaches for Redis (there is none at that address): the overrides took.
    with pytest.raises(JobNotFound):
        await container.get_job()("no-such-job")
    assert isinstance(container.get_job(), GetJob)
    await registry.heartbeat(WorkerInfo("w", clock.now(), (Runtime("python", "3.11.2", "main.py"),)), 60_000)
    assert [runtime.language for runtime in await container.runtimes().offered()] == ["python"]
