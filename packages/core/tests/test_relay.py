"""EventRelay: output gathered into events, decoded whole, bounded, and never failing the run."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from corral_core.events import EventKind, JobEvent
from corral_core.ports import StorageUnavailable
from corral_core.relay import EventRelay

STDOUT, STDERR, STATUS, RESULT = EventKind.STDOUT, EventKind.STDERR, EventKind.STATUS, EventKind.RESULT
END = ((STATUS, "COMPLETED"), (RESULT, ""))
# Long enough that only the byte count or the end sends output: no test depends on time.
NEVER_S = 3600.0


class RecordingEvents:
    """JobEvents that keep each append's batch; `hold` keeps appends waiting, `failing` fails
    that many of them (an unreachable Redis)."""

    def __init__(self, failing: int = 0) -> None:
        self.batches: list[list[tuple[EventKind, str]]] = []
        self.appended = asyncio.Event()
        self.hold = asyncio.Event()
        self.hold.set()
        self.failing = failing

    async def append(self, job_id: str, events: Sequence[tuple[EventKind, str]]) -> None:
        await self.hold.wait()
        if self.failing:
            self.failing -= 1
            raise StorageUnavailable("redis is restarting")
        self.batches.append(list(events))
        self.appended.set()

    async def read(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[JobEvent]:
        raise NotImplementedError

    @property
    def all(self) -> list[tuple[EventKind, str]]:
        return [event for batch in self.batches for event in batch]

    async def until(self, count: int) -> None:
        while len(self.batches) < count:
            self.appended.clear()
            await self.appended.wait()


async def test_quick_writes_become_one_event_between_running_and_the_result() -> None:
    events = RecordingEvents()
    relay = EventRelay(events, "j1", gather_s=NEVER_S)
    relay.start("RUNNING")
    await events.until(1)
    relay.output(STDOUT, b"one ")
    await asyncio.sleep(0)
    relay.output(STDOUT, b"two\n")
    relay.output(STDERR, b"oops\n")
    await relay.close(*END, timeout_s=5)
    assert events.all == [(STATUS, "RUNNING"), (STDOUT, "one two\n"), (STDERR, "oops\n"), *END]


async def test_output_goes_out_without_waiting_once_a_chunk_is_full() -> None:
    events = RecordingEvents()
    relay = EventRelay(events, "j1", gather_s=NEVER_S, chunk_bytes=4)
    relay.start("RUNNING")
    await events.until(1)
    relay.output(STDOUT, b"abcd")
    await events.until(2)
    assert events.all == [(STATUS, "RUNNING"), (STDOUT, "abcd")]
    await relay.close(*END, timeout_s=5)
    assert events.all[-2:] == list(END)


async def test_a_character_split_between_writes_arrives_whole() -> None:
    events = RecordingEvents()
    relay = EventRelay(events, "j1", gather_s=NEVER_S, chunk_bytes=3)
    relay.start("RUNNING")
    await events.until(1)
    relay.output(STDOUT, b"a" + "€".encode()[:2])  # a full chunk: sent, but the character is not done
    await events.until(2)
    relay.output(STDOUT, "€".encode()[2:] + "é".encode()[:1])  # left unfinished at the end
    await relay.close(*END, timeout_s=5)
    output = [data for kind, data in events.all if kind is STDOUT]
    assert output[0] == "a" and "".join(output) == "a€\ufffd"
    assert "€" in output  # whole, in one event
    assert events.all[-2:] == list(END)


async def test_events_are_cut_to_the_chunk_size_between_characters() -> None:
    events = RecordingEvents()
    relay = EventRelay(events, "j1", gather_s=NEVER_S, chunk_bytes=4)
    relay.start("RUNNING")
    text = "ab€cdé" * 3
    relay.output(STDOUT, text.encode()[:3])
    relay.output(STDOUT, text.encode()[3:])
    await relay.close(*END, timeout_s=5)
    output = [data for kind, data in events.all if kind is STDOUT]
    assert "".join(output) == text
    assert all(0 < len(piece.encode()) <= 4 for piece in output)


async def test_output_waiting_for_slow_storage_is_coalesced_per_stream() -> None:
    events = RecordingEvents()
    events.hold.clear()
    relay = EventRelay(events, "j1", gather_s=NEVER_S, chunk_bytes=1 << 20)
    relay.start("RUNNING")
    await asyncio.sleep(0)  # RUNNING's append is in flight, held
    for number in range(200):
        relay.output(STDOUT, f"out{number} ".encode())
        relay.output(STDERR, f"err{number} ".encode())
    events.hold.set()
    await relay.close(*END, timeout_s=5)
    later = events.batches[1]
    assert len(later) <= 8 + len(END)
    for kind, name in ((STDOUT, "out"), (STDERR, "err")):
        assert "".join(data for k, data in events.all if k is kind) == "".join(f"{name}{n} " for n in range(200))


async def test_failed_appends_are_dropped_and_the_relay_goes_on() -> None:
    events = RecordingEvents(failing=1)
    relay = EventRelay(events, "j1", gather_s=NEVER_S)
    relay.start("RUNNING")  # its append fails: dropped
    await asyncio.sleep(0)
    relay.output(STDOUT, b"still here\n")
    await relay.close(*END, timeout_s=5)
    assert events.all == [(STDOUT, "still here\n"), *END]


async def test_a_close_that_storage_does_not_take_in_time_gives_up() -> None:
    events = RecordingEvents()
    events.hold.clear()  # storage never answers
    relay = EventRelay(events, "j1")
    relay.start("RUNNING")
    relay.output(STDOUT, b"lost\n")
    await relay.close(*END, timeout_s=0.01)
    assert events.all == []
