"""Worker heartbeats in Redis: a ZSET of expiry times beside a HASH of each worker's last info.

Expiry is Redis' own clock (TIME in the scripts), as for leases, never the worker's: a worker
whose clock is off still counts as live, and a duty passes on when its holder really went
silent. Stale entries are pruned by the scripts that read or write them. WorkerInfo.seen_at,
for people to read, is the worker's own clock.
"""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from corral_core.ports import WorkerInfo
from corral_redis import scripts
from corral_redis.connection import storage_errors
from corral_redis.keyspace import QueueKeys
from corral_redis.settings import DEFAULT_SETTINGS, RedisSettings

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(WorkerInfo).decode


class RedisWorkerRegistry:
    def __init__(self, client: Redis, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._queue_keys = QueueKeys(settings.key_prefix)
        self._keys = [self._queue_keys.workers, self._queue_keys.worker_info]
        self._heartbeat = client.register_script(scripts.HEARTBEAT)
        self._live = client.register_script(scripts.LIVE_WORKERS)
        self._hold_duty = client.register_script(scripts.HOLD_DUTY)

    async def heartbeat(self, info: WorkerInfo, ttl_ms: int) -> None:
        with storage_errors():
            await self._heartbeat(keys=self._keys, args=[info.worker_id, ttl_ms, _encode(info)])

    async def live_workers(self) -> list[WorkerInfo]:
        with storage_errors():
            found = await self._live(keys=self._keys)
        live = [_decode(info) for info in found if info is not None]
        return sorted(live, key=lambda info: info.worker_id)

    async def hold_duty(self, duty: str, worker_id: str, ttl_ms: int) -> bool:
        with storage_errors():
            held = await self._hold_duty(keys=[self._queue_keys.duty(duty)], args=[worker_id, ttl_ms])
        return bool(held)
