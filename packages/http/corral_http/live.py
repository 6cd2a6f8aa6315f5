"""A running job's events as Server-Sent Events (GET /jobs/{id}/events), and how many such
streams one API process holds.

A stream reads the job's events from storage (JobEvents.read), each read waiting at most one
heartbeat for the next event, so a quiet job still sends `: keep-alive` often enough for proxies
to keep the connection. It is an async generator that Litestar drives one message at a time, and
each `send` waits for the transport: a client that stops reading stops the reads, rather than
piling events up in this process. Such a stream holds its transport's write buffer, one read's
batch (at most EVENTS_READ_MOST events) and a share of its job's `result` message, however much
the job wrote. That event carries the finished job's view, read when that event is reached and
made once for every stream of the job (ResultMessages); a job that finished before events were
kept has none stored, so its stream ends with its status and result made from its record."""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import NamedTuple, Protocol

from corral_core.access import Caller, OverQuota
from corral_core.events import EventKind, JobEvent, JobEvents
from corral_core.job import Job
from corral_core.usecases import JobNotFound

# The ids of the two events a stream makes from the record of a job without stored events:
# lower than any id storage gives (Redis stream ids start at 0-1 too, but one of those jobs has
# none), and known here, so a client resuming from one of them is not sent it again.
MADE_STATUS_ID = "0-1"
MADE_RESULT_ID = "0-2"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# How many of this process's streams read storage at once (a job's record, a batch of a finished
# job's events). A flood of streams opened together, each replaying a finished job, takes turns
# here instead of taking every Redis connection of the process, which its other requests need
# (each request's key is checked there). A running job's stream waits for its next event
# without a connection, and without a turn.
STREAM_READS_AT_ONCE = 8


class TooManyStreams(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"this API process already holds its limit of {limit} event streams (CORRAL_MAX_STREAMS); retry later"
        )
        self.limit = limit


class TooManyStreamsForKey(OverQuota):
    def __init__(self, limit: int) -> None:
        super().__init__("event streams at once in this API process (key_max_streams)", limit)


class Slot(Protocol):
    def release(self) -> None: ...


class LiveStreams:
    """The event streams this process holds, in all (503 past `limit`) and per key (429 past
    `key_limit`). A stream outlives its handler, so its place is a Slot the stream releases when
    it ends, not a context the handler leaves."""

    def __init__(self, limit: int, key_limit: int) -> None:
        self.limit = limit
        self.key_limit = key_limit
        self.held = 0
        self.held_by: dict[str, int] = {}
        self.results = ResultMessages()
        self.reading = asyncio.Semaphore(STREAM_READS_AT_ONCE)

    def take(self, caller: Caller) -> Slot:
        if self.held >= self.limit:
            raise TooManyStreams(self.limit)
        held_by_key = self.held_by.get(caller.key_id, 0)
        if caller.key_id and held_by_key >= self.key_limit:
            raise TooManyStreamsForKey(self.key_limit)
        self.held += 1
        self.held_by[caller.key_id] = held_by_key + 1
        return _Held(self, caller.key_id)


class _Held:
    __slots__ = ("_key_id", "_streams")

    def __init__(self, streams: LiveStreams, key_id: str) -> None:
        self._streams: LiveStreams | None = streams
        self._key_id = key_id

    def release(self) -> None:
        streams, self._streams = self._streams, None
        if streams is None:
            return  # released already
        streams.held -= 1
        left = streams.held_by[self._key_id] - 1
        if left:
            streams.held_by[self._key_id] = left
        else:
            del streams.held_by[self._key_id]


def message(event_id: str, kind: str, data: str) -> bytes:
    """One event as the SSE format frames it: every line of `data` its own `data:` field (CR,
    LF and CRLF all end a line there, and a client joins the lines back with LF)."""
    lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return f"id: {event_id}\nevent: {kind}\n{lines}\n".encode()


KEEP_ALIVE = b": keep-alive\n\n"
# A `result` message (the finished job's view, its whole output in it) is sent in slices of at
# most this many bytes, each sent once the transport has room for it.
RESULT_SLICE_BYTES = 64 * 1024


