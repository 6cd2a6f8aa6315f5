"""The client's live calls: a job's event stream resumed across dropped connections, stdin for
an interactive job, `corral run` printing output as it comes, and the webhook signature check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from corral_client import AsyncClient, Client, JobNotFound, RetryPolicy, WebhookVerificationError, cli, verify_webhook
from corral_client.cli import main

FAST = RetryPolicy(attempts=3, base_s=0.01, max_s=0.05)
JOB = {"job_id": "j1", "status": "COMPLETED", "result": {"verdict": "ok", "exit_code": 0, "stdout": "a\nb\n", "stderr": ""}}
EVENTS = [
    ("1", "status", "RUNNING"),
    ("2", "stdout", "a\n"),
    ("3", "stderr", "careful"),
    ("4", "stdout", "b\n"),
    ("5", "status", "COMPLETED"),
    ("6", "result", json.dumps(JOB)),
]


def framed(event_id: str, kind: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"id: {event_id}\nevent: {kind}\n{lines}\n".encode()


class Dropping(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An event stream that sends `chunks` then breaks, as a dropped connection does."""

    def __init__(self, chunks: list[bytes], breaks: bool) -> None:
        self.chunks = chunks
        self.breaks = breaks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.breaks:
            raise httpx.ReadError("connection reset by peer")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.breaks:
            raise httpx.ReadError("connection reset by peer")


class EventServer:
    """Serves EVENTS after the request's Last-Event-ID; the first connection breaks after
    three events and half of the fourth, the second after the fifth; none breaks unless `drops`."""

    def __init__(self, drops: bool = True) -> None:
        self.drops = drops
        self.resumed_from: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        after = request.headers.get("last-event-id")
        self.resumed_from.append(after)
        start = 0 if after is None else [event[0] for event in EVENTS].index(after) + 1
        later = [framed(*event) for event in EVENTS[start:]]
        connection = len(self.resumed_from) if self.drops else 0
        if connection == 1:
            chunks, breaks = [*later[:3], b": keep-alive\n\n", later[3][:12]], True
        elif connection == 2:
            chunks, breaks = later[:2], True
        else:
            chunks, breaks = later, False
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Dropping(chunks, breaks))


def test_the_stream_resumes_after_a_dropped_connection_without_loss_or_duplicate() -> None:
    server = EventServer()
    with Client("http://corral", retry=FAST, transport=httpx.MockTransport(server)) as client:
        got = [(event.id, event.kind, event.data) for event in client.stream("j1")]
    assert got == EVENTS
    assert server.resumed_from == [None, "3", "5"]
    assert got[-1][1] == "result"


async def test_the_async_stream_resumes_after_a_dropped_connection_without_loss_or_duplicate() -> None:
    server = EventServer()
    async with AsyncClient("http://corral", retry=FAST, transport=httpx.MockTransport(server)) as client:
        got = [event async for event in client.stream("j1")]
    assert [(event.id, event.kind, event.data) for event in got] == EVENTS
    assert server.resumed_from == [None, "3", "5"]
    finished = got[-1].job()
    assert finished.status == "COMPLETED" and finished.result is not None and finished.result.stdout == "a\nb\n"


def test_a_stream_may_start_after_an_event_and_an_unknown_job_is_not_found() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if "nothing" in request.url.path:
            return httpx.Response(404, json={"status_code": 404, "detail": "no job with id 'nothing'"})
        return EventServer(drops=False)(request) if request.headers.get("last-event-id") else httpx.Response(500)

    with Client("http://corral", retry=FAST, transport=httpx.MockTransport(answer)) as client:
        assert [event.id for event in client.stream("j1", last_event_id="4")] == ["5", "6"]
        with pytest.raises(JobNotFound):
            list(client.stream("nothing"))


def test_a_stream_retries_a_busy_answer_and_gives_up_after_the_policys_attempts() -> None:
    seen = []

    def busy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(429, headers={"retry-after": "0"}, json={"status_code": 429, "detail": "at its limit"})

    with Client("http://corral", retry=FAST, transport=httpx.MockTransport(busy)) as client, pytest.raises(Exception, match="at its limit"):
        list(client.stream("j1"))
    assert len(seen) == FAST.attempts + 1


