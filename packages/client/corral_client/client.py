"""`Client` and `AsyncClient`: the same calls, blocking or awaited.

Both build their requests and read their answers through `Calls`, so they cannot drift apart;
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
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, TypeVar, Unpack

import httpx

from corral_client.calls import (
    DEFAULT_RETRY,
    RETRIED,
    Call,
    Calls,
    Resumption,
    RetryPolicy,
    SubmitOptions,
    cancel_error,
    checked,
    default_headers,
    stream_timeout,
)
from corral_client.errors import ApiError, TransportError
from corral_client.models import Accepted, Event, Job, Runtime

DEFAULT_URL = "http://127.0.0.1:8000"
# Each long-poll asks the server to hold the request this long: under its default maximum (30 s).
POLL_S = 10.0


HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)


class _Connection(Generic[HttpT, TransportT]):
    """What Client and AsyncClient are made of: an httpx client of their kind, on `url`,
    sending `key` as the bearer token (when given), and the retry policy."""

    _http_type: Callable[..., HttpT]

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        key: str | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        transport: TransportT | None = None,
    ) -> None:
        self._http: HttpT = self._http_type(base_url=url, headers=default_headers(key), transport=transport)
        self._retry = retry


class Client(_Connection[httpx.Client, httpx.BaseTransport]):
    """Corral's API, blocking. Use as a context manager, or call close()."""

    _http_type = httpx.Client

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
        return Calls.read(self._send(Calls.submit(code, language, options, 0)), Accepted)

    def get(self, job_id: str, *, wait_s: float = 0) -> Job:
        """The job as it stands, or once finished if that happens within `wait_s`."""
        return Calls.read(self._send(Calls.get(job_id, wait_s)), Job)

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
        return Calls.read(self._send(Calls.runtimes()), list[Runtime])

    def cancel(self, job_id: str) -> Job:
        """Cancel a pending or running job; returns it, CANCELLED. Raises AlreadyFinished when it
        had finished, JobNotFound when it is unknown (or another key's), NotSupported on a server
        without cancel."""
        try:
            return Calls.read(self._send(Calls.cancel(job_id)), Job)
        except ApiError as error:
            raise cancel_error(error, job_id) from None

    def download(self, job_id: str, name: str, *, sha256: str | None = None) -> bytes:
        """The content of a file the job returned (one of `job.result.files`, by name); with
        `sha256` (the file's, as listed), content that does not match raises CorralError."""
        return checked(Calls.content(self._send(Calls.download(job_id, name))), name, sha256)

    def send_stdin(self, job_id: str, data: str | bytes, *, eof: bool = False) -> None:
        """Add `data` (text, or bytes) to the stdin of a job submitted with stdin_mode
        "interactive"; `eof` closes it after them."""
        Calls.read(self._send(Calls.send_stdin(job_id, data, eof)), dict)

    def stream(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's events as they come (from the first, or after `last_event_id`), ending
        with its `result`; a dropped connection is resumed where it broke, up to the retry
        policy's attempts in a row. Raises JobNotFound for an unknown job (or another key's)."""
        resumption = Resumption(job_id, last_event_id, self._retry)
        while True:
            with (
                resumption.connection() as (path, headers),
                self._http.stream("GET", path, headers=headers, timeout=stream_timeout()) as response,
            ):
                if response.status_code >= 400:
                    response.read()
                    resumption.refused(response)
                else:
                    reader = resumption.reader(response)
                    for line in response.iter_lines():
                        if (event := reader.line(line)) is not None:
                            yield event
                            if resumption.took(event):
                                return
            time.sleep(resumption.pause())

    def _send(self, call: Call) -> httpx.Response:
        for attempt in range(self._retry.attempts + 1):
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, json=call.body, headers=call.headers, timeout=call.timeout_s
                )
            except httpx.HTTPError as error:
                raise TransportError(f"{call.method} {call.path}: {error}") from error
            if response.status_code not in RETRIED or attempt == self._retry.attempts:
                return response
            time.sleep(self._retry.delay(attempt, response.headers.get("retry-after")))
        raise AssertionError("unreachable")


class AsyncClient(_Connection[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """Corral's API, awaited. Use as an async context manager, or await aclose()."""

    _http_type = httpx.AsyncClient

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(self, code: str, language: str = "python", **options: Unpack[SubmitOptions]) -> Accepted:
        return Calls.read(await self._send(Calls.submit(code, language, options, 0)), Accepted)

    async def get(self, job_id: str, *, wait_s: float = 0) -> Job:
        return Calls.read(await self._send(Calls.get(job_id, wait_s)), Job)

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
        return Calls.read(await self._send(Calls.runtimes()), list[Runtime])

    async def cancel(self, job_id: str) -> Job:
        try:
            return Calls.read(await self._send(Calls.cancel(job_id)), Job)
        except ApiError as error:
            raise cancel_error(error, job_id) from None

    async def download(self, job_id: str, name: str, *, sha256: str | None = None) -> bytes:
        return checked(Calls.content(await self._send(Calls.download(job_id, name))), name, sha256)

    async def send_stdin(self, job_id: str, data: str | bytes, *, eof: bool = False) -> None:
        Calls.read(await self._send(Calls.send_stdin(job_id, data, eof)), dict)

    async def stream(self, job_id: str, *, last_event_id: str | None = None) -> AsyncIterator[Event]:
        """As Client.stream, awaited."""
        resumption = Resumption(job_id, last_event_id, self._retry)
        while True:
            with resumption.connection() as (path, headers):
                async with self._http.stream("GET", path, headers=headers, timeout=stream_timeout()) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        resumption.refused(response)
                    else:
                        reader = resumption.reader(response)
                        async for line in response.aiter_lines():
                            if (event := reader.line(line)) is not None:
                                yield event
                                if resumption.took(event):
                                    return
            await asyncio.sleep(resumption.pause())

    async def _send(self, call: Call) -> httpx.Response:
        for attempt in range(self._retry.attempts + 1):
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, json=call.body, headers=call.headers, timeout=call.timeout_s
                )
            except httpx.HTTPError as error:
                raise TransportError(f"{call.method} {call.path}: {error}") from error
            if response.status_code not in RETRIED or attempt == self._retry.attempts:
                return response
            await asyncio.sleep(self._retry.delay(attempt, response.headers.get("retry-after")))
        raise AssertionError("unreachable")
