"""What API keys cost: submits per second through HTTP with keys on, next to keys off.

Starts a redis-server and two API PEX processes on it, one with CORRAL_AUTH=false and one with
keys on (a key made by `corral-api keys create`, its quotas set high enough never to refuse).
No worker runs: each `POST /execute` (no wait) is accepted and queued, so what is measured is
the API's own work per submit, and with keys that adds the key lookup and rate count (one
script) and the booking against the key's quotas (one more). Rounds alternate between the two
so that noise hits both alike; the median round of each is compared. Target: keys cost under
10%. Needs `make package` (dist/). Run: `./pants run bench/auth_overhead.py` or `make bench`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import statistics
import tempfile
import threading
import time
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
            without, with_keys = [], []
            for _ in range(rounds):
                without.append(submits_per_second(open_api.port, plain, clients, per_round))
                with_keys.append(submits_per_second(keyed_api.port, keyed, clients, per_round))
        finally:
            for api in (open_api, keyed_api):
                if api is not None:
                    api.stop()
            redis.stop()

    off, on = statistics.median(without), statistics.median(with_keys)
    print(f"POST /execute (no wait, no worker), {clients} clients, {rounds} alternating rounds of {per_round}")
    print(f"  keys off: {off:8.1f} submits/s (median; rounds {', '.join(f'{r:.0f}' for r in without)})")
    print(f"  keys on:  {on:8.1f} submits/s (median; rounds {', '.join(f'{r:.0f}' for r in with_keys)})")
    print(f"  cost of keys, rate and quota checks: {100 * (1 - on / off):.1f}% (target: under 10%)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    arguments = parser.parse_args()
    main(arguments.rounds, arguments.per_round, arguments.clients)
