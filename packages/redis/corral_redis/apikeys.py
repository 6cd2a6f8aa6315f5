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
  API books a job before queuing it, at the most it may grow to; the queue's FINISH script
  (scripts.py) moves its score to the record's expiry, which it names in the job hash's `usage`
  field, and shrinks its bytes to what the job stored (lua/stored.lua), as CANCEL does;
  bookings past their expiry are dropped by the next booking (or HELD). So "unfinished" is
  exact, and "stored bytes" counts each job's real size until its record is gone. REPAIR_BOOKINGS
  recomputes a key's bookings from its live records.
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
from corral_redis import scripts
from corral_redis.connection import storage_errors
from corral_redis.keyspace import QueueKeys
from corral_redis.queue import RedisJobQueue
from corral_redis.settings import DEFAULT_SETTINGS, RedisSettings

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
        self._authorize = client.register_script(scripts.AUTHORIZE)
        self._rotate = client.register_script(scripts.ROTATE_WEBHOOK_SECRET)

    async def add(self, key: ApiKey, hashed: str) -> None:
        record = {
            "id": key.id,
            "name": key.name,
            "created_at": _encode(key.created_at),
            "admin": "1" if key.admin else "",
            "quotas": _encode(key.quotas),
            "webhook_secret": key.webhook_secret,
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

    async def webhook_secret(self, key_id: str) -> str | None:
        with storage_errors():
            hashed = await self._client.hget(self._keys.api_keys, key_id)
            if hashed is None:
                return None
            secret = await self._client.hget(self._keys.api_key(_text(hashed)), "webhook_secret")
        return None if secret is None else _text(secret)

    async def rotate_webhook_secret(self, key_id: str, secret: str) -> bool:
        with storage_errors():
            rotated = await self._rotate(keys=[self._keys.api_keys], args=[key_id, secret, self._keys.api_key("")])
        return int(rotated) == 1


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
        self._book = client.register_script(scripts.BOOK)
        self._unbook = client.register_script(scripts.UNBOOK)
        self._held = client.register_script(scripts.HELD)
        # The ledger is in the control shard, a sharded queue's records in the others: one
        # script cannot read both.
        self._sharded = settings.shards > 1
        self._repair = client.register_script(scripts.REPAIR_BOOKINGS)

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

    async def held_bytes(self, owner: str) -> int:
        with storage_errors():
            return int(await self._held(keys=[self._keys.usage(owner), self._keys.usage_bytes(owner)]))

    async def repair(self, owner: str) -> tuple[int, int]:
        if self._sharded:
            raise NotImplementedError(
                "bookings are repaired from the records beside them: not on a sharded queue (shards > 1)"
            )
        with storage_errors():
            before, after = await self._repair(
                keys=[self._keys.usage(owner), self._keys.usage_bytes(owner)], args=[self._keys.job_prefix]
            )
        return int(before), int(after)


class RedisAdmittingQueue:
    """Keyed submits in one round trip (ADMIT), onto the queue of the same Redis."""

    def __init__(self, client: Redis, queue: RedisJobQueue, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._queue = queue
        self._keys = QueueKeys(settings.key_prefix)
        self._admit = client.register_script(scripts.ADMIT)

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
        self._claim = client.register_script(scripts.CLAIM_IDEMPOTENCY)
        self._release = client.register_script(scripts.RELEASE_IDEMPOTENCY)

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
