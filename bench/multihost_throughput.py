"""Sandbox jobs per second with 1 and with 2 worker hosts.

The hosts are network namespaces on this machine (corral_testbed.multihost): Redis over TLS with
the ACL users of the deployment section of docs/operations.md, the API on its own host, clients on another. So
the worker hosts share this machine's cores with each other and with Redis, the API and the
clients: a second worker host adds job slots, not CPUs, and the figure shows what the network
path and the second host's coordination cost, not how Corral scales on real separate hosts
(there, each host brings its own cores and the rate grows with them until Redis or the API
limits it; bench/queue_throughput.py measures Redis' share).

Needs root and `make package` (dist/). Run: `./pants run bench/multihost_throughput.py` or
`make bench`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import httpx

from corral_testbed.multihost import MultiHostCorral, multihost_corral

CODE = "print(1)"


def run_jobs(bed: MultiHostCorral, jobs: int, clients: int) -> float:
    """Jobs per second: `clients` callers on the client host, each waiting for its job's end."""
    bed.http()
    assert bed.client_host is not None
    left = iter(range(jobs))
    lock = threading.Lock()
    failures: list[str] = []

    # A key of its own whose rate quota is not what is measured.
    key = bed.create_key(f"bench-{clients}", "--rate", "1000000/60")
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=clients)
    with httpx.Client(base_url=bed.api_url, timeout=60, limits=limits, headers=headers) as client:

        def loop() -> None:
            while True:
                with lock:
                    if next(left, None) is None:
                        return
                answer = client.post("/execute?wait=30", json={"code": CODE})
                if answer.status_code != 200 or answer.json()["status"] != "COMPLETED":
                    failures.append(answer.text)

        pool = bed.client_host.threads(clients)
        started = time.perf_counter()
        for future in [pool.submit(loop) for _ in range(clients)]:
            future.result()
        elapsed = time.perf_counter() - started
        pool.shutdown()
    if failures:
        raise RuntimeError(f"{len(failures)} jobs did not complete, e.g. {failures[0]}")
    return jobs / elapsed


def main(jobs: int, clients: int, concurrency: int) -> None:
    env = {"CORRAL_CONCURRENCY": str(concurrency)}
    print(f"{jobs} `{CODE}` jobs, {clients} clients on their own host, {concurrency} slots per worker host, {os.cpu_count()} CPUs")
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as logs, multihost_corral(
            Path(logs), workers=workers, pex_root=Path("dist"), env=env
        ) as bed:
            run_jobs(bed, min(20, jobs), clients)  # warm-up: scripts loaded, connections open
            rate = run_jobs(bed, jobs, clients)
        print(f"  {workers} worker host{'s' if workers > 1 else ''}: {rate:.1f} jobs/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    arguments = parser.parse_args()
    main(arguments.jobs, arguments.clients, arguments.concurrency)
