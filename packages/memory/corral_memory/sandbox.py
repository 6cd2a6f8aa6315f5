"""A sandbox that is not one: Python run with `exec` in this process.

It exists so that use cases and the HTTP layer can be tested without NsJail, and it honours
the sandbox contract for well-behaved programs (output, exit codes, stdin, args, files, output
caps). It enforces no time or memory limit and isolates nothing.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import io
import platform
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from corral_core.events import EventKind
from corral_core.job import InputFile, RunRequest, RunResult, Verdict, ran_of, result_of_tests
from corral_core.ports import Runtime, UnsupportedLanguage
from corral_core.testcases import TEST_OUTPUT_BYTES, CheckerProgram, Ran, TestCase, judge_tests


class _OutputLimit(BaseException):
    pass


class _CappedBuffer(io.RawIOBase):
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        chunk = bytes(b)
        room = self.cap - len(self.data)
        self.data += chunk[:room]
        if len(chunk) > room:
            self.truncated = True
            raise _OutputLimit
        return len(chunk)


def _stream(buffer: _CappedBuffer) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BufferedWriter(buffer, 1), encoding="utf-8", write_through=True)


class InMemorySandbox:
    """Runs one program at a time, in a thread, so a slow program does not stall the loop."""

    def __init__(self) -> None:
        self._one_at_a_time = threading.Lock()

    def runtimes(self) -> list[Runtime]:
        return [Runtime("python", platform.python_version(), "main.py")]

    async def run(
        self,
        request: RunRequest,
        *,
        scope: str = "",
        on_output: Callable[[EventKind, bytes], None] | None = None,
        stdin_source: AsyncIterator[bytes] | None = None,
    ) -> RunResult:
        if request.language != "python":
            raise UnsupportedLanguage(request.language)
        if not request.tests:
            if stdin_source is not None:
                # No program runs while its input comes: it is all gathered first.
                given = b"".join([chunk async for chunk in stdin_source])
                request = msgspec.structs.replace(request, stdin=given.decode("utf-8", "replace"))
            result = await asyncio.to_thread(self._run_locked, request)
            if on_output is not None:
                # Told all at the end (the port allows it), as the stored bytes are kept.
                for kind, data in ((EventKind.STDOUT, result.stdout), (EventKind.STDERR, result.stderr)):
                    if data:
                        on_output(kind, data.encode("utf-8", "surrogatepass"))
            return result
        output_bytes = min(request.limits.max_output_bytes, TEST_OUTPUT_BYTES)
        tests = await judge_tests(
            request.tests, _Tests(self, request), stop_on_first_failure=request.stop_on_first_failure, output_bytes=output_bytes
        )
        return result_of_tests(tests)

    def _run_locked(self, request: RunRequest) -> RunResult:
        with self._one_at_a_time:
            return self._run(request)

    def _run(self, request: RunRequest) -> RunResult:
        cap = request.limits.max_output_bytes
        out, err = _CappedBuffer(cap), _CappedBuffer(cap)
        stdout, stderr = _stream(out), _stream(err)
        files = {f.name: f.content for f in request.files}

        def open_input(name: str, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if name not in files or any(c in mode for c in "wax+"):
                raise FileNotFoundError(2, "No such file or directory", name)
            data = files[name]
            return io.BytesIO(data) if "b" in mode else io.StringIO(data.decode())

        namespace = {"__name__": "__main__", "__builtins__": {**vars(builtins), "open": open_input}}
        verdict: Verdict = Verdict.OK
        exit_code: int | None = 0
        started = time.perf_counter()
        saved_argv, saved_stdin = sys.argv, sys.stdin
        sys.argv, sys.stdin = ["main.py", *request.args], io.StringIO(request.stdin)
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    exec(compile(request.code, "main.py", "exec"), namespace)
                    stdout.flush()
                except SystemExit as stop:
                    exit_code = _exit_status(stop.code, stderr)
                except _OutputLimit:
                    verdict, exit_code = Verdict.OUTPUT_LIMIT_EXCEEDED, None
                except Exception:
                    with contextlib.suppress(_OutputLimit):
                        traceback.print_exc(file=stderr)
                    exit_code = 1
                with contextlib.suppress(_OutputLimit):
                    stdout.flush()
                    stderr.flush()
        finally:
            sys.argv, sys.stdin = saved_argv, saved_stdin
        if verdict is Verdict.OK and exit_code != 0:
            verdict = Verdict.RUNTIME_ERROR
        if out.truncated or err.truncated:
            verdict = Verdict.OUTPUT_LIMIT_EXCEEDED
        return RunResult(
            verdict=verdict,
            exit_code=exit_code,
            stdout=out.data.decode(errors="replace"),
            stderr=err.data.decode(errors="replace"),
            stdout_truncated=out.truncated,
            stderr_truncated=err.truncated,
            wall_time_ms=round((time.perf_counter() - started) * 1000),
        )


class _Tests:
    """The test runner over this sandbox: each test and each checker program is one run."""

    def __init__(self, sandbox: InMemorySandbox, request: RunRequest) -> None:
        self._sandbox = sandbox
        self._request = msgspec.structs.replace(request, tests=())

    async def run_test(self, test: TestCase) -> Ran:
        return ran_of(await self._sandbox.run(msgspec.structs.replace(self._request, stdin=test.stdin, args=test.args)))

    async def run_checker(self, checker: CheckerProgram, files: dict[str, bytes]) -> Ran:
        request = msgspec.structs.replace(
            self._request,
            language=checker.language,
            code=checker.code,
            stdin="",
            args=(),
            files=tuple(InputFile(name, data) for name, data in files.items()),
        )
        return ran_of(await self._sandbox.run(request))


def _exit_status(code: object, stderr: io.TextIOWrapper) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(_OutputLimit):
        print(code, file=stderr)
    return 1
