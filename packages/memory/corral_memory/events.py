"""In-memory job events and input, kept in `InMemoryJobs` beside the records, as the Redis
adapters keep them beside each job (corral_redis.events): the same ids, trimming and refusals."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from typing import TypeVar

from corral_core.events import EVENTS_READ_MOST, EventKind, InputChunk, JobEvent
from corral_memory.jobs import InMemoryJobs

# As corral_redis.events: about the most events a job keeps, the most input chunks a receive returns.
EVENTS_KEPT = 10_000
INPUT_READ_MOST = 1_000

T = TypeVar("T")


def _number(entry_id: str) -> tuple[int, int]:
    """An id as Redis orders stream ids, "<ms>-<seq>" or "<ms>"; ValueError for anything else."""
    first, _, second = entry_id.partition("-")
    if not first.isdigit() or not (second.isdigit() or not second):
        raise ValueError(f"{entry_id!r} is not an event id")
    return int(first), int(second or 0)


def _after(entries: Sequence[T], key: Callable[[T], str], after: str, most: int) -> list[T]:
    start = _number(after) if after else (-1, 0)
    return [entry for entry in entries if _number(key(entry)) > start][:most]


async def _read_or_wait(state: InMemoryJobs, timeout_s: float, read: Callable[[], list[T]]) -> list[T]:
    found = read()
    if found or timeout_s <= 0:
        return found
    async with state.changed:
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel.
            async with asyncio.timeout(timeout_s):
                await state.changed.wait_for(lambda: bool(read()))
        except TimeoutError:
            pass
    return read()


class InMemoryJobEvents:
    def __init__(self, state: InMemoryJobs) -> None:
        self._state = state

    async def append(self, job_id: str, events: Sequence[tuple[EventKind, str]]) -> None:
        if not events:
            return
        state = self._state
        kept = state.events.setdefault(job_id, collections.deque(maxlen=EVENTS_KEPT))
        for kind, data in events:
            state.entries += 1
            kept.append(JobEvent(f"{state.entries}-0", kind, data))
        await state.notify()

    async def read(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[JobEvent]:
        state = self._state
        return await _read_or_wait(
            state,
            timeout_s,
            lambda: _after(state.events.get(job_id, ()), lambda event: event.id, after, EVENTS_READ_MOST),
        )

    async def aclose(self) -> None:
        """Nothing to close: no subscription is held (the Redis adapter's has one)."""


class InMemoryJobInput:
    def __init__(self, state: InMemoryJobs) -> None:
        self._state = state

    async def send(self, job_id: str, data: bytes, *, eof: bool = False, max_bytes: int) -> bool:
        state = self._state
        chunks = state.inputs.setdefault(job_id, [])
        total = state.input_bytes[job_id] + len(data)
        if (chunks and chunks[-1].eof) or total > max_bytes:
            return False
        if data or eof:
            state.entries += 1
            chunks.append(InputChunk(f"{state.entries}-0", bytes(data), eof=eof))
            state.input_bytes[job_id] = total
            await state.notify()
        return True

    async def receive(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[InputChunk]:
        state = self._state
        return await _read_or_wait(
            state,
            timeout_s,
            lambda: _after(state.inputs.get(job_id, ()), lambda chunk: chunk.id, after, INPUT_READ_MOST),
        )

    async def aclose(self) -> None:
        """Nothing to close: no subscription is held (the Redis adapter's has one)."""
