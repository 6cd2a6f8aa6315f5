"""Input that cannot hurt, through the real server (uvicorn, the API PEX, Redis, workers):
bodies that are not JSON or not well-formed, a Host header the API does not serve, and a body
that trickles in, sent on a raw socket a byte at a time."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral_testbed.redis_server import RedisServerProcess, require_redis_server
from corral_testbed.services import Corral, corral

# The rate a body must keep after its grace period: a byte per 100 ms is far below it.
SLOW_BODY = {"CORRAL_MIN_BODY_BYTES_PER_S": "100", "CORRAL_BODY_GRACE_S": "1"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    require_redis_server()
    with RedisServerProcess(tmp_path_factory.mktemp("redis"), unix_socket=True) as server:
        logs: Path = tmp_path_factory.mktemp("logs")
        with corral(server.url, logs, workers=1, env=SLOW_BODY) as running:
            yield running


@pytest.mark.parametrize(
    ("body", "content_type", "status", "detail"),
    [
        (b'{"code": "print(1)"}', "text/plain", 415, "the body must be sent as Content-Type: application/json"),
        (b'{"code": "\xff"}', "application/json", 400, "the body is not valid UTF-8"),
        (b"[" * 100_000, "application/json", 400, "the body's JSON nests too deeply"),
        (b'{"code": ', "application/json", 400, "the body is not valid JSON"),
    ],
)
def test_bodies_that_are_not_well_formed_json_are_refused_saying_why(
    service: Corral, body: bytes, content_type: str, status: int, detail: str
) -> None:
    response = httpx.post(f"{service.url}/execute", content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(detail)


def test_a_host_the_api_does_not_serve_is_400(service: Corral) -> None:
    response = httpx.get(f"{service.url}/healthz", headers={"host": "rebound.example"})
    assert response.status_code == 400
    assert "CORRAL_ALLOWED_HOSTS" in response.json()["detail"]
    assert httpx.get(f"{service.url}/healthz", headers={"host": f"localhost:{service.port}"}).status_code == 200


def test_a_body_sent_a_byte_per_100_ms_is_cut_off(service: Corral) -> None:
    body = b'{"code": "print(1)", "stdin": "' + b"x" * 200 + b'"}'
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as connection:
        connection.sendall(
            b"POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        started = time.monotonic()
        connection.settimeout(0.1)
        answer = b""
        for byte in body:
            try:
                connection.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                continue
            answer += chunk
            if not chunk or b"\r\n\r\n" in answer:
                break
        elapsed = time.monotonic() - started
        # The head and the body may come in separate segments; the server closes after both.
        connection.settimeout(5)
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := connection.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"bytes per second" in answer
    # Cut off after its grace period, long before the 27 s the whole body would have taken.
    assert 0.9 < elapsed < 5, elapsed
