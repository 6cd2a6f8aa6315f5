"""What a request must be before the app reads it: addressed to a host this API serves, and
a body that keeps arriving.

Both are plain ASGI middleware, outside Litestar's routing: a request for another host gets its
400 before anything else runs, whatever its path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_408_REQUEST_TIMEOUT
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from corral_http.schemas import Problem


class AllowedHosts:
    """Answers 400 to a request whose Host header names a host not in the list.

    Without this check, a web page on another site whose name is made to resolve to 127.0.0.1
    (DNS rebinding) could read this API's answers from the user's browser. `*` allows any host,
    `*.example.com` any subdomain of example.com; the port is not compared.

    Litestar's own AllowedHostsConfig compares the header with its port, so `127.0.0.1:8000`
    never matches `127.0.0.1`: hence this one.
    """

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self._app = app
        names = {host.lower().strip("[]") for host in hosts}
        self._any = "*" in names
        self._exact = {name for name in names if not name.startswith("*.")}
        self._suffixes = tuple(name[1:] for name in names if name.startswith("*."))

    def allows(self, header: str) -> bool:
        if self._any:
            return True
        host = _without_port(header.lower())
        return host in self._exact or (bool(self._suffixes) and host.endswith(self._suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in (ScopeType.HTTP, ScopeType.WEBSOCKET):
            header = _header(scope, b"host")
            if not self.allows(header):
                shown = header[:100]
                detail = f"Host {shown!r} is not a host this API serves; its operator lists them in CORRAL_ALLOWED_HOSTS"
                await _problem(send, HTTP_400_BAD_REQUEST, detail)
                return
        await self._app(scope, receive, send)


class SlowBodyCutOff:
    """Ends a request whose body arrives slower than a minimum rate, with 408.

    Each connection holds a task and its buffers while its body trickles in: a client sending
    one byte a second could otherwise hold them for hours, and a few thousand such clients the
    whole process. The body may take `grace_s` before the rate applies, so a slow network's
    small request is never cut.
    """

    def __init__(self, app: ASGIApp, min_bytes_per_s: int, grace_s: float) -> None:
        self._app = app
        self._rate = min_bytes_per_s
        self._grace_s = grace_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        received = 0
        complete = False

        async def timed_receive() -> ReceiveMessage:
            nonlocal received, complete
            if complete:
                return await receive()  # only a disconnect is left to come, at any time
            # By now the body must have come at the minimum rate, past the grace period.
            deadline = started + self._grace_s + received / self._rate
            try:
                async with asyncio.timeout_at(max(deadline, loop.time() + 0.001)):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    status_code=HTTP_408_REQUEST_TIMEOUT,
                    detail=f"the request body arrived slower than {self._rate} bytes per second; send it faster",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
            return message

        await self._app(scope, timed_receive, send)


def _without_port(host: str) -> str:
    if host.startswith("["):  # [::1]:8000
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


async def _problem(send: Send, status: int, detail: str) -> None:
    # Written here, not by errors.py: this runs outside the app, before its exception handlers.
    body = msgspec.json.encode(Problem(status, detail))
    start: Any = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    end: Any = {"type": "http.response.body", "body": body}
    await send(end)
