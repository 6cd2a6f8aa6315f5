"""`Client` and `AsyncClient`: the same calls, blocking or awaited.

Both build their requests and read their answers through `_Calls`, so they cannot drift apart;
each only sends. A 503 or 429 is retried with exponential backoff, honouring Retry-After: the
server answers so before it queues anything (queue full, too many long-polls). Every submit
carries an Idempotency-Key, the same on each of its retries, so that a server that honours it
never queues one submission twice. (Corral's server ignores the header until API keys land.)

`stream` follows a job's events (Server-Sent Events): a connection that drops, or goes quiet
for longer than the server's heartbeats allow, is opened again with the last event's id, so
each event comes once and none is lost while the job's record lives.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, TypeVar, Unpack
from urllib.parse import quote

import httpx
import msgspec

from corral_client.errors import AlreadyFinished, ApiError, CorralError, NotSupported, TransportError, error_for
from corral_client.models import Accepted, Event, Job, Limits, Problem, Runtime, TestCase

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8000"
# Each long-poll asks the server to hold the request this long: under its default maximum (30 s).
POLL_S = 10.0
# A stream silent this long is taken for dropped and opened again: the server sends a comment
# every 15 s (its stream_heartbeat_s) when nothing else.
STREAM_SILENCE_S = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry an answer of 503 or 429."""

    attempts: int = 5
    base_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        if retry_after:
            told = _retry_after_s(retry_after)
            if told is not None:
                return min(told, self.max_s)
        backoff: float = min(self.base_s * 2.0**attempt, self.max_s)
        return backoff * (0.5 + random.random() / 2)  # jitter: clients retrying together spread out


