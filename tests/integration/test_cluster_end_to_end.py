"""Corral end to end on a 3-master Redis Cluster with 3 queue shards: the API and worker PEX
files, real NsJail jails, HTTP only."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from corral_redis.shards import shard_of
from corral_testbed.redis_cluster import RedisCluster, provide_cluster
from corral_testbed.services import Corral, corral

SHARDED = {"CORRAL_REDIS_CLUSTER": "true", "CORRAL_REDIS_SHARDS": "3"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with provide_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def service(cluster: RedisCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    with corral(cluster.url, tmp_path_factory.mktemp("logs"), workers=2, env=SHARDED) as running:
        yield running


def test_jobs_on_every_shard_run_and_read_back_through_http(service: Corral) -> None:
    ids: list[str] = []
    # Enough jobs that every shard holds some (each lands on one by its id's hash).
    while len({shard_of(job_id, 3) for job_id in ids}) < 3 or len(ids) < 6:
        accepted = httpx.post(f"{service.url}/execute", json={"code": f"print({len(ids)})"}, timeout=30)
        assert accepted.status_code == 202, accepted.text
        ids.append(accepted.json()["job_id"])
        assert len(ids) < 40, "job ids never reached every shard"
    for index, job_id in enumerate(ids):
        finished = httpx.get(f"{service.url}/jobs/{job_id}", params={"wait": 30}, timeout=40)
        assert finished.status_code == 200, finished.text
        body = finished.json()
        assert body["status"] == "COMPLETED", body
        assert body["result"]["stdout"] == f"{index}\n"


def test_execute_and_wait_answers_with_the_result(service: Corral) -> None:
    response = httpx.post(f"{service.url}/execute", params={"wait": 20}, json={"code": "print('hi')"}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["stdout"] == "hi\n"


def test_an_unknown_job_is_404_and_readyz_counts_both_workers(service: Corral) -> None:
    assert httpx.get(f"{service.url}/jobs/nosuchjob0000000000000").status_code == 404
    ready = httpx.get(f"{service.url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["live_workers"] == 2
