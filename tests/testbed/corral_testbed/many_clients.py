"""Thousands of HTTP clients at once from one test process, on bare asyncio streams.

A real client library keeps a pool and a thread or task per request; at a few thousand
concurrent long-polls that costs more than the API under test. Each call here is one
connection, one HTTP/1.1 request with `Connection: close`, and the whole answer read back.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    # The event loop's clock when the last byte arrived.
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


async def request(url: str, method: str = "GET", body: object | None = None, timeout_s: float = 60) -> Answer:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    payload = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            writer.write(head.encode() + payload)
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
    head_bytes, _, content = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, content, asyncio.get_running_loop().time())
