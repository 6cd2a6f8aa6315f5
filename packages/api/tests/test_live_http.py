"""A job's live events (GET /jobs/{id}/events, Server-Sent Events) and its interactive stdin
(POST /jobs/{id}/stdin) over HTTP, on the in-memory adapters and small fakes of the two ports."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
from litestar.testing import AsyncTestClient

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_core.access import ApiKey, Caller, Quotas, secret_hash
from corral_core.events import EventKind, InputChunk, JobEvent
from corral_core.job import Job, JobStatus, Limits, RunRequest, RunResult, StdinMode, Verdict
from corral_core.ports import Runtime, WorkerInfo
from corral_memory.container import InMemoryStorage
from corral_memory.jobs import InMemoryJobs
from corral_redis import RedisSettings
from corral_system.clock import SystemClock

LIMITS = Limits(
    cpu_time_ms=1000, wall_time_ms=2000, memory_mb=64, max_processes=1, max_output_bytes=1024, max_file_size_kb=1024
)


class FakeJobEvents:
    """JobEvents in a dict: ids count up from 1 per job; a read waits on a condition."""

    def __init__(self) -> None:
        self.events: dict[str, list[JobEvent]] = {}
        self._added = asyncio.Condition()

    async def append(self, job_id: str, events: Sequence[tuple[EventKind, str]]) -> None:
        kept = self.events.setdefault(job_id, [])
        first = len(kept) + 1
        kept.extend(JobEvent(str(first + index), kind, data) for index, (kind, data) in enumerate(events))
        async with self._added:
            self._added.notify_all()

    async def read(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[JobEvent]:
        later = self._after(job_id, after)
        if later or timeout_s <= 0:
            return later
        async with self._added:
            try:
                await asyncio.wait_for(self._added.wait_for(lambda: bool(self._after(job_id, after))), timeout_s)
            except TimeoutError:
                pass
        return self._after(job_id, after)

    def _after(self, job_id: str, after: str) -> list[JobEvent]:
        return self.events.get(job_id, [])[int(after or 0) :]


@dataclass
class FakeJobInput:
    """JobInput in a dict: each job's bytes, and whether its input is closed."""

    sent: dict[str, bytes] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)

    async def send(self, job_id: str, data: bytes, *, eof: bool = False, max_bytes: int) -> bool:
        had = self.sent.get(job_id, b"")
        if job_id in self.closed or len(had) + len(data) > max_bytes:
            return False
        self.sent[job_id] = had + data
        if eof:
            self.closed.add(job_id)
        return True

    async def receive(self, job_id: str, after: str = "", timeout_s: float = 0) -> list[InputChunk]:
        return [InputChunk("1", self.sent.get(job_id, b""), job_id in self.closed)]


@dataclass
class Live:
    client: AsyncTestClient  # type: ignore[type-arg]
    state: InMemoryJobs
    events: FakeJobEvents
    job_input: FakeJobInput
    container: ApiContainer
    mine: dict[str, str]
    theirs: dict[str, str]

    def add(
        self, job_id: str, status: JobStatus, *, owner: str = "mine", interactive: bool = False, stdout: str = ""
    ) -> None:
        now = self.state.clock.now()
        mode = StdinMode.INTERACTIVE if interactive else StdinMode.CLOSED
        finished = status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
        self.state.records[job_id] = Job(
            id=job_id,
            request=RunRequest(language="python", code="", stdin_mode=mode, limits=LIMITS),
            status=status,
            created_at=now,
            started_at=now if status != JobStatus.PENDING else None,
            finished_at=now if finished else None,
            attempts=1,
            result=RunResult(verdict=Verdict.OK, stdout=stdout) if status == JobStatus.COMPLETED else None,
            owner=owner,
        )


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    clock = SystemClock()
    state = InMemoryJobs(clock)
    storage = InMemoryStorage(clock=clock, client=state)
    await storage.registry().heartbeat(WorkerInfo("w", clock.now(), (Runtime("python", "3.11.2", "main.py"),)), 60_000)
    secrets = {}
    for key_id in ("mine", "theirs"):
        key = ApiKey(id=key_id, name=key_id, created_at=clock.now(), quotas=Quotas())
        await storage.key_store().add(key, secret_hash(f"corral_{key_id}"))
        secrets[key_id] = {"Authorization": f"Bearer corral_{key_id}"}
    settings = ApiSettings(key_max_streams=2, stream_heartbeat_s=0.05, max_stdin_call_bytes=16, max_stdin_bytes=24)
    container = ApiContainer(settings=settings, redis_settings=RedisSettings())
    container.storage.override(storage)
    events, job_input = FakeJobEvents(), FakeJobInput()
    container.events.override(events)
    container.job_input.override(job_input)
    async with AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000") as client:
        yield Live(client, state, events, job_input, container, secrets["mine"], secrets["theirs"])


