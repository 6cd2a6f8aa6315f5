"""API keys at the door: every request but the operator's (health, readiness, metrics, the
schema) must carry a key, which is counted against its request rate before any handler runs.

A key comes as `Authorization: Bearer <key>` or `X-Auth-Token: <key>` (the header Judge0
clients send; under /judge0 also as the `X-Auth-Token` query parameter, as Judge0 takes it).
A missing, unknown or revoked key gets 401 with `WWW-Authenticate: Bearer`; a key over its
rate gets 429 with `Retry-After`. Every answer to a request with a valid key carries the key's
rate in the IETF draft's headers (draft-ietf-httpapi-ratelimit-headers-08):

    RateLimit-Policy: "rate";q=600;w=60     the key may make q requests per w seconds
    RateLimit: "rate";r=599;t=1             r of them are left; all are back in t seconds

Nothing caches a key: each request looks it up (one Redis script, which also counts the
request), so a revoked key is refused from the next request on. The key found becomes the
request's caller (`current_caller`), which the use cases act for.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from urllib.parse import parse_qs

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Message, Receive, Scope, Send

from corral_core.access import ANONYMOUS, Caller, KeyStore, Quotas, RateDecision, secret_hash
from corral_core.ports import StorageUnavailable

# The caller of the request being handled; ANONYMOUS when keys are off.
current_caller: ContextVar[Caller] = ContextVar("corral_caller", default=ANONYMOUS)

# Paths an operator's probes and tools reach without a key.
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/schema")
POLICY = "rate"
_encode = msgspec.json.Encoder().encode


def rate_headers(rate: RateDecision) -> list[tuple[bytes, bytes]]:
    return [
        (b"ratelimit-policy", f'"{POLICY}";q={rate.limit};w={rate.window_s}'.encode()),
        (b"ratelimit", f'"{POLICY}";r={rate.remaining};t={rate.reset_s}'.encode()),
    ]


def _token(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-auth-token" and value.strip():
            return value.decode("latin-1").strip()
    if scope["path"].startswith("/judge0") and scope.get("query_string"):
        given = parse_qs(scope["query_string"].decode("latin-1")).get("X-Auth-Token")
        if given:
            return given[0]
    return ""


def _refusal(path: str, status: int, detail: str) -> bytes:
    """The body each API gives its clients for a refusal at the door."""
    if path.startswith("/judge0"):
        # Judge0 answers a wrong or missing token with 401 and an empty body.
        return b"" if status == 401 else _encode({"error": detail})
    if path.startswith("/api/v2"):
        return _encode({"message": detail})
    return _encode({"status_code": status, "detail": detail, "errors": []})


async def _answer(send: Send, path: str, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = _refusal(path, status, detail)
    if body:
        headers = [*headers, (b"content-type", b"application/json")]
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


def auth_middleware(keys: Callable[[], KeyStore], defaults: Quotas, retry_after_s: int) -> Callable[[ASGIApp], ASGIApp]:
    """The middleware for `create_app`; `defaults` are the quotas of a key without overrides."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            path = scope.get("path", "")
            # A browser's CORS preflight never carries credentials: CORS answers it, not us.
            if scope["type"] != ScopeType.HTTP or path.startswith(OPEN_PATHS) or scope["method"] == "OPTIONS":
                await app(scope, receive, send)
                return
            token = _token(scope)
            challenge = [(b"www-authenticate", b'Bearer realm="corral"')]
            if not token:
                await _answer(send, path, 401, "an API key is required: Authorization: Bearer <key>", challenge)
                return
            try:
                found = await keys().authorize(secret_hash(token), defaults)
            except StorageUnavailable as error:
                await _answer(send, path, 503, str(error), [(b"retry-after", str(retry_after_s).encode())])
                return
            if found is None:
                await _answer(send, path, 401, "this API key is unknown or was revoked", challenge)
                return
            headers = rate_headers(found.rate)
            if not found.rate.allowed:
                retry = [(b"retry-after", str(found.rate.retry_after_s).encode())]
                detail = f"this key is over its rate of {found.rate.limit} requests per {found.rate.window_s} s"
                await _answer(send, path, 429, detail, [*headers, *retry])
                return

            async def send_with_rate(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), *headers]
                await send(message)

            key = found.key
            reset = current_caller.set(Caller(key_id=key.id, admin=key.admin, quotas=key.quotas.over(defaults)))
            try:
                await app(scope, receive, send_with_rate)
            finally:
                current_caller.reset(reset)

        return middleware

    return wrap
