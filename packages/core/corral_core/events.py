"""What a job says while it runs, and what its client sends it: ordered events kept with the
job, so that a client that comes late, or comes back, reads them from where it left off.

A running job's events are its status changes, its output as the program writes it (in chunks
of at most EVENT_CHUNK_BYTES, gathered for at most EVENT_GATHER_S), and a last `result` once it
has finished; an interactive job's input is the bytes its client sends, then an end of input.
Both live in storage beside the job and expire with it; neither is kept in one process's memory
alone, so any API process serves any client and a worker's restart loses nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol

import msgspec

# How output is gathered into events: at most this long, at most this many bytes.
EVENT_GATHER_S = 0.05
EVENT_CHUNK_BYTES = 4096
# The most events one read returns (JobEvents.read); a reader far behind reads on from the last
# it got. Each carries at most EVENT_CHUNK_BYTES of output, so a stream whose client has stopped
# reading holds at most this many chunks (64 KiB) in the process that serves it, however much
# the job wrote.
EVENTS_READ_MOST = 16


class EventKind(enum.StrEnum):
    STATUS = "status"  # data: the job's new status (PENDING, RUNNING, ...)
    STDOUT = "stdout"  # data: a chunk of the program's stdout, as text
    STDERR = "stderr"
    RESULT = "result"  # the job finished: its record holds the result; data is empty


class JobEvent(msgspec.Struct, frozen=True):
    # Given by storage, increasing within one job: the `after` of the next read.
    id: str
    kind: EventKind
    data: str = ""


class JobEvents(Protocol):
    """Each job's events, in order, bounded and expiring with the job's record."""

    async def append(self, job_id: str, events: Sequence[tuple[EventKind, str]]) -> None:
        """Add events after the job's last one (atomically, in the order given)."""
        ...

    async def read(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[JobEvent]:
        """The job's events after the one with id `after` (from its first when empty), at most
        EVENTS_READ_MOST of them; when there are none yet, waits up to `timeout_s` for the next
        to come. Never by polling in a loop."""
        ...


class InputChunk(msgspec.Struct, frozen=True):
    id: str
    data: bytes
    eof: bool = False


class JobInput(Protocol):
    """What a client sends an interactive job's stdin while it runs (Program.stdin_mode)."""

    async def send(self, job_id: str, data: bytes, *, eof: bool = False, max_bytes: int) -> bool:
        """Add `data` (then close the input with `eof`); False, nothing added, if the job's
        input would pass `max_bytes` in all or is closed already."""
        ...

    async def receive(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[InputChunk]:
        """The chunks after `after`, waiting up to `timeout_s` for one when there are none."""
        ...
