"""What each of the client's calls sends, and how its answer is read: one place both clients
(client.py) build their requests from, so they cannot drift apart; the retry policy they share;
the reading of an event stream."""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import random
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from corral_client.errors import AlreadyFinished, ApiError, CorralError, NotSupported, TransportError, error_for
from corral_client.models import Event, Limits, Problem, TestCase

T = TypeVar("T")
# The longest the client waits on a quiet event stream before it opens it again: well past the
# server's heartbeats (15 s by default).
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
class Call:
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


RETRIED = frozenset({429, 503})
DEFAULT_RETRY = RetryPolicy()


class Calls:
    """What each call sends, and how its answer is read: shared by both clients."""

    @staticmethod
    def submit(code: str, language: str, options: SubmitOptions, wait_s: float) -> Call:
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
        return Call("POST", "/execute", params, body, headers, timeout_s=wait_s + 30)

    @staticmethod
    def get(job_id: str, wait_s: float) -> Call:
        params = {"wait": wait_s} if wait_s > 0 else {}
        return Call("GET", f"/jobs/{job_id}", params, timeout_s=wait_s + 30)

    @staticmethod
    def download(job_id: str, name: str) -> Call:
        return Call("GET", f"/jobs/{quote(job_id, safe='')}/files/{quote(name, safe='/')}", timeout_s=120)

    @staticmethod
    def content(response: httpx.Response) -> bytes:
        if response.status_code >= 400:
            raise error_of(response)
        return response.content

    @staticmethod
    def send_stdin(job_id: str, data: str | bytes, eof: bool) -> Call:
        if isinstance(data, str):
            body: dict[str, Any] = {"data": data}
        else:
            body = {"data": base64.b64encode(data).decode(), "encoding": "base64"}
        if eof:
            body["eof"] = True
        return Call("POST", f"/jobs/{quote(job_id, safe='')}/stdin", body=body)

    @staticmethod
    def events(job_id: str, after: str | None) -> tuple[str, dict[str, str]]:
        headers = {"Accept": "text/event-stream"}
        if after:
            headers["Last-Event-ID"] = after
        return f"/jobs/{quote(job_id, safe='')}/events", headers

    @staticmethod
    def cancel(job_id: str) -> Call:
        return Call("DELETE", f"/jobs/{job_id}")

    @staticmethod
    def runtimes() -> Call:
        return Call("GET", "/runtimes")

    @staticmethod
    def read(response: httpx.Response, kind: type[T]) -> T:
        if response.status_code >= 400:
            raise error_of(response)
        return msgspec.json.decode(response.content, type=kind)


class EventReader:
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


def check_event_stream(response: httpx.Response) -> None:
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        raise NotSupported(response.status_code, f"{response.request.url.path} is not an event stream on this server")


def stream_timeout() -> httpx.Timeout:
    return httpx.Timeout(30.0, read=STREAM_SILENCE_S)


class Resumption:
    """Where following a job's events stands, for Client.stream and AsyncClient.stream alike:
    the last event's id to resume after, and the failures in a row, which the retry policy
    bounds. Each connection is made inside `connection()`, told of an error status by
    `refused`; `pause()` is the wait before the next, or raises once the policy gives up."""

    def __init__(self, job_id: str, last_event_id: str | None, retry: RetryPolicy) -> None:
        self._job_id = job_id
        self._after = last_event_id
        self._retry = retry
        self._failures = 0
        self._problem: CorralError = CorralError("no connection yet")
        self._retry_after: str | None = None

    @contextlib.contextmanager
    def connection(self) -> Iterator[tuple[str, dict[str, str]]]:
        """One connection's path and headers; a transport error inside it ends it, to be retried,
        and so does its end before the result."""
        path, headers = Calls.events(self._job_id, self._after)
        self._problem = TransportError(f"the events of job {self._job_id} ended before its result")
        self._retry_after = None
        try:
            yield path, headers
        except httpx.HTTPError as error:
            self._problem, self._retry_after = TransportError(f"GET {path}: {error}"), None

    def refused(self, response: httpx.Response) -> None:
        """An error status (its body read): raised at once unless it is one to retry."""
        self._problem = error_of(response)
        if response.status_code not in RETRIED:
            raise self._problem
        self._retry_after = response.headers.get("retry-after")

    def reader(self, response: httpx.Response) -> EventReader:
        check_event_stream(response)
        return EventReader()

    def took(self, event: Event) -> bool:
        """Whether `event` is the last one: the job's result."""
        self._after, self._failures = event.id or self._after, 0
        return event.kind == "result"

    def pause(self) -> float:
        if self._failures >= self._retry.attempts:
            raise self._problem
        delay = self._retry.delay(self._failures, self._retry_after)
        self._failures += 1
        return delay


def _file(name: str, content: str | bytes) -> dict[str, str]:
    if isinstance(content, str):
        return {"name": name, "content": content}
    return {"name": name, "content": base64.b64encode(content).decode(), "encoding": "base64"}


def error_of(response: httpx.Response) -> ApiError:
    try:
        problem = msgspec.json.decode(response.content, type=Problem)
    except msgspec.MsgspecError:
        problem = Problem(response.status_code, response.text.strip() or response.reason_phrase)
    return error_for(response.status_code, problem.detail or response.reason_phrase, problem.errors)


def checked(content: bytes, name: str, sha256: str | None) -> bytes:
    if sha256 is not None and hashlib.sha256(content).hexdigest() != sha256:
        raise CorralError(f"the content of {name!r} does not match its sha256 {sha256}")
    return content


def default_headers(key: str | None) -> dict[str, str]:
    headers = {"User-Agent": "corral-client/0.1.0"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def cancel_error(error: ApiError, job_id: str) -> ApiError:
    if isinstance(error, NotSupported):
        return NotSupported(error.status_code, f"this server does not support cancelling jobs (DELETE /jobs/{job_id})")
    if error.status_code == 409:
        return AlreadyFinished(error.status_code, error.detail, error.errors)
    return error


