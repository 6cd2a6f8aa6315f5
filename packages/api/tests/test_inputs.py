"""Input that cannot hurt: bodies that are not JSON, hosts the API does not serve, browsers of
other sites, bodies that trickle in, and an OpenAPI document that lists every answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_http.middleware import SlowBodyCutOff
from corral_memory.container import InMemoryStorage
from corral_memory.jobs import InMemoryJobs
from corral_redis import RedisSettings
from corral_system.clock import SystemClock


async def _client(settings: ApiSettings, base_url: str = "http://127.0.0.1:8000") -> AsyncIterator[tuple[Any, InMemoryJobs]]:
    clock = SystemClock()
    storage = InMemoryStorage(clock=clock)
    state = storage.client()
    container = ApiContainer(settings=settings, redis_settings=RedisSettings())
    container.storage.override(storage)
    async with AsyncTestClient(app=create_app(container), base_url=base_url) as client:
        yield client, state

@pytest.fixture
async def api() -> AsyncIterator[tuple[Any, InMemoryJobs]]:
    async for made in _client(ApiSettings(auth=False, max_wait_s=7)):
        yield made

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None])
async def test_a_body_not_sent_as_json_is_415_and_queues_nothing(
    api: tuple[Any, InMemoryJobs], content_type: str | None
) -> None:
    client, state = api
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/execute", content=b'{"code": "print(1)"}', headers=headers)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["detail"]
    assert state.records == {}

@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"code": "\xff\xfe"}', "the body is not valid UTF-8"),
        (b"[" * 100_000, "the body's JSON nests too deeply"),
        (b'{"code": ' + b"[" * 100_000, "the body's JSON nests too deeply"),
        (b'{"code": "print(1)"', "the body is not valid JSON"),
        (b"{code: 1}", "the body is not valid JSON"),
        (b'{"code": "\\ud800"}', "the body is not valid JSON"),
    ],
)
async def test_malformed_json_is_400_saying_why(api: tuple[Any, InMemoryJobs], body: bytes, detail: str) -> None:
    client, state = api
    response = await client.post("/execute", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith(detail)
    assert state.records == {}

async def test_json_with_a_charset_is_accepted(api: tuple[Any, InMemoryJobs]) -> None:
    client, _ = api
    response = await client.post(
        "/execute", content=b'{"code": "print(1)"}', headers={"content-type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 202, response.text

@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil"])
async def test_a_host_the_api_does_not_serve_is_400(api: tuple[Any, InMemoryJobs], host: str) -> None:
    client, state = api
    for response in (
        await client.get("/healthz", headers={"host": host}),
        await client.post("/execute", json={"code": "print(1)"}, headers={"host": host}),
    ):
        assert response.status_code == 400
        assert "CORRAL_ALLOWED_HOSTS" in response.json()["detail"]
    assert state.records == {}

@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:1", "[::1]:8000", "LOCALHOST"])
async def test_loopback_hosts_are_served_by_default(api: tuple[Any, InMemoryJobs], host: str) -> None:
    client, _ = api
    assert (await client.get("/healthz", headers={"host": host})).status_code == 200

async def test_allowed_hosts_are_a_setting() -> None:
    async for client, _ in _client(ApiSettings(auth=False, allowed_hosts="corral.example, *.judge.example")):
        for host, status in [
            ("corral.example:443", 200),
            ("a.judge.example", 200),
            ("judge.example", 400),
            ("127.0.0.1:8000", 400),
        ]:
            assert (await client.get("/healthz", headers={"host": host})).status_code == status, host
    async for client, _ in _client(ApiSettings(auth=False, allowed_hosts="*")):
        assert (await client.get("/healthz", headers={"host": "anything.example"})).status_code == 200

async def test_cors_is_off_by_default(api: tuple[Any, InMemoryJobs]) -> None:
    client, _ = api
    origin = {"origin": "https://site.example"}
    response = await client.get("/healthz", headers=origin)
    assert "access-control-allow-origin" not in response.headers
    preflight = await client.options(
        "/execute", headers={**origin, "access-control-request-method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers

async def test_cors_origins_are_a_setting() -> None:
    async for client, _ in _client(ApiSettings(auth=False, cors_allow_origins="https://judge.example")):
        allowed = await client.get("/healthz", headers={"origin": "https://judge.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://judge.example"
        other = await client.get("/healthz", headers={"origin": "https://site.example"})
        assert "access-control-allow-origin" not in other.headers

async def test_a_trickling_body_is_cut_off_with_408() -> None:
    answered: list[dict[str, Any]] = []
    read: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            while True:
                message = await receive()
                read.append(message["body"])
                if not message.get("more_body"):
                    break
        except Exception as error:  # what Litestar's exception handlers would turn into a 408
            answered.append({"status": getattr(error, "status_code", None)})

    async def trickle() -> dict[str, Any]:
        await asyncio.sleep(0.1)
        return {"type": "http.request", "body": b"x", "more_body": True}

    started = asyncio.get_running_loop().time()
    await SlowBodyCutOff(app, min_bytes_per_s=100, grace_s=0.5)({"type": "http"}, trickle, None)  # type: ignore[arg-type]
    elapsed = asyncio.get_running_loop().time() - started
    assert answered == [{"status": 408}]
    assert 0.5 <= elapsed < 1.5 and 4 <= len(read) <= 10

async def test_a_body_at_the_minimum_rate_is_read_whole() -> None:
    read: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (message := await receive())["more_body"]:
            read.append(message["body"])

    chunks = iter([b"x" * 100] * 9 + [b""])

    async def steady() -> dict[str, Any]:
        await asyncio.sleep(0.05)  # 2,000 bytes per second
        chunk = next(chunks)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunk)}

    await SlowBodyCutOff(app, min_bytes_per_s=1000, grace_s=0.1)({"type": "http"}, steady, None)  # type: ignore[arg-type]
    assert len(read) == 9

async def test_the_schema_documents_every_answer_with_its_body(api: tuple[Any, InMemoryJobs]) -> None:
    client, _ = api
    document = (await client.get("/schema/openapi.json")).json()
    paths = document["paths"]
    expected = {
        ("/execute", "post"): {"200", "202", "400", "401", "408", "409", "413", "415", "422", "429", "503"},
        ("/jobs/{job_id}", "get"): {"200", "400", "401", "404", "422", "429", "503"},
        ("/jobs/{job_id}", "delete"): {"200", "400", "401", "404", "409", "422", "429", "503"},
        ("/runtimes", "get"): {"200", "400", "401", "429", "503"},
        ("/healthz", "get"): {"200", "400"},
        ("/readyz", "get"): {"200", "400", "503"},
    }
    for (path, method), statuses in expected.items():
        responses = paths[path][method]["responses"]
        assert set(responses) == statuses, (path, method)
        for status in statuses - {"200", "202"}:
            body = responses[status]["content"]["application/json"]["schema"]
            name = "Readiness" if path == "/readyz" and status == "503" else "Problem"
            assert body == {"$ref": f"#/components/schemas/{name}"}, (path, method, status)
    for path, method in (("/execute", "post"), ("/jobs/{job_id}", "get")):
        [wait] = [p for p in paths[path][method]["parameters"] if p["name"] == "wait"]
        assert (wait["schema"]["minimum"], wait["schema"]["maximum"]) == (0, 7)
    assert "securitySchemes" not in document.get("components", {}), "keys are off: the schema must not ask for one"


async def test_with_keys_on_the_schema_asks_for_a_bearer_key_on_every_route_but_the_operators() -> None:
    async for client, _ in _client(ApiSettings(auth=True)):
        document = (await client.get("/schema/openapi.json")).json()
        assert document["components"]["securitySchemes"] == {"apiKey": {"type": "http", "scheme": "bearer"}}
        for path, operations in document["paths"].items():
            for operation in operations.values():
                needs_key = not path.startswith(("/healthz", "/readyz", "/schema"))
                assert (operation.get("security") == [{"apiKey": []}]) is needs_key, path


async def test_options_on_a_job_lists_every_method_it_answers(api: tuple[Any, InMemoryJobs]) -> None:
    client, _ = api
    allowed = (await client.options("/jobs/some-job")).headers["allow"]
    assert set(allowed.split(", ")) == {"DELETE", "GET", "OPTIONS"}
