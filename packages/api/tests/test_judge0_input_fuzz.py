"""Every attribute of every Judge0 route, sent with the wrong type or an odd value: the answer
is Judge0's own 4xx (422 {attribute: [messages]} or 400/404 {"error": ...}), never a 5xx.

The values are the ones a type fuzz of Judge0 clients finds (issue 35: cpu_time_limit "NaN"
was a 500): non-finite and huge numbers, wrong JSON types, blank and huge strings, lone
surrogates, nulls. Runs over in-memory adapters and an in-process worker, so each request is
cheap; the same handlers serve the real stack.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from litestar.testing import AsyncTestClient

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_core.ports import Runtime, WorkerInfo
from corral_http.compat.judge0.schemas import SubmissionIn
from corral_memory.container import InMemoryStorage
from corral_memory.jobs import InMemoryJobs
from corral_redis import RedisSettings
from corral_system.clock import SystemClock

Client = AsyncTestClient[Any]

# Every attribute a submission has (Judge0 1.13.1's submission_params, as SubmissionIn reads them).
ATTRIBUTES = SubmissionIn.__struct_fields__
ODD_VALUES: tuple[object, ...] = (
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "inf",
    "1e308",
    1e308,
    -1e308,
    "-1",
    -1,
    0,
    "0",
    0.5,
    2**64,
    "",
    " ",
    "x" * 70_000,
    [],
    [1, 2],
    {},
    {"a": 1},
    "\ud800",
    "a\udfffb",
    None,
    True,
    "true",
    "\x00",
    "$(touch /tmp/x)\n;`id`",
)
# Raw JSON the encoder above cannot write: NaN and Infinity as bare words.
RAW_NUMBERS = (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-0", b"1" * 5000)
QUERY_VALUES = ("true", "false", "", "NaN", "\x00", "x" * 10_000, "*", ",", "stdout,*", "\ud800")


async def _heartbeat(storage: InMemoryStorage, clock: SystemClock) -> None:
    worker = WorkerInfo("fuzz-worker", clock.now(), (Runtime("python", "3.11.2", "main.py"), Runtime("c", "12", "main.c")))
    await storage.registry().heartbeat(worker, 60_000)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    clock = SystemClock()
    storage = InMemoryStorage(clock=clock, client=InMemoryJobs(clock, max_unfinished=100_000))
    await _heartbeat(storage, clock)
    container = ApiContainer(settings=ApiSettings(auth=False, max_wait_s=1), redis_settings=RedisSettings(max_unfinished=100_000))
    container.storage.override(storage)
    async with AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


def _judge0_shaped(status: int, body: object) -> bool:
    if status == 422:
        return isinstance(body, dict) and all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in body.values())
    if status in (400, 404):
        return isinstance(body, dict) and isinstance(body.get("error"), str)
    return 200 <= status < 300


def _json(value: object) -> bytes:
    import json

    # ensure_ascii keeps a lone surrogate as its \\ud800 escape, as a hostile client sends it.
    return json.dumps(value, ensure_ascii=True).encode()


async def _post(client: Client, path: str, body: bytes) -> tuple[int, object]:
    response = await client.post(path, content=body, headers={"Content-Type": "application/json"})
    return response.status_code, response.json()


@pytest.mark.parametrize("attribute", ATTRIBUTES)
async def test_every_attribute_with_every_odd_value_is_answered_without_a_5xx(client: Client, attribute: str) -> None:
    base: dict[str, object] = {"source_code": "print(1)", "language_id": 71}
    bodies = [_json({**base, attribute: value}) for value in ODD_VALUES]
    prefix = _json({**base})[:-1]
    bodies += [prefix + b', "' + attribute.encode() + b'": ' + raw + b"}" for raw in RAW_NUMBERS]
    for body in bodies:
        for path in ("/judge0/submissions", "/judge0/submissions?base64_encoded=true"):
            status, answer = await _post(client, path, body)
            assert status < 500 and _judge0_shaped(status, answer), (path, body[:200], status, answer)
        batch = b'{"submissions": [' + body + b"]}"
        status, answer = await _post(client, "/judge0/submissions/batch", batch)
        assert status < 500, (batch[:200], status, answer)
        assert status in (201, 422) or _judge0_shaped(status, answer), (batch[:200], status, answer)


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
async def test_a_batch_of_odd_shapes_is_answered_without_a_5xx(client: Client, value: object) -> None:
    for body in ({"submissions": value}, {"submissions": [value]}, value):
        status, answer = await _post(client, "/judge0/submissions/batch", _json(body))
        assert status < 500, (body, status, answer)


@pytest.mark.parametrize("value", QUERY_VALUES, ids=repr)
async def test_every_query_parameter_and_token_with_odd_values_is_answered_without_a_5xx(client: Client, value: str) -> None:
    created = await client.post("/judge0/submissions", json={"source_code": "print(1)", "language_id": 71})
    token = created.json()["token"]
    segment = quote(value.encode("utf-8", "surrogatepass"), safe="") or "x"
    requests: list[tuple[str, str, dict[str, str]]] = [
        ("POST", "/judge0/submissions", {"wait": value}),
        ("POST", "/judge0/submissions", {"fields": value, "wait": "true"}),
        ("POST", "/judge0/submissions", {"base64_encoded": value}),
        ("POST", "/judge0/submissions/batch", {"base64_encoded": value}),
        ("GET", f"/judge0/submissions/{token}", {"fields": value}),
        ("GET", f"/judge0/submissions/{token}", {"base64_encoded": value}),
        ("GET", "/judge0/submissions/batch", {"tokens": value}),
        ("GET", "/judge0/submissions/batch", {"tokens": token, "fields": value}),
        ("GET", "/judge0/submissions/batch", {"tokens": f"{token},{value}", "base64_encoded": value}),
        ("GET", f"/judge0/submissions/{segment}", {}),
        ("DELETE", f"/judge0/submissions/{segment}", {}),
        ("DELETE", f"/judge0/submissions/{token}", {"fields": value}),
        ("GET", f"/judge0/languages/{segment}", {}),
    ]
    body = {"source_code": "print(1)", "language_id": 71}
    for method, path, params in requests:
        safe = {name: v.encode("utf-8", "surrogatepass").decode("latin-1") for name, v in params.items()}
        response = await client.request(method, path, params=safe, json=body if method == "POST" else None)
        assert response.status_code < 500, (method, path, params, response.status_code, response.text)
        assert _judge0_shaped(response.status_code, response.json()), (method, path, params, response.text)
