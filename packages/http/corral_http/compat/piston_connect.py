"""Piston v2's WebSocket for interactive runs, `/api/v2/connect`, as Piston's own source
(api/src/api/v2.js) speaks it.

The client sends `init` (an execute request; its stdin is not used), then `data` on stream
`stdin` and `signal` messages; the server answers `runtime`, `stage`, `data` (stdout, stderr) and
`exit` per stage, then closes with 4999. A refused message ends the connection with Piston's
close codes: 4000 init twice, 4001 no init within a second, 4002 an `error` message was sent,
4003 data or a signal before init, 4004 data for another stream than stdin, 4005 an unknown
signal. Underneath is a Corral job with interactive stdin: its events are read from storage as
GET /jobs/{id}/events reads them, its input written as POST /jobs/{id}/stdin writes it, and any
signal cancels it (the sandbox is killed, so the run ends as SIGKILL would end it). A client gone
before the end cancels its job too.

Corral compiles and runs in one job and records the compile stage in the result: the compile
stage's exit (and the run stage's start) are sent when the run's first output, or its end, shows
that the compile stage is over, and a failed compilation's diagnostics come with its end.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar import WebSocket, websocket

from corral_core.access import Caller
from corral_core.events import EventKind
from corral_core.job import Job, JobStatus, StdinMode, Verdict
from corral_http.compat.languages import OfferedLanguage, offered
from corral_http.compat.piston import SIGNALS, StageOut, compile_stage, stage_of
from corral_http.compat.piston_request import PistonError, to_request
from corral_http.dependencies import Jobs
from corral_http.live import Slot
from corral_http.services import JobRoutes

# Piston closes a connection that has not sent `init` after a second.
INIT_TIMEOUT_S = 1.0
JOB_COMPLETED, ALREADY_INITIALIZED, INIT_TIMEOUT, NOTIFIED_ERROR = 4999, 4000, 4001, 4002
NOT_INITIALIZED, STDIN_ONLY, INVALID_SIGNAL = 4003, 4004, 4005


class Closing(Exception):
    """End the connection with `code`; with `message`, sent as an `error` first (4002)."""

    def __init__(self, code: int, reason: str, message: str | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.message = code, reason, message


def notified(message: str) -> Closing:
    return Closing(NOTIFIED_ERROR, "Notified Error", message)


@dataclass
class Session:
    socket: WebSocket[Any, Any, Any]
    jobs: JobRoutes
    caller: Caller
    job: Job | None = None
    slot: Slot | None = None
    pump: asyncio.Task[None] | None = None
    stage: str | None = None
    sent: asyncio.Lock = field(default_factory=asyncio.Lock)
    submitted: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, **message: Any) -> None:
        async with self.sent:
            await self.socket.send_data(msgspec.json.encode(message).decode())

    async def serve(self) -> None:
        reader = asyncio.create_task(self.read())
        try:
            await self._serve(reader)
        finally:
            running = self.job is not None and self.pump is not None and not self.pump.done()
            reader.cancel()
            if self.pump is not None:
                self.pump.cancel()
            if self.slot is not None:
                self.slot.release()
            if running:  # the client left, or broke the protocol, before the end
                await self.cancel()

    async def _serve(self, reader: asyncio.Task[None]) -> None:
        done, _ = await asyncio.wait({reader}, timeout=INIT_TIMEOUT_S)
        if not done and self.pump is None:
            raise Closing(INIT_TIMEOUT, "Initialization Timeout")
        while not reader.done():
            assert self.pump is not None
            done, _ = await asyncio.wait({reader, self.pump}, return_when=asyncio.FIRST_COMPLETED)
            if self.pump in done:
                try:
                    self.pump.result()
                except Closing:  # the init refused, or the job failed
                    raise
                except Exception as error:  # storage away, the job expired: said, as Piston says its errors
                    raise notified(str(error)) from None
                raise Closing(JOB_COMPLETED, "Job Completed")
        reader.result()

    async def read(self) -> None:
        while True:
            event = await self.socket.receive()
            if event["type"] == "websocket.disconnect":
                return
            raw = event.get("text") or event.get("bytes") or b""
            if not isinstance(raw, str | bytes):
                raw = b""
            try:
                message = msgspec.json.decode(raw)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
                raise notified(f"malformed JSON: {error}") from None
            if isinstance(message, dict):
                await self.handle(message)

    async def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "init":
            if self.pump is not None:
                raise Closing(ALREADY_INITIALIZED, "Already Initialized")
            # The job from here: an init being submitted counts as one against the timeout.
            self.pump = asyncio.create_task(self.run(message))
        elif kind in ("data", "signal") and not await self.initialized():
            return  # the init failed: its error ends the connection
        elif kind == "data":
            if message.get("stream") != "stdin":
                raise Closing(STDIN_ONLY, "Can only write to stdin")
            await self.write(message.get("data"))
        elif kind == "signal":
            if message.get("signal") not in SIGNALS.values():
                raise Closing(INVALID_SIGNAL, "Invalid signal")
            await self.cancel()

    async def initialized(self) -> bool:
        """Whether the job is there: an init sent, waited for while it is being submitted
        (a client may send input right after its init); False if the init failed."""
        if self.pump is None:
            raise Closing(NOT_INITIALIZED, "Not yet initialized")
        ready = asyncio.create_task(self.submitted.wait())
        await asyncio.wait({ready, self.pump}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        return self.job is not None

    async def run(self, body: dict[str, Any]) -> None:
        job, chosen = await self.init(body)
        await self.send(type="runtime", language=chosen.runtime.language, version=chosen.runtime.version)
        await self.relay(job.id, _staged(chosen))

    async def init(self, body: dict[str, Any]) -> tuple[Job, OfferedLanguage]:
        try:
            request, chosen = to_request(body, offered(await self.jobs.runtimes.offered()), self.jobs.options.limits.maxima)
        except PistonError as error:
            raise notified(error.message) from None
        # Piston discards init's stdin: the client writes the program's input as it runs.
        request = msgspec.structs.replace(request, stdin="", stdin_mode=StdinMode.INTERACTIVE)
        try:
            slot = self.jobs.streams.take(self.caller)
        except Exception as error:  # too many streams, in this process or for this key
            raise notified(str(error)) from None
        self.slot = slot
        try:
            self.job = (await self.jobs.submit(self.caller, request)).job
        except Exception as error:  # an invalid submission, over a quota, storage away: all said
            raise notified(str(error)) from None
        self.submitted.set()
        return self.job, chosen

    async def write(self, data: Any) -> None:
        if not isinstance(data, str):
            raise notified("data must be a string")
        assert self.job is not None
        sent, options = data.encode("utf-8", "surrogatepass"), self.jobs.options
        if len(sent) > options.max_stdin_call_bytes:
            raise notified(f"{len(sent)} bytes are more than one message may send ({options.max_stdin_call_bytes})")
        total = options.sizes.max_stdin_bytes
        if not await self.jobs.job_input.send(self.job.id, sent, max_bytes=total):
            raise notified(f"the program's stdin would pass its {total} bytes in all")

    async def cancel(self) -> None:
        assert self.job is not None
        with contextlib.suppress(Exception):  # finished already, or expired: nothing to stop
            await self.jobs.cancel(self.caller, self.job.id)

    async def relay(self, job_id: str, compiled: bool) -> None:
        """The job's events as Piston's messages, until it ends."""
        after, heartbeat_s = "", self.jobs.options.stream_heartbeat_s
        while True:
            batch = await self.jobs.events.read(job_id, after, heartbeat_s)
            for event in batch:
                after = event.id
                if event.kind is EventKind.RESULT:
                    return await self.ended(await self.jobs.get(self.caller, job_id), compiled)
                if event.kind is EventKind.STATUS and event.data == JobStatus.RUNNING.value and self.stage is None:
                    await self.begin("compile" if compiled else "run")
                elif event.kind in (EventKind.STDOUT, EventKind.STDERR):
                    await self.running(compiled)
                    await self.send(type="data", stream=event.kind.value, data=event.data)
            if not batch:
                job = await self.jobs.get(self.caller, job_id)
                if job.finished:
                    return await self.ended(job, compiled)

    async def begin(self, stage: str) -> None:
        self.stage = stage
        await self.send(type="stage", stage=stage)

    async def running(self, compiled: bool) -> None:
        """The run stage has begun: say so, after the compile stage's end."""
        if self.stage == "run":
            return
        if compiled:
            if self.stage is None:
                await self.begin("compile")
            await self.send(type="exit", stage="compile", code=0, signal=None)
        await self.begin("run")

    async def ended(self, job: Job, compiled: bool) -> None:
        result = job.result
        if result is None:
            if job.status is not JobStatus.CANCELLED:
                raise notified(job.error.message if job.error else f"job {job.id} ended {job.status.value}")
            # Killed by a signal (or by Corral's own DELETE /jobs/{id}) before it ended.
            await self.exit(self.stage or "run", StageOut("", "", "", None, "SIGKILL", None, None, None, None, None))
            return
        if compiled and result.verdict is Verdict.COMPILE_ERROR:
            if self.stage is None:
                await self.begin("compile")
            if result.compile_output:
                await self.send(type="data", stream="stderr", data=result.compile_output)
            await self.exit("compile", compile_stage(result))
            return
        await self.running(compiled)
        await self.exit("run", stage_of(result))

    async def exit(self, stage: str, outcome: StageOut) -> None:
        await self.send(type="exit", stage=stage, code=outcome.code, signal=outcome.signal)


def _staged(chosen: OfferedLanguage) -> bool:
    """Whether Piston compiles this language in a stage of its own."""
    return chosen.compiled and (chosen.row is None or chosen.row.piston_compile_stage)


@websocket("/connect", summary="Run code interactively (Piston's WebSocket)")
async def connect(socket: WebSocket[Any, Any, Any], jobs: Jobs) -> None:
    user = socket.scope.get("user")
    assert isinstance(user, Caller), "the door (KeyDoor or no_keys) stands before every route"
    await socket.accept()
    session = Session(socket, jobs, user)
    try:
        await session.serve()
    except Closing as closing:
        if closing.message is not None:
            with contextlib.suppress(Exception):
                await session.send(type="error", message=closing.message)
        with contextlib.suppress(Exception):  # the client may be gone already
            await socket.close(closing.code, closing.reason)
