"""API keys at the door: every request but the operator's (health, readiness, metrics, the
schema) must carry a key, which is counted against its request rate before any handler runs.

A key comes as `Authorization: Bearer <key>` or `X-Auth-Token: <key>` (the header Judge0
clients send; under /judge0 also as the `X-Auth-Token` query parameter, as Judge0 takes it).
A missing, unknown or revoked key gets 401 with `WWW-Authenticate: Bearer`; a key over its
rate gets 429 with `Retry-After`. Every answer to a request with a valid key carries the key's
rate in the IETF draft's headers (draft-ietf-httpapi-ratelimit-headers-08):

    RateLimit-Policy: "rate";q=600;w=60     the key may make q requests per w seconds
    RateLimit: "rate";r=599;t=1             r of them are left; all are back in t seconds

Each request looks its key up in Redis (one script, which also counts the request), so a
revoked key is refused from the next request on; the key found becomes the request's caller
(`current_caller`), which the use cases act for. A submit (a route with `opt={SUBMITS: True}`)
costs one round trip in all: its key comes from a per-process cache (KeyCache, at most a
second old), and the submit itself confirms the key still exists, counts the request and books
the job in the script that queues it (corral_core.access.RateCount). A key revoked meanwhile
is refused by that script, so the cache never lets a revoked key submit. A submit route that
answers before it submits (a 422, say) has its request counted here once its answer is ready,
and that answer is replaced by the 401 or 429 the key earns.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from urllib.parse import parse_qs

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Message, Receive, Scope, Send

from corral_core.access import ANONYMOUS, ApiKey, Caller, KeyStore, Quotas, RateCount, RateDecision, secret_hash
from corral_core.ports import StorageUnavailable

# The caller of the request being handled; ANONYMOUS when keys are off.
current_caller: ContextVar[Caller] = ContextVar("corral_caller", default=ANONYMOUS)

# Paths an operator's probes and tools reach without a key.
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/schema")
POLICY = "rate"
# A route handler's `opt` flag: its requests are counted by the submit they make (see above).
SUBMITS = "counted_by_submit"
_encode = msgspec.json.Encoder().encode
_UNKNOWN = "this API key is unknown or was revoked"


class KeyCache:
    """Keys by the hash of their secret, each kept at most `max_age_s`, for the submits' door.

    Only keys found are kept (a new key works at once); Redis still confirms each submit's key,
    so what this holds decides only how a request is routed, never whether a revoked key is let
    in. Bounded: a flood of distinct keys empties it rather than growing it.
    """

    def __init__(self, keys: Callable[[], KeyStore], max_age_s: float = 1.0, max_entries: int = 10_000) -> None:
        self._keys = keys
        self._max_age_s = max_age_s
        self._max_entries = max_entries
        self._found: dict[str, tuple[ApiKey, float]] = {}

    async def find(self, hashed: str) -> ApiKey | None:
        now = time.monotonic()
        cached = self._found.get(hashed)
        if cached is not None and cached[1] > now:
            return cached[0]
        key = await self._keys().find(hashed)
        if key is None:
            self._found.pop(hashed, None)
            return None
        if len(self._found) >= self._max_entries:
            self._found.clear()
        self._found[hashed] = (key, now + self._max_age_s)
        return key

    def forget(self, hashed: str) -> None:
        self._found.pop(hashed, None)


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


def _over_rate(send: Send, path: str, rate: RateDecision) -> Awaitable[None]:
    retry = [(b"retry-after", str(rate.retry_after_s).encode())]
    detail = f"this key is over its rate of {rate.limit} requests per {rate.window_s} s"
    return _answer(send, path, 429, detail, [*rate_headers(rate), *retry])


def auth_middleware(
    keys: Callable[[], KeyStore], defaults: Quotas, retry_after_s: int, cache: KeyCache | None = None
) -> Callable[[ASGIApp], ASGIApp]:
    """The middleware for `create_app`; `defaults` are the quotas of a key without overrides.
    Without `cache`, every request is counted before its handler runs."""
    challenge = [(b"www-authenticate", b'Bearer realm="corral"')]
    busy = [(b"retry-after", str(retry_after_s).encode())]

    # Every request's caller needs its key's quotas over the defaults; few keys, many requests.
    @functools.lru_cache(maxsize=1024)
    def resolved(quotas: Quotas) -> Quotas:
        return quotas.over(defaults)

    def wrap(app: ASGIApp) -> ASGIApp:
        async def counted_by_submit(scope: Scope, receive: Receive, send: Send, hashed: str) -> None:
            assert cache is not None
            path = scope.get("path", "")
            try:
                key = await cache.find(hashed)
            except StorageUnavailable as error:
                await _answer(send, path, 503, str(error), busy)
                return
            if key is None:
                await _answer(send, path, 401, _UNKNOWN, challenge)
                return
            count = RateCount(hashed)
            replaced = False

            async def send_counted(message: Message) -> None:
                nonlocal replaced
                if replaced:
                    return
                if message["type"] == "http.response.start":
                    if count.rate is None and not count.revoked:
                        # The handler answered without submitting: count the request now.
                        try:
                            found = await keys().authorize(hashed, defaults)
                        except StorageUnavailable as error:
                            replaced = True
                            await _answer(send, path, 503, str(error), busy)
                            return
                        count.revoked, count.rate = found is None, found.rate if found else None
                    if count.revoked or count.rate is None:
                        cache.forget(hashed)
                        replaced = True
                        await _answer(send, path, 401, _UNKNOWN, challenge)
                        return
                    if not count.rate.allowed:
                        replaced = True
                        await _over_rate(send, path, count.rate)
                        return
                    message["headers"] = [*message.get("headers", []), *rate_headers(count.rate)]
                await send(message)

            caller = Caller(key_id=key.id, admin=key.admin, quotas=resolved(key.quotas), rate_count=count)
            reset = current_caller.set(caller)
            try:
                await app(scope, receive, send_counted)
            finally:
                current_caller.reset(reset)

        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            path = scope.get("path", "")
            # A browser's CORS preflight never carries credentials: CORS answers it, not us.
            if scope["type"] != ScopeType.HTTP or path.startswith(OPEN_PATHS) or scope["method"] == "OPTIONS":
                await app(scope, receive, send)
                return
            token = _token(scope)
            if not token:
                await _answer(send, path, 401, "an API key is required: Authorization: Bearer <key>", challenge)
                return
            handler = scope.get("route_handler")
            if cache is not None and handler is not None and handler.opt.get(SUBMITS):
                await counted_by_submit(scope, receive, send, secret_hash(token))
                return
            try:
                found = await keys().authorize(secret_hash(token), defaults)
            except StorageUnavailable as error:
                await _answer(send, path, 503, str(error), busy)
                return
            if found is None:
                await _answer(send, path, 401, _UNKNOWN, challenge)
                return
            headers = rate_headers(found.rate)
            if not found.rate.allowed:
                await _over_rate(send, path, found.rate)
                return

            async def send_with_rate(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), *headers]
                await send(message)

            key = found.key
            reset = current_caller.set(Caller(key_id=key.id, admin=key.admin, quotas=resolved(key.quotas)))
            try:
                await app(scope, receive, send_with_rate)
            finally:
                current_caller.reset(reset)

        return middleware

    return wrap
