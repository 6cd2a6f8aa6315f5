"""A running job's events and an interactive job's input, each one Redis stream beside the job.

A stream rather than a list: its entry ids are the events' ids, increasing, and XRANGE from
just after one (`(id`) answers a client that comes back with the last it saw in O(log n).
Each append or send is one script (scripts.APPEND_EVENTS, SEND_INPUT) that adds its entries,
renews the stream's expiry to the finished record's TTL and announces the job's id on a
channel. Events are trimmed to about EVENTS_KEPT entries; input needs no trim, since a send
past the job's most bytes is refused.

A reader with nothing to read yet waits for that announcement as the job store waits for a
finish (store.py): one subscription per process and channel (announcements.py), whose reader
wakes the waiters of the job announced. A waiter registers and makes sure the subscription is
live before it reads, so an append in between still wakes it; and since pub/sub delivers at
most once, every waiter reads again when the subscription comes back, and once more when its
time runs out.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from corral_core.events import EVENTS_READ_MOST, EventKind, InputChunk, JobEvent
from corral_redis import scripts
from corral_redis.announcements import Announcements, wait_set
from corral_redis.connection import storage_errors
from corral_redis.keyspace import QueueKeys
from corral_redis.settings import DEFAULT_SETTINGS, RedisSettings

# About the most events a job's stream keeps (trimmed whole macro nodes at a time, so a few
# more): the worker's output cap bounds a job's chunks well below this.
EVENTS_KEPT = 10_000
# The most input chunks one receive returns (events: EVENTS_READ_MOST): the worker reads on
# from the last it got.
INPUT_READ_MOST = 1_000

T = TypeVar("T")
_Entries = list[tuple[bytes, dict[bytes, bytes]]]


class _Waiters:
    """Readers waiting for jobs' streams to grow, woken through one subscription to `channel`."""

    def __init__(self, client: Redis, channel: str, settings: RedisSettings, what: str) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}
        # No waiter asks what was heard before it came (it reads the stream instead): nothing
        # heard need be remembered.
        self._announcements = Announcements(
            client, channel, settings, lambda job_id, _: self._wake(job_id), self._wake_all,
            heard_for_s=0, heard_most=1, what=what,
        )  # fmt: skip

    async def read(self, job_id: str, timeout_s: float, read: Callable[[], Awaitable[list[T]]]) -> list[T]:
        """What `read` finds, or when it finds nothing, what it finds once the job's stream has
        grown, within `timeout_s`."""
        if timeout_s <= 0:
            return await read()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._announcements.listen()
        woken = asyncio.Event()
        self._waiting.setdefault(job_id, set()).add(woken)
        try:
            # Subscribed before the first read, or an append announced in between goes unheard.
            await wait_set(self._announcements.subscribed, deadline - loop.time())
            woken.clear()  # a wake until now (going live) asks for the read made below anyway
            found = await read()
            while not found:
                if not await wait_set(woken, deadline - loop.time()):
                    return await read()
                woken.clear()
                found = await read()
            return found
        finally:
            waiting = self._waiting[job_id]
            waiting.discard(woken)
            if not waiting:
                del self._waiting[job_id]

    def waiting(self) -> int:
        return sum(len(waiting) for waiting in self._waiting.values())

    async def aclose(self) -> None:
        await self._announcements.aclose()

    def _wake(self, job_id: str) -> None:
        for event in self._waiting.get(job_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for job_id in list(self._waiting):
            self._wake(job_id)


async def _entries(client: Redis, stream: str, after: str, most: int) -> _Entries:
    """The stream's first `most` entries after the one with id `after` (from the first when empty)."""
    try:
        with storage_errors():
            return cast(_Entries, await client.xrange(stream, f"({after}" if after else "-", "+", count=most))
    except ResponseError as error:
        if "stream ID" in str(error):
            raise ValueError(f"{after!r} is not an event id") from error
        raise


def _token() -> str:
    """Marks one call's entries, so that the call re-sent after a lost reply adds none."""
    return os.urandom(8).hex()


class RedisJobEvents:
    def __init__(self, client: Redis, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._client = client
        self._keys = QueueKeys(settings.key_prefix)
        self._ttl_ms = settings.finished_ttl_s * 1000
        self._append = client.register_script(scripts.SHARDED_APPEND_EVENTS if settings.cluster else scripts.APPEND_EVENTS)
        self._waiters = _Waiters(client, self._keys.appended, settings, "job event notifications")

    async def append(self, job_id: str, events: Sequence[tuple[EventKind, str]]) -> None:
        if not events:
            return
        pairs = [part for kind, data in events for part in (kind.value, data)]
        with storage_errors():
            await self._append(
                keys=[self._keys.job_events(job_id)],
                args=[job_id, self._keys.appended, self._ttl_ms, EVENTS_KEPT, _token(), *pairs],
            )

    async def read(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[JobEvent]:
        stream = self._keys.job_events(job_id)

        async def read() -> list[JobEvent]:
            found = (
                _event(entry_id, fields)
                for entry_id, fields in await _entries(self._client, stream, after, EVENTS_READ_MOST)
            )
            return [event for event in found if event is not None]

        return await self._waiters.read(job_id, timeout_s, read)

    def waiting(self) -> int:
        """How many reads wait for events (of any job)."""
        return self._waiters.waiting()

    async def aclose(self) -> None:
        """Stop the notification reader. The client stays open: it is the caller's."""
        await self._waiters.aclose()


_KINDS = {kind.value.encode(): kind for kind in EventKind}


def _event(entry_id: bytes, fields: dict[bytes, bytes]) -> JobEvent | None:
    kind = _KINDS.get(fields.get(b"k", b""))
    if kind is None:
        return None  # a kind a newer worker adds: left out rather than failing the whole read
    return JobEvent(entry_id.decode(), kind, fields.get(b"d", b"").decode(errors="replace"))


class RedisJobInput:
    def __init__(self, client: Redis, settings: RedisSettings = DEFAULT_SETTINGS) -> None:
        self._client = client
        self._keys = QueueKeys(settings.key_prefix)
        self._ttl_ms = settings.finished_ttl_s * 1000
        self._send = client.register_script(scripts.SHARDED_SEND_INPUT if settings.cluster else scripts.SEND_INPUT)
        self._waiters = _Waiters(client, self._keys.sent, settings, "job input notifications")

    async def send(self, job_id: str, data: bytes, *, eof: bool = False, max_bytes: int) -> bool:
        with storage_errors():
            added = await self._send(
                keys=[self._keys.job_input(job_id), self._keys.job_input_sent(job_id)],
                args=[job_id, self._keys.sent, self._ttl_ms, max_bytes, _token(), "1" if eof else "", data],
            )
        return int(added) == 1

    async def receive(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[InputChunk]:
        stream = self._keys.job_input(job_id)

        async def read() -> list[InputChunk]:
            return [
                InputChunk(entry_id.decode(), fields.get(b"d", b""), eof=b"eof" in fields)
                for entry_id, fields in await _entries(self._client, stream, after, INPUT_READ_MOST)
            ]

        return await self._waiters.read(job_id, timeout_s, read)

    def waiting(self) -> int:
        """How many receives wait for input (of any job)."""
        return self._waiters.waiting()

    async def aclose(self) -> None:
        """Stop the notification reader. The client stays open: it is the caller's."""
        await self._waiters.aclose()