def parse(body: str) -> tuple[list[tuple[str, str, str]], int]:
    """The events of an SSE body as (id, event, data), and how many comments came between."""
    found, comments = [], 0
    for block in body.split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                comments += 1
            elif line:
                name, _, value = line.partition(": ")
                fields.setdefault(name, []).append(value)
        if "event" in fields:
            found.append((fields["id"][0], fields["event"][0], "\n".join(fields.get("data", []))))
    return found, comments


async def stored(live: Live, job_id: str, *events: tuple[EventKind, str]) -> None:
    await live.events.append(job_id, events)


RUN = (
    (EventKind.STATUS, "PENDING"),
    (EventKind.STATUS, "RUNNING"),
    (EventKind.STDOUT, "one\ntwo"),
    (EventKind.STDERR, "warn"),
    (EventKind.STDOUT, "three\r\n"),
    (EventKind.STATUS, "COMPLETED"),
    (EventKind.RESULT, ""),
)


# ---- the event stream -----------------------------------------------------------------------


async def test_a_finished_jobs_events_are_replayed_in_order_and_the_stream_closes(live: Live) -> None:
    live.add("j1", JobStatus.COMPLETED, stdout="one\ntwothree\n")
    await stored(live, "j1", *RUN)
    response = await live.client.get("/jobs/j1/events", headers=live.mine)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events, _ = parse(response.text)
    assert [(id_, kind) for id_, kind, _ in events] == [(str(n), kind.value) for n, (kind, _) in enumerate(RUN, 1)]
    # Multi-line data goes as several data: lines, joined back with LF.
    assert events[2][2] == "one\ntwo"
    assert "data: one\ndata: two\n" in response.text
    assert events[4][2] == "three\n"
    result = json.loads(events[-1][2])
    assert result["job_id"] == "j1" and result["status"] == "COMPLETED"
    assert result["result"]["stdout"] == "one\ntwothree\n"


async def test_resuming_after_last_event_id_sends_every_later_event_once(live: Live) -> None:
    live.add("j1", JobStatus.COMPLETED)
    await stored(live, "j1", *RUN)
    first, _ = parse((await live.client.get("/jobs/j1/events", headers=live.mine)).text)
    for seen in range(len(RUN)):
        headers = {**live.mine, "Last-Event-ID": first[seen][0]}
        rest, _ = parse((await live.client.get("/jobs/j1/events", headers=headers)).text)
        assert [event[0] for event in rest] == [event[0] for event in first[seen + 1 :]]
        assert first[: seen + 1] + rest == first