def test_send_stdin_sends_text_or_bytes_and_eof() -> None:
    bodies = []

    def accept(request: httpx.Request) -> httpx.Response:
        bodies.append((request.url.path, json.loads(request.content)))
        return httpx.Response(202, json={"job_id": "j1", "sent_bytes": 1, "eof": False})

    with Client("http://corral", transport=httpx.MockTransport(accept)) as client:
        client.send_stdin("j1", "3 4\n")
        client.send_stdin("j1", b"\x00\xff", eof=True)
    assert bodies == [
        ("/jobs/j1/stdin", {"data": "3 4\n"}),
        ("/jobs/j1/stdin", {"data": base64.b64encode(b"\x00\xff").decode(), "encoding": "base64", "eof": True}),
    ]


def test_corral_run_prints_the_output_of_a_running_job_from_its_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/execute":
            return httpx.Response(202, json={"job_id": "j1", "status": "PENDING"})
        if request.url.path == "/jobs/j1/events":
            body = b"".join(framed(*event) for event in EVENTS)
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        return httpx.Response(200, json={"job_id": "j1", "status": "RUNNING"})

    transport = httpx.MockTransport(serve)
    monkeypatch.setattr(cli, "Client", lambda url, *, key=None: Client(url, key=key, transport=transport))
    (tmp_path / "prog.py").write_text("print('a')")
    result = CliRunner().invoke(main, ["run", str(tmp_path / "prog.py")])
    assert result.exit_code == 0, result.output
    assert result.stdout == "a\nb\n"  # from the stdout events, once: not again from the result
    assert result.stderr == "careful"


# ---- webhooks -------------------------------------------------------------------------------

SECRET = "whsec_" + base64.b64encode(b"a secret of thirty-two bytes....").decode()
BODY = b'{"type":"job.finished","data":{"job_id":"j1"}}'
NOW = 1_733_612_345


def signed(body: bytes, secret: str = SECRET, timestamp: int = NOW, message_id: str = "msg_1") -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signature = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    return {"Webhook-Id": message_id, "Webhook-Timestamp": str(timestamp), "Webhook-Signature": f"v1,{signature.decode()}"}


def test_verify_webhook_accepts_a_valid_signature_among_several() -> None:
    headers = signed(BODY)
    headers["Webhook-Signature"] = "v1,bm90IHRoaXMgb25l " + headers["Webhook-Signature"]  # an old secret's, then ours
    assert verify_webhook(BODY, headers, SECRET, now=NOW + 60) == {"type": "job.finished", "data": {"job_id": "j1"}}


def test_verify_webhook_matches_the_specifications_example() -> None:
    # The example of the Standard Webhooks specification (its "Verifying webhooks" section).
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    payload = '{"test": 2432232314}'
    assert verify_webhook(payload, headers, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", now=1614265330) == {"test": 2432232314}


@pytest.mark.parametrize(
    ("body", "headers", "secret", "now", "why"),
    [
        (BODY.replace(b"j1", b"j2"), signed(BODY), SECRET, NOW, "no signature matches"),
        (BODY, signed(BODY), "whsec_" + base64.b64encode(b"another secret").decode(), NOW, "no signature matches"),
        (BODY, signed(BODY), SECRET, NOW + 301, "from now"),
        (BODY, signed(BODY, timestamp=NOW + 301), SECRET, NOW, "from now"),
        (BODY, {**signed(BODY), "Webhook-Signature": "v2,abc"}, SECRET, NOW, "no signature matches"),
        (BODY, {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(NOW)}, SECRET, NOW, "webhook-signature header is missing"),
        (BODY, signed(BODY), "whsec_!!!", NOW, "not whsec_"),
    ],
    ids=["tampered body", "wrong secret", "old timestamp", "future timestamp", "unknown version", "unsigned", "bad secret"],
)
def test_verify_webhook_refuses(body: bytes, headers: dict[str, str], secret: str, now: int, why: str) -> None:
    with pytest.raises(WebhookVerificationError, match=why):
        verify_webhook(body, headers, secret, now=now)
