"""API keys over HTTP, on the in-memory adapters: the door (401), ownership (404), quotas (429
with the rate headers), idempotent submits, and the Judge0 token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from litestar.testing import AsyncTestClient

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_core.access import ApiKey, Caller, Quotas, secret_hash
from corral_core.ports import Runtime, WorkerInfo
from corral_http.longpolls import LongPolls
from corral_memory.access import (
    InMemoryKeyStore,
)
from corral_memory.container import InMemoryStorage
from corral_memory.jobs import InMemoryJobs
from corral_redis import RedisSettings
from corral_system.clock import SystemClock

PRINT = {"code": "print(1)"}


@dataclass
class Keys:
    client: AsyncTestClient  # type: ignore[type-arg]
    store: InMemoryKeyStore
    state: InMemoryJobs
    long_polls: LongPolls

    async def make(self, key_id: str, *, admin: bool = False, **quotas: int) -> dict[str, str]:
        secret = f"corral_secret_{key_id}"
        made = ApiKey(id=key_id, name=key_id, created_at=self.state.clock.now(), admin=admin, quotas=Quotas(**quotas))
        await self.store.add(made, secret_hash(secret))
        return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
async def keys() -> AsyncIterator[Keys]:
    clock = SystemClock()
    storage = InMemoryStorage(clock=clock)
    state, store = storage.client(), storage.key_store()
    await storage.registry().heartbeat(WorkerInfo("w", clock.now(), (Runtime("python", "3.11.2", "main.py"),)), 60_000)
    settings = ApiSettings(max_wait_s=5, key_rate_limit=50, key_max_unfinished=3)
    container = ApiContainer(settings=settings, redis_settings=RedisSettings())
    container.storage.override(storage)
    async with AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000") as client:
        yield Keys(client, store, state, container.long_polls())


async def test_without_a_key_or_with_a_wrong_one_it_is_401_with_a_challenge(keys: Keys) -> None:
    for headers in ({}, {"Authorization": "Bearer corral_wrong"}, {"X-Auth-Token": "corral_wrong"}):
        response = await keys.client.post("/execute", json=PRINT, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["status_code"] == 401
    assert (await keys.client.get("/healthz")).status_code == 200  # the operator's probes stay open


async def test_a_key_submits_reads_its_job_and_gets_the_rate_headers(keys: Keys) -> None:
    alice = await keys.make("alice")
    accepted = await keys.client.post("/execute", json=PRINT, headers=alice)
    assert accepted.status_code == 202
    assert accepted.headers["ratelimit-policy"] == '"rate";q=50;w=60'
    assert accepted.headers["ratelimit"].startswith('"rate";r=49;t=')
    job_id = accepted.json()["job_id"]
    assert keys.state.records[job_id].owner == "alice"
    read = await keys.client.get(f"/jobs/{job_id}", headers={"X-Auth-Token": "corral_secret_alice"})
    assert read.status_code == 200 and read.headers["ratelimit"].startswith('"rate";r=48;')


async def test_another_key_is_told_the_job_does_not_exist_and_an_admin_reads_it(keys: Keys) -> None:
    alice, bob, admin = await keys.make("alice"), await keys.make("bob"), await keys.make("root", admin=True)
    job_id = (await keys.client.post("/execute", json=PRINT, headers=alice)).json()["job_id"]
    hidden = await keys.client.get(f"/jobs/{job_id}?wait=1", headers=bob)
    unknown = await keys.client.get("/jobs/no-such-job", headers=bob)
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["detail"] == f"no job with id {job_id!r}"
    assert (await keys.client.get(f"/jobs/{job_id}", headers=admin)).status_code == 200


async def test_a_revoked_key_is_refused_at_its_next_request(keys: Keys) -> None:
    alice = await keys.make("alice")
    assert (await keys.client.get("/runtimes", headers=alice)).status_code == 200
    assert await keys.store.revoke("alice")
    assert (await keys.client.get("/runtimes", headers=alice)).status_code == 401


async def test_a_key_revoked_after_a_submit_cannot_submit_again(keys: Keys) -> None:
    alice = await keys.make("alice")
    assert (await keys.client.post("/execute", json=PRINT, headers=alice)).status_code == 202  # cached now
    assert await keys.store.revoke("alice")
    for _ in range(2):
        refused = await keys.client.post("/execute", json=PRINT, headers=alice)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["detail"] == "this API key is unknown or was revoked"
    assert len(keys.state.records) == 1


async def test_over_its_rate_a_submit_gets_429_and_queues_nothing(keys: Keys) -> None:
    slow = await keys.make("slow", rate_limit=2, rate_window_s=60)
    answers = [await keys.client.post("/execute", json=PRINT, headers=slow) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [202, 202, 429]
    assert [answer.headers["ratelimit"].split(";")[1] for answer in answers] == ["r=1", "r=0", "r=0"]
    refused = answers[2]
    assert refused.headers["retry-after"] == "30" and refused.headers["ratelimit-policy"] == '"rate";q=2;w=60'
    assert "2 requests per 60 s" in refused.json()["detail"]
    assert len(keys.state.records) == 2


async def test_a_submit_refused_before_it_is_queued_is_still_counted_against_the_rate(keys: Keys) -> None:
    slow = await keys.make("slow", rate_limit=2, rate_window_s=60)
    invalid = await keys.client.post("/execute", json={"code": 1}, headers=slow)
    assert invalid.status_code == 422 and invalid.headers["ratelimit"].startswith('"rate";r=1;')
    assert (await keys.client.post("/execute", json=PRINT, headers=slow)).status_code == 202
    over = await keys.client.post("/execute", json={"code": 1}, headers=slow)
    assert over.status_code == 429 and "2 requests per 60 s" in over.json()["detail"]
    revoked = await keys.make("gone")
    assert await keys.store.revoke("gone")
    assert (await keys.client.post("/execute", json={"code": 1}, headers=revoked)).status_code == 401


async def test_over_its_rate_a_key_gets_429_with_retry_after_and_the_headers(keys: Keys) -> None:
    slow = await keys.make("slow", rate_limit=2, rate_window_s=60)
    answers = [await keys.client.get("/runtimes", headers=slow) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    refused = answers[2]
    assert refused.headers["retry-after"] == "30"
    assert refused.headers["ratelimit-policy"] == '"rate";q=2;w=60'
    assert refused.headers["ratelimit"].startswith('"rate";r=0;')
    assert "2 requests per 60 s" in refused.json()["detail"]


async def test_past_its_unfinished_jobs_a_key_gets_429_and_others_still_submit(keys: Keys) -> None:
    alice, bob = await keys.make("alice", max_unfinished=2), await keys.make("bob")
    statuses = [(await keys.client.post("/execute", json=PRINT, headers=alice)).status_code for _ in range(3)]
    assert statuses == [202, 202, 429]
    refused = await keys.client.post("/execute", json=PRINT, headers=alice)
    assert refused.headers["retry-after"] == "1" and "ratelimit" in refused.headers
    assert "2 unfinished jobs" in refused.json()["detail"]
    assert (await keys.client.post("/execute", json=PRINT, headers=bob)).status_code == 202


async def test_past_its_stored_bytes_a_key_gets_429(keys: Keys) -> None:
    # 64 KiB of default output, twice, plus the code: one job fits in 200,000 bytes, not two.
    small = await keys.make("small", max_stored_bytes=200_000)
    first = await keys.client.post("/execute", json=PRINT, headers=small)
    second = await keys.client.post("/execute", json=PRINT, headers=small)
    assert (first.status_code, second.status_code) == (202, 429)
    assert "stored bytes" in second.json()["detail"]


async def test_past_its_long_polls_a_key_gets_429_naming_the_limit(keys: Keys) -> None:
    alice, bob = await keys.make("alice", max_waiters=1), await keys.make("bob")
    job_id = (await keys.client.post("/execute", json=PRINT, headers=alice)).json()["job_id"]
    with keys.long_polls.hold(Caller(key_id="alice", quotas=Quotas(max_waiters=1))):  # alice's one long-poll is taken
        refused = await keys.client.get(f"/jobs/{job_id}?wait=1", headers=alice)
        assert refused.status_code == 429 and "max_waiters" in refused.json()["detail"]
        assert refused.headers["retry-after"] == "1" and "ratelimit" in refused.headers
        other = (await keys.client.post("/execute", json=PRINT, headers=bob)).json()["job_id"]
        assert (await keys.client.get(f"/jobs/{other}?wait=0.01", headers=bob)).status_code == 200
    assert (await keys.client.get(f"/jobs/{job_id}?wait=0.01", headers=alice)).status_code == 200


async def test_a_retried_submit_with_an_idempotency_key_gets_the_first_job(keys: Keys) -> None:
    alice, bob = await keys.make("alice"), await keys.make("bob")
    first = await keys.client.post("/execute", json=PRINT, headers={**alice, "Idempotency-Key": "k-1"})
    again = await keys.client.post("/execute", json=PRINT, headers={**alice, "Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(keys.state.records) == 1
    theirs = await keys.client.post("/execute", json=PRINT, headers={**bob, "Idempotency-Key": "k-1"})
    assert theirs.json()["job_id"] != first.json()["job_id"]  # scoped to the key
    other = await keys.client.post("/execute", json={"code": "print(2)"}, headers={**alice, "Idempotency-Key": "k-1"})
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_racing_submits_with_one_idempotency_key_make_one_job(keys: Keys) -> None:
    alice = await keys.make("alice")
    headers = {**alice, "Idempotency-Key": "race"}
    answers = await asyncio.gather(*(keys.client.post("/execute", json=PRINT, headers=headers) for _ in range(5)))
    assert {answer.status_code for answer in answers} == {202}
    assert len({answer.json()["job_id"] for answer in answers}) == 1
    assert len(keys.state.records) == 1


async def test_judge0_takes_the_token_as_header_or_query_and_refuses_with_an_empty_401(keys: Keys) -> None:
    await keys.make("alice")
    body = {"source_code": "print(1)", "language_id": 71}
    refused = await keys.client.post("/judge0/submissions", json=body)
    assert refused.status_code == 401 and refused.content == b""
    by_header = await keys.client.post("/judge0/submissions", json=body, headers={"X-Auth-Token": "corral_secret_alice"})
    assert by_header.status_code == 201
    token = by_header.json()["token"]
    by_query = await keys.client.get(f"/judge0/submissions/{token}?X-Auth-Token=corral_secret_alice")
    assert by_query.status_code == 200
    piston = await keys.client.get("/api/v2/runtimes", headers={"Authorization": "Bearer corral_secret_alice"})
    assert piston.status_code == 200
    assert (await keys.client.get("/api/v2/runtimes")).json() == {"message": "an API key is required: Authorization: Bearer <key>"}


async def test_a_key_cancels_its_own_job_others_get_404_and_a_second_cancel_409(keys: Keys) -> None:
    alice, bob, admin = await keys.make("alice", max_unfinished=1), await keys.make("bob"), await keys.make("root", admin=True)
    job_id = (await keys.client.post("/execute", json=PRINT, headers=alice)).json()["job_id"]
    assert (await keys.client.post("/execute", json=PRINT, headers=alice)).status_code == 429
    assert (await keys.client.delete(f"/jobs/{job_id}")).status_code == 401
    hidden = await keys.client.delete(f"/jobs/{job_id}", headers=bob)
    assert hidden.status_code == 404 and hidden.json()["detail"] == f"no job with id {job_id!r}"
    cancelled = await keys.client.delete(f"/jobs/{job_id}", headers=alice)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "CANCELLED" and cancelled.json()["finished_at"] is not None
    again = await keys.client.delete(f"/jobs/{job_id}", headers=alice)
    assert again.status_code == 409 and "already finished (CANCELLED)" in again.json()["detail"]
    # Its unfinished place came back; an admin may cancel any key's job.
    second = (await keys.client.post("/execute", json=PRINT, headers=alice)).json()["job_id"]
    assert (await keys.client.delete(f"/jobs/{second}", headers=admin)).json()["status"] == "CANCELLED"
