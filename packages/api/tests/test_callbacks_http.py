"""Callbacks through the API: a job submitted with a callback_url, run by an in-process worker,
delivered by the API's own delivery loop to a receiver on loopback. No test sends anything to an
address other than 127.0.0.1: the private targets below are refused before any connection."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from dependency_injector import providers
from litestar.testing import AsyncTestClient
from standardwebhooks.webhooks import Webhook

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.deliveries import CallbackSender
from corral_api.settings import ApiSettings
from corral_core.access import ApiKey, secret_hash
from corral_core.callbacks import webhook_secret
from corral_core.ports import Runtime, WorkerInfo
from corral_core.usecases import RunNextJob
from corral_memory.container import InMemoryStorage
from corral_memory.jobs import InMemoryJobQueue, InMemoryJobs
from corral_memory.sandbox import InMemorySandbox
from corral_redis import RedisSettings
from corral_system.clock import SystemClock

Client = AsyncTestClient[Any]
SECRET = webhook_secret(b"s" * 32)
KEY_SECRET = webhook_secret(b"k" * 32)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A tiny HTTP server on loopback: answers each request with the next of `answers` (the
    last one repeated), and keeps what it got."""

    answers: list[tuple[int, str]] = field(default_factory=lambda: [(200, "")])
    got: list[Received] = field(default_factory=list)
    port: int = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, path, _ = head[0].split(" ", 2)
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.got.append(Received(method, path, headers, body))
        status, extra = self.answers[min(len(self.got) - 1, len(self.answers) - 1)]
        writer.write(f"HTTP/1.1 {status} Answer\r\ncontent-length: 2\r\nconnection: close\r\n{extra}\r\nok".encode())
        await writer.drain()
        writer.close()


@dataclass
class Api:
    client: Client
    container: ApiContainer
    storage: InMemoryStorage

    async def callback_of(self, job_id: str, headers: dict[str, str] | None = None, *, until: str = "pending") -> dict[str, Any]:
        """The job's callback once its state is no longer `until`."""
        for _ in range(500):
            view = (await self.client.get(f"/jobs/{job_id}", headers=headers or {})).json()
            if view.get("callback", {}).get("state", until) != until:
                return dict(view["callback"])
            await asyncio.sleep(0.02)
        raise AssertionError(f"the callback of {job_id} stayed {until}")


async def _worker(state: InMemoryJobs) -> None:
    run_next = RunNextJob(InMemoryJobQueue(state), InMemorySandbox(), state.clock)
    while True:
        await run_next("test-worker", 1)


def _settings(**changes: Any) -> ApiSettings:
    base: dict[str, Any] = {
        "auth": False,
        "max_wait_s": 5,
        "webhook_secret": SECRET,
        "callback_allowed_hosts": "127.0.0.1,localhost",
        "callback_backoff_s": 0.05,
        "callback_backoff_max_s": 0.1,
    }
    return ApiSettings(**{**base, **changes})


ApiMaker = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api() -> AsyncIterator[ApiMaker]:
    opened: list[tuple[Client, Any]] = []

    async def make(settings: ApiSettings, sender: CallbackSender | None = None) -> Api:
        clock = SystemClock()
        storage = InMemoryStorage(clock=clock, client=InMemoryJobs(clock, max_unfinished=100))
        await storage.registry().heartbeat(WorkerInfo("test-worker", clock.now(), (Runtime("python", "3.11.2", "main.py"),)), 60_000)
        container = ApiContainer(settings=settings, redis_settings=RedisSettings(max_unfinished=100))
        container.storage.override(storage)
        if sender is not None:
            container.callback_sender.override(providers.Object(sender))
        client = AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000")
        await client.__aenter__()
        running = client.blocking_portal.start_task_soon(_worker, storage.client())
        opened.append((client, running))
        return Api(client, container, storage)

    yield make
    for client, running in opened:
        running.cancel()
        await client.__aexit__(None, None, None)


