"""A program's output told as it is written (on_output) and its stdin fed while it runs
(stdin_source), in real jails, cold and warm: the stored result stays what it was."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator

import msgspec
import pytest

from corral_core.events import EventKind
from corral_core.job import RunRequest, SandboxStart, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import RunContext
from corral_sandbox import HostReport, NsJailSandbox
from corral_testbed.nsjail_host import assert_host_unharmed, nsjail_host
from corral_testbed.time_scale import scaled

LIMITS = msgspec.structs.replace(
    DEFAULT_LIMIT_POLICY.defaults, cpu_time_ms=scaled(5_000), wall_time_ms=scaled(10_000), memory_mb=128
)


class Heard:
    """What on_output was told, in order, and the moments the test marks between chunks."""

    def __init__(self) -> None:
        self.told: list[tuple[EventKind, bytes] | str] = []
        self.changed = asyncio.Event()

    def __call__(self, kind: EventKind, data: bytes) -> None:
        self.told.append((kind, data))
        self.changed.set()

    def mark(self, moment: str) -> None:
        self.told.append(moment)

    def of(self, kind: EventKind) -> bytes:
        return b"".join(item[1] for item in self.told if isinstance(item, tuple) and item[0] is kind)

    async def until(self, kind: EventKind, ending: bytes) -> None:
        while not self.of(kind).endswith(ending):
            self.changed.clear()
            await self.changed.wait()


@pytest.fixture
def host() -> HostReport:
    return nsjail_host()


def request(code: str, **limits: int) -> RunRequest:
    return RunRequest(language="python", code=textwrap.dedent(code), limits=msgspec.structs.replace(LIMITS, **limits))


async def test_chunks_add_up_to_the_stored_output_even_a_character_split_across_writes(host: HostReport) -> None:
    code = """
        import os, time
        os.write(1, "é".encode()[:1])
        time.sleep(0.05)
        os.write(1, "é".encode()[1:] + b" done\\n")
        os.write(2, b"warned\\n")
    """
    heard = Heard()
    result = await NsJailSandbox(host=host).run(request(code), RunContext(on_output=heard))
    assert (result.verdict, result.stdout, result.stderr) == (Verdict.OK, "é done\n", "warned\n")
    assert heard.of(EventKind.STDOUT).decode() == result.stdout
    assert heard.of(EventKind.STDERR).decode() == result.stderr
    assert_host_unharmed(host)


async def test_output_past_the_cap_is_never_told(host: HostReport) -> None:
    code = """
        import sys
        for _ in range(100):
            sys.stdout.write("x" * 999 + "\\n")
            sys.stdout.flush()
    """
    heard = Heard()
    result = await NsJailSandbox(host=host).run(request(code, max_output_bytes=10_000), RunContext(on_output=heard))
    assert result.verdict is Verdict.OUTPUT_LIMIT_EXCEEDED and result.stdout_truncated
    assert heard.of(EventKind.STDOUT) == result.stdout.encode() and len(result.stdout) == 10_000
    assert_host_unharmed(host)


async def test_the_first_chunk_comes_before_the_program_ends(host: HostReport) -> None:
    heard = Heard()
    code = "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second')"
    running = asyncio.ensure_future(NsJailSandbox(host=host).run(request(code), RunContext(on_output=heard)))
    await heard.until(EventKind.STDOUT, b"first\n")
    heard.mark("heard the first")
    result = await running
    heard.mark("ended")
    assert result.stdout == "first\nsecond\n"
    assert heard.told == [(EventKind.STDOUT, b"first\n"), "heard the first", (EventKind.STDOUT, b"second\n"), "ended"]
    assert_host_unharmed(host)


async def test_a_warm_jail_tells_its_output_too(host: HostReport) -> None:
    sandbox = NsJailSandbox(host=host, warm_slots=1)
    sandbox.keep_warm()
    heard = Heard()
    try:
        result = await sandbox.run(request("print('warm')\nimport sys\nprint('err', file=sys.stderr)"), RunContext(on_output=heard))
    finally:
        await sandbox.aclose()
    assert result.sandbox_start is SandboxStart.WARM
    assert (heard.of(EventKind.STDOUT), heard.of(EventKind.STDERR)) == (b"warm\n", b"err\n")
    assert_host_unharmed(host)


class Typist:
    """A client at the keyboard: lines sent one at a time, then an end of input."""

    def __init__(self) -> None:
        self._lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.stopped = asyncio.Event()

    def send(self, line: bytes | None) -> None:
        self._lines.put_nowait(line)

    async def source(self) -> AsyncIterator[bytes]:
        try:
            while (line := await self._lines.get()) is not None:
                yield line
        finally:
            self.stopped.set()


async def test_an_interactive_program_is_driven_line_by_line(host: HostReport) -> None:
    code = """
        import sys
        for line in sys.stdin:
            print("twice", 2 * int(line), flush=True)
        print("bye")
    """
    sandbox = NsJailSandbox(host=host, warm_slots=1)  # a warm jail there, yet it runs cold
    heard, typist = Heard(), Typist()
    try:
        running = asyncio.ensure_future(sandbox.run(request(code), RunContext(on_output=heard, stdin_source=typist.source())))
        typist.send(b"1\n")
        await heard.until(EventKind.STDOUT, b"twice 2\n")
        typist.send(b"21\n")
        await heard.until(EventKind.STDOUT, b"twice 42\n")
        typist.send(None)
        result = await running
    finally:
        await sandbox.aclose()
    assert (result.verdict, result.stdout, result.sandbox_start) == (Verdict.OK, "twice 2\ntwice 42\nbye\n", SandboxStart.COLD)
    await typist.stopped.wait()
    assert_host_unharmed(host)


async def test_feeding_stops_when_the_program_ends_without_reading(host: HostReport) -> None:
    typist = Typist()
    typist.send(b"never read\n")
    result = await NsJailSandbox(host=host).run(request("print('not reading')"), RunContext(stdin_source=typist.source()))
    assert (result.verdict, result.stdout) == (Verdict.OK, "not reading\n")
    await typist.stopped.wait()  # the source was closed, though it never ended
    assert_host_unharmed(host)
