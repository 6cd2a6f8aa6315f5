"""Fair queueing between keys, end to end: the API and a worker from their PEX files, a real
redis-server and NsJail, every request over HTTP. A key with thousands of jobs queued must not
make another key's few jobs wait behind them."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from corral_testbed.services import Corral, corral_on_its_own_redis

BIG_JOBS = 2000
SMALL_JOBS = 3
# Cheap jobs, booking little: the big key's backlog must fit its quotas and the queue's.
BODY = {"code": "pass", "limits": {"max_output_bytes": 1024}}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    with corral_on_its_own_redis(tmp_path_factory, workers=1, auth=True) as running:
        yield running


def submit_many(service: Corral, key: str, count: int, clients: int = 4) -> list[str]:
    """`count` jobs submitted over HTTP by `clients` keep-alive connections, in order of acceptance."""
    headers = {"content-type": "application/json", "Authorization": f"Bearer {key}"}
    body = json.dumps(BODY)

    def submit(share: int) -> list[tuple[float, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
        accepted = []
        for _ in range(share):
            connection.request("POST", "/execute", body, headers)
            response = connection.getresponse()
            answer = response.read()
            assert response.status == 202, answer
            accepted.append((time.monotonic(), json.loads(answer)["job_id"]))
        connection.close()
        return accepted

    shares = [count // clients + (1 if index < count % clients else 0) for index in range(clients)]
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        accepted = [job for share in pool.map(submit, shares) for job in share]
    return [job_id for _, job_id in sorted(accepted)]


def read_jobs(service: Corral, key: str, job_ids: list[str]) -> list[dict[str, object]]:
    with (
        httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as client,
        concurrent.futures.ThreadPoolExecutor(4) as pool,
    ):
        answers = list(pool.map(lambda job_id: client.get(f"{service.url}/jobs/{job_id}"), job_ids))
    assert {answer.status_code for answer in answers} == {200}
    return [answer.json() for answer in answers]


def started(job: dict[str, object]) -> datetime | None:
    stamp = job.get("started_at")
    return datetime.fromisoformat(stamp) if isinstance(stamp, str) else None


def test_a_small_key_s_jobs_start_while_a_big_key_has_thousands_queued(service: Corral) -> None:
    big = service.create_key(
        "big", "--rate", "1000000/1", "--max-unfinished", str(BIG_JOBS), "--max-stored-bytes", str(10**12)
    )
    small = service.create_key("small")
    big_ids = submit_many(service, big, BIG_JOBS)

    headers = {"Authorization": f"Bearer {small}"}
    small_ids = []
    for _ in range(SMALL_JOBS):
        answer = httpx.post(f"{service.url}/execute", json=BODY, headers=headers, timeout=10)
        assert answer.status_code == 202, answer.text
        small_ids.append(answer.json()["job_id"])
    # A guard against hanging forever, not the measure: without fairness the small key's jobs
    # would wait for the whole backlog, far longer than this.
    deadline = time.monotonic() + 120
    while True:
        small_jobs = read_jobs(service, small, small_ids)
        if all(started(job) is not None for job in small_jobs) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert all(started(job) is not None for job in small_jobs), f"the small key's jobs never started: {small_jobs}"

    # The measure: how many of the big key's jobs the worker started between the small key's
    # first submit and the start of its last job. Round robin lets in at most one big job per
    # small one, plus those already being claimed by the worker's slots.
    submitted = min(datetime.fromisoformat(str(job["created_at"])) for job in small_jobs)
    last_start = max(stamp for job in small_jobs if (stamp := started(job)) is not None)
    big_jobs = read_jobs(service, big, big_ids)
    overtaking = [job for job in big_jobs if (stamp := started(job)) is not None and submitted <= stamp <= last_start]
    assert len(overtaking) <= SMALL_JOBS + 4, f"{len(overtaking)} of the big key's jobs started first"
    still_waiting = sum(1 for job in big_jobs if job["status"] == "PENDING")
    assert still_waiting > BIG_JOBS // 2, "the big key's backlog ran out: the test measured nothing"
