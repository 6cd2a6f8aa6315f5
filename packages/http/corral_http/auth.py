"""API keys at the door: every request but the operator's (health, readiness, metrics, the
schema) and the pages' (Swagger UI, the playground) must carry a key, which is counted against
its request rate.

A key comes as `Authorization: Bearer <key>` or `X-Auth-Token: <key>` (the header Judge0
clients send; under /judge0 also as the `X-Auth-Token` query parameter, as Judge0 takes it).
A missing, unknown or revoked key gets 401 with `WWW-Authenticate: Bearer`; a key over its
rate gets 429 with `Retry-After`. Every answer to a request with a valid key carries the key's
rate in the IETF draft's headers (draft-ietf-httpapi-ratelimit-headers-08):

    RateLimit-Policy: "rate";q=600;w=60     the key may make q requests per w seconds
    RateLimit: "rate";r=599;t=1             r of them are left; all are back in t seconds

The key found becomes the request's user (`request.user`, a core Caller), which the handlers
pass to the use cases. A submit route (`opt={SUBMITS: True}`) costs one round trip in all: its
key comes from a per-process cache (KeyCache, at most a second old), and the submit itself
confirms the key still exists, counts the request and books the job in the one storage step
that queues it (the caller's `uncounted_key`); `submitted` records what it found in the
request's `auth` (a KeyCheck), and the door answers with it. A key revoked meanwhile is refused
by that step, so the cache never lets a revoked key submit. A submit route that answers before
it submits (a 422, say) has its request counted once its answer is ready, and that answer is
replaced by the 401 or 429 the key earns.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Message, Receive, Scope, Send

from corral_core.access import (
    ANONYMOUS,
    ApiKey,
    Caller,
    KeyRevoked,
    KeyStore,
    OverQuota,
    Quotas,
    RateDecision,
    secret_hash,
)
from corral_core.ports import StorageUnavailable
from corral_core.submission import Submitted

# Paths an operator's probes and tools reach without a key, and the pages a browser opens (the
# playground asks its user for a key and sends it with each call it makes).
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/schema", "/play")
POLICY = "rate"
# A route handler's `opt` flag: its requests are counted by the submit they make (see above).
SUBMITS = "counted_by_submit"
_encode = msgspec.json.Encoder().encode
_UNKNOWN = "this API key is unknown or was revoked"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="corral"'}


class KeyCache:
    """Keys by the hash of their secret, each kept at most `max_age_s`, for the submits' door.

    Only keys found are kept (a new key works at once); storage still confirms each submit's
    key, so what this holds decides only how a request is routed, never whether a revoked key
    is let in. Bounded: a flood of distinct keys empties it rather than growing it.
    """

    def __init__(self, keys: KeyStore, max_age_s: float = 1.0, max_entries: int = 10_000) -> None:
        self._keys = keys
        self._max_age_s = max_age_s
        self._max_entries = max_entries
        self._found: dict[str, tuple[ApiKey, float]] = {}

    async def find(self, hashed: str) -> ApiKey | None:
        now = time.monotonic()
        cached = self._found.get(hashed)
        if cached is not None and cached[1] > now:
            return cached[0]
        key = await self._keys.find(hashed)
        if key is None:
            self._found.pop(hashed, None)
            return None
        if len(self._found) >= self._max_entries:
            self._found.clear()
        self._found[hashed] = (key, now + self._max_age_s)
        return key

    def forget(self, hashed: str) -> None:
        self._found.pop(hashed, None)


class KeyCheck:
    """The door's record of one request's key (its `request.auth`): the request's count against
    the key's rate, once made, and whether storage no longer has the key."""

    __slots__ = ("hashed", "rate", "revoked")

    def __init__(self, hashed: str, rate: RateDecision | None = None) -> None:
        self.hashed = hashed
        self.rate = rate
        self.revoked = False


class Refused(HTTPException):
    """A request the door turns away, answered in the format of the API its path belongs to."""


def rate_headers(rate: RateDecision) -> list[tuple[bytes, bytes]]:
    return [
        (b"ratelimit-policy", f'"{POLICY}";q={rate.limit};w={rate.window_s}'.encode()),
        (b"ratelimit", f'"{POLICY}";r={rate.remaining};t={rate.reset_s}'.encode()),
    ]


def caller_of(request: Request[Any, Any, Any]) -> Caller:
    """Who the request acts for: the door's key, or ANONYMOUS when keys are off."""
    user = request.scope.get("user")
    assert isinstance(user, Caller), "every job route is behind the door (KeyDoor or no_keys)"
    return user


async def submitted(request: Request[Any, Any, Any], submit: Callable[[Caller], Awaitable[Submitted]]) -> Submitted:
    """Run a submit for the request's caller and record in the door's KeyCheck what the submit
    counted; of several submits in one request (a batch), only the first counts it."""
    caller = caller_of(request)
    check = request.scope.get("auth")
    if not isinstance(check, KeyCheck) or check.rate is not None:
        caller = msgspec.structs.replace(caller, uncounted_key="")
    try:
        done = await submit(caller)
    except KeyRevoked:
        if isinstance(check, KeyCheck):
            check.revoked = True
        raise
    except OverQuota as error:
        if isinstance(check, KeyCheck) and error.rate is not None:
            check.rate = error.rate
        raise
    if isinstance(check, KeyCheck) and done.rate is not None:
        check.rate = done.rate
    return done


