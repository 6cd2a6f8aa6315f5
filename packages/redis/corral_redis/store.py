"""Reading jobs from Redis, and waiting for one to finish without polling.

Every finish publishes the job's id on the queue's `finished` channel. A store holds one
subscription to it, read by one background task that wakes whoever waits for that id; a waiter
registers and makes sure the subscription is live before it reads the record, so a finish
published in between still wakes it.

When a finish wakes many waiters of one job at once, they share one read of its record: each
wake starts a new generation of reads for that id, and a waiter joins the read of its own
generation if one is under way (it began after the wake, so it sees the finish). A finish whose
job is small announces what that read would fetch along with the id (scripts.FINISH): that is
then the generation's read, and no waiter reads the record back.

Pub/sub delivers at most once: a finish published while the subscription was down is gone.
So each time the subscription is (re)established, every waiter is woken to read its record
again, and a waiter whose time runs out reads the record once more before it answers.

A caller that has just submitted the job says when (`submitted_s`): if the subscription has
been live since before then, the finish cannot have been missed (it is among the ids heard
lately, kept for `_HEARD_FOR_S`, or still to come), so the first read is skipped.
"""

from __future__ import annotations

import asyncio
from typing import cast

import msgspec
from redis.asyncio import Redis

from corral_core.callbacks import Callback
from corral_core.job import Job, without_inputs
from corral_redis.announcements import Announcements, wait_set
from corral_redis.connection import storage_errors
from corral_redis.keyspace import QueueKeys
from corral_redis.records import VIEW_FIELDS, announced_view, decode_record
from corral_redis.settings import DEFAULT_SETTINGS, RedisSettings

# How long, and how many, finished ids heard are remembered for a waiter that comes after its
# job's notification (a job done before its submitter began to wait).
_HEARD_FOR_S = 60.0
_HEARD_MOST = 20_000
_callback = msgspec.json.Decoder(Callback)


class RedisJobStore:
    def __init__(self, client: Redis, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._client = client
        self._keys = QueueKeys(settings.key_prefix)
        self._waiters: dict[str, set[asyncio.Event]] = {}
        # Per job id: the generation of its latest wake (a store-wide count, so that a number
        # never comes back for an id), and the read under way for it (if any).
        self._wakes = 0
        self._generation: dict[str, int] = {}
        self._reads: dict[str, tuple[int, asyncio.Future[Job | None]]] = {}
        # On a Cluster, FINISH announces with SPUBLISH (corral_redis.shards): sharded pub/sub
        # stays on the node owning the channel's slot, which is the node of the queue.
        self._finishes = Announcements(
            client, self._keys.finished, settings, self._heard, self._wake_all,
            heard_for_s=_HEARD_FOR_S, heard_most=_HEARD_MOST, what="finished-job notifications",
        )  # fmt: skip

    async def get(self, job_id: str) -> Job | None:
        key = self._keys.job(job_id)
        with storage_errors():
            values = cast(list[bytes | None], await self._client.hmget(key, VIEW_FIELDS))
            if values[0] is None and values[1] is not None:
                # A status without a head: an older API submitted the job.
                values[0] = cast(bytes | None, await self._client.hget(key, "spec"))
        found = decode_record(values)
        if found is not None and found.callback is not None:
            found = await self._with_delivery(key, found)
        return None if found is None else without_inputs(found)

    async def _with_delivery(self, key: str, found: Job) -> Job:
        """The job with its callback as its latest delivery attempt left it (corral_redis.callbacks)."""
        with storage_errors():
            state = cast(bytes | None, await self._client.hget(key, "callback"))
        return found if state is None else msgspec.structs.replace(found, callback=_callback.decode(state))

    async def file(self, job_id: str, name: str) -> bytes | None:
        with storage_errors():
            return cast(bytes | None, await self._client.hget(self._keys.job_files(job_id), name))

    async def wait_finished(self, job_id: str, timeout_s: float, submitted_s: float | None = None) -> Job | None:
        if timeout_s <= 0:
            return await self.get(job_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._finishes.listen()
        woken = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(woken)
        try:
            # Subscribed before the first read, or a finish published in between goes unseen.
            await wait_set(self._finishes.subscribed, deadline - loop.time())
            # A wake until now (the subscription going live wakes every waiter) asks for a read
            # that the first one, below, makes anyway: with it, a burst of waiters read twice.
            woken.clear()
            live_since = self._finishes.live_since
            unread = (
                submitted_s is not None
                and live_since is not None
                and live_since <= submitted_s
                and not self._finishes.heard(job_id)
            )
            found = None if unread else await self.get(job_id)
            while unread or (found is not None and not found.finished):
                unread = False
                if not await wait_set(woken, deadline - loop.time()):
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
                read = self._reads.get(job_id)
                if read is not None and read[1].done():
                    del self._reads[job_id]  # an announced view (a read removes itself)

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
        await self._finishes.aclose()


    def _heard(self, job_id: str, view: bytes) -> None:
        """A finish announced: wake the job's waiters, and when the announcement carried the job's
        view, make it the read of this wake, so that they answer without reading the record."""
        self._wake(job_id)
        if not view or job_id not in self._waiters:
            return
        values = announced_view(view)
        try:
            job = None if values is None else decode_record(values)
        except (msgspec.MsgspecError, ValueError):
            job = None
        if job is None:
            return  # not one this version can read: the waiters read the record
        read: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
        read.set_result(without_inputs(job))
        self._reads[job_id] = (self._generation[job_id], read)

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

