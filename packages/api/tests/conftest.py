"""The app over in-memory adapters with a worker loop in process, as the compatible APIs' tests
(test_compat.py, test_piston_v2.py) drive it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_core.ports import Runtime, WorkerInfo
from corral_core.usecases import RunNextJob
from corral_memory.container import InMemoryStorage
from corral_memory.jobs import InMemoryJobQueue, InMemoryJobs
from corral_memory.sandbox import InMemorySandbox
from corral_redis import RedisSettings
from corral_system.clock import SystemClock


async def _worker(state: InMemoryJobs) -> None:
    run_next = RunNextJob(InMemoryJobQueue(state), InMemorySandbox(), state.clock)
    while True:
        await run_next("test-worker", 1)


@pytest.fixture
async def compat_client() -> AsyncIterator[AsyncTestClient[Any]]:
    """Keys off, python offered, each job run by the in-memory sandbox as it is queued."""
    clock = SystemClock()
    storage = InMemoryStorage(clock=clock, client=InMemoryJobs(clock, max_unfinished=1000))
    state = storage.client()
    await storage.registry().heartbeat(WorkerInfo("test-worker", clock.now(), (Runtime("python", "3.11.2", "main.py"),)), 60_000)
    container = ApiContainer(settings=ApiSettings(auth=False, max_wait_s=5), redis_settings=RedisSettings(max_unfinished=1000))
    container.storage.override(storage)
    async with AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000") as test_client:
        running = test_client.blocking_portal.start_task_soon(_worker, state)
        yield test_client
        running.cancel()
