"""Reading jobs from Redis, and waiting for one to finish without polling.

Every finish publishes the job's id on the queue's `finished` channel. A store holds one
subscription to it, read by one background task that wakes whoever waits for that id; a waiter
registers and makes sure the subscription is live before it reads the record, so a finish
published in between still wakes it.

When a finish wakes many waiters of one job at once, they share one read of its record: each
wake starts a new generation of reads for that id, and a waiter joins the read of its own
generation if one is under way (it began after the wake, so it sees the finish).

Pub/sub delivers at most once: a finish published while the subscription was down is gone.
So each time the subscription is (re)established, every waiter is woken to read its record
again, and a waiter whose time runs out reads the record once more before it answers.

A caller that has just submitted the job says when (`submitted_s`): if the subscription has
been live since before then, the finish cannot have been missed (it is among the ids heard
lately, kept for `_HEARD_FOR_S`, or still to come), so the first read is skipped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from corral_core.job import Job, without_inputs
from corral_redis.connection import storage_errors
from corral_redis.records import VIEW_FIELDS, decode_record
from corral_redis.settings import DEFAULT_SETTINGS, QueueKeys, RedisSettings

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 2.0
# How long, and how many, finished ids heard are remembered for a waiter that comes after its
# job's notification (a job done before its submitter began to wait).
_HEARD_FOR_S = 60.0
_HEARD_MOST = 20_000


class RedisJobStore:
    def __init__(self, client: Redis, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._client = client
        self._settings = settings
        self._keys = QueueKeys(settings.key_prefix)
        self._waiters: dict[str, set[asyncio.Event]] = {}
        # Per job id: the generation of its latest wake (a store-wide count, so that a number
        # never comes back for an id), and the read under way for it (if any).
        self._wakes = 0
        self._generation: dict[str, int] = {}
        self._reads: dict[str, tuple[int, asyncio.Future[Job | None]]] = {}
        self._subscribed = asyncio.Event()
        # The loop's time the live subscription was confirmed (None while there is none).
        self._live_since: float | None = None
        # Job ids heard finished lately, each with the loop's time it was heard, oldest first.
        self._heard: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._listener: asyncio.Task[None] | None = None

    async def get(self, job_id: str) -> Job | None:
        key = self._keys.job(job_id)
        with storage_errors():
            values = cast(list[bytes | None], await self._client.hmget(key, VIEW_FIELDS))
            if values[0] is None and values[1] is not None:
                # A status without a head: an older API submitted the job.
                values[0] = cast(bytes | None, await self._client.hget(key, "spec"))
        found = decode_record(values)
        return None if found is None else without_inputs(found)

    async def wait_finished(self, job_id: str, timeout_s: float, submitted_s: float | None = None) -> Job | None:
        if timeout_s <= 0:
            return await self.get(job_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._listen()
        woken = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(woken)
        try:
            # Subscribed before the first read, or a finish published in between goes unseen.
            await _wait(self._subscribed, deadline - loop.time())
            unread = (
                submitted_s is not None
                and self._live_since is not None
                and self._live_since <= submitted_s
                and job_id not in self._heard
            )
            found = None if unread else await self.get(job_id)
            while unread or (found is not None and not found.finished):
                unread = False
                if not await _wait(woken, deadline - loop.time()):
                    return await self.get(job_id)
                woken.clear()
                found = await self._shared_read(job_id)
            return found
        finally:
            waiting = self._waiters[job_id]
            waiting.discard(woken)
            if not waiting:
                del self._waiters[job_id]
                self._generation.pop(job_id, None)

    async def _shared_read(self, job_id: str) -> Job | None:
        """The record as read once since the latest wake for it, by whichever waiter came first."""
        generation = self._generation.get(job_id, 0)
        under_way = self._reads.get(job_id)
        if under_way is None or under_way[0] != generation:
            read = asyncio.ensure_future(self.get(job_id))
            under_way = (generation, read)
            self._reads[job_id] = under_way
            read.add_done_callback(lambda _: self._forget_read(job_id, read))
        # Shielded: one waiter giving up must not cancel the read the others are waiting on.
        return await asyncio.shield(under_way[1])

    def _forget_read(self, job_id: str, read: asyncio.Future[Job | None]) -> None:
        if self._reads.get(job_id, (0, None))[1] is read:
            del self._reads[job_id]
        if not read.cancelled():
            read.exception()  # retrieved here, raised to each waiter by its own await

    def waiting(self, job_id: str | None = None) -> int:
        """How many callers wait for `job_id` to finish (for any job, without one)."""
        if job_id is not None:
            return len(self._waiters.get(job_id, ()))
        return sum(len(waiting) for waiting in self._waiters.values())

    async def aclose(self) -> None:
        """Stop the notification reader. The client stays open: it is the caller's."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    close = aclose

    def _listen(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(
                self._read_notifications(), name=f"corral finished-job listener {self._keys.prefix}"
            )

    async def _read_notifications(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self._client.pubsub()
            # On a Cluster, FINISH announces with SPUBLISH (corral_redis.shards): sharded pub/sub
            # stays on the node owning the channel's slot, which is the node of the queue.
            sharded = self._settings.cluster
            try:
                if sharded:
                    await pubsub.ssubscribe(self._keys.finished)
                else:
                    await pubsub.subscribe(self._keys.finished)
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
                        # Also sent when redis-py re-subscribes after a reconnect: finishes
                        # published while the connection was down were lost, so every waiter
                        # reads its record again.
                        self._live_since = asyncio.get_running_loop().time()
                        self._subscribed.set()
                        self._wake_all()
                        backoff = 0.05
            except (RedisError, OSError) as error:
                log.warning("finished-job notifications interrupted, resubscribing: %s", error)
            except Exception:
                log.exception("finished-job listener failed, restarting it")
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
        waiting = self._waiters.get(job_id)
        if not waiting:
            return
        self._wakes += 1
        self._generation[job_id] = self._wakes
        for event in waiting:
            event.set()

    def _wake_all(self) -> None:
        for job_id in list(self._waiters):
            self._wake(job_id)


async def _wait(event: asyncio.Event, timeout_s: float) -> bool:
    if event.is_set():
        return True
    if timeout_s <= 0:
        return False
    try:
        # Not asyncio.wait_for: before Python 3.12 it loses a cancellation that arrives as the
        # event is set (see connection.py), and a cancelled reader would wait on to its deadline.
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True
