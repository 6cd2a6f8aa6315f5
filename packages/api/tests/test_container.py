"""The API's container, built from the loader's settings with in-memory adapters for Redis."""

from __future__ import annotations

import pytest

from corral_api.container import ApiContainer
from corral_api.settings import SECTIONS, ApiSettings
from corral_core.access import ANONYMOUS, Caller, Quotas
from corral_core.ports import Runtime, WorkerInfo
from corral_core.submission import JobRequest, SubmitJob
from corral_core.usecases import GetJob, JobNotFound
from corral_memory.container import InMemoryStorage
from corral_redis import RedisSettings
from corral_system.clock import SystemClock
from corral_system.config import load_settings


async def test_the_container_resolves_its_use_cases_over_the_overridden_adapters() -> None:
    settings = load_settings(SECTIONS, {"CORRAL_MAX_CODE_BYTES": "1000", "CORRAL_REDIS_URL": "redis://nowhere:1/0"})
    container = ApiContainer(settings=settings.get(ApiSettings), redis_settings=settings.get(RedisSettings))
    clock = SystemClock()
    storage = InMemoryStorage(clock=clock)
    container.storage.override(storage)
    registry = storage.registry()

    assert isinstance(container.submit_job(), SubmitJob)
    assert container.settings().max_code_bytes == 1000
    # Neither use case reaches for Redis (there is none at that address): the overrides took.
    with pytest.raises(JobNotFound):
        await container.get_job()(ANONYMOUS, "no-such-job")
    assert isinstance(container.get_job(), GetJob)
    await registry.heartbeat(WorkerInfo("w", clock.now(), (Runtime("python", "3.11.2", "main.py"),)), 60_000)
    assert [runtime.language for runtime in await container.runtimes().offered()] == ["python"]


async def test_one_override_puts_every_storage_port_of_the_api_in_memory() -> None:
    container = ApiContainer(settings=ApiSettings(), redis_settings=RedisSettings(url="redis://nowhere:1/0"))
    storage = InMemoryStorage(clock=SystemClock())
    container.storage.override(storage)
    for name in ("queue", "store", "registry", "key_store", "usage", "admitting", "idempotency"):
        assert getattr(container, name)() is getattr(storage, name)(), name
    # Its resources open and close without a connection to make.
    await container.init_resources()  # type: ignore[misc]
    await container.shutdown_resources()  # type: ignore[misc]


async def test_the_job_routes_act_for_the_caller_they_are_given() -> None:
    container = ApiContainer(settings=ApiSettings(auth=False), redis_settings=RedisSettings())
    storage = InMemoryStorage(clock=SystemClock())
    container.storage.override(storage)
    routes = container.job_routes()
    quotas = Quotas(max_unfinished=5, max_stored_bytes=10**9)
    alice, bob = Caller(key_id="alice", quotas=quotas), Caller(key_id="bob", quotas=quotas)
    job = (await routes.submit(alice, JobRequest(code="print(1)"))).job
    assert job.owner == "alice"
    assert (await routes.get(alice, job.id)).id == job.id
    with pytest.raises(JobNotFound):
        await routes.get(bob, job.id)
    with pytest.raises(JobNotFound):
        await routes.cancel(bob, job.id)
