"""Byte budgets on the real stack: what a job occupies in Redis is bounded, and client input
never fills Redis to its maxmemory.

A real redis-server started with a maxmemory, the API and worker PEX files, real NsJail jails;
the test reads Redis' own measures (MEMORY USAGE, INFO) to see what was stored.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from corral_testbed.redis_server import RedisServerProcess, require_redis_server
from corral_testbed.services import Corral, corral

MIB = 1024 * 1024
MAXMEMORY = 64 * MIB
PREFIX = "corral:{q}:"
# 1 MiB of \x01 on stdout and the same on stderr: about a hundred bytes of request that used to
# become 12.6 MB of stored JSON escapes (six bytes per control byte, twice over).
FLOOD = "import sys\nsys.stdout.buffer.write(b'\\x01' * 2**20)\nsys.stderr.buffer.write(b'\\x01' * 2**20)\n"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    require_redis_server()
    server = RedisServerProcess(tmp_path_factory.mktemp("redis"), maxmemory=MAXMEMORY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def admin(redis_server: RedisServerProcess) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
        client.config_resetstat()
        yield client


@pytest.fixture
def service(redis_server: RedisServerProcess, admin: redis.Redis, tmp_path: Path) -> Iterator[Corral]:
    # One job at a time, so that the jobs submitted while one runs stay pending behind it.
    with corral(redis_server.url, tmp_path, workers=1, env={"CORRAL_CONCURRENCY": "1"}) as running:
        yield running


def submit(service: Corral, body: dict[str, object], wait: float = 0) -> httpx.Response:
    return httpx.post(f"{service.url}/execute", params={"wait": wait}, json=body, timeout=wait + 30)


def test_a_control_byte_flood_is_stored_in_its_raw_size(service: Corral, admin: redis.Redis) -> None:
    response = submit(service, {"code": FLOOD, "limits": {"max_output_bytes": MIB}}, wait=30)
    assert response.status_code == 200, response.text
    job = response.json()
    result = job["result"]
    # The public answer is the text it always was.
    assert result["stdout"] == "\x01" * MIB and result["stderr"] == "\x01" * MIB
    stored = admin.memory_usage(f"{PREFIX}job:{job['job_id']}", samples=0)
    assert stored is not None
    # Two streams of 1 MiB each, stored as they came, plus the job's few hundred bytes; jemalloc
    # hands out a 1 MiB string in a 1.25 MiB size class. As JSON escapes it was 12.6 MB.
    assert stored <= 2 * MIB * 5 // 4 + 64 * 1024, stored
    print(f"flood job stored in {stored} bytes (MEMORY USAGE)")
    assert admin.hget(f"{PREFIX}job:{job['job_id']}", "stdout") == b"\x01" * MIB
    assert int(admin.get(f"{PREFIX}reserved") or 0) == 0


def test_a_finished_job_keeps_none_of_its_inputs(service: Corral, admin: redis.Redis) -> None:
    stdin = "s" * 900_000
    response = submit(service, {"code": "print(len(input()))", "stdin": stdin}, wait=30)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["stdout"] == "900000\n"
    stored = admin.memory_usage(f"{PREFIX}job:{response.json()['job_id']}", samples=0)
    assert stored is not None and stored < 4096, stored


def test_at_the_storage_limit_submits_get_503_and_running_jobs_still_finish(
    service: Corral, admin: redis.Redis
) -> None:
    # One job runs, holding the worker for a while, then floods its output.
    running = submit(service, {"code": "import time\ntime.sleep(3)\n" + FLOOD, "limits": {"max_output_bytes": MIB, "wall_time_ms": 20_000}})
    assert running.status_code == 202, running.text
    running_id = running.json()["job_id"]
    deadline = time.monotonic() + 20
    while httpx.get(f"{service.url}/jobs/{running_id}").json()["status"] != "RUNNING":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)

    # Fill: each job brings 1 MB of stdin and may write 1 MiB to each stream.
    accepted: list[str] = []
    refused = None
    for _ in range(40):
        response = submit(service, {"code": "print(len(input()))", "stdin": "i" * 1_000_000, "limits": {"max_output_bytes": MIB}})
        if response.status_code != 202:
            refused = response
            break
        accepted.append(response.json()["job_id"])
    assert refused is not None, "the storage limit was never reached"
    assert refused.status_code == 503, refused.text
    assert "retry-after" in refused.headers and "full" in refused.json()["detail"]
    assert len(accepted) >= 2

    # The running job and every accepted one finish and store their results.
    finished = httpx.get(f"{service.url}/jobs/{running_id}", params={"wait": 30}, timeout=40).json()
    assert finished["status"] == "COMPLETED", finished
    assert finished["result"]["stdout"] == "\x01" * MIB
    for job_id in accepted:
        job = httpx.get(f"{service.url}/jobs/{job_id}", params={"wait": 30}, timeout=40).json()
        assert job["status"] == "COMPLETED" and job["result"]["stdout"] == "1000000\n", job

    # Redis itself never came near its maxmemory, nor refused a write for memory.
    memory = admin.info("memory")
    assert memory["used_memory_peak"] < MAXMEMORY, memory["used_memory_peak"]
    errors = admin.info("errorstats")
    assert not any("OOM" in name for name in errors), errors
    # Their reserves given back, there is room again.
    assert int(admin.get(f"{PREFIX}reserved") or 0) == 0
    assert submit(service, {"code": "print(1)"}).status_code == 202
