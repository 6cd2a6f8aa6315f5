"""Worker heartbeats in Redis: a ZSET of expiry times beside a HASH of each worker's last info.

Expiry is computed from the injected clock, not with Redis TTLs, so that it follows the same
clock as the leases; stale entries are pruned by the scripts that read or write them.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec
from redis.asyncio import Redis

from corral_core.ports import Clock, WorkerInfo
from corral_redis import scripts
from corral_redis.connection import storage_errors
from corral_redis.records import micros
from corral_redis.settings import DEFAULT_SETTINGS, QueueKeys, RedisSettings

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(WorkerInfo).decode


class RedisWorkerRegistry:
    def __init__(self, client: Redis, clock: Clock, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._clock = clock
        self._queue_keys = QueueKeys(settings.key_prefix)
        self._keys = [self._queue_keys.workers, self._queue_keys.worker_info]
        self._heartbeat = client.register_script(scripts.HEARTBEAT)
        self._live = client.register_script(scripts.LIVE_WORKERS)
        self._hold_duty = client.register_script(scripts.HOLD_DUTY)

    async def heartbeat(self, info: WorkerInfo, ttl_ms: int) -> None:
        now = self._clock.now()
        expires = micros(now + timedelta(milliseconds=ttl_ms))
        with storage_errors():
            await self._heartbeat(keys=self._keys, args=[micros(now), info.worker_id, expires, _encode(info)])

    async def live_workers(self) -> list[WorkerInfo]:
        with storage_errors():
            found = await self._live(keys=self._keys, args=[micros(self._clock.now())])
        live = [_decode(info) for info in found if info is not None]
        return sorted(live, key=lambda info: info.worker_id)

    async def hold_duty(self, duty: str, worker_id: str, ttl_ms: int) -> bool:
        now = self._clock.now()
        expires = micros(now + timedelta(milliseconds=ttl_ms))
        with storage_errors():
            held = await self._hold_duty(
                keys=[self._queue_keys.duty(duty)], args=[micros(now), worker_id, expires]
            )
        return bool(held)
