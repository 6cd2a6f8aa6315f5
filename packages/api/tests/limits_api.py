"""The API over in-memory adapters with an in-process worker, for the limits fuzz suites
(test_limits_fuzz*.py; conftest.py makes it their `limits_api` fixture)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from litestar.testing import AsyncTestClient

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_core.job import Limits
from corral_core.policy import LIMIT_FIELDS
from corral_core.ports import Runtime, WorkerInfo
from corral_core.usecases import RunNextJob
from corral_memory.container import InMemoryStorage
from corral_memory.jobs import InMemoryJobQueue, InMemoryJobs
from corral_memory.sandbox import InMemorySandbox
from corral_redis import RedisSettings
from corral_system.clock import SystemClock

# The ways a limit's value goes wrong in JSON; with None, each route's own "at the maximum"
# and "past it" are added by the suite.
HOSTILE_VALUES: tuple[Any, ...] = (0, -1, 1, 1.5, "5", "1; id", True, [], {}, 2**63, 2**64, -(2**63) - 1, 1e308)
# Bodies json= cannot send: the value spelled raw.
RAW_VALUES = ("NaN", "Infinity", "-Infinity", "1e400")


@dataclass
class LimitsApi:
    client: AsyncTestClient[Any]
    state: InMemoryJobs
    settings: ApiSettings

    def stored_limits(self) -> list[Limits]:
        return [job.request.limits for job in self.state.records.values()]

    def assert_every_stored_job_within_the_maxima(self) -> None:
        maxima = self.settings.limit_policy().maxima
        for limits in self.stored_limits():
            for name in LIMIT_FIELDS:
                value = getattr(limits, name)
                assert isinstance(value, int) and not isinstance(value, bool), (name, value)
                assert 1 <= value <= getattr(maxima, name), f"a stored job has {name}={value}"


async def _worker(state: InMemoryJobs) -> None:
    run_next = RunNextJob(InMemoryJobQueue(state), InMemorySandbox(), state.clock)
    while True:
        await run_next("test-worker", 1)


async def serving() -> AsyncIterator[LimitsApi]:
    clock = SystemClock()
    storage = InMemoryStorage(clock=clock, client=InMemoryJobs(clock, max_unfinished=10_000))
    state = storage.client()
    await storage.registry().heartbeat(WorkerInfo("test-worker", clock.now(), (Runtime("python", "3.11.2", "main.py"),)), 60_000)
    settings = ApiSettings(auth=False, max_wait_s=5)
    container = ApiContainer(settings=settings, redis_settings=RedisSettings(max_unfinished=10_000))
    container.storage.override(storage)
    async with AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000") as client:
        running = client.blocking_portal.start_task_soon(_worker, state)
        yield LimitsApi(client, state, settings)
        running.cancel()