class _Message:
    __slots__ = ("__weakref__", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data


class ResultMessages:
    """Each job's `result` message, made once for all the streams of this process sending it.

    A finished job's view holds its whole output (up to 2 x max_output_bytes): were each stream
    to make its own and hold it while its client reads (or never does), a hundred streams of one
    job would hold a hundred copies. They share one, kept while any stream still sends it. Each
    stream's caller may read the job: its stream was opened only after that was checked."""

    def __init__(self) -> None:
        self._made: weakref.WeakValueDictionary[tuple[str, str], _Message] = weakref.WeakValueDictionary()
        self._making: dict[tuple[str, str], asyncio.Task[_Message | None]] = {}

    async def get(self, job_id: str, event_id: str, make: Callable[[], Awaitable[bytes | None]]) -> _Message | None:
        key = (job_id, event_id)
        made = self._made.get(key)
        if made is not None:
            return made
        making = self._making.get(key)
        if making is None:
            making = asyncio.ensure_future(self._make(key, make))
            self._making[key] = making
        # Shielded: a stream whose client left does not cancel the making the others await.
        return await asyncio.shield(making)

    async def _make(self, key: tuple[str, str], make: Callable[[], Awaitable[bytes | None]]) -> _Message | None:
        try:
            data = await make()
            made = None if data is None else _Message(data)
            if made is not None:
                self._made[key] = made
            return made
        finally:
            del self._making[key]


async def holding(slot: Slot, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`chunks` as they come; releases `slot` when they end, however they end."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        slot.release()


def in_turn(turns: asyncio.Semaphore, read_job: Callable[[], Awaitable[Job]]) -> Callable[[], Awaitable[Job]]:
    """`read_job`, each call waiting for one of `turns` (LiveStreams.reading)."""

    async def read_in_turn() -> Job:
        async with turns:
            return await read_job()

    return read_in_turn


async def job_stream(
    events: JobEvents,
    read_job: Callable[[], Awaitable[Job]],
    result_data: Callable[[Job], str],
    streams: LiveStreams,
    job_id: str,
    after: str,
    heartbeat_s: float,
) -> AsyncIterator[bytes]:
    """The job's events after `after` (all when empty), then the end; `read_job` reads the
    job for the stream's caller (JobNotFound once it expired), `result_data` makes the data
    of its `result` event, shared through `streams.results`; every read that holds a storage
    connection takes one of `streams.reading`'s turns."""
    turns, results = streams.reading, streams.results
    read_job = in_turn(turns, read_job)

    async def result(event_id: str) -> AsyncIterator[bytes]:
        async def make() -> bytes | None:
            job = await _job_or_none(read_job)
            return None if job is None else message(event_id, EventKind.RESULT, result_data(job))

        made = await results.get(job_id, event_id, make)
        if made is not None:
            for start in range(0, len(made.data), RESULT_SLICE_BYTES):
                yield made.data[start : start + RESULT_SLICE_BYTES]

    events = _TakingTurns(events, turns)
    async for chunk in _events(events, read_job, result, job_id, after, heartbeat_s):
        yield chunk


class _TakingTurns:
    """The reads of `events` that hold a storage connection (those that do not wait for the
    next event) each waiting for one of `turns`."""

    def __init__(self, events: JobEvents, turns: asyncio.Semaphore) -> None:
        self._events = events
        self._turns = turns

    async def append(self, job_id: str, events: Sequence[tuple[EventKind, str]]) -> None:
        await self._events.append(job_id, events)

    async def read(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[JobEvent]:
        if timeout_s > 0:
            return await self._events.read(job_id, after, timeout_s)
        async with self._turns:
            return await self._events.read(job_id, after)


class _State(NamedTuple):
    # What a stream keeps of the job's record between reads: not the record, which holds the
    # whole output of a finished job.
    finished: bool
    status: str


async def _events(
    events: JobEvents,
    read_job: Callable[[], Awaitable[Job]],
    result: Callable[[str], AsyncIterator[bytes]],
    job_id: str,
    after: str,
    heartbeat_s: float,
) -> AsyncIterator[bytes]:
    if after in (MADE_STATUS_ID, MADE_RESULT_ID):
        # The client had the events made from the record: the job has none stored.
        if after == MADE_STATUS_ID:
            async for piece in result(MADE_RESULT_ID):
                yield piece
        return
    job = await _state_or_none(read_job)
    while job is not None:  # None: expired, its events with it
        # A finished job's events are all stored: read what is there, without waiting.
        try:
            batch: list[JobEvent] = await events.read(job_id, after, 0 if job.finished else heartbeat_s)
        except ValueError:
            # A Last-Event-ID this storage never gave out: the client gets every event.
            after = ""
            continue
        for event in batch:
            if event.kind == EventKind.RESULT:
                async for piece in result(event.id):
                    yield piece
                return
            yield message(event.id, event.kind, event.data)
            after = event.id
        if batch:
            continue
        if job.finished:
            if after and await _has_result(events, job_id):
                return  # the client had every event, its result too
            # Finished, and no result event stored: it finished before its events were kept.
            yield message(MADE_STATUS_ID, EventKind.STATUS, job.status)
            async for piece in result(MADE_RESULT_ID):
                yield piece
            return
        yield KEEP_ALIVE
        # A quiet while: read the record again, which may have ended (or expired) without an
        # event, as a job cancelled before it ran may.
        job = await _state_or_none(read_job)


async def _has_result(events: JobEvents, job_id: str) -> bool:
    # Read through, a batch at a time, but only at the end of a finished job's resumed stream;
    # a job's events are bounded by its output limit.
    after = ""
    while batch := await events.read(job_id, after):
        if any(event.kind == EventKind.RESULT for event in batch):
            return True
        after = batch[-1].id
    return False


async def _job_or_none(read_job: Callable[[], Awaitable[Job]]) -> Job | None:
    try:
        return await read_job()
    except JobNotFound:
        return None


async def _state_or_none(read_job: Callable[[], Awaitable[Job]]) -> _State | None:
    job = await _job_or_none(read_job)
    return None if job is None else _State(job.finished, job.status.value)
