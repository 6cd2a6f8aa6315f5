"""Warm jails against cold ones, bare NsJail and bare python3, all in one run.

Starts three Corral stacks (each a redis-server, the API PEX and two worker PEX processes, as
`make up`): one with warm jails as configured by default (forked from a nursery), one with warm
jails started as cold ones are (CORRAL_FORK_JAILS=false) and one with them off
(CORRAL_WARM_JAILS=false), then prints:
  - p50/p90 wall time of `POST /execute?wait=10` for `print(1)` from one client on each stack,
    next to a bare NsJail run of the same program with the same policy (cold) and bare
    `python3 -s -c 'print(1)'`, interleaved run by run so that noise hits all five alike, with a
    pause after each run (--settle-ms) so that no run starts while the last one's background
    work (a used warm jail's removal and its successor's start) runs;
  - jobs per second with 4 concurrent clients for the same five (in rounds, interleaved);
  - the machine's CPU per job during those runs (/proc/stat: the jails and NsJail included, and
    this benchmark's clients too), and the CPU per job of each process outside the jails (API,
    worker, Redis).
Goals: warm p50 at most 0.5x bare NsJail's and at most 10 ms; warm jobs/s at least 0.9x bare
NsJail's. Needs root and `make package` (dist/). Run: `./pants run bench/warm.py` or `make bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from baseline import bare_nsjail_argv, percentile
from corral_testbed.redis_server import RedisServerProcess
from corral_testbed.services import Corral, corral
from http_latency import rate, timed

CODE = "print(1)"
ROUNDS = 8
_TICKS = os.sysconf("SC_CLK_TCK")


def machine_cpu_ms() -> float:
    """CPU time every CPU spent on anything but idling (/proc/stat) so far, in ms: the jails,
    NsJail, the kernel's work for them and this benchmark's own clients included."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) * 1000 / _TICKS


