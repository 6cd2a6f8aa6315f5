"""A running job's output over its event stream (GET /jobs/{id}/events): how soon it arrives,
and what one API process pays for many streams at once.

Starts a redis-server, one API process and one worker (from dist/, as `make up` does), then:
(a) runs, one after another, a program that prints the time, sleeps 1 s and prints again, with
    an SSE client following each job; prints the p50 (and p90, max) of the delay from the
    program's first write (the time it printed) to the arrival of that output at the client,
    and how long before the second line it came;
(b) opens N streams at once on a few jobs that sleep a few seconds, and prints how many got a
    5xx (or no stream), how many ended with their result, and the API process's resident memory
    and CPU while they were open.
Needs root and `make package`. Run: `./pants run bench/live_output.py` or `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from corral_testbed.many_clients import request
from corral_testbed.redis_server import RedisServerProcess
from corral_testbed.services import Corral, corral

PRINTS_TWICE = "import time\nprint(time.time(), flush=True)\ntime.sleep(1)\nprint('second', flush=True)\n"


@dataclass
class Followed:
    """What one SSE client saw: the answer's status, and each event with its arrival time."""

    status: int
    events: list[tuple[float, str, str]] = field(default_factory=list)

    def first(self, kind: str) -> tuple[float, str] | None:
        return next(((at, data) for at, event, data in self.events if event == kind), None)


async def follow(url: str, job_id: str, timeout_s: float = 120) -> Followed:
    """Read the job's event stream to its end, on a bare connection (chunked HTTP/1.1)."""
    parts = urlsplit(url)
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            head = f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n\r\n"
            writer.write(head.encode())
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            while (await reader.readline()) not in (b"\r\n", b""):
                pass  # the headers: uvicorn sends a stream chunked
            followed = Followed(status)
            if status != 200:
                return followed
            text = ""
            while size := int((await reader.readline()).strip() or b"0", 16):
                text += (await reader.readexactly(size + 2))[:-2].decode()
                *blocks, text = text.split("\n\n")
                for block in blocks:
                    event, data = _event(block)
                    if event:
                        followed.events.append((time.time(), event, data))
                    if event == "result":
                        return followed
            return followed
        finally:
            writer.close()


def _event(block: str) -> tuple[str, str]:
    event, data = "", []
    for line in block.split("\n"):
        name, _, value = line.partition(": ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    return event, "\n".join(data)


async def submit(url: str, code: str) -> str:
    accepted = await request(f"{url}/execute", "POST", {"code": code})
    assert accepted.status == 202, accepted.body
    job_id: str = accepted.json()["job_id"]
    return job_id


async def first_output_delays(url: str, runs: int) -> tuple[list[float], list[float]]:
    """Per run: ms from the program's first write to its arrival, and ms from then to the second."""
    delays, ahead = [], []
    for _ in range(runs):
        followed = await follow(url, await submit(url, PRINTS_TWICE))
        outputs = [(at, data) for at, event, data in followed.events if event == "stdout"]
        assert followed.status == 200 and outputs, f"no output came: {followed}"
        arrived, data = outputs[0]
        delays.append((arrived - float(data.split()[0])) * 1000)
        second = next((at for at, data in outputs if "second" in data), None)
        if second is not None:
            ahead.append((second - arrived) * 1000)
    return delays, ahead


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise KeyError("VmRSS")


async def many_streams(service: Corral, streams: int, jobs: int, sleep_s: float) -> dict[str, float]:
    assert service.api is not None
    pid = service.api.pid
    code = f"import time\nprint('start', flush=True)\ntime.sleep({sleep_s})\nprint('end', flush=True)\n"
    job_ids = [await submit(service.url, code) for _ in range(jobs)]
    rss_before, cpu_before, started = rss_kb(pid), cpu_s(pid), time.monotonic()
    following = [asyncio.create_task(follow(service.url, job_ids[index % jobs], timeout_s=sleep_s + 120)) for index in range(streams)]
    peak = rss_before
    while not all(task.done() for task in following):
        peak = max(peak, rss_kb(pid))
        await asyncio.sleep(0.2)
    cpu_used, wall = cpu_s(pid) - cpu_before, time.monotonic() - started
    results = await asyncio.gather(*following, return_exceptions=True)
    failed = [result for result in results if isinstance(result, BaseException)]
    answered = [result for result in results if isinstance(result, Followed)]
    return {
        "streams": streams,
        "5xx": sum(result.status >= 500 for result in answered),
        "other refusals": sum(result.status != 200 and result.status < 500 for result in answered),
        "broken connections": len(failed),
        "ended with result": sum(result.first("result") is not None for result in answered),
        "API RSS before MiB": rss_before / 1024,
        "API RSS peak MiB": peak / 1024,
        "API CPU % while open": 100 * cpu_used / wall,
        "wall s": wall,
    }


def main(runs: int, streams: int, jobs: int, sleep_s: float) -> None:
    # A thousand connections each side: this process's limit passes to the API it starts.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65_536)), hard))
    with tempfile.TemporaryDirectory() as scratch:
        redis = RedisServerProcess(Path(scratch) / "redis")
        redis.start()
        try:
            slots = {"CORRAL_CONCURRENCY": str(max(jobs, 2))}
            with corral(redis.url, Path(scratch), workers=1, pex_root=Path("dist"), env=slots) as service:
                asyncio.run(first_output_delays(service.url, 2))  # warm-up
                delays, ahead = asyncio.run(first_output_delays(service.url, runs))
                fanout = asyncio.run(many_streams(service, streams, jobs, sleep_s)) if streams else {}
        finally:
            redis.stop()
    print(f"(a) first write -> SSE client, {runs} runs of print, sleep 1 s, print")
    quantiles = statistics.quantiles(delays, n=10) if len(delays) > 1 else delays * 9
    print(f"    p50 {statistics.median(delays):.1f} ms   p90 {quantiles[-1]:.1f} ms   max {max(delays):.1f} ms")
    if ahead:
        print(f"    the first line came {statistics.median(ahead):.0f} ms (p50) before the second")
    if fanout:
        print(f"(b) {streams} streams at once on {jobs} jobs sleeping {sleep_s:g} s, one API process")
        for name, value in fanout.items():
            print(f"    {name:<24}{value:>10.1f}" if isinstance(value, float) else f"    {name:<24}{value:>10}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="runs of (a)")
    parser.add_argument("--streams", type=int, default=1_000, help="streams at once in (b); 0 skips it")
    parser.add_argument("--jobs", type=int, default=10, help="jobs the streams of (b) follow")
    parser.add_argument("--sleep", type=float, default=5.0, help="seconds each job of (b) sleeps")
    arguments = parser.parse_args()
    main(arguments.runs, arguments.streams, arguments.jobs, arguments.sleep)
