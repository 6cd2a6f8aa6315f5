"""A burst of ordinary requests on one API process gets ordinary answers, never a Redis error.

One API process, real workers and a real redis-server: 1,000 long-polls on a few running jobs
and 200 submits at the same moment. Every request gets its proper answer, and the API never
holds more Redis connections than its setting allows (counted by Redis itself, by the
connections' client name).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from corral_testbed.many_clients import Answer, request
from corral_testbed.redis_server import RedisServerProcess, require_redis_server
from corral_testbed.services import Corral, corral

MAX_CONNECTIONS = 8
WAITERS = 1_000
SUBMITS = 200
SLOW_JOBS = 4


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    require_redis_server()
    server = RedisServerProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def service(redis_server: RedisServerProcess, tmp_path: Path) -> Iterator[Corral]:
    env = {"CORRAL_REDIS_MAX_CONNECTIONS": str(MAX_CONNECTIONS)}
    with corral(redis_server.url, tmp_path, workers=2, env=env) as running:
        yield running


def api_connections(redis_url: str) -> int:
    with redis.Redis.from_url(redis_url) as client:
        return sum(1 for entry in client.client_list() if entry.get("name") == "corral-api")


async def watch_connections(redis_url: str, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak.append(await asyncio.to_thread(api_connections, redis_url))
        await asyncio.sleep(0.05)


async def burst(service: Corral) -> tuple[list[Answer], list[Answer], list[int]]:
    slow = [
        await request(f"{service.url}/execute", "POST", {"code": "import time; time.sleep(3); print('slept')"})
        for _ in range(SLOW_JOBS)
    ]
    ids = [answer.json()["job_id"] for answer in slow]
    peak: list[int] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_connections(service.redis_url, peak, stop))
    waits = [request(f"{service.url}/jobs/{ids[index % SLOW_JOBS]}?wait=25", timeout_s=60) for index in range(WAITERS)]
    submits = [request(f"{service.url}/execute", "POST", {"code": f"print({index})"}) for index in range(SUBMITS)]
    answers = await asyncio.gather(*waits, *submits)
    stop.set()
    await watcher
    return list(answers[:WAITERS]), list(answers[WAITERS:]), peak


def test_a_thousand_long_polls_and_two_hundred_submits_all_get_proper_answers(service: Corral) -> None:
    waited, submitted, peak = asyncio.run(burst(service))

    statuses = collections.Counter(answer.status for answer in [*waited, *submitted])
    assert all(status < 500 for status in statuses), (statuses, [a.body for a in [*waited, *submitted] if a.status >= 500][:3])
    assert [answer.status for answer in waited] == [200] * WAITERS, statuses
    jobs = [answer.json() for answer in waited]
    assert {(job["status"], job["result"]["stdout"]) for job in jobs} == {("COMPLETED", "slept\n")}
    assert [answer.status for answer in submitted] == [202] * SUBMITS, statuses

    assert peak, "the connection watcher never ran"
    assert max(peak) <= MAX_CONNECTIONS, f"the API held {max(peak)} Redis connections (setting: {MAX_CONNECTIONS})"
