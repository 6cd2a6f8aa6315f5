"""A Java program whatever its public class is called, through each API that runs code: Corral's
own, Judge0's (language 62) and Piston's. The HTTP app in process over the in-memory storage,
its jobs run by a worker loop in real NsJail jails."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_core.ports import WorkerInfo
from corral_core.usecases import RunNextJob
from corral_memory.container import InMemoryStorage
from corral_memory.jobs import InMemoryJobQueue, InMemoryJobs
from corral_redis import RedisSettings
from corral_sandbox import NsJailSandbox
from corral_system.clock import SystemClock
from corral_testbed.nsjail_host import nsjail_sandbox

Client = AsyncTestClient[Any]
HELLO = 'public class HelloWorld { public static void main(String[] a) { System.out.println("Hello, " + a[0]); } }\n'
SOLUTION = (
    "import java.util.*;\n// public class NotThisOne {}\n"
    "public class Solution { public static void main(String[] a) { System.out.println(new Scanner(System.in).nextInt() * 2); } }\n"
)


async def _worker(state: InMemoryJobs, sandbox: NsJailSandbox) -> None:
    run_next = RunNextJob(InMemoryJobQueue(state), sandbox, state.clock)
    while True:
        await run_next("java-worker", 1)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    sandbox = nsjail_sandbox()
    java = [runtime for runtime in sandbox.runtimes() if runtime.language == "java"]
    if not java:
        pytest.fail("java is not offered here: run the install step (scripts/install-system-deps.sh)")
    clock = SystemClock()
    storage = InMemoryStorage(clock=clock, client=InMemoryJobs(clock, max_unfinished=100))
    state = storage.client()
    await storage.registry().heartbeat(WorkerInfo("java-worker", clock.now(), tuple(java)), 60_000)
    container = ApiContainer(settings=ApiSettings(auth=False, max_wait_s=60), redis_settings=RedisSettings(max_unfinished=100))
    container.storage.override(storage)
    async with AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000", timeout=90) as test_client:
        running = test_client.blocking_portal.start_task_soon(_worker, state, sandbox)
        yield test_client
        running.cancel()


async def test_corral_runs_a_public_class_hello_world(client: Client) -> None:
    response = await client.post("/execute?wait=60", json={"language": "java", "code": HELLO, "args": ["Corral"]})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["verdict"] == "ok", result
    assert result["stdout"] == "Hello, Corral\n"


async def test_judge0_language_62_runs_a_public_class_solution_with_base64(client: Client) -> None:
    body = {
        "source_code": base64.b64encode(SOLUTION.encode()).decode(),
        "language_id": 62,
        "stdin": base64.b64encode(b"21").decode(),
        "expected_output": base64.b64encode(b"42").decode(),
    }
    response = await client.post("/judge0/submissions?wait=true&base64_encoded=true", json=body)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["status"] == {"id": 3, "description": "Accepted"}, answer
    assert base64.b64decode(answer["stdout"]) == b"42\n"


async def test_piston_runs_a_public_class_in_a_file_of_any_name(client: Client) -> None:
    body = {"language": "java", "version": "*", "files": [{"name": "program.java", "content": HELLO}], "args": ["Piston"]}
    response = await client.post("/api/v2/execute", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["run"]["stdout"] == "Hello, Piston\n" and answer["run"]["code"] == 0, answer