async def test_a_finished_job_is_posted_once_signed_and_its_delivery_recorded(make_api: ApiMaker) -> None:
    receiver = Receiver()
    async with await receiver.start():
        api = await make_api(_settings())
        accepted = await api.client.post("/execute", json={"code": "print(6 * 7)", "callback_url": receiver.url()})
        job_id = accepted.json()["job_id"]
        callback = await api.callback_of(job_id)
    assert callback == {"url": receiver.url(), "state": "delivered", "attempts": 1, "last_status": "200", "next_at": None}
    [got] = receiver.got
    assert got.method == "POST" and got.path == "/hook" and got.headers["content-type"] == "application/json"
    view = Webhook(SECRET).verify(got.body, got.headers)
    assert view["job_id"] == job_id and view["status"] == "COMPLETED" and view["result"]["stdout"] == "42\n"
    assert got.headers["webhook-id"] == f"msg_{job_id}"
    metrics = api.container.metrics_registry()
    assert metrics.get_sample_value("corral_callback_attempts_total", {"outcome": "delivered"}) == 1


async def test_a_key_s_callbacks_are_signed_with_its_own_secret(make_api: ApiMaker) -> None:
    receiver = Receiver()
    async with await receiver.start():
        api = await make_api(_settings(auth=True, webhook_secret=""))
        key = ApiKey(id="alice", name="alice", created_at=SystemClock().now(), webhook_secret=KEY_SECRET)
        await api.storage.key_store().add(key, secret_hash("corral_alice"))
        headers = {"Authorization": "Bearer corral_alice"}
        accepted = await api.client.post("/execute", json={"code": "print(1)", "callback_url": receiver.url()}, headers=headers)
        job_id = accepted.json()["job_id"]
        assert (await api.callback_of(job_id, headers))["state"] == "delivered"
    [got] = receiver.got
    assert Webhook(KEY_SECRET).verify(got.body, got.headers)["job_id"] == job_id
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(got.body, got.headers)


async def test_a_receiver_that_fails_twice_gets_the_job_on_the_third_attempt(make_api: ApiMaker) -> None:
    receiver = Receiver(answers=[(500, ""), (503, ""), (204, "")])
    async with await receiver.start():
        api = await make_api(_settings())
        job_id = (await api.client.post("/execute", json={"code": "print(1)", "callback_url": receiver.url()})).json()["job_id"]
        callback = await api.callback_of(job_id)
    assert (callback["state"], callback["attempts"], callback["last_status"]) == ("delivered", 3, "204")
    assert len(receiver.got) == 3
    # One message, three attempts: the same id each time, each attempt signed.
    assert {got.headers["webhook-id"] for got in receiver.got} == {f"msg_{job_id}"}
    for got in receiver.got:
        assert Webhook(SECRET).verify(got.body, got.headers)["job_id"] == job_id
    metrics = api.container.metrics_registry()
    assert metrics.get_sample_value("corral_callback_attempts_total", {"outcome": "failed"}) == 2


async def test_a_failing_receiver_is_retried_until_the_retry_time_is_over_then_failed(make_api: ApiMaker) -> None:
    receiver = Receiver(answers=[(500, "")])
    async with await receiver.start():
        api = await make_api(_settings(callback_retry_for_s=2))
        job_id = (await api.client.post("/execute", json={"code": "print(1)", "callback_url": receiver.url()})).json()["job_id"]
        callback = await api.callback_of(job_id)
    assert callback["state"] == "failed" and callback["last_status"] == "500" and callback["next_at"] is None
    assert callback["attempts"] == len(receiver.got) >= 2


class NoConnections(httpx.AsyncBaseTransport):
    """A transport that records every request it is asked to send, and sends none."""

    def __init__(self) -> None:
        self.asked: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(request)
        return httpx.Response(200)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.0.0.1/hook", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[::ffff:169.254.169.254]/", "maps to 169.254.169.254 is a link-local address"),
        ("http://0.0.0.0:8000/", "0.0.0.0 is a unspecified address"),
        # A name is judged by what it resolves to: localhost is loopback, and not allowed here.
        ("http://localhost:9/hook", "is a loopback address"),
    ],
)
async def test_a_private_target_is_refused_before_any_connection_and_recorded(make_api: ApiMaker, url: str, why: str) -> None:
    transport = NoConnections()
    sender = CallbackSender(frozenset(), httpx.AsyncClient(transport=transport, follow_redirects=False))
    api = await make_api(_settings(callback_allowed_hosts=""), sender)
    job_id = (await api.client.post("/execute", json={"code": "print(1)", "callback_url": url})).json()["job_id"]
    callback = await api.callback_of(job_id)
    assert callback["state"] == "failed" and callback["attempts"] == 1
    assert callback["last_status"].startswith("refused: ") and why in callback["last_status"]
    assert transport.asked == []
    metrics = api.container.metrics_registry()
    assert metrics.get_sample_value("corral_callback_attempts_total", {"outcome": "refused"}) == 1


