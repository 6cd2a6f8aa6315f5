"""Judge0's `compiler_options` and `command_line_arguments` become argv elements of the compiler
and the program: split as Judge0's worker splits them (its characters `$&;<>|` and backticks
removed, words by shell quoting), never handed to a shell. The jail side is
packages/sandbox/tests/test_compiler_args.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_core.ports import Runtime, WorkerInfo
from corral_memory.container import InMemoryStorage
from corral_memory.jobs import InMemoryJobs
from corral_redis import RedisSettings
from corral_system.clock import SystemClock

Client = AsyncTestClient[Any]
C = Runtime("c", "12.2.0", "main.c", compiled=True, compiler_args=True)
JAVA = Runtime("java", "17", "Main.java", compiled=True)


@pytest.fixture
async def api() -> AsyncIterator[tuple[Client, InMemoryJobs]]:
    clock = SystemClock()
    storage = InMemoryStorage(clock=clock, client=InMemoryJobs(clock, max_unfinished=100))
    worker = WorkerInfo("w", clock.now(), (Runtime("python", "3.11.2", "main.py"), C, JAVA))
    await storage.registry().heartbeat(worker, 60_000)
    container = ApiContainer(settings=ApiSettings(auth=False), redis_settings=RedisSettings(max_unfinished=100))
    container.storage.override(storage)
    async with AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000") as client:
        yield client, storage.client()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("-O0 -DNAME='two words'", ("-O0", "-DNAME=two words")),
        # A line break separates two words; it starts no command (CVE-2024-28185's exploit).
        ("-O2\nln -s /etc/passwd x", ("-O2", "ln", "-s", "/etc/passwd", "x")),
        ("-DX=1; rm -rf / && `id` $(id) | cat > y", ("-DX=1", "rm", "-rf", "/", "id", "(id)", "cat", "y")),
        ("  ", ()),
    ],
)
async def test_compiler_options_are_the_compiler_s_arguments_word_by_word(
    api: tuple[Client, InMemoryJobs], text: str, words: tuple[str, ...]
) -> None:
    client, state = api
    created = await client.post("/judge0/submissions", json={"source_code": "int main(){}", "language_id": 50, "compiler_options": text})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert state.records[token].request.compiler_args == words
    read = await client.get(f"/judge0/submissions/{token}?fields=compiler_options")
    assert read.json() == {"compiler_options": text}


async def test_command_line_arguments_are_the_program_s_arguments_word_by_word(api: tuple[Client, InMemoryJobs]) -> None:
    client, state = api
    body = {"source_code": "print(1)", "language_id": 71, "command_line_arguments": "a 'b c'\necho INJECTED; `id`"}
    created = await client.post("/judge0/submissions", json=body)
    assert created.status_code == 201, created.text
    assert state.records[created.json()["token"]].request.args == ("a", "b c", "echo", "INJECTED", "id")


@pytest.mark.parametrize(
    ("submission", "errors"),
    [
        ({"language_id": 71, "compiler_options": "-O2"}, {"compiler_options": ["the 'python' runtime takes no compiler arguments"]}),
        ({"language_id": 62, "compiler_options": "-g"}, {"compiler_options": ["the 'java' runtime takes no compiler arguments"]}),
        ({"language_id": 50, "compiler_options": "-DX=\u0000"}, {"compiler_options": ["contains a NUL character"]}),
        ({"language_id": 50, "command_line_arguments": "a\u0000b"}, {"command_line_arguments": ["contains a NUL character"]}),
        ({"language_id": 50, "compiler_options": "'unclosed"}, {"compiler_options": ["No closing quotation"]}),
        ({"language_id": 50, "compiler_options": "x" * 513}, {"compiler_options": ["is too long (maximum is 512 characters)"]}),
        ({"language_id": 50, "compiler_options": "-D " * 100}, {"compiler_options": ["more than 64 arguments"]}),
    ],
)
async def test_arguments_refused_with_judge0_s_422(
    api: tuple[Client, InMemoryJobs], submission: dict[str, object], errors: dict[str, list[str]]
) -> None:
    client, state = api
    response = await client.post("/judge0/submissions", json={"source_code": "x", **submission})
    assert (response.status_code, response.json()) == (422, errors)
    assert not state.records