def refusal_body(path: str, status: int, detail: str) -> bytes:
    """The body each API gives its clients for a refusal at the door."""
    if path.startswith("/judge0"):
        # Judge0 answers a wrong or missing token with 401 and an empty body.
        return b"" if status == 401 else _encode({"error": detail})
    if path.startswith("/api/v2"):
        return _encode({"message": detail})
    return _encode({"status_code": status, "detail": detail, "errors": []})


def answer_refused(request: Request[Any, Any, Any], error: Refused) -> Response[bytes]:
    body = refusal_body(request.url.path, error.status_code, str(error.detail))
    return Response(body, status_code=error.status_code, headers=error.headers or {}, media_type="application/json")


def no_keys(app: ASGIApp) -> ASGIApp:
    """The door when keys are off: every request acts for ANONYMOUS."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        scope["user"] = ANONYMOUS
        await app(scope, receive, send)

    return middleware


class KeyDoor(AbstractAuthenticationMiddleware):
    """Authenticates by API key (see the module's docstring); `defaults` are the quotas of a
    key without overrides. Without `cache`, every request is counted before its handler runs."""

    def __init__(
        self, app: ASGIApp, keys: KeyStore, defaults: Quotas, retry_after_s: int, cache: KeyCache | None = None
    ) -> None:
        super().__init__(app, exclude=[f"^{path}" for path in OPEN_PATHS])
        self._keys = keys
        self._defaults = defaults
        self._busy = {"Retry-After": str(retry_after_s)}
        self._cache = cache
        # Every caller needs its key's quotas over the defaults; few keys, many requests.
        self._quotas = functools.lru_cache(maxsize=1024)(functools.partial(Quotas.over, defaults=defaults))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        replaced = False

        async def send_rated(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the door's own answer went instead
            check = scope.get("auth")
            if message["type"] == "http.response.start" and isinstance(check, KeyCheck):
                answer = await self._settle(check)
                if answer is not None:
                    replaced = True
                    await _answer(send, scope.get("path", ""), *answer)
                    return
                assert check.rate is not None
                message["headers"] = [*message.get("headers", []), *rate_headers(check.rate)]
            await send(message)

        await super().__call__(scope, receive, send_rated)

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        token = _token(connection.scope)
        if not token:
            raise Refused(status_code=401, detail="an API key is required: Authorization: Bearer <key>", headers=_CHALLENGE)
        hashed = secret_hash(token)
        handler = connection.scope.get("route_handler")
        try:
            if self._cache is not None and handler is not None and handler.opt.get(SUBMITS):
                key, check = await self._cache.find(hashed), KeyCheck(hashed)
            else:
                found = await self._keys.authorize(hashed, self._defaults)
                key, check = (found.key, KeyCheck(hashed, found.rate)) if found else (None, KeyCheck(hashed))
        except StorageUnavailable as error:
            raise Refused(status_code=503, detail=str(error), headers=self._busy) from None
        if key is None:
            raise Refused(status_code=401, detail=_UNKNOWN, headers=_CHALLENGE)
        if check.rate is not None and not check.rate.allowed:
            raise Refused(status_code=429, detail=_over_rate(check.rate), headers=_rate_refusal_headers(check.rate))
        uncounted = hashed if check.rate is None else ""
        caller = Caller(key_id=key.id, admin=key.admin, quotas=self._quotas(key.quotas), uncounted_key=uncounted)
        return AuthenticationResult(user=caller, auth=check)

    async def _settle(self, check: KeyCheck) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """The answer that replaces the handler's, if the key earns one: counts a request its
        handler answered without submitting."""
        if check.rate is None and not check.revoked:
            try:
                found = await self._keys.authorize(check.hashed, self._defaults)
            except StorageUnavailable as error:
                return 503, str(error), _headers(self._busy)
            check.revoked, check.rate = found is None, found.rate if found else None
        if check.revoked or check.rate is None:
            if self._cache is not None:
                self._cache.forget(check.hashed)
            return 401, _UNKNOWN, _headers(_CHALLENGE)
        if not check.rate.allowed:
            return 429, _over_rate(check.rate), _headers(_rate_refusal_headers(check.rate))
        return None


def _over_rate(rate: RateDecision) -> str:
    return f"this key is over its rate of {rate.limit} requests per {rate.window_s} s"


def _rate_refusal_headers(rate: RateDecision) -> dict[str, str]:
    return {**{name.decode(): value.decode() for name, value in rate_headers(rate)}, "Retry-After": str(rate.retry_after_s)}


def _headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


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


async def _answer(send: Send, path: str, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = refusal_body(path, status, detail)
    if body:
        headers = [*headers, (b"content-type", b"application/json")]
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)
