"""API keys, each key's request rate and usage, and idempotency records, in Redis.

Layout (QueueKeys, under the queue's prefix and hash tag):

- `apikey:<sha256 of the secret>`, a HASH per key: id, name, created_at, admin, quotas (JSON);
  `apikeys`, a HASH key id -> that hash, for listing and revoking by id. Revoking deletes both,
  so the next request with the key is refused: a process may cache a key's record (the API does,
  for a second), but every request is still checked against Redis by a script that finds the
  record itself (AUTHORIZE, or ADMIT for a submit).
- `rate:<key id>`, the key's GCRA state: one number, the theoretical arrival time (µs, Redis'
  TIME). GCRA rather than a token bucket because it is one value, read and written by one
  script, with no refill loop: a request is allowed when the next arrival time stays within one
  window of now. One script both finds the key and counts the request, so an authenticated
  request costs one round trip.
- `usage:<key id>`, a ZSET of the key's jobs: score +inf while unfinished, then the time its
  record expires; `usage:<key id>:bytes`, a HASH job id -> bytes booked, and `:total`. The
  API books a job before queuing it; the queue's FINISH script (scripts.py) moves its score to
  the record's expiry, which it names in the job hash's `usage` field; bookings past their
  expiry are dropped by the next booking. So "unfinished" is exact, and "stored bytes" counts
  each job's booking until its record is gone.
- `idempotency:<key id>:<sha256 of the Idempotency-Key>`, "<job id> <fingerprint>" with a TTL.

A keyed submit is one script, ADMIT: AUTHORIZE, BOOK and the queue's SUBMIT run as functions of
one script (each with its own KEYS and ARGV), so the request costs one round trip and a refusal
at any step leaves nothing behind (a booking whose job the queue refuses is taken back in it).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, cast

import msgspec
from redis.asyncio import Redis

from corral_core.access import Admitted, ApiKey, Authorized, Quotas, RateDecision
from corral_core.job import Job
from corral_redis.connection import storage_errors
from corral_redis.queue import RedisJobQueue
from corral_redis.scripts import _LINES, _NOW, _WRITE_PROGRESS, SUBMIT
from corral_redis.settings import DEFAULT_SETTINGS, QueueKeys, RedisSettings

# KEYS: the key's record. ARGV: rate key prefix, default limit, default window (s)
# -> nil (no such key), or {id, name, created_at, admin, quotas, allowed, limit, window (s),
#    remaining, reset (µs), retry after (µs)}
# GCRA: one request against a key's rate kept in `rate` (its theoretical arrival time, µs)
# -> {allowed, limit, window (s), remaining, reset (µs), retry after (µs)}
_GCRA = """
local function gcra(rate, limit, window, now)
  local window_us = window * 1000000
  local interval = window_us / limit
  local tat = math.max(tonumber(redis.call('GET', rate) or '0'), now)
  local next_tat = tat + interval
  if next_tat - now > window_us then
    return {0, limit, window, 0, micros(tat - now), micros(next_tat - now - window_us)}
  end
  redis.call('SET', rate, micros(next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
  return {1, limit, window, math.floor((window_us - (next_tat - now)) / interval), micros(next_tat - now), '0'}
end
"""

# KEYS: the key's record. ARGV: rate key prefix, default limit, default window (s)
# -> nil (no such key), or {id, name, created_at, admin, quotas, then GCRA's answer}
AUTHORIZE = (
    _NOW
    + _GCRA
    + """
local record = redis.call('HMGET', KEYS[1], 'id', 'name', 'created_at', 'admin', 'quotas')
if not record[1] then return nil end
local quotas = cjson.decode(record[5] or '{}')
local limit, window = tonumber(ARGV[2]), tonumber(ARGV[3])
if type(quotas.rate_limit) == 'number' then limit = quotas.rate_limit end
if type(quotas.rate_window_s) == 'number' then window = quotas.rate_window_s end
local rate = gcra(ARGV[1] .. record[1], limit, window, now_us())
return {record[1], record[2], record[3], record[4], record[5] or '{}', unpack(rate)}
"""
)

# KEYS: ledger ZSET, bytes HASH. ARGV: job id, size, max unfinished, max bytes; `now` (µs)
# -> 'ok', or the quota the booking would break
# The bytes HASH holds a job's booking exactly while the ledger does (both are written and
# dropped together; FINISH only moves the ledger's score), so one HMGET finds both whether the
# job is booked and the key's total.
_BOOK = """
local ledger, sizes, id = KEYS[1], KEYS[2], ARGV[1]
local lapsed = redis.call('ZRANGEBYSCORE', ledger, '-inf', micros(now), 'LIMIT', 0, 1000)
if #lapsed > 0 then
  local freed = 0
  for _, size in ipairs(redis.call('HMGET', sizes, unpack(lapsed))) do freed = freed + tonumber(size or '0') end
  redis.call('HINCRBY', sizes, ':total', -freed)
  redis.call('HDEL', sizes, unpack(lapsed))
  redis.call('ZREM', ledger, unpack(lapsed))
end
local booked = redis.call('HMGET', sizes, id, ':total')
-- A booking re-sent after its reply was lost finds itself: it was made.
if booked[1] then return 'ok' end
if redis.call('ZCOUNT', ledger, '+inf', '+inf') >= tonumber(ARGV[3]) then return 'unfinished jobs' end
local total = tonumber(booked[2] or '0') + tonumber(ARGV[2])
if total > tonumber(ARGV[4]) then return 'stored bytes' end
redis.call('ZADD', ledger, '+inf', id)
redis.call('HSET', sizes, id, ARGV[2], ':total', micros(total))
return 'ok'
"""
BOOK = _NOW + "local now = now_us()\n" + _BOOK

# KEYS: ledger ZSET, bytes HASH. ARGV: job id. Only a booking still unfinished is taken back.
UNBOOK = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score ~= 'inf' then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], ':total', -tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0'))
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

# KEYS: the key's record, its rate, its ledger ZSET and bytes HASH, then SUBMIT's KEYS
# ARGV: the key's id, its rate limit and window (s), the job's size, its max unfinished and max
# bytes (the key's quotas, resolved), then SUBMIT's ARGV (whose second is the job id)
# -> {outcome, GCRA's answer}; outcome 'ok', 'revoked' (no key with that id: no answer
#    follows), 'rate', BOOK's refusal, or 'queue <SUBMIT outcome>'
# The key's quotas come from the caller, who read them from the key's record (they never
# change); the record itself is only checked to be there, which is what revoking removes.
# BOOK, UNBOOK and SUBMIT run as they are, as functions whose KEYS and ARGV are ADMIT's slices.
_SUBMIT_BODY = SUBMIT.removeprefix(_WRITE_PROGRESS + _LINES)
assert _SUBMIT_BODY != SUBMIT, "SUBMIT starts with its helpers"
ADMIT = (
    _NOW
    + _GCRA
    + "local function book(KEYS, ARGV, now)\n" + _BOOK + "end\n"
    + "local function unbook(KEYS, ARGV)\n" + UNBOOK + "end\n"
    + "local function submit(KEYS, ARGV)\n" + _WRITE_PROGRESS + _LINES + _SUBMIT_BODY + "end\n"
    + """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return {'revoked'} end
local now = now_us()
local rate = gcra(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]), now)
if rate[1] ~= 1 then return {'rate', unpack(rate)} end
local ledger = {KEYS[3], KEYS[4]}
local job_keys, job_args = {unpack(KEYS, 5)}, {unpack(ARGV, 7)}
local booked = book(ledger, {job_args[2], ARGV[4], ARGV[5], ARGV[6]}, now)
if booked ~= 'ok' then return {booked, unpack(rate)} end
local queued = submit(job_keys, job_args)
if queued ~= 1 then
  unbook(ledger, {job_args[2]})
  return {'queue ' .. queued, unpack(rate)}
