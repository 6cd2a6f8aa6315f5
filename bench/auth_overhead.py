"""What API keys cost: submits per second through HTTP with keys on, next to keys off.

Starts a redis-server and two API PEX processes on it, one with CORRAL_AUTH=false and one with
keys on (a key made by `corral-api keys create`, its quotas set high enough never to refuse).
No worker runs: each `POST /execute` (no wait) is accepted and queued, so what is measured is
the API's own work per submit. With keys, the submit is still one Redis round trip (the ADMIT
script checks the key, counts the request, books the job and queues it; the key's record comes
from a one-second cache in the API). Rounds alternate between the two so that noise hits both
alike: many short rounds, each pair in the other order from the last (whichever side runs
second in a pair tends to pay for what the first left behind), and each side's totals are
compared. 60 pairs by default: on this shared 2-core machine the rate moves by a third from one
minute to the next, and 20 pairs gave from 2% to 17% in runs minutes apart. Besides submits per
second, it reports the CPU time the API process and Redis spend per submit, which other work on
a shared machine moves less than the wall clock. Target: keys cost under 10%. Needs `make package`
(dist/). Run: `./pants run bench/auth_overhead.py` or `make bench`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from corral_testbed.redis_server import RedisServerProcess
from corral_testbed.services import Corral

BODY = json.dumps({"code": "pass"})
# Room for every job the benchmark queues (nothing consumes them).
ROOMY = {"CORRAL_MAX_UNFINISHED_JOBS": str(10**7)}


def start(redis_url: str, log_dir: Path, prefix: str, auth: bool) -> Corral:
    env = {**ROOMY, "CORRAL_AUTH": "true" if auth else "false", "CORRAL_REDIS_KEY_PREFIX": prefix}
    api = Corral(redis_url, log_dir, env, Path("dist"))
    api.start_api()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api.url}/healthz", timeout=1).status_code == 200:
                return api
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(api.logs())


def cpu_s(pid: int) -> float:
    """CPU time (user and system) of a process and its children so far."""
    total = 0
    for process in [pid, *(int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
        fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def redis_cpu_us(port: int) -> float:
    """Microseconds Redis spent in commands so far (scripts count once, with their calls inside)."""
    stats = subprocess.run(["redis-cli", "-p", str(port), "info", "commandstats"], capture_output=True, text=True, check=True)
    spent = 0.0
    for line in stats.stdout.splitlines():
        if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
            spent += float(dict(item.split("=") for item in line.split(":", 1)[1].split(","))["usec"])
    return spent


@dataclass(frozen=True)
class Round:
    submits: int
    seconds: float
    api_cpu_s: float
    redis_us: float


def measured(api: Corral, redis_port: int, headers: dict[str, str], clients: int, total: int) -> Round:
    assert api.api is not None
    cpu, spent = cpu_s(api.api.pid), redis_cpu_us(redis_port)
    seconds = total / submits_per_second(api.port, headers, clients, total)
    return Round(total, seconds, cpu_s(api.api.pid) - cpu, redis_cpu_us(redis_port) - spent)


def submits_per_second(port: int, headers: dict[str, str], clients: int, total: int) -> float:
    left = iter(range(total))
    lock = threading.Lock()

    def loop() -> None:
        # One keep-alive connection per client thread; the standard library's client costs the
        # shared 2 cores less than httpx would.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                if next(left, None) is None:
                    return
            connection.request("POST", "/execute", BODY, headers)
            response = connection.getresponse()
            answer = response.read()
            assert response.status == 202, answer

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(loop) for _ in range(clients)]:
            future.result()
    return total / (time.perf_counter() - started)


def main(rounds: int, per_round: int, clients: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        redis = RedisServerProcess(Path(scratch) / "redis")
        redis.start()
        open_api = keyed_api = None
        try:
            open_api = start(redis.url, Path(scratch), "bench:{open}:", auth=False)
            keyed_api = start(redis.url, Path(scratch), "bench:{keyed}:", auth=True)
            key = keyed_api.create_key(
                "bench", "--rate", f"{10**9}/1", "--max-unfinished", str(10**8), "--max-stored-bytes", str(10**15)
            )
            plain = {"content-type": "application/json"}
            keyed = {**plain, "Authorization": f"Bearer {key}"}
            submits_per_second(open_api.port, plain, clients, per_round // 2)  # warm-up
            submits_per_second(keyed_api.port, keyed, clients, per_round // 2)
            without: list[Round] = []
            with_keys: list[Round] = []
            for index in range(rounds):
                pair = [(without, open_api, plain), (with_keys, keyed_api, keyed)]
                for side, served, headers in pair if index % 2 == 0 else reversed(pair):
                    side.append(measured(served, redis.port, headers, clients, per_round))
        finally:
            for api in (open_api, keyed_api):
                if api is not None:
                    api.stop()
            redis.stop()

    def summary(side: list[Round]) -> tuple[float, float, float]:
        """Submits per second, and CPU µs per submit of the API and of Redis, over all rounds."""
        submits = sum(one.submits for one in side)
        return (
            submits / sum(one.seconds for one in side),
            sum(one.api_cpu_s for one in side) / submits * 1e6,
            sum(one.redis_us for one in side) / submits,
        )

    print(f"POST /execute (no wait, no worker), {clients} clients, {rounds} alternating rounds of {per_round}")
    for name, side in (("off", without), ("on ", with_keys)):
        rate, cpu, spent = summary(side)
        spread = statistics.quantiles((one.submits / one.seconds for one in side), n=4)
        print(
            f"  keys {name}: {rate:7.1f} submits/s (rounds' quartiles {spread[0]:.0f}/{spread[1]:.0f}/{spread[2]:.0f}); "
            f"CPU per submit: API {cpu:.0f} µs, Redis {spent:.0f} µs"
        )
    (off, cpu_off, redis_off), (on, cpu_on, redis_on) = summary(without), summary(with_keys)
    print(f"  cost of keys, rate and quota checks: {100 * (1 - on / off):.1f}% of submits/s (target: under 10%)")
    print(f"  the same in CPU per submit, API and Redis: {100 * ((cpu_on + redis_on) / (cpu_off + redis_off) - 1):.1f}%")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--per-round", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    arguments = parser.parse_args()
    main(arguments.rounds, arguments.per_round, arguments.clients)