def cpu_ms(pid: int, children: bool = False) -> float:
    """CPU time of a process so far (its reaped children's too when `children`), in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks * 1000 / _TICKS


class Stack:
    def __init__(self, redis: RedisServerProcess, service: Corral) -> None:
        self.redis = redis
        self.service = service
        self._local = threading.local()
        self.starts: dict[str, int] = {}

    def execute(self) -> None:
        # One keep-alive connection per client thread, as bench/http_latency.py. The server
        # closes one left idle for 5 s (a loaded machine's warm-up of the other three ways can
        # take that long): then it is opened again, as HTTP clients do; the request never ran.
        connection = getattr(self._local, "connection", None)
        body = json.dumps({"code": CODE})
        for attempt in range(2):
            if connection is None:
                connection = self._local.connection = http.client.HTTPConnection("127.0.0.1", self.service.port, timeout=30)
            try:
                connection.request("POST", "/execute?wait=10", body, {"content-type": "application/json"})
                response = connection.getresponse()
                break
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                connection.close()
                connection = None
                if attempt:
                    raise
        job = json.loads(response.read())
        assert response.status == 200 and job["result"]["stdout"] == "1\n", job

    def processes(self) -> dict[str, list[int]]:
        assert self.service.api is not None
        return {
            "api": [self.service.api.pid],
            "workers": [worker.pid for worker in self.service.workers],
            "redis": [self.redis.pid],
        }

    def cpu(self) -> dict[str, float]:
        return {name: sum(cpu_ms(pid) for pid in pids) for name, pids in self.processes().items()}


@contextlib.contextmanager
def stack(scratch: Path, name: str, warm: bool, workers: int, concurrency: int, forked: bool = True) -> Iterator[Stack]:
    redis = RedisServerProcess(scratch / f"redis-{name}")
    redis.start()
    env = {"CORRAL_CONCURRENCY": str(concurrency), "CORRAL_WARM_JAILS": "true" if warm else "false",
           "CORRAL_FORK_JAILS": "true" if forked else "false", "CORRAL_METRICS_PORT": "0"}  # fmt: skip
    (scratch / name).mkdir()
    try:
        with corral(redis.url, scratch / name, workers=workers, pex_root=Path("dist"), env=env) as service:
            yield Stack(redis, service)
    finally:
        redis.stop()


def main(runs: int, jobs: int, workers: int, concurrency: int, settle_s: float) -> None:
    python_argv = ["/usr/bin/python3", "-s", "-c", CODE]
    with tempfile.TemporaryDirectory() as directory, bare_nsjail_argv(CODE) as nsjail_argv:
        scratch = Path(directory)

        def bare(argv: list[str]) -> Callable[[], None]:
            def call() -> None:
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
                assert done.returncode == 0 and done.stdout == b"1\n", done

            return call

        with (
            stack(scratch, "warm", True, workers, concurrency) as warm,
            stack(scratch, "started", True, workers, concurrency, forked=False) as started,
            stack(scratch, "cold", False, workers, concurrency) as cold,
        ):
            ways: dict[str, Callable[[], None]] = {
                "warm jails (HTTP)": warm.execute,
                "warm, not forked (HTTP)": started.execute,
                "cold jails (HTTP)": cold.execute,
                "bare NsJail (cold)": bare(nsjail_argv),
                "bare python3": bare(python_argv),
            }
            for call in ways.values():
                timed(call, 20)  # warm-up
            latency: dict[str, list[float]] = {name: [] for name in ways}
            names = list(ways)
            for index in range(runs):  # interleaved, rotating the order
                for name in names[index % len(names) :] + names[: index % len(names)]:
                    latency[name] += timed(ways[name], 1)
                    time.sleep(settle_s)
            # Throughput in rounds, rotating the order too: other load on the machine comes and
            # goes, and must not fall on one of the five only.
            seconds = dict.fromkeys(ways, 0.0)
            cpu_ms_total: dict[str, dict[str, float]] = {}
            machine_ms = dict.fromkeys(ways, 0.0)
            stacks = {"warm jails (HTTP)": warm, "warm, not forked (HTTP)": started, "cold jails (HTTP)": cold}
            per_round = max(4, jobs // ROUNDS)
            for index in range(ROUNDS):
                for name in names[index % len(names) :] + names[: index % len(names)]:
                    target = stacks.get(name)
                    before = target.cpu() if target else {}
                    time.sleep(settle_s)
                    machine_before = machine_cpu_ms()
                    seconds[name] += per_round / rate(ways[name], 4, per_round)
                    machine_ms[name] += machine_cpu_ms() - machine_before
                    if target:
                        spent = {process: value - before[process] for process, value in target.cpu().items()}
                        totals = cpu_ms_total.setdefault(name, dict.fromkeys(spent, 0.0))
                        for process, value in spent.items():
                            totals[process] += value
            rates = {name: ROUNDS * per_round / spent_s for name, spent_s in seconds.items()}
            cpu = {name: {p: v / (ROUNDS * per_round) for p, v in totals.items()} for name, totals in cpu_ms_total.items()}

    print(f"print(1): {runs} runs each, interleaved, {settle_s * 1000:g} ms apart; wall ms submit -> result")
    print(f"{'':24}{'p50':>8}{'p90':>8}{'jobs/s (4 clients)':>22}{'machine CPU ms/job':>20}")
    for name, values in latency.items():
        machine = machine_ms[name] / (ROUNDS * per_round)
        print(f"{name:24}{percentile(values, .5):8.2f}{percentile(values, .9):8.2f}{rates[name]:22.1f}{machine:20.2f}")
    warm_p50 = percentile(latency["warm jails (HTTP)"], 0.5)
    nsjail_p50 = percentile(latency["bare NsJail (cold)"], 0.5)
    print(f"warm p50 / bare NsJail p50: {warm_p50 / nsjail_p50:.2f}x (goal: at most 0.5x and 10 ms; warm p50 "
          f"{warm_p50:.2f} ms)")
    print(f"warm jobs/s / bare NsJail runs/s: {rates['warm jails (HTTP)'] / rates['bare NsJail (cold)']:.2f}x "
          "(goal: at least 0.9x)")
    print("CPU per job outside the jails during the 4-client runs, ms (workers: their own, not NsJail's)")
    for name, shares in cpu.items():
        print(f"  {name:22}" + "".join(f"{process} {value:6.2f}  " for process, value in shares.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2, help="worker processes per stack (as make up)")
    parser.add_argument("--concurrency", type=int, default=2, help="job slots per worker")
    parser.add_argument("--settle-ms", type=float, default=200, help="pause after each run and before each round")
    arguments = parser.parse_args()
    main(arguments.runs, arguments.jobs, arguments.workers, arguments.concurrency, arguments.settle_ms / 1000)