end
return {'ok', unpack(rate)}
"""
)

# KEYS: the record. ARGV: "<job id> <fingerprint>", ttl (s) -> nil when claimed, else the first
CLAIM = """
local first = redis.call('GET', KEYS[1])
if first then return first end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return nil
"""

# KEYS: the record. ARGV: job id. Deleted only while it still names that job.
RELEASE_CLAIM = """
local first = redis.call('GET', KEYS[1])
if first and string.sub(first, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then redis.call('DEL', KEYS[1]) end
return 0
"""

_quotas = msgspec.json.Decoder(Quotas)
_time = msgspec.json.Decoder(datetime)
_encode = msgspec.json.Encoder().encode


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _seconds(us: Any) -> int:
    return -(-int(us) // 1_000_000)  # rounded up: a client that waits that long is let in


class RedisKeyStore:
    def __init__(self, client: Redis, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._client = client
        self._keys = QueueKeys(settings.key_prefix)
        self._authorize = client.register_script(AUTHORIZE)

    async def add(self, key: ApiKey, hashed: str) -> None:
        record = {
            "id": key.id,
            "name": key.name,
            "created_at": _encode(key.created_at),
            "admin": "1" if key.admin else "",
            "quotas": _encode(key.quotas),
        }
        with storage_errors():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(self._keys.api_key(hashed), mapping=record)  # type: ignore[arg-type]
                pipe.hset(self._keys.api_keys, key.id, hashed)
                await pipe.execute()

    async def keys(self) -> list[ApiKey]:
        with storage_errors():
            hashes = cast(dict[bytes, bytes], await self._client.hgetall(self._keys.api_keys))
            found = []
            for hashed in hashes.values():
                values = await self._client.hmget(self._keys.api_key(_text(hashed)), ["id", "name", "created_at", "admin", "quotas"])
                if values[0] is not None:
                    found.append(_api_key(values))
        return sorted(found, key=lambda key: (key.created_at, key.id))

    async def revoke(self, key_id: str) -> bool:
        with storage_errors():
            hashed = await self._client.hget(self._keys.api_keys, key_id)
            if hashed is None:
                return False
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self._keys.api_key(_text(hashed)))
                pipe.hdel(self._keys.api_keys, key_id)
                await pipe.execute()
        return True

    async def authorize(self, hashed: str, defaults: Quotas) -> Authorized | None:
        with storage_errors():
            found = await self._authorize(
                keys=[self._keys.api_key(hashed)],
                args=[self._keys.rate(""), defaults.rate_limit or 1, defaults.rate_window_s or 1],
            )
        if found is None:
            return None
        return Authorized(_api_key(found[:5]), _rate(found[5:]))

    async def find(self, hashed: str) -> ApiKey | None:
        with storage_errors():
            values = await self._client.hmget(self._keys.api_key(hashed), ["id", "name", "created_at", "admin", "quotas"])
        return None if values[0] is None else _api_key(values)


def _rate(values: list[Any]) -> RateDecision:
    """AUTHORIZE's answer from `allowed` on."""
    allowed, limit, window, remaining, reset_us, retry_us = values
    return RateDecision(
        allowed=bool(allowed),
        limit=int(limit),
        window_s=int(window),
        remaining=int(remaining),
        reset_s=_seconds(reset_us),
        retry_after_s=_seconds(retry_us) if not allowed else 0,
    )


def _api_key(values: list[Any]) -> ApiKey:
    key_id, name, created_at, admin, quotas = values
    return ApiKey(
        id=_text(key_id),
        name=_text(name),
        created_at=_time.decode(created_at),
        admin=bool(admin),
        quotas=_quotas.decode(quotas) if quotas else Quotas(),
    )


class RedisUsageLedger:
    def __init__(self, client: Redis, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._keys = QueueKeys(settings.key_prefix)
        self._book = client.register_script(BOOK)
        self._unbook = client.register_script(UNBOOK)

    async def book(self, owner: str, job_id: str, size: int, max_unfinished: int, max_bytes: int) -> str | None:
        with storage_errors():
            outcome = await self._book(
                keys=[self._keys.usage(owner), self._keys.usage_bytes(owner)],
                args=[job_id, size, max_unfinished, max_bytes],
            )
        refused = _text(outcome)
        return None if refused == "ok" else refused

    async def unbook(self, owner: str, job_id: str) -> None:
        with storage_errors():
            await self._unbook(keys=[self._keys.usage(owner), self._keys.usage_bytes(owner)], args=[job_id])


class RedisAdmittingQueue:
    """Keyed submits in one round trip (ADMIT), onto the queue of the same Redis."""

    def __init__(self, client: Redis, queue: RedisJobQueue, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._queue = queue
        self._keys = QueueKeys(settings.key_prefix)
        self._admit = client.register_script(ADMIT)

    async def submit_admitted(self, job: Job, hashed: str, quotas: Quotas, size: int) -> Admitted:
        assert quotas.max_unfinished is not None and quotas.max_stored_bytes is not None, "quotas are resolved"
        keys = self._keys
        with storage_errors():
            answer = await self._admit(
                keys=[
                    keys.api_key(hashed), keys.rate(job.owner), keys.usage(job.owner), keys.usage_bytes(job.owner),
                    *self._queue.submit_keys(job),
                ],
                args=[
                    job.owner, quotas.rate_limit or 1, quotas.rate_window_s or 1,
                    size, quotas.max_unfinished, quotas.max_stored_bytes, *self._queue.submit_args(job),
                ],
            )  # fmt: skip
        outcome = _text(answer[0])
        if outcome == "revoked":
            return Admitted("revoked", None)
        if outcome.startswith("queue "):
            raise self._queue.refusal(int(outcome.removeprefix("queue ")), job)
        return Admitted(None if outcome == "ok" else outcome, _rate(answer[1:]))


class RedisIdempotencyRecords:
    def __init__(self, client: Redis, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._keys = QueueKeys(settings.key_prefix)
        self._claim = client.register_script(CLAIM)
        self._release = client.register_script(RELEASE_CLAIM)

    def _record(self, scope: str, key: str) -> str:
        # Hashed: a client's key may be long or hold anything; the record's name stays short.
        return self._keys.idempotency(scope, hashlib.sha256(key.encode()).hexdigest())

    async def claim(self, scope: str, key: str, job_id: str, fingerprint: str, ttl_s: int) -> tuple[str, str] | None:
        with storage_errors():
            first = await self._claim(keys=[self._record(scope, key)], args=[f"{job_id} {fingerprint}", ttl_s])
        if first is None:
            return None
        first_id, _, first_fingerprint = _text(first).partition(" ")
        return first_id, first_fingerprint

    async def release(self, scope: str, key: str, job_id: str) -> None:
        with storage_errors():
            await self._release(keys=[self._record(scope, key)], args=[job_id])
