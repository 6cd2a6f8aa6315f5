"""Corral end to end against the sandbox alone: what the API, Redis and the worker add.

Starts a redis-server, the API PEX and two worker PEX processes (as `make up` does), then in
one run prints:
  - p50/p90 latency of `POST /execute?wait=10` for `print(1)` from one client, next to a bare
    NsJail run of the same program with the same policy (target: p50 within 1.3x), with a pause
    after each run (--settle-ms) so that neither starts while the other's background work (a
    used warm jail's removal and its successor's start) runs;
  - jobs per second with 4 concurrent clients, next to what bare NsJail runs per second on the
    same 2 cores (target: at least 80%).
Needs root and `make package` (dist/). Run: `./pants run bench/http_latency.py` or `make bench`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from baseline import bare_nsjail_argv, percentile
from corral_testbed.redis_server import RedisServerProcess
from corral_testbed.services import corral

CODE = "print(1)"


def timed(call: object, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def rate(call: object, clients: int, total: int) -> float:
    left = iter(range(total))
    lock = threading.Lock()

    def loop() -> None:
        while True:
            with lock:
                if next(left, None) is None:
                    return
            call()  # type: ignore[operator]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(loop) for _ in range(clients)]:
            future.result()
    return total / (time.perf_counter() - started)


def main(runs: int, jobs: int, workers: int, concurrency: int, settle_s: float) -> None:
    with tempfile.TemporaryDirectory() as scratch, bare_nsjail_argv(CODE) as bare_argv:

        def bare() -> None:
            done = subprocess.run(bare_argv, stdin=subprocess.DEVNULL, capture_output=True)
            assert done.returncode == 0 and done.stdout == b"1\n", done

        redis = RedisServerProcess(Path(scratch) / "redis")
        redis.start()
        try:
            slots = {"CORRAL_CONCURRENCY": str(concurrency)}
            with corral(redis.url, Path(scratch), workers=workers, pex_root=Path("dist"), env=slots) as service:
                local = threading.local()
                body = json.dumps({"code": CODE})
                headers = {"content-type": "application/json"}

                def execute() -> None:
                    # One keep-alive connection per client thread; the standard library's client
                    # costs the shared 2 cores less than httpx would.
                    if not hasattr(local, "connection"):
                        local.connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
                    local.connection.request("POST", "/execute?wait=10", body, headers)
                    response = local.connection.getresponse()
                    job = json.loads(response.read())
                    assert response.status == 200 and job["result"]["stdout"] == "1\n", job

                timed(execute, 20)  # warm-up
                timed(bare, 20)
                api_ms, bare_ms = [], []
                for _ in range(runs):  # interleaved, so that noise hits both alike
                    api_ms += timed(execute, 1)
                    time.sleep(settle_s)
                    bare_ms += timed(bare, 1)
                    time.sleep(settle_s)
                bare_rate = max(rate(bare, parallel, jobs) for parallel in (2, 4))
                api_rate = rate(execute, 4, jobs)
        finally:
            redis.stop()

    print(f"print(1): {runs} runs each, interleaved, {settle_s * 1000:g} ms apart; wall ms")
    print(f"{'':28}{'p50':>8}{'p90':>8}{'mean':>8}")
    for name, values in (("POST /execute?wait (1 client)", api_ms), ("bare NsJail", bare_ms)):
        print(f"{name:28}{percentile(values, .5):8.2f}{percentile(values, .9):8.2f}{statistics.fmean(values):8.2f}")
    ratio = percentile(api_ms, 0.5) / percentile(bare_ms, 0.5)
    print(f"p50 ratio API / bare NsJail: {ratio:.2f}x (target: at most 1.3x)")
    print(f"throughput, {jobs} jobs: API with 4 clients {api_rate:.1f} jobs/s; bare NsJail (best of 2 or 4 at once) "
          f"{bare_rate:.1f} runs/s; {100 * api_rate / bare_rate:.0f}% (target: at least 80%)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (as make up)")
    parser.add_argument("--concurrency", type=int, default=2, help="job slots per worker")
    parser.add_argument("--settle-ms", type=float, default=200, help="pause after each run")
    arguments = parser.parse_args()
    main(arguments.runs, arguments.jobs, arguments.workers, arguments.concurrency, arguments.settle_ms / 1000)
