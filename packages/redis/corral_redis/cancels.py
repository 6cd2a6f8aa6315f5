"""Cancel notices for workers: the queue's `cancelled` channel, read by one task per process.

The CANCEL script (scripts.py) publishes a job's id there. A worker registers the jobs it runs
and makes sure its subscription is live before it reads their status, so a cancel published in
between still wakes it. Pub/sub delivers at most once: each time the subscription is
(re)established every waiter reads its job's status again, and a notice lost all the same is
caught by the job's next lease renewal, which the cancel made fail.

A channel of its own rather than the `finished` one: cancels are rare, and a worker would
otherwise hear of every job that finishes anywhere.

The first read is skipped when the subscription has been live since before the job was
claimed (`since_s`): a cancel from before the claim would have kept it from starting the job,
and one from after reached the subscription, where a notice heard before its waiter came is
remembered for a while (`_HEARD_FOR_S`). That saves a worker one round trip per job.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from corral_core.job import JobStatus
from corral_core.ports import StorageUnavailable
from corral_redis.announcements import Announcements
from corral_redis.connection import storage_errors
from corral_redis.keyspace import QueueKeys
from corral_redis.settings import DEFAULT_SETTINGS, RedisSettings

# How long, and how many, cancels heard are remembered for a waiter that comes after its notice
# (a job claimed a moment before its cancel). One forgotten is still caught by a renewal.
_HEARD_FOR_S = 60.0
_HEARD_MOST = 10_000
_CANCELLED = JobStatus.CANCELLED.value.encode()


class RedisCancelNotices:
    def __init__(self, client: Redis, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._client = client
        self._keys = QueueKeys(settings.key_prefix)
        self._waiters: dict[str, set[asyncio.Event]] = {}
        # On a Cluster, CANCEL announces with SPUBLISH (corral_redis.shards), as FINISH does.
        self._cancels = Announcements(
            client, self._keys.cancelled, settings, lambda job_id, _: self._wake(job_id), self._wake_all,
            heard_for_s=_HEARD_FOR_S, heard_most=_HEARD_MOST, what="cancel notices",
        )  # fmt: skip

    async def wait_cancelled(self, job_id: str, since_s: float | None = None) -> None:
        self._cancels.listen()
        woken = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(woken)
        try:
            # Subscribed before the first read, or a cancel published in between goes unheard.
            await self._cancels.subscribed.wait()
            woken.clear()  # a wake until now (going live) asks for the read made below anyway
            live_since = self._cancels.live_since
            if since_s is not None and live_since is not None and live_since <= since_s:
                if self._cancels.heard(job_id):
                    return
                await woken.wait()
                woken.clear()
            while not await self._is_cancelled(job_id):
                await woken.wait()
                woken.clear()
        finally:
            waiting = self._waiters[job_id]
            waiting.discard(woken)
            if not waiting:
                del self._waiters[job_id]

    async def _is_cancelled(self, job_id: str) -> bool:
        try:
            with storage_errors():
                return await self._client.hget(self._keys.job(job_id), "status") == _CANCELLED
        except StorageUnavailable:
            # Read again on the next wake: the resubscription after the outage wakes every waiter.
            return False

    async def aclose(self) -> None:
        """Stop the notice reader. The client stays open: it is the caller's."""
        await self._cancels.aclose()

    def _wake_all(self) -> None:
        for job_id in list(self._waiters):
            self._wake(job_id)

    def _wake(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()