def _retry_after_s(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    params: Mapping[str, Any] = field(default_factory=dict)
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 30.0


class SubmitOptions(TypedDict, total=False):
    """What a submission may carry besides its code and language."""

    stdin: str
    args: Sequence[str]
    # By name: text, or bytes (sent base64).
    files: Mapping[str, str | bytes]
    limits: Limits
    # The program runs once per test, each judged (TestCase objects, or dicts of its fields).
    tests: Sequence[TestCase | Mapping[str, Any]]
    # Skip the tests after a failing one.
    stop_on_first_failure: bool
    # Files to send back once the program ends: glob patterns relative to its working directory
    # ("plot.png", "out/**/*.csv"), or True for everything under out/ (Result.files).
    outputs: Sequence[str] | bool
    # "interactive": no stdin with the job; send it while it runs (send_stdin).
    stdin_mode: Literal["closed", "interactive"]


_RETRIED = frozenset({429, 503})
DEFAULT_RETRY = RetryPolicy()


class _Calls:
    """What each call sends, and how its answer is read: shared by both clients."""

    @staticmethod
    def submit(code: str, language: str, options: SubmitOptions, wait_s: float) -> _Call:
        body: dict[str, Any] = {
            "code": code,
            "language": language,
            "stdin": options.get("stdin", ""),
            "args": list(options.get("args", ())),
        }
        if files := options.get("files"):
            body["files"] = [_file(name, content) for name, content in files.items()]
        if (limits := options.get("limits")) is not None:
            body["limits"] = msgspec.to_builtins(limits)
        # Sent only when asked for, so that a request without tests reads to an older server as
        # it always has.
        if tests := options.get("tests"):
            body["tests"] = [msgspec.to_builtins(test) if isinstance(test, TestCase) else dict(test) for test in tests]
        if options.get("stop_on_first_failure"):
            body["stop_on_first_failure"] = True
        if outputs := options.get("outputs"):
            body["outputs"] = outputs if isinstance(outputs, bool) else list(outputs)
        if options.get("stdin_mode", "closed") != "closed":
            body["stdin_mode"] = options["stdin_mode"]
        params = {"wait": wait_s} if wait_s > 0 else {}
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        return _Call("POST", "/execute", params, body, headers, timeout_s=wait_s + 30)

    @staticmethod
    def get(job_id: str, wait_s: float) -> _Call:
        params = {"wait": wait_s} if wait_s > 0 else {}
        return _Call("GET", f"/jobs/{job_id}", params, timeout_s=wait_s + 30)

    @staticmethod
    def download(job_id: str, name: str) -> _Call:
        return _Call("GET", f"/jobs/{quote(job_id, safe='')}/files/{quote(name, safe='/')}", timeout_s=120)

    @staticmethod
    def content(response: httpx.Response) -> bytes:
        if response.status_code >= 400:
            raise _error(response)
        return response.content

    @staticmethod
    def send_stdin(job_id: str, data: str | bytes, eof: bool) -> _Call:
        if isinstance(data, str):
            body: dict[str, Any] = {"data": data}
        else:
            body = {"data": base64.b64encode(data).decode(), "encoding": "base64"}
        if eof:
            body["eof"] = True
        return _Call("POST", f"/jobs/{quote(job_id, safe='')}/stdin", body=body)

    @staticmethod
    def events(job_id: str, after: str | None) -> tuple[str, dict[str, str]]:
        headers = {"Accept": "text/event-stream"}
        if after:
            headers["Last-Event-ID"] = after
        return f"/jobs/{quote(job_id, safe='')}/events", headers

    @staticmethod
    def cancel(job_id: str) -> _Call:
        return _Call("DELETE", f"/jobs/{job_id}")

    @staticmethod
    def runtimes() -> _Call:
        return _Call("GET", "/runtimes")

    @staticmethod
    def read(response: httpx.Response, kind: type[T]) -> T:
        if response.status_code >= 400:
            raise _error(response)
        return msgspec.json.decode(response.content, type=kind)


class _EventReader:
    """Server-Sent Events from the lines of a stream, as the WHATWG format says: fields until
    a blank line, `data` lines joined with LF, comments (":") skipped."""

    def __init__(self) -> None:
        self._id = ""
        self._kind = ""
        self._data: list[str] = []

    def line(self, line: str) -> Event | None:
        if not line:
            event = Event(self._id, self._kind or "message", "\n".join(self._data)) if self._data or self._kind else None
            self._kind, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._kind = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


def _check_event_stream(response: httpx.Response) -> None:
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        raise NotSupported(response.status_code, f"{response.request.url.path} is not an event stream on this server")


def _stream_timeout() -> httpx.Timeout:
    return httpx.Timeout(30.0, read=STREAM_SILENCE_S)


def _file(name: str, content: str | bytes) -> dict[str, str]:
    if isinstance(content, str):
        return {"name": name, "content": content}
    return {"name": name, "content": base64.b64encode(content).decode(), "encoding": "base64"}


def _error(response: httpx.Response) -> ApiError:
    try:
        problem = msgspec.json.decode(response.content, type=Problem)
    except msgspec.MsgspecError:
        problem = Problem(response.status_code, response.text.strip() or response.reason_phrase)
    return error_for(response.status_code, problem.detail or response.reason_phrase, problem.errors)


def _checked(content: bytes, name: str, sha256: str | None) -> bytes:
    if sha256 is not None and hashlib.sha256(content).hexdigest() != sha256:
        raise CorralError(f"the content of {name!r} does not match its sha256 {sha256}")
    return content


def _headers(key: str | None) -> dict[str, str]:
    headers = {"User-Agent": "corral-client/0.1.0"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def _cancel_error(error: ApiError, job_id: str) -> ApiError:
    if isinstance(error, NotSupported):
        return NotSupported(error.status_code, f"this server does not support cancelling jobs (DELETE /jobs/{job_id})")
    if error.status_code == 409:
        return AlreadyFinished(error.status_code, error.detail, error.errors)
    return error


class Client:
    """Corral's API, blocking. Use as a context manager, or call close()."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        key: str | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=url, headers=_headers(key), transport=transport)
        self._retry = retry

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(self, code: str, language: str = "python", **options: Unpack[SubmitOptions]) -> Accepted:
        """Queue a job; answers at once with its id.

        With `tests` (TestCase objects, or dicts of the same fields), the program runs once per
        test, each judged; `stop_on_first_failure` skips the tests after a failing one."""
        return _Calls.read(self._send(_Calls.submit(code, language, options, 0)), Accepted)

    def get(self, job_id: str, *, wait_s: float = 0) -> Job:
        """The job as it stands, or once finished if that happens within `wait_s`."""
        return _Calls.read(self._send(_Calls.get(job_id, wait_s)), Job)

    def wait(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        """The job once finished (long-polls); as it stands when `timeout_s` runs out."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            job = self.get(job_id, wait_s=max(left, 0))
            if job.finished or left <= 0:
                return job

    def run(
        self, code: str, language: str = "python", *, timeout_s: float | None = None, **options: Unpack[SubmitOptions]
    ) -> Job:
        """Submit and wait for the finished job."""
        return self.wait(self.submit(code, language, **options).job_id, timeout_s=timeout_s)

    def runtimes(self) -> list[Runtime]:
        return _Calls.read(self._send(_Calls.runtimes()), list[Runtime])

    def cancel(self, job_id: str) -> Job:
        """Cancel a pending or running job; returns it, CANCELLED. Raises AlreadyFinished when it
        had finished, JobNotFound when it is unknown (or another key's), NotSupported on a server
        without cancel."""
        try:
            return _Calls.read(self._send(_Calls.cancel(job_id)), Job)
        except ApiError as error:
            raise _cancel_error(error, job_id) from None

    def download(self, job_id: str, name: str, *, sha256: str | None = None) -> bytes:
        """The content of a file the job returned (one of `job.result.files`, by name); with
        `sha256` (the file's, as listed), content that does not match raises CorralError."""
        return _checked(_Calls.content(self._send(_Calls.download(job_id, name))), name, sha256)

    def send_stdin(self, job_id: str, data: str | bytes, *, eof: bool = False) -> None:
        """Add `data` (text, or bytes) to the stdin of a job submitted with stdin_mode
        "interactive"; `eof` closes it after them."""
        _Calls.read(self._send(_Calls.send_stdin(job_id, data, eof)), dict)

    def stream(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's events as they come (from the first, or after `last_event_id`), ending
        with its `result`; a dropped connection is resumed where it broke, up to the retry
        policy's attempts in a row. Raises JobNotFound for an unknown job (or another key's)."""
        after, failures = last_event_id, 0
        while True:
            path, headers = _Calls.events(job_id, after)
            problem: CorralError
            try:
                with self._http.stream("GET", path, headers=headers, timeout=_stream_timeout()) as response:
                    if response.status_code >= 400:
                        response.read()
                        problem = _error(response)
                        if response.status_code not in _RETRIED:
                            raise problem
                        retry_after = response.headers.get("retry-after")
                    else:
                        _check_event_stream(response)
                        reader = _EventReader()
                        for line in response.iter_lines():
                            event = reader.line(line)
                            if event is None:
                                continue
                            after, failures = event.id or after, 0
                            yield event
                            if event.kind == "result":
                                return
                        problem, retry_after = TransportError(f"the events of job {job_id} ended before its result"), None
            except httpx.HTTPError as error:
                problem, retry_after = TransportError(f"GET {path}: {error}"), None
            if failures >= self._retry.attempts:
                raise problem
            time.sleep(self._retry.delay(failures, retry_after))
            failures += 1

    def _send(self, call: _Call) -> httpx.Response:
        for attempt in range(self._retry.attempts + 1):
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, json=call.body, headers=call.headers, timeout=call.timeout_s
                )
            except httpx.HTTPError as error:
                raise TransportError(f"{call.method} {call.path}: {error}") from error
            if response.status_code not in _RETRIED or attempt == self._retry.attempts:
                return response
            time.sleep(self._retry.delay(attempt, response.headers.get("retry-after")))
        raise AssertionError("unreachable")


class AsyncClient:
    """Corral's API, awaited. Use as an async context manager, or await aclose()."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        key: str | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=url, headers=_headers(key), transport=transport)
        self._retry = retry

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(self, code: str, language: str = "python", **options: Unpack[SubmitOptions]) -> Accepted:
        return _Calls.read(await self._send(_Calls.submit(code, language, options, 0)), Accepted)

    async def get(self, job_id: str, *, wait_s: float = 0) -> Job:
        return _Calls.read(await self._send(_Calls.get(job_id, wait_s)), Job)

    async def wait(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            job = await self.get(job_id, wait_s=max(left, 0))
            if job.finished or left <= 0:
                return job

    async def run(
        self, code: str, language: str = "python", *, timeout_s: float | None = None, **options: Unpack[SubmitOptions]
    ) -> Job:
        accepted = await self.submit(code, language, **options)
        return await self.wait(accepted.job_id, timeout_s=timeout_s)

    async def runtimes(self) -> list[Runtime]:
        return _Calls.read(await self._send(_Calls.runtimes()), list[Runtime])

    async def cancel(self, job_id: str) -> Job:
        try:
            return _Calls.read(await self._send(_Calls.cancel(job_id)), Job)
        except ApiError as error:
            raise _cancel_error(error, job_id) from None

    async def download(self, job_id: str, name: str, *, sha256: str | None = None) -> bytes:
        return _checked(_Calls.content(await self._send(_Calls.download(job_id, name))), name, sha256)

    async def send_stdin(self, job_id: str, data: str | bytes, *, eof: bool = False) -> None:
        _Calls.read(await self._send(_Calls.send_stdin(job_id, data, eof)), dict)

    async def stream(self, job_id: str, *, last_event_id: str | None = None) -> AsyncIterator[Event]:
        """As Client.stream, awaited."""
        after, failures = last_event_id, 0
        while True:
            path, headers = _Calls.events(job_id, after)
            problem: CorralError
            try:
                async with self._http.stream("GET", path, headers=headers, timeout=_stream_timeout()) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        problem = _error(response)
                        if response.status_code not in _RETRIED:
                            raise problem
                        retry_after = response.headers.get("retry-after")
                    else:
                        _check_event_stream(response)
                        reader = _EventReader()
                        async for line in response.aiter_lines():
                            event = reader.line(line)
                            if event is None:
                                continue
                            after, failures = event.id or after, 0
                            yield event
                            if event.kind == "result":
                                return
                        problem, retry_after = TransportError(f"the events of job {job_id} ended before its result"), None
            except httpx.HTTPError as error:
                problem, retry_after = TransportError(f"GET {path}: {error}"), None
            if failures >= self._retry.attempts:
                raise problem
            await asyncio.sleep(self._retry.delay(failures, retry_after))
            failures += 1

    async def _send(self, call: _Call) -> httpx.Response:
        for attempt in range(self._retry.attempts + 1):
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, json=call.body, headers=call.headers, timeout=call.timeout_s
                )
            except httpx.HTTPError as error:
                raise TransportError(f"{call.method} {call.path}: {error}") from error
            if response.status_code not in _RETRIED or attempt == self._retry.attempts:
                return response
            await asyncio.sleep(self._retry.delay(attempt, response.headers.get("retry-after")))
        raise AssertionError("unreachable")
