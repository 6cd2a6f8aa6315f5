"""EventRelay: a running job's status and output, gathered into events and appended to its
JobEvents in the background, so that storage never slows or fails the run.

Output comes in as the sandbox reads it (`output`, called on the event loop, returning at
once). It waits at most EVENT_GATHER_S, or until EVENT_CHUNK_BYTES have come, and goes out as
text decoded incrementally: a character split between two writes arrives whole in one event.
One append is in flight at a time; what comes meanwhile waits, bounded: at most
_MAX_PENDING events, past that a stream's new output joins its last waiting event (each
stream's order is kept, the interleaving of stdout and stderr is lost). What waits is never more
than the program's kept output, which the sandbox caps. An append that fails is logged and its
events dropped: the stream misses them, the job's stored result does not.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
from collections.abc import Sequence

from corral_core.events import EVENT_CHUNK_BYTES, EVENT_GATHER_S, EventKind, JobEvents

log = logging.getLogger(__name__)

_MAX_PENDING = 8
_OUTPUT = (EventKind.STDOUT, EventKind.STDERR)


class EventRelay:
    """One job's events, from `start` (its RUNNING status first) to `close` (its last ones)."""

    def __init__(
        self,
        events: JobEvents,
        job_id: str,
        *,
        gather_s: float = EVENT_GATHER_S,
        chunk_bytes: int = EVENT_CHUNK_BYTES,
    ) -> None:
        self._events = events
        self._job_id = job_id
        self._gather_s = gather_s
        self._chunk_bytes = chunk_bytes
        # Waiting to be sent, in order: status events as text, output as the bytes read, and at
        # the close an _END per stream (the end of its decoding).
        self._pending: list[tuple[EventKind, str | bytearray | None]] = []
        self._output_bytes = 0
        self._decoders = {kind: codecs.getincrementaldecoder("utf-8")("replace") for kind in _OUTPUT}
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._sender: asyncio.Task[None] | None = None

    def start(self, status: str) -> None:
        """Send `status` (the job's RUNNING) first, and start sending."""
        self._add_status(status)
        self._sender = asyncio.create_task(self._send())

    def output(self, kind: EventKind, data: bytes) -> None:
        """A chunk of the program's output (Sandbox.run's on_output)."""
        if not data or self._closing:
            return
        joined = self._pending[-1][1] if self._pending and self._pending[-1][0] is kind else None
        if joined is None and len(self._pending) >= _MAX_PENDING:
            joined = next((waiting for waiting_kind, waiting in reversed(self._pending) if waiting_kind is kind), None)
        if isinstance(joined, bytearray):
            joined.extend(data)
        else:
            self._pending.append((kind, bytearray(data)))
        self._output_bytes += len(data)
        if self._output_bytes >= self._chunk_bytes:
            self._full.set()
        self._wake.set()

    async def close(self, *last: tuple[EventKind, str], timeout_s: float) -> None:
        """Send what is left of the output, then `last` (the final status, the result), waiting
        up to `timeout_s` for storage; what it has not taken by then is dropped."""
        if self._closing:
            return
        self._pending.extend((kind, None) for kind in _OUTPUT)
        self._pending.extend(last)
        self._closing = True
        self._full.set()
        self._wake.set()
        if self._sender is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._sender)
        except TimeoutError:
            log.warning("job %s: its last events were not stored in time; dropped", self._job_id)
        finally:
            await self.abandon()

    async def abandon(self) -> None:
        """Stop sending (the job was handed back, or lost): what waits is dropped."""
        self._closing = True
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
            await asyncio.wait([self._sender])

    def _add_status(self, status: str) -> None:
        self._pending.append((EventKind.STATUS, status))
        self._wake.set()

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            if self._gathering():
                # Output alone: gather a moment more, unless enough has come (or the end).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._gather_s):
                        await self._full.wait()
            batch = self._take()
            if batch:
                await self._append(batch)
            if self._closing and not self._pending:
                return

    def _gathering(self) -> bool:
        return not self._closing and all(kind in _OUTPUT for kind, _ in self._pending) and not self._full.is_set()

    def _take(self) -> list[tuple[EventKind, str]]:
        pending, self._pending = self._pending, []
        self._output_bytes = 0
        self._wake.clear()
        self._full.clear()
        batch: list[tuple[EventKind, str]] = []
        for kind, data in pending:
            if isinstance(data, str):
                batch.append((kind, data))
                continue
            # At the end (None), a character the program left unfinished comes out replaced.
            text = self._decoders[kind].decode(b"", final=True) if data is None else self._decoders[kind].decode(data)
            batch.extend((kind, piece) for piece in _pieces(text, self._chunk_bytes))
        return batch

    async def _append(self, batch: Sequence[tuple[EventKind, str]]) -> None:
        try:
            await self._events.append(self._job_id, batch)
        except Exception as error:  # StorageUnavailable, or a bug of the adapter's: never the run's
            log.warning("job %s: %d events not stored, dropped: %s", self._job_id, len(batch), error)


def _pieces(text: str, most_bytes: int) -> list[str]:
    """`text` cut into pieces of at most `most_bytes` in UTF-8, never inside a character."""
    encoded = text.encode("utf-8", "surrogatepass")
    pieces = []
    while encoded:
        cut = min(len(encoded), most_bytes)
        while cut < len(encoded) and cut > 0 and encoded[cut] & 0xC0 == 0x80:
            cut -= 1
        pieces.append(encoded[:cut].decode("utf-8", "surrogatepass"))
        encoded = encoded[cut:]
    return pieces
