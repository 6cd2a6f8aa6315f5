"""The worker's container, built from the loader's settings with in-memory adapters for Redis
and the sandbox: no root, no NsJail, no Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from dependency_injector import providers

from corral_contract.queue import new_job
from corral_core.events import EventKind, JobEvent
from corral_memory.container import InMemoryStorage
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
    storage = InMemoryStorage(clock=SystemClock())
    container.storage.override(storage)
    container.sandbox.override(providers.Object(InMemorySandbox()))
    registry = storage.registry()

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


class Opened:
    """Stands for what the worker opens: says when it is warmed and closed."""

    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events

    def keep_warm(self) -> None:
        self.events.append(f"{self.name} warmed")

    async def aclose(self) -> None:
        self.events.append(f"{self.name} closed")


async def test_the_resources_open_and_close_what_the_worker_uses_the_redis_client_last() -> None:
    settings = load_settings(SECTIONS, {"CORRAL_REDIS_URL": "redis://nowhere:1/0"})
    container = WorkerContainer(
        settings=settings.get(WorkerSettings), redis_settings=settings.get(RedisSettings), worker_id="test-worker"
    )
    events: list[str] = []
    container.storage.client.override(providers.Object(Opened("redis", events)))
    container.cancel_notices.override(providers.Object(Opened("cancel notices", events)))
    container.sandbox.override(providers.Object(Opened("sandbox", events)))

    opening = container.init_resources()
    assert opening is not None
    await opening
    assert events == ["sandbox warmed"]
    closing = container.shutdown_resources()
    assert closing is not None
    await closing
    assert sorted(events[1:3]) == ["cancel notices closed", "sandbox closed"]
    assert events[3:] == ["redis closed"]


class RecordedEvents:
    def __init__(self) -> None:
        self.appended: list[tuple[str, EventKind, str]] = []

    async def append(self, job_id: str, events: Sequence[tuple[EventKind, str]]) -> None:
        self.appended.extend((job_id, kind, data) for kind, data in events)

    async def read(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[JobEvent]:
        raise NotImplementedError


async def test_the_worker_appends_its_jobs_events_to_the_storages_events() -> None:
    settings = load_settings(SECTIONS, {"CORRAL_REDIS_URL": "redis://nowhere:1/0"})
    container = WorkerContainer(
        settings=settings.get(WorkerSettings), redis_settings=settings.get(RedisSettings), worker_id="test-worker"
    )
    clock = SystemClock()
    storage = InMemoryStorage(clock=clock)
    container.storage.override(storage)
    container.sandbox.override(providers.Object(InMemorySandbox()))
    container.events()  # read from the storage: resolves whether it has events or not
    events = RecordedEvents()
    container.events.override(providers.Object(events))

    await storage.queue().submit(new_job(clock, "j1", code="print('hi')"))
    done = await container.run_next_job()("test-worker", 1)
    assert done is not None and done.id == "j1"
    assert events.appended == [
        ("j1", EventKind.STATUS, "RUNNING"),
        ("j1", EventKind.STDOUT, "hi\n"),
        ("j1", EventKind.STATUS, "COMPLETED"),
        ("j1", EventKind.RESULT, ""),
    ]
