"""Clients that open a job's event stream and never read it: the API (one process, from its
PEX) holds a bounded amount for each, answers everyone else, and loses nothing for them.

Each slow client connects with a small receive buffer, sends its GET /jobs/{id}/events and
reads nothing while a job prints the most output it may (2 x 1 MiB). Were the API to buffer
what it cannot send, each such stream would cost it the job's whole output; it must instead
hold a stream's sending until its socket drains, and read the job's events a bounded batch at
a time."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from corral_client import Client
from corral_client.calls import EventReader

from corral_testbed.services import Corral, corral_on_its_own_redis

SLOW_CLIENTS = 90
# The job's output: lines of 1 KiB, as many on stdout and on stderr, just under max_output_bytes.
LINE = "x" * 1023
LINES = 1000
MAX_OUTPUT_BYTES = 1024 * 1024
LOUD_JOB = f"import sys\nfor _ in range({LINES}):\n    print({LINE!r})\n    print({LINE!r}, file=sys.stderr)\n"
# What a stream held in the API per client that does not read, were it to buffer: the job's
# whole output as events, and the `result` event, which holds it again (the job's view).
UNBOUNDED_PER_CLIENT = 2 * 2 * LINES * (len(LINE) + 1)
# A stream that waits for its socket holds its transport's write buffer (64 KiB, asyncio's and
# uvloop's high-water mark), one read's batch of events (corral_core.events.EVENTS_READ_MOST,
# 16 x 4 KiB chunks) or one slice of the result (live.RESULT_SLICE_BYTES, 64 KiB), and the
# result message its job's streams share. Measured: 58 MiB for 90 streams with that, 488 MiB
# without (each stream reading 1,000 events at a time and making its own result). The bound
# leaves room for allocator slack and is a third of what buffering would cost.
RSS_GROWTH_BOUND = SLOW_CLIENTS * UNBOUNDED_PER_CLIENT // 3
# The API's Redis connections, fewer than the slow clients and a little more than the reads its
# streams make at once (live.STREAM_READS_AT_ONCE): the flood must leave the other requests
# (every request's key check among them) a connection, rather than a 503 after the pool's wait.
REDIS_POOL = {"CORRAL_REDIS_MAX_CONNECTIONS": "12", "CORRAL_REDIS_POOL_TIMEOUT_S": "1"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    with corral_on_its_own_redis(tmp_path_factory, workers=1, auth=True, env=REDIS_POOL) as running:
        yield running


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def submit(service: Corral, key: str, body: dict[str, Any]) -> str:
    answer = httpx.post(f"{service.url}/execute", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["job_id"])


def finished(service: Corral, key: str, job_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{service.url}/jobs/{job_id}?wait=30", headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert answer.status_code == 200, answer.text
    job: dict[str, Any] = answer.json()
    assert job["status"] == "COMPLETED", job
    return job


def open_unread_stream(service: Corral, key: str, job_id: str) -> socket.socket:
    """A connection that asks for the job's events and then reads nothing."""
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Set before connecting, so the window it offers the server stays small.
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", service.port))
    client.sendall(
        f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    return client


def unsent_bytes(port: int, client_ports: set[int]) -> dict[int, int]:
    """Per slow client (by its port), the bytes the server's side of its connection has queued
    to send: the kernel's view (/proc/net/tcp), which shows the client has stopped reading."""
    queued: dict[int, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, tx_rx = fields[1], fields[2], fields[4]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) in client_ports:
            queued[int(remote.split(":")[1], 16)] = int(tx_rx.split(":")[0], 16)
    return queued


def peek(connections: list[socket.socket]) -> list[bytes]:
    """The first bytes each connection has received, unread."""
    seen = []
    for connection in connections:
        try:
            seen.append(connection.recv(200, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            seen.append(b"")
    return seen


def read_all(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    connection.settimeout(60)
    parts = []
    while chunk := connection.recv(1 << 16):
        parts.append(chunk)
    return b"".join(parts)


def events_of(response: bytes) -> list[tuple[str, str, str]]:
    """(id, kind, data) of each event in a raw HTTP/1.1 response with a chunked SSE body."""
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower(), head
    unchunked = bytearray()
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        unchunked += body[:size]
        body = body[size + 2 :]
    reader = EventReader()
    found = [reader.line(line) for line in unchunked.decode().split("\n")]
    return [(event.id, event.kind, event.data) for event in found if event is not None]


def output_of(events: list[tuple[str, str, str]], kind: str) -> str:
    return "".join(data for _, event_kind, data in events if event_kind == kind)


def test_clients_that_never_read_their_stream_cost_the_api_a_bounded_amount_and_lose_nothing(service: Corral) -> None:
    assert service.api is not None
    flooder, other = service.create_key("flooder"), service.create_key("bystander")
    job_id = submit(service, flooder, {"code": LOUD_JOB, "limits": {"max_output_bytes": MAX_OUTPUT_BYTES}})
    loud = finished(service, flooder, job_id)
    assert len(loud["result"]["stdout"]) == len(loud["result"]["stderr"]) == LINES * (len(LINE) + 1)
    # Once through first, so the process has imported and allocated what any stream needs.
    with Client(service.url, key=other) as client:
        assert [e.kind for e in client.stream(submit(service, other, {"code": "print('warm')"}))][-1] == "result"
    before = rss_bytes(service.api.pid)
    # Opened after the job ended: each stream replays the whole output at once.
    with contextlib.ExitStack() as closing:
        slow = [closing.enter_context(open_unread_stream(service, flooder, job_id)) for _ in range(SLOW_CLIENTS)]
        ports = {connection.getsockname()[1] for connection in slow}
        # Every slow client's connection is full: the server has queued bytes it cannot send.
        deadline = time.monotonic() + 120  # a generous wait: other test files may share the cores
        while len(full := [n for n in unsent_bytes(service.port, ports).values() if n > 0]) < SLOW_CLIENTS:
            assert time.monotonic() < deadline, f"{len(full)} of the slow clients' connections filled: {peek(slow)}"
            time.sleep(0.2)
        time.sleep(2)  # what the API would go on buffering, it has had time to
        growth = rss_bytes(service.api.pid) - before

        # Everyone else is answered meanwhile, and a fresh job's stream is read whole.
        assert httpx.get(f"{service.url}/readyz", timeout=10).status_code == 200
        fresh = submit(service, other, {"code": "print('fresh')"})
        with Client(service.url, key=other) as client:
            seen = list(client.stream(fresh))
        assert "".join(e.data for e in seen if e.kind == "stdout") == "fresh\n"
        assert json.loads(seen[-1].data)["result"]["stdout"] == "fresh\n"

        # The slow clients read at last, and each gets every event once, the whole output.
        for connection in slow:
            events = events_of(read_all(connection))
            assert len({event_id for event_id, _, _ in events}) == len(events)
            assert events[-1][1] == "result"
            assert output_of(events, "stdout") == f"{LINE}\n" * LINES
            assert output_of(events, "stderr") == f"{LINE}\n" * LINES
            assert json.loads(events[-1][2])["result"]["stdout"] == f"{LINE}\n" * LINES
    print(
        f"{SLOW_CLIENTS} unread streams: API RSS grew {growth / 2**20:.1f} MiB (bound {RSS_GROWTH_BOUND / 2**20:.1f} MiB)"
    )
    assert growth < RSS_GROWTH_BOUND, f"the API's RSS grew {growth} bytes for {SLOW_CLIENTS} unread streams"
