"""API keys, each key's request rate and usage, and idempotency records, in Redis.

Layout (QueueKeys, under the queue's prefix and hash tag):

- `apikey:<sha256 of the secret>`, a HASH per key: id, name, created_at, admin, quotas (JSON);
  `apikeys`, a HASH key id -> that hash, for listing and revoking by id. Revoking deletes both,
  so the next request with the key is refused: nothing caches a key.
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
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, cast

import msgspec
from redis.asyncio import Redis

from corral_core.access import ApiKey, Authorized, Quotas, RateDecision
from corral_redis.connection import storage_errors
from corral_redis.scripts import _NOW
from corral_redis.settings import DEFAULT_SETTINGS, QueueKeys, RedisSettings

# KEYS: the key's record. ARGV: rate key prefix, default limit, default window (s)
# -> nil (no such key), or {id, name, created_at, admin, quotas, allowed, limit, window (s),
#    remaining, reset (µs), retry after (µs)}
AUTHORIZE = (
    _NOW
    + """
local record = redis.call('HMGET', KEYS[1], 'id', 'name', 'created_at', 'admin', 'quotas')
if not record[1] then return nil end
local quotas = cjson.decode(record[5] or '{}')
local limit, window = tonumber(ARGV[2]), tonumber(ARGV[3])
if type(quotas.rate_limit) == 'number' then limit = quotas.rate_limit end
if type(quotas.rate_window_s) == 'number' then window = quotas.rate_window_s end
local rate = ARGV[1] .. record[1]
local now, window_us = now_us(), window * 1000000
local interval = window_us / limit
local tat = math.max(tonumber(redis.call('GET', rate) or '0'), now)
local next_tat = tat + interval
local allowed, remaining, reset, retry = 1, 0, 0, 0
if next_tat - now > window_us then
  allowed, reset, retry = 0, tat - now, next_tat - now - window_us
else
  redis.call('SET', rate, micros(next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
  remaining, reset = math.floor((window_us - (next_tat - now)) / interval), next_tat - now
end
return {record[1], record[2], record[3], record[4], record[5] or '{}', allowed, limit, window,
        remaining, micros(reset), micros(retry)}
"""
)

# KEYS: ledger ZSET, bytes HASH. ARGV: job id, size, max unfinished, max bytes
# -> 'ok', or the quota the booking would break
BOOK = (
    _NOW
    + """
local ledger, sizes, id = KEYS[1], KEYS[2], ARGV[1]
local lapsed = redis.call('ZRANGEBYSCORE', ledger, '-inf', micros(now_us()), 'LIMIT', 0, 1000)
for _, gone in ipairs(lapsed) do
  redis.call('HINCRBY', sizes, ':total', -tonumber(redis.call('HGET', sizes, gone) or '0'))
  redis.call('HDEL', sizes, gone)
end
if #lapsed > 0 then redis.call('ZREM', ledger, unpack(lapsed)) end
-- A booking re-sent after its reply was lost finds itself: it was made.
if redis.call('ZSCORE', ledger, id) then return 'ok' end
if redis.call('ZCOUNT', ledger, '+inf', '+inf') >= tonumber(ARGV[3]) then return 'unfinished jobs' end
local total = tonumber(redis.call('HGET', sizes, ':total') or '0')
if total + tonumber(ARGV[2]) > tonumber(ARGV[4]) then return 'stored bytes' end
redis.call('ZADD', ledger, '+inf', id)
redis.call('HSET', sizes, id, ARGV[2])
redis.call('HINCRBY', sizes, ':total', ARGV[2])
return 'ok'
"""
)

# KEYS: ledger ZSET, bytes HASH. ARGV: job id. Only a booking still unfinished is taken back.
UNBOOK = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score ~= 'inf' then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], ':total', -tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0'))
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

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
        allowed, limit, window, remaining, reset_us, retry_us = found[5:]
        rate = RateDecision(
            allowed=bool(allowed),
            limit=int(limit),
            window_s=int(window),
            remaining=int(remaining),
            reset_s=_seconds(reset_us),
            retry_after_s=_seconds(retry_us) if not allowed else 0,
        )
        return Authorized(_api_key(found[:5]), rate)


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