async def test_a_name_is_resolved_once_and_sent_to_its_address_under_its_own_name(make_api: ApiMaker) -> None:
    receiver = Receiver()
    async with await receiver.start():
        api = await make_api(_settings(callback_allowed_hosts="localhost"))
        url = f"http://localhost:{receiver.port}/named"
        job_id = (await api.client.post("/execute", json={"code": "print(1)", "callback_url": url})).json()["job_id"]
        assert (await api.callback_of(job_id))["state"] == "delivered"
    [got] = receiver.got
    assert got.path == "/named" and got.headers["host"] == f"localhost:{receiver.port}"


async def test_a_redirecting_receiver_is_not_followed_and_is_recorded(make_api: ApiMaker) -> None:
    receiver = Receiver(answers=[(302, "location: http://169.254.169.254/latest/meta-data/\r\n")])
    async with await receiver.start():
        api = await make_api(_settings())
        job_id = (await api.client.post("/execute", json={"code": "print(1)", "callback_url": receiver.url()})).json()["job_id"]
        callback = await api.callback_of(job_id)
    assert callback["state"] == "failed" and callback["attempts"] == 1
    assert callback["last_status"].startswith("refused: 302 redirect")
    assert len(receiver.got) == 1


async def test_judge0_submissions_take_a_callback_url_and_get_judge0_s_view_put(make_api: ApiMaker) -> None:
    receiver = Receiver()
    async with await receiver.start():
        api = await make_api(_settings())
        created = await api.client.post(
            "/judge0/submissions", json={"source_code": "print('hi')", "language_id": 71, "callback_url": receiver.url("/j0")}
        )
        assert created.status_code == 201, created.text
        token = created.json()["token"]
        job_id = token
        await api.callback_of(job_id)
        read = (await api.client.get(f"/judge0/submissions/{token}?fields=callback_url")).json()
    assert read == {"callback_url": receiver.url("/j0")}
    [got] = receiver.got
    assert got.method == "PUT" and got.path == "/j0"
    submission = Webhook(SECRET).verify(got.body, got.headers)
    assert submission["token"] == token and submission["status"] == {"id": 3, "description": "Accepted"}
    assert base64.b64decode(submission["stdout"]) == b"hi\n"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "https://user:pw@example.com/", "https:///nohost", "https://example.com/" + "a" * 2048]
)
async def test_a_callback_url_that_is_not_allowed_is_422_naming_the_field(make_api: ApiMaker, url: str) -> None:
    api = await make_api(_settings())
    native = await api.client.post("/execute", json={"code": "print(1)", "callback_url": url})
    assert native.status_code == 422, native.text
    assert "callback_url" in native.text
    judge0 = await api.client.post("/judge0/submissions", json={"source_code": "print(1)", "language_id": 71, "callback_url": url})
    assert judge0.status_code == 422 and "callback_url" in json.loads(judge0.text)


async def test_a_job_without_a_callback_url_has_no_callback_in_its_view(make_api: ApiMaker) -> None:
    api = await make_api(_settings())
    done = await api.client.post("/execute?wait=5", json={"code": "print(1)"})
    assert done.json()["status"] == "COMPLETED" and "callback" not in done.json()


@pytest.mark.parametrize("secret", ["secret", "whsec_not base64", "whsec_" + base64.b64encode(b"short").decode()])
def test_a_service_webhook_secret_that_is_not_whsec_and_24_bytes_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="webhook_secret"):
        ApiSettings(webhook_secret=secret)


def test_the_openapi_document_says_what_a_callback_url_receives() -> None:
    app = create_app(ApiContainer(settings=ApiSettings(), redis_settings=RedisSettings()))
    document = app.openapi_schema.to_schema()
    delivery = document["paths"]["/execute"]["post"]["callbacks"]["jobFinished"]["{$request.body#/callback_url}"]["post"]
    assert delivery["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobView"}
    assert "webhook-signature" in delivery["requestBody"]["description"]
