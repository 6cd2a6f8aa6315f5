"""The JobEvents and JobInput contract: order, reading on from an id, waiting, input's bounds.

Bind it with a fixture `streams` yielding a `StreamsHarness` whose `events` and `job_input` keep
their jobs apart from any other test's. Waiting is in real time, briefly: a read that waits for
an append is woken by it well within its timeout, and one with nothing to wake it returns
nothing once its timeout has passed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

from corral_core.events import EVENTS_READ_MOST, EventKind, JobEvent, JobEvents, JobInput

# Long enough that a loaded machine still wakes a waiting read well before it: a test that
# passes takes a fraction of it.
WAIT_S = 5.0
# What a read with nothing to wake it waits, in tests that watch it return empty.
SHORT_WAIT_S = 0.3

BINARY = b"\x00\xff\xfe\r\n" + bytes(range(256)) + "é\n".encode()


@dataclass
class StreamsHarness:
    events: JobEvents
    job_input: JobInput


def _seen(events: list[JobEvent]) -> list[tuple[EventKind, str]]:
    return [(event.kind, event.data) for event in events]


class JobEventsContract:
    @pytest.fixture
    def streams(self) -> StreamsHarness:
        raise NotImplementedError("bind the contract: provide a `streams` fixture")

    async def test_a_job_without_events_reads_as_none(self, streams: StreamsHarness) -> None:
        assert await streams.events.read("job-a") == []

    async def test_events_are_read_in_the_order_appended(self, streams: StreamsHarness) -> None:
        await streams.events.append("job-a", [(EventKind.STATUS, "RUNNING"), (EventKind.STDOUT, "hé\n")])
        await streams.events.append("job-a", [(EventKind.STDERR, "oops\n")])
        await streams.events.append("job-a", [(EventKind.STDOUT, ""), (EventKind.RESULT, "")])
        found = await streams.events.read("job-a")
        assert _seen(found) == [
            (EventKind.STATUS, "RUNNING"),
            (EventKind.STDOUT, "hé\n"),
            (EventKind.STDERR, "oops\n"),
            (EventKind.STDOUT, ""),
            (EventKind.RESULT, ""),
        ]
        assert len({event.id for event in found}) == len(found)

    async def test_a_read_after_an_id_returns_only_the_later_events(self, streams: StreamsHarness) -> None:
        await streams.events.append("job-a", [(EventKind.STATUS, "RUNNING"), (EventKind.STDOUT, "1")])
        first = await streams.events.read("job-a")
        await streams.events.append("job-a", [(EventKind.STDOUT, "2")])
        assert _seen(await streams.events.read("job-a", after=first[0].id)) == [
            (EventKind.STDOUT, "1"),
            (EventKind.STDOUT, "2"),
        ]
        later = await streams.events.read("job-a", after=first[1].id)
        assert _seen(later) == [(EventKind.STDOUT, "2")]
        assert await streams.events.read("job-a", after=later[0].id) == []

    async def test_reading_on_from_each_last_id_gets_every_event_once(self, streams: StreamsHarness) -> None:
        for batch in range(10):
            await streams.events.append("job-a", [(EventKind.STDOUT, f"{batch}.{n}") for n in range(30)])
        seen: list[str] = []
        after = ""
        while found := await streams.events.read("job-a", after=after):
            seen.extend(event.data for event in found)
            after = found[-1].id
        assert seen == [f"{batch}.{n}" for batch in range(10) for n in range(30)]

    async def test_a_read_returns_a_bounded_batch_and_the_next_read_goes_on_from_it(
        self, streams: StreamsHarness
    ) -> None:
        # A stream whose client stops reading holds one batch: many events are read a batch at a time.
        many = [(EventKind.STDOUT, str(n)) for n in range(3 * EVENTS_READ_MOST + 1)]
        await streams.events.append("job-a", many)
        first = await streams.events.read("job-a")
        assert _seen(first) == many[:EVENTS_READ_MOST]
        second = await streams.events.read("job-a", after=first[-1].id, timeout_s=WAIT_S)
        assert _seen(second) == many[EVENTS_READ_MOST : 2 * EVENTS_READ_MOST]

    async def test_a_waiting_read_wakes_on_an_append(self, streams: StreamsHarness) -> None:
        await streams.events.append("job-a", [(EventKind.STATUS, "RUNNING")])
        (running,) = await streams.events.read("job-a")
        began = time.monotonic()
        waiting = asyncio.create_task(streams.events.read("job-a", after=running.id, timeout_s=WAIT_S))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await streams.events.append("job-a", [(EventKind.STDOUT, "late\n")])
        assert _seen(await waiting) == [(EventKind.STDOUT, "late\n")]
        assert time.monotonic() - began < WAIT_S / 2

    async def test_a_waiting_read_of_a_job_with_no_events_yet_wakes_on_its_first(self, streams: StreamsHarness) -> None:
        waiting = asyncio.create_task(streams.events.read("job-a", timeout_s=WAIT_S))
        await asyncio.sleep(0.1)
        await streams.events.append("job-a", [(EventKind.STATUS, "RUNNING")])
        assert _seen(await waiting) == [(EventKind.STATUS, "RUNNING")]

    async def test_a_waiting_read_returns_nothing_once_its_timeout_has_passed(self, streams: StreamsHarness) -> None:
        await streams.events.append("job-a", [(EventKind.STATUS, "RUNNING")])
        (running,) = await streams.events.read("job-a")
        began = time.monotonic()
        assert await streams.events.read("job-a", after=running.id, timeout_s=SHORT_WAIT_S) == []
        assert time.monotonic() - began >= SHORT_WAIT_S * 0.9

    async def test_a_read_with_events_to_read_does_not_wait(self, streams: StreamsHarness) -> None:
        await streams.events.append("job-a", [(EventKind.STATUS, "RUNNING")])
        began = time.monotonic()
        assert _seen(await streams.events.read("job-a", timeout_s=WAIT_S)) == [(EventKind.STATUS, "RUNNING")]
        assert time.monotonic() - began < WAIT_S / 2

    async def test_reads_of_two_jobs_do_not_mix(self, streams: StreamsHarness) -> None:
        await streams.events.append("job-a", [(EventKind.STDOUT, "a")])
        await streams.events.append("job-b", [(EventKind.STDOUT, "b")])
        (a,) = await streams.events.read("job-a")
        assert _seen([a]) == [(EventKind.STDOUT, "a")]
        waiting = asyncio.create_task(streams.events.read("job-a", after=a.id, timeout_s=SHORT_WAIT_S))
        await asyncio.sleep(0.05)
        await streams.events.append("job-b", [(EventKind.STDOUT, "b again")])
        assert await waiting == []
        assert _seen(await streams.events.read("job-b")) == [(EventKind.STDOUT, "b"), (EventKind.STDOUT, "b again")]

    async def test_many_waiting_reads_of_one_job_all_wake(self, streams: StreamsHarness) -> None:
        waiting = [asyncio.create_task(streams.events.read("job-a", timeout_s=WAIT_S)) for _ in range(20)]
        await asyncio.sleep(0.1)
        await streams.events.append("job-a", [(EventKind.STATUS, "RUNNING")])
        for read in waiting:
            assert _seen(await read) == [(EventKind.STATUS, "RUNNING")]

    async def test_an_after_that_is_no_event_id_is_refused(self, streams: StreamsHarness) -> None:
        await streams.events.append("job-a", [(EventKind.STATUS, "RUNNING")])
        with pytest.raises(ValueError):
            await streams.events.read("job-a", after="not-an-id")


class JobInputContract:
    @pytest.fixture
    def streams(self) -> StreamsHarness:
        raise NotImplementedError("bind the contract: provide a `streams` fixture")

    async def test_a_job_without_input_receives_nothing(self, streams: StreamsHarness) -> None:
        assert await streams.job_input.receive("job-a") == []

    async def test_bytes_round_trip_exactly(self, streams: StreamsHarness) -> None:
        assert await streams.job_input.send("job-a", BINARY, max_bytes=10_000)
        assert await streams.job_input.send("job-a", b"\x00", max_bytes=10_000)
        chunks = await streams.job_input.receive("job-a")
        assert [(chunk.data, chunk.eof) for chunk in chunks] == [(BINARY, False), (b"\x00", False)]

    async def test_a_receive_after_an_id_returns_only_the_later_chunks(self, streams: StreamsHarness) -> None:
        assert await streams.job_input.send("job-a", b"1\n", max_bytes=100)
        (first,) = await streams.job_input.receive("job-a")
        assert await streams.job_input.send("job-a", b"2\n", max_bytes=100)
        assert [chunk.data for chunk in await streams.job_input.receive("job-a", after=first.id)] == [b"2\n"]

    async def test_a_send_past_the_most_bytes_is_refused_and_adds_nothing(self, streams: StreamsHarness) -> None:
        assert await streams.job_input.send("job-a", b"12345", max_bytes=8)
        assert not await streams.job_input.send("job-a", b"6789", max_bytes=8)
        assert [chunk.data for chunk in await streams.job_input.receive("job-a")] == [b"12345"]
        assert await streams.job_input.send("job-a", b"678", max_bytes=8)  # exactly the most
        assert [chunk.data for chunk in await streams.job_input.receive("job-a")] == [b"12345", b"678"]

    async def test_a_send_after_the_end_of_input_is_refused(self, streams: StreamsHarness) -> None:
        assert await streams.job_input.send("job-a", b"last\n", eof=True, max_bytes=100)
        assert not await streams.job_input.send("job-a", b"more\n", max_bytes=100)
        assert not await streams.job_input.send("job-a", b"", eof=True, max_bytes=100)
        assert [(chunk.data, chunk.eof) for chunk in await streams.job_input.receive("job-a")] == [(b"last\n", True)]

    async def test_the_reader_sees_the_end_of_input(self, streams: StreamsHarness) -> None:
        assert await streams.job_input.send("job-a", b"x", max_bytes=100)
        assert await streams.job_input.send("job-a", b"", eof=True, max_bytes=100)
        chunks = await streams.job_input.receive("job-a")
        assert [(chunk.data, chunk.eof) for chunk in chunks] == [(b"x", False), (b"", True)]

    async def test_a_waiting_receive_wakes_on_a_send(self, streams: StreamsHarness) -> None:
        began = time.monotonic()
        waiting = asyncio.create_task(streams.job_input.receive("job-a", timeout_s=WAIT_S))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        assert await streams.job_input.send("job-a", b"answer\n", max_bytes=100)
        assert [chunk.data for chunk in await waiting] == [b"answer\n"]
        assert time.monotonic() - began < WAIT_S / 2

    async def test_a_waiting_receive_returns_nothing_once_its_timeout_has_passed(self, streams: StreamsHarness) -> None:
        began = time.monotonic()
        assert await streams.job_input.receive("job-a", timeout_s=SHORT_WAIT_S) == []
        assert time.monotonic() - began >= SHORT_WAIT_S * 0.9

    async def test_inputs_of_two_jobs_do_not_mix(self, streams: StreamsHarness) -> None:
        assert await streams.job_input.send("job-a", b"a", max_bytes=1)
        assert await streams.job_input.send("job-b", b"b", eof=True, max_bytes=1)  # a's bytes count for a only
        assert [(chunk.data, chunk.eof) for chunk in await streams.job_input.receive("job-a")] == [(b"a", False)]
        assert [(chunk.data, chunk.eof) for chunk in await streams.job_input.receive("job-b")] == [(b"b", True)]
        assert await streams.job_input.send("job-a", b"", eof=True, max_bytes=1)  # b's end is not a's
