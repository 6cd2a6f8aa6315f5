"""DELETE /judge0/submissions/{token} as Judge0 1.13.1 answers it (submissions_controller.rb
#destroy), over in-memory adapters: turned off by a setting (ENABLE_SUBMISSION_DELETE), a
queued or running submission refused with its status, the deleted one answered base64-encoded.

tests/integration/test_judge0_sdk.py deletes on the real stack, and another key's token there.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_core import job as jobs
from corral_core.job import RunResult, Verdict
from corral_core.ports import Runtime, WorkerInfo
from corral_memory.container import InMemoryStorage
from corral_memory.jobs import InMemoryJobQueue, InMemoryJobs
from corral_redis import RedisSettings
from corral_system.clock import SystemClock

Client = AsyncTestClient[Any]
Api = Callable[..., AbstractAsyncContextManager[tuple[Client, InMemoryJobs]]]


@asynccontextmanager
async def _api(**settings: Any) -> AsyncIterator[tuple[Client, InMemoryJobs]]:
    clock = SystemClock()
    storage = InMemoryStorage(clock=clock, client=InMemoryJobs(clock, max_unfinished=100))
    await storage.registry().heartbeat(WorkerInfo("w", clock.now(), (Runtime("python", "3.11.2", "main.py"),)), 60_000)
    api_settings = ApiSettings(auth=False, max_wait_s=1, **settings)
    container = ApiContainer(settings=api_settings, redis_settings=RedisSettings(max_unfinished=100))
    container.storage.override(storage)
    async with AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000") as client:
        yield client, storage.client()


async def _submit(client: Client) -> str:
    created = await client.post("/judge0/submissions", json={"source_code": "print(1)", "language_id": 71})
    assert created.status_code == 201, created.text
    return str(created.json()["token"])


async def _run(state: InMemoryJobs, stdout: str) -> None:
    """What a worker does with the one job in line: claim it and finish it with `stdout`."""
    queue = InMemoryJobQueue(state)
    lease = await queue.claim("w", 10_000, 1)
    assert lease is not None
    assert await queue.finish(lease, jobs.complete(lease.job, RunResult(verdict=Verdict.OK, stdout=stdout), state.clock.now()))


async def test_a_finished_submission_is_deleted_and_answered_base64_encoded() -> None:
    async with _api() as (client, state):
        token = await _submit(client)
        await _run(state, "bye\n")
        deleted = await client.delete(f"/judge0/submissions/{token}?fields=token,stdout,status")
        assert deleted.status_code == 200, deleted.text
        body = deleted.json()
        # base64_encoded is implied and cannot be changed (docs/api/submissions/delete_a_submission.md).
        assert (body["token"], base64.b64decode(body["stdout"]), body["status"]["id"]) == (token, b"bye\n", 3)
        assert (await client.get(f"/judge0/submissions/{token}")).status_code == 404
        again = await client.delete(f"/judge0/submissions/{token}")
        assert (again.status_code, again.json()) == (404, {"error": "Not Found"})


async def test_a_queued_submission_is_not_deleted_and_says_its_status() -> None:
    async with _api() as (client, _):
        token = await _submit(client)
        refused = await client.delete(f"/judge0/submissions/{token}")
        assert (refused.status_code, refused.json()) == (400, {"error": "submission cannot be deleted because its status is 1 (In Queue)"})
        assert (await client.get(f"/judge0/submissions/{token}?fields=status_id")).json() == {"status_id": 1}


async def test_a_running_submission_is_not_deleted_and_its_result_still_lands() -> None:
    async with _api() as (client, state):
        token = await _submit(client)
        queue = InMemoryJobQueue(state)
        lease = await queue.claim("w", 10_000, 1)
        assert lease is not None
        refused = await client.delete(f"/judge0/submissions/{token}")
        assert (refused.status_code, refused.json()) == (400, {"error": "submission cannot be deleted because its status is 2 (Processing)"})
        assert await queue.finish(lease, jobs.complete(lease.job, RunResult(verdict=Verdict.OK, stdout="1\n"), state.clock.now()))
        assert (await client.get(f"/judge0/submissions/{token}?fields=status_id,stdout")).json() == {"status_id": 3, "stdout": "1\n"}


async def test_deletion_turned_off_answers_judge0_s_400_and_config_says_so() -> None:
    async with _api(judge0_submission_delete=False) as (client, state):
        token = await _submit(client)
        await _run(state, "1\n")
        refused = await client.delete(f"/judge0/submissions/{token}")
        assert (refused.status_code, refused.json()) == (400, {"error": "delete not allowed"})
        assert (await client.get("/judge0/config_info")).json()["enable_submission_delete"] is False
        assert (await client.get(f"/judge0/submissions/{token}")).status_code == 200


@pytest.mark.parametrize("fields", ["nope", "stdout,nope"])
async def test_delete_with_unknown_fields_is_400_and_deletes_nothing(fields: str) -> None:
    async with _api() as (client, state):
        token = await _submit(client)
        await _run(state, "1\n")
        refused = await client.delete(f"/judge0/submissions/{token}?fields={fields}")
        assert (refused.status_code, refused.json()) == (400, {"error": "invalid fields: [nope]"})
        assert (await client.get(f"/judge0/submissions/{token}")).status_code == 200
