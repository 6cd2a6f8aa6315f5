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
import collections
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from corral_core.job import JobStatus
from corral_core.ports import StorageUnavailable
from corral_redis.connection import storage_errors
from corral_redis.settings import DEFAULT_SETTINGS, QueueKeys, RedisSettings

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 2.0
# How long, and how many, cancels heard are remembered for a waiter that comes after its notice
# (a job claimed a moment before its cancel). One forgotten is still caught by a renewal.
_HEARD_FOR_S = 60.0
_HEARD_MOST = 10_000
_CANCELLED = JobStatus.CANCELLED.value.encode()


class RedisCancelNotices:
    def __init__(self, client: Redis, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._client = client
        self._settings = settings
        self._keys = QueueKeys(settings.key_prefix)
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._subscribed = asyncio.Event()
        # The loop's time the live subscription was confirmed (None while there is none).
        self._live_since: float | None = None
        # Job ids cancelled lately, each with the loop's time it was heard, oldest first.
        self._heard: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._listener: asyncio.Task[None] | None = None

    async def wait_cancelled(self, job_id: str, since_s: float | None = None) -> None:
        self._listen()
        woken = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(woken)
        try:
            # Subscribed before the first read, or a cancel published in between goes unheard.
            await self._subscribed.wait()
            if since_s is not None and self._live_since is not None and self._live_since <= since_s:
                if job_id in self._heard:
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
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    def _listen(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(
                self._read_notices(), name=f"corral cancel-notice listener {self._keys.prefix}"
            )

    async def _read_notices(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self._client.pubsub()
            # On a Cluster, CANCEL announces with SPUBLISH (corral_redis.shards), as FINISH does.
            sharded = self._settings.cluster
            try:
                if sharded:
                    await pubsub.ssubscribe(self._keys.cancelled)
                else:
                    await pubsub.subscribe(self._keys.cancelled)
                while True:
                    if sharded:
                        message = await pubsub.get_sharded_message(timeout=self._settings.listen_idle_s)  # type: ignore[attr-defined]
                    else:
                        message = await pubsub.get_message(timeout=self._settings.listen_idle_s)
                    if message is None:
                        continue
                    if message["type"] in ("message", "smessage"):
                        self._heard_now(message["data"].decode())
                    elif message["type"] in ("subscribe", "ssubscribe"):
                        # Also after a reconnect: notices sent meanwhile were lost.
                        self._live_since = asyncio.get_running_loop().time()
                        self._subscribed.set()
                        for job_id in list(self._waiters):
                            self._wake(job_id)
                        backoff = 0.05
            except (RedisError, OSError) as error:
                log.warning("cancel notices interrupted, resubscribing: %s", error)
            except Exception:
                log.exception("cancel-notice listener failed, restarting it")
            finally:
                self._live_since = None
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    def _heard_now(self, job_id: str) -> None:
        now = asyncio.get_running_loop().time()
        self._heard[job_id] = now
        self._heard.move_to_end(job_id)
        while self._heard and (len(self._heard) > _HEARD_MOST or next(iter(self._heard.values())) < now - _HEARD_FOR_S):
            self._heard.popitem(last=False)
        self._wake(job_id)

    def _wake(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()
