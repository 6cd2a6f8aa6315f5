"""The line of callbacks to deliver, in Redis: a ZSET per queue shard, job id -> due time.

FINISH puts a job with a callback in it (lua/callback.lua), due at once, in the step that stores
the job's final state. A delivering process takes what is due with DELIVERIES_DUE, which moves
each taken id's time to the end of a lease instead of removing it: the ZSET is at once the line,
the lease set and the fence (the claim is the lease's end, which SETTLE must find unchanged), so
a process that dies mid-delivery loses nothing, the delivery comes due again when its lease
ends. A ZSET rather than a stream: a retry must come back at a time of its own choosing, which a
consumer group's pending list cannot express.

The callback's state (corral_core.callbacks.Callback) is kept in the job's hash, field
`callback`, written only while the record exists (and expiring with it); RedisJobStore reads it.
"""

from __future__ import annotations

from typing import Any

import msgspec
from redis.asyncio import Redis

from corral_core.callbacks import Callback, DeliveryState, DueDelivery
from corral_redis import scripts
from corral_redis.connection import storage_errors
from corral_redis.keyspace import QueueKeys
from corral_redis.records import micros
from corral_redis.settings import DEFAULT_SETTINGS, RedisSettings
from corral_redis.shards import shard_of, shard_prefixes

_encode = msgspec.json.Encoder().encode


class RedisCallbackDeliveries:
    def __init__(self, client: Redis, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._client = client
        # One line per queue shard, in the slot of its jobs (FINISH names it beside the job).
        self._shards = [QueueKeys(prefix) for prefix in shard_prefixes(settings)]
        self._due = client.register_script(scripts.DELIVERIES_DUE)
        self._settle = client.register_script(scripts.DELIVERIES_SETTLE)
        self._turn = 0

    def _keys(self, job_id: str) -> QueueKeys:
        return self._shards[shard_of(job_id, len(self._shards))]

    async def due(self, lease_ms: int, most: int) -> list[DueDelivery]:
        found: list[DueDelivery] = []
        # Shards in turn from call to call, so that one busy shard does not starve the others.
        self._turn = (self._turn + 1) % len(self._shards)
        with storage_errors():
            for keys in self._shards[self._turn :] + self._shards[: self._turn]:
                if len(found) >= most:
                    break
                claim, ids = await self._due(keys=[keys.deliveries], args=[lease_ms, most - len(found)])
                found.extend(DueDelivery(_text(job_id), int(claim)) for job_id in ids)
        return found

    async def settle(self, due: DueDelivery, callback: Callback) -> bool:
        keys = self._keys(due.job_id)
        again = callback.state is DeliveryState.PENDING and callback.next_at is not None
        with storage_errors():
            written = await self._settle(
                keys=[keys.deliveries, keys.job(due.job_id)],
                args=[due.job_id, due.claim, _encode(callback), micros(callback.next_at) if again else ""],  # type: ignore[arg-type]
            )
        return int(written) == 1


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