async def test_a_running_jobs_stream_waits_for_its_events_with_keep_alives_between(live: Live) -> None:
    live.add("j1", JobStatus.RUNNING)
    await stored(
        live, "j1", (EventKind.STATUS, "PENDING"), (EventKind.STATUS, "RUNNING"), (EventKind.STDOUT, "early\n")
    )

    async def the_job_goes_on() -> None:
        await asyncio.sleep(0.3)
        await live.events.append("j1", [(EventKind.STDOUT, "late\n")])
        live.add("j1", JobStatus.COMPLETED, stdout="early\nlate\n")
        await live.events.append("j1", [(EventKind.STATUS, "COMPLETED"), (EventKind.RESULT, "")])

    # The app runs on the test client's own loop: the job's events must be added there.
    going_on = live.client.blocking_portal.start_task_soon(the_job_goes_on)
    response = await live.client.get("/jobs/j1/events", headers=live.mine)
    going_on.result(timeout=5)
    events, comments = parse(response.text)
    assert [(kind, data) for _, kind, data in events[:-1]] == [
        ("status", "PENDING"), ("status", "RUNNING"), ("stdout", "early\n"), ("stdout", "late\n"), ("status", "COMPLETED"),
    ]  # fmt: skip
    assert events[-1][1] == "result"
    assert comments >= 2, "a heartbeat of 0.05 s during a 0.3 s silence"
    assert ": keep-alive\n\n" in response.text


async def test_a_job_finished_before_events_were_kept_replays_its_status_then_result(live: Live) -> None:
    live.add("old", JobStatus.COMPLETED, stdout="hi\n")
    events, _ = parse((await live.client.get("/jobs/old/events", headers=live.mine)).text)
    assert [(kind, data) for _, kind, data in events[:1]] == [("status", "COMPLETED")]
    assert events[1][1] == "result" and json.loads(events[1][2])["result"]["stdout"] == "hi\n"
    # Resumed from the status it was sent: the result only, once.
    rest, _ = parse(
        (await live.client.get("/jobs/old/events", headers={**live.mine, "Last-Event-ID": events[0][0]})).text
    )
    assert rest == events[1:]
    done, _ = parse(
        (await live.client.get("/jobs/old/events", headers={**live.mine, "Last-Event-ID": events[1][0]})).text
    )
    assert done == []


async def test_another_keys_job_and_an_unknown_one_are_404(live: Live) -> None:
    live.add("theirs", JobStatus.COMPLETED, owner="theirs")
    await stored(live, "theirs", *RUN)
    assert (await live.client.get("/jobs/theirs/events", headers=live.mine)).status_code == 404
    assert (await live.client.get("/jobs/nothing/events", headers=live.mine)).status_code == 404
    assert (await live.client.get("/jobs/theirs/events", headers=live.theirs)).status_code == 200


async def test_past_its_keys_streams_a_stream_is_429_and_a_closed_stream_gives_its_place_back(live: Live) -> None:
    live.add("j1", JobStatus.COMPLETED)
    await stored(live, "j1", *RUN)
    streams = live.container.streams()
    mine = Caller(key_id="mine", quotas=Quotas())
    held = [streams.take(mine), streams.take(mine)]  # key_max_streams=2, held by streams still open
    refused = await live.client.get("/jobs/j1/events", headers=live.mine)
    assert refused.status_code == 429, refused.text
    assert "key_max_streams" in refused.json()["detail"]
    assert (
        await live.client.get("/jobs/j1/events", headers=live.theirs)
    ).status_code == 404  # others are not held back
    for slot in held:
        slot.release()
    assert (await live.client.get("/jobs/j1/events", headers=live.mine)).status_code == 200
    assert streams.held == 0 and streams.held_by == {}


async def test_past_the_process_streams_a_stream_is_503(live: Live) -> None:
    live.add("j1", JobStatus.COMPLETED)
    streams = live.container.streams()
    streams.limit = 0
    refused = await live.client.get("/jobs/j1/events", headers=live.mine)
    assert refused.status_code == 503 and "retry-after" in refused.headers


# ---- interactive stdin --------------------------------------------------------------------


async def test_stdin_goes_to_an_interactive_job_and_eof_closes_it(live: Live) -> None:
    live.add("j1", JobStatus.RUNNING, interactive=True)
    sent = await live.client.post("/jobs/j1/stdin", json={"data": "2 3\n"}, headers=live.mine)
    assert sent.status_code == 202, sent.text
    assert sent.json() == {"job_id": "j1", "sent_bytes": 4, "eof": False}
    raw = base64.b64encode(b"\x00\xff").decode()
    closed = await live.client.post(
        "/jobs/j1/stdin", json={"data": raw, "encoding": "base64", "eof": True}, headers=live.mine
    )
    assert closed.status_code == 202
    assert live.job_input.sent["j1"] == b"2 3\n\x00\xff" and "j1" in live.job_input.closed
    # Closed: nothing more goes in.
    assert (await live.client.post("/jobs/j1/stdin", json={"data": "x"}, headers=live.mine)).status_code == 413


