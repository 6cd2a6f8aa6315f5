"""The HTTP contract of the API, over in-memory adapters and an in-process worker."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from litestar.testing import AsyncTestClient

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_core.access import ANONYMOUS
from corral_core.job import Job
from corral_core.ports import Runtime, StorageUnavailable, WorkerInfo
from corral_core.usecases import RunNextJob
from corral_memory.container import InMemoryStorage
from corral_memory.jobs import InMemoryJobQueue, InMemoryJobs, InMemoryWorkerRegistry
from corral_memory.sandbox import InMemorySandbox
from corral_redis import RedisSettings
from corral_system.clock import SystemClock


class OutageRegistry(InMemoryWorkerRegistry):
    """The in-memory registry, with a switch that makes it answer as an unreachable Redis does."""

    down = False
    reads = 0

    async def live_workers(self) -> list[WorkerInfo]:
        self.reads += 1
        if self.down:
            raise StorageUnavailable("connection refused")
        return await super().live_workers()


class OutageQueue(InMemoryJobQueue):
    """The in-memory queue, with the same switch for its submissions."""

    down = False

    async def submit(self, job: Job) -> None:
        if self.down:
            raise StorageUnavailable("connection refused")
        await super().submit(job)


@dataclass
class Api:
    client: AsyncTestClient  # type: ignore[type-arg]
    state: InMemoryJobs
    registry: OutageRegistry
    queue: OutageQueue
    container: ApiContainer


async def run_worker(state: InMemoryJobs) -> None:
    run_next = RunNextJob(InMemoryJobQueue(state), InMemorySandbox(), state.clock)
    while True:
        await run_next("test-worker", 1)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    # max_tests_bytes: the request-size limit (ApiSettings.max_body_bytes) stays well under the
    # 20 MB body of test_a_body_over_the_request_limit_is_413.
    settings = ApiSettings(auth=False, max_wait_s=5, max_code_bytes=1000, max_tests_bytes=1_000_000)
    async for made in _api(settings, RedisSettings(max_unfinished=3)):
        yield made


async def _api(
    settings: ApiSettings, redis: RedisSettings, *, worker: bool = True, heartbeat: bool = True
) -> AsyncIterator[Api]:
    clock = SystemClock()
    state = InMemoryJobs(clock, max_unfinished=redis.max_unfinished)
    registry = OutageRegistry(clock)
    runtime = Runtime("python", "3.11.2", "main.py")
    if heartbeat:
        await registry.heartbeat(WorkerInfo("test-worker", clock.now(), (runtime,)), 60_000)
    container = ApiContainer(settings=settings, redis_settings=redis)
    queue = OutageQueue(state)
    storage = InMemoryStorage(clock=clock, client=state, queue=queue, registry=registry)
    container.storage.override(storage)
    async with AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000") as client:
        # The test client serves the app on its own event loop: the worker must share it.
        running = client.blocking_portal.start_task_soon(run_worker, state) if worker else None
        yield Api(client, state, registry, queue, container)
        if running:
            running.cancel()


async def test_execute_with_wait_returns_the_finished_job(api: Api) -> None:
    response = await api.client.post("/execute?wait=5", json={"code": "print(1)"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "COMPLETED"
    assert body["result"]["verdict"] == "ok"
    assert body["result"]["stdout"] == "1\n"
    assert body["error"] is None
    assert body["created_at"].endswith("Z") and body["finished_at"].endswith("Z")


async def test_execute_without_wait_answers_202_with_a_location(api: Api) -> None:
    response = await api.client.post("/execute", json={"code": "print(2)"})
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    assert response.json()["status"] == "PENDING"
    assert response.headers["location"] == f"/jobs/{job_id}"
    finished = await api.client.get(f"/jobs/{job_id}?wait=5")
    assert finished.status_code == 200
    assert finished.json()["result"]["stdout"] == "2\n"


async def test_stdin_args_and_files_reach_the_program(api: Api) -> None:
    code = "import sys\nprint(sys.stdin.read(), sys.argv[1:], open('a.txt').read(), open('b.bin','rb').read())"
    response = await api.client.post(
        "/execute?wait=5",
        json={
            "code": code,
            "stdin": "in",
            "args": ["x", "y"],
            "files": [
                {"name": "a.txt", "content": "text"},
                {"name": "b.bin", "content": base64.b64encode(b"\x00\x01").decode(), "encoding": "base64"},
            ],
        },
    )
    assert response.json()["result"]["stdout"] == "in ['x', 'y'] text b'\\x00\\x01'\n"


async def test_unknown_job_is_404(api: Api) -> None:
    response = await api.client.get("/jobs/AAAAAAAAAAAAAAAAAAAAAA")
    assert response.status_code == 404
    assert "AAAAAAAAAAAAAAAAAAAAAA" in response.json()["detail"]


async def test_malformed_job_id_is_not_a_500(api: Api) -> None:
    response = await api.client.get("/jobs/" + "x" * 200)
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "code"),
        ({"code": 5}, "code"),
        ({"code": "", "surprise": 1}, "surprise"),
        ({"code": "", "language": "../../bin/sh"}, "language"),
        ({"code": "", "limits": {"memory_mb": 0}}, "memory_mb"),
        ({"code": "", "files": [{"name": "../x", "content": ""}]}, "files[0].name"),
        ({"code": "", "files": [{"name": "x", "content": "!!", "encoding": "base64"}]}, "files[0].content"),
        ({"code": "", "files": [{"name": "x", "content": "", "encoding": "rot13"}]}, "encoding"),
        ({"code": "", "args": ["a\u0000b"]}, "args[0]"),
        ({"code": "", "files": [{"name": "main.py", "content": ""}]}, "files[0].name"),
    ],
)
async def test_invalid_bodies_are_422_naming_the_field(api: Api, body: dict[str, object], field: str) -> None:
    response = await api.client.post("/execute", json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
    assert api.state.records == {}


async def test_a_limit_above_the_maximum_is_422_with_the_maximum(api: Api) -> None:
    response = await api.client.post("/execute", json={"code": "", "limits": {"memory_mb": 100_000}})
    assert response.status_code == 422
    problem = response.json()
    assert problem["errors"] == [
        {"field": "limits.memory_mb", "message": "100000 is above the server maximum of 512"}
    ]


async def test_code_over_the_size_limit_is_413(api: Api) -> None:
    response = await api.client.post("/execute", json={"code": "x" * 1001})
    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "code"


async def test_a_body_over_the_request_limit_is_413(api: Api) -> None:
    response = await api.client.post("/execute", content=b'{"code": "' + b"x" * 20_000_000 + b'"}')
    assert response.status_code == 413


async def test_broken_json_is_4xx(api: Api) -> None:
    response = await api.client.post("/execute", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code in (400, 422)


async def test_wait_above_the_maximum_is_422(api: Api) -> None:
    response = await api.client.post("/execute?wait=6", json={"code": "print(1)"})
    assert response.status_code == 422
    assert "wait" in response.text
    response = await api.client.get("/jobs/abc?wait=-1")
    assert response.status_code == 422


async def test_a_language_no_worker_offers_is_422(api: Api) -> None:
    response = await api.client.post("/execute", json={"code": "", "language": "ruby"})
    assert response.status_code == 422
    assert response.json() == {
        "status_code": 422,
        "detail": "language: 'ruby' is not offered; try one of ['python']",
        "errors": [{"field": "language", "message": "'ruby' is not offered; try one of ['python']"}],
    }
    assert api.state.records == {}


async def test_an_input_file_named_like_the_source_file_is_422() -> None:
    async for api in _api(ApiSettings(auth=False), RedisSettings(), worker=False):
        response = await api.client.post("/execute", json={"code": "", "files": [{"name": "main.py", "content": ""}]})
        assert response.status_code == 422
        assert response.json()["errors"] == [
            {"field": "files[0].name", "message": "'main.py' is the program's own source file"}
        ]


async def test_with_no_live_worker_a_job_is_accepted_and_waits() -> None:
    async for api in _api(ApiSettings(auth=False), RedisSettings(), worker=False, heartbeat=False):
        response = await api.client.post("/execute", json={"code": "", "language": "ruby"})
        assert response.status_code == 202
        assert response.json()["status"] == "PENDING"


async def test_a_finished_job_reads_as_it_always_has(api: Api) -> None:
    response = await api.client.post("/execute?wait=5", json={"code": "import sys; print(1); sys.exit(3)"})
    body = response.json()
    # Every field, in order: the views are the API's own, not the domain's Structs.
    assert list(body) == [
        "job_id", "status", "language", "created_at", "started_at", "finished_at", "attempts", "result", "error",
    ]  # fmt: skip
    assert list(body["result"]) == [
        "verdict", "exit_code", "signal", "stdout", "stderr", "stdout_truncated", "stderr_truncated",
        "cpu_time_ms", "wall_time_ms", "memory_kb", "sandbox_start",
    ]  # fmt: skip
    assert body["result"]["exit_code"] == 3 and body["result"]["verdict"] == "runtime_error"
    assert body["language"] == "python" and body["attempts"] == 1


async def test_a_full_queue_is_503_with_retry_after() -> None:
    async for api in _api(ApiSettings(auth=False), RedisSettings(max_unfinished=2), worker=False):
        for _ in range(2):
            assert (await api.client.post("/execute", json={"code": ""})).status_code == 202
        response = await api.client.post("/execute", json={"code": ""})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert "full" in response.json()["detail"]


async def test_storage_down_is_503_with_retry_after(api: Api) -> None:
    # Redis down: the catalog's list, kept fresh in the background, may still be recent; the
    # submission fails at the queue.
    api.registry.down = api.queue.down = True
    response = await api.client.post("/execute", json={"code": ""})
    assert response.status_code == 503 and "retry-after" in response.headers
    ready = await api.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["redis"] is False


async def test_the_app_keeps_the_runtime_catalog_fresh_between_requests(api: Api) -> None:
    # corral_api.runtimes: read every half second in the background, so that no submission
    # waits for that read.
    before = api.registry.reads
    await asyncio.sleep(1.6)
    assert api.registry.reads - before >= 2


async def test_runtimes_lists_what_live_workers_offer(api: Api) -> None:
    response = await api.client.get("/runtimes")
    assert response.json() == [{"language": "python", "version": "3.11.2", "workers": 1}]


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["live_workers"] == 1


async def test_readiness_fails_without_a_live_worker() -> None:
    async for api in _api(ApiSettings(auth=False), RedisSettings(), worker=False, heartbeat=False):
        ready = await api.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["problems"] == ["no live worker"]


async def test_openapi_schema_and_swagger_are_served(api: Api) -> None:
    schema = await api.client.get("/schema/openapi.json")
    assert schema.status_code == 200
    assert "/execute" in schema.json()["paths"]
    assert (await api.client.get("/schema/swagger")).status_code == 200


async def test_a_job_no_worker_can_run_waits_for_one_instead_of_failing() -> None:
    # No heartbeat, so the API accepts the language; the worker (Python only) never takes it.
    async for api in _api(ApiSettings(auth=False, max_wait_s=5), RedisSettings(), heartbeat=False):
        response = await api.client.post("/execute?wait=1", json={"code": "", "language": "ruby"})
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "PENDING"


async def test_past_the_long_poll_limit_a_wait_is_503_naming_it_and_queues_nothing() -> None:
    async for api in _api(ApiSettings(auth=False), RedisSettings(), worker=False):
        job_id = (await api.client.post("/execute", json={"code": ""})).json()["job_id"]
        full = api.container.long_polls()
        full.limit = 1
        with full.hold(ANONYMOUS):  # the one long-poll this process may hold is taken
            refused = await api.client.get(f"/jobs/{job_id}?wait=1")
            assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
            assert "CORRAL_MAX_WAITERS" in refused.json()["detail"]
            refused = await api.client.post("/execute?wait=1", json={"code": ""})
            assert refused.status_code == 503 and "CORRAL_MAX_WAITERS" in refused.json()["detail"]
            assert len(api.state.records) == 1, "a refused wait queued a job"
            assert (await api.client.get(f"/jobs/{job_id}")).status_code == 200  # no wait, no limit
        assert (await api.client.get(f"/jobs/{job_id}?wait=0.01")).status_code == 200  # the slot came back
