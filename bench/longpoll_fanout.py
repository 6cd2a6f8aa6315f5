"""Many clients long-polling one job on one API process: how fast they all hear, at what memory.

Starts a redis-server, one API process and one worker (from dist/, as `make up` does). For each
count of waiters, submits a job that sleeps, opens that many `GET /jobs/{id}?wait=…` at once,
and prints the time from the job's finish (its `finished_at`) to the last waiter's answer, the
API process's resident memory while they all wait, and its peak. Needs root and `make package`.
Run: `./pants run bench/longpoll_fanout.py` or `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import datetime
from pathlib import Path

from corral_testbed.many_clients import request
from corral_testbed.redis_server import RedisServerProcess
from corral_testbed.services import Corral, corral


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


async def one_round(service: Corral, waiters: int, sleep_s: float) -> tuple[float, int, int]:
    code = f"import time; time.sleep({sleep_s}); print('done')"
    accepted = await request(f"{service.url}/execute", "POST", {"code": code})
    job_id = accepted.json()["job_id"]
    loop = asyncio.get_running_loop()
    polls = [
        asyncio.create_task(request(f"{service.url}/jobs/{job_id}?wait=30", timeout_s=90)) for _ in range(waiters)
    ]
    await asyncio.sleep(sleep_s * 0.8)
    assert service.api is not None
    waiting_rss = memory_kb(service.api.pid, "VmRSS")
    answers = await asyncio.gather(*polls)
    bad = [answer.status for answer in answers if answer.status != 200 or answer.json()["status"] != "COMPLETED"]
    assert not bad, f"{len(bad)} of {waiters} waiters got no finished job: {bad[:5]}"
    finished_at = datetime.fromisoformat(answers[0].json()["finished_at"]).timestamp()
    # The loop's clock and the wall clock differ by a constant: take it once, now.
    offset = time.time() - loop.time()
    last_answer = max(answer.at for answer in answers) + offset
    return (last_answer - finished_at) * 1000, waiting_rss, memory_kb(service.api.pid, "VmHWM")


def main(counts: list[int], sleep_s: float) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        redis = RedisServerProcess(Path(scratch) / "redis")
        redis.start()
        try:
            with corral(redis.url, Path(scratch), workers=1, pex_root=Path("dist")) as service:
                asyncio.run(one_round(service, 10, 0.5))  # warm-up
                for count in counts:
                    rows.append((count, *asyncio.run(one_round(service, count, sleep_s))))
        finally:
            redis.stop()
    print("long-polls on one job, one API process: finish -> last answer, API memory")
    print(f"{'waiters':>8}{'last answer ms':>16}{'RSS waiting MiB':>17}{'peak RSS MiB':>14}")
    for count, last_ms, rss_kb, peak_kb in rows:
        print(f"{count:>8}{last_ms:>16.1f}{rss_kb / 1024:>17.1f}{peak_kb / 1024:>14.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiters", type=int, nargs="+", default=[100, 1_000, 5_000])
    parser.add_argument("--sleep", type=float, default=6.0, help="seconds the job sleeps while they gather")
    arguments = parser.parse_args()
    main(arguments.waiters, arguments.sleep)