async def test_stdin_for_another_keys_job_or_an_unknown_one_is_404(live: Live) -> None:
    live.add("theirs", JobStatus.RUNNING, owner="theirs", interactive=True)
    assert (await live.client.post("/jobs/theirs/stdin", json={"data": "x"}, headers=live.mine)).status_code == 404
    assert (await live.client.post("/jobs/nothing/stdin", json={"data": "x"}, headers=live.mine)).status_code == 404
    assert "theirs" not in live.job_input.sent


async def test_stdin_for_a_finished_job_or_one_not_interactive_is_409(live: Live) -> None:
    live.add("done", JobStatus.COMPLETED, interactive=True)
    live.add("closed", JobStatus.RUNNING)
    finished = await live.client.post("/jobs/done/stdin", json={"data": "x"}, headers=live.mine)
    assert finished.status_code == 409 and "finished" in finished.json()["detail"]
    closed = await live.client.post("/jobs/closed/stdin", json={"data": "x"}, headers=live.mine)
    assert closed.status_code == 409 and "interactive" in closed.json()["detail"]
    assert live.job_input.sent == {}


async def test_stdin_past_one_calls_or_the_jobs_bytes_is_413(live: Live) -> None:
    live.add("j1", JobStatus.RUNNING, interactive=True)
    # max_stdin_call_bytes=16 a call, max_stdin_bytes=24 in all.
    too_much = await live.client.post("/jobs/j1/stdin", json={"data": "x" * 17}, headers=live.mine)
    assert too_much.status_code == 413 and "16" in too_much.json()["detail"]
    assert (await live.client.post("/jobs/j1/stdin", json={"data": "x" * 16}, headers=live.mine)).status_code == 202
    past_total = await live.client.post("/jobs/j1/stdin", json={"data": "x" * 9}, headers=live.mine)
    assert past_total.status_code == 413 and "24" in past_total.json()["detail"]
    assert live.job_input.sent["j1"] == b"x" * 16


async def test_stdin_that_is_not_base64_is_422(live: Live) -> None:
    live.add("j1", JobStatus.RUNNING, interactive=True)
    response = await live.client.post(
        "/jobs/j1/stdin", json={"data": "not base64!", "encoding": "base64"}, headers=live.mine
    )
    assert response.status_code == 422


async def test_an_interactive_submission_with_stdin_is_422_and_without_it_is_queued_interactive(live: Live) -> None:
    refused = await live.client.post(
        "/execute", json={"code": "input()", "stdin_mode": "interactive", "stdin": "x"}, headers=live.mine
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "stdin"
    accepted = await live.client.post(
        "/execute", json={"code": "input()", "stdin_mode": "interactive"}, headers=live.mine
    )
    assert accepted.status_code == 202, accepted.text
    job = live.state.records[accepted.json()["job_id"]]
    assert job.request.stdin_mode == StdinMode.INTERACTIVE


async def test_the_openapi_document_describes_the_stream_and_the_stdin_route(live: Live) -> None:
    document = (await live.client.get("/schema/openapi.json")).json()
    events = document["paths"]["/jobs/{job_id}/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    for kind in ("status", "stdout", "stderr", "result"):
        assert f"`{kind}`" in events["description"]
    assert any(parameter["name"] == "Last-Event-ID" for parameter in events["parameters"])
    stdin = document["paths"]["/jobs/{job_id}/stdin"]["post"]
    assert set(stdin["responses"]) >= {"202", "404", "409", "413"}
    assert "StdinIn" in json.dumps(stdin["requestBody"])
    assert "stdin_mode" in document["components"]["schemas"]["ExecuteIn"]["properties"]
