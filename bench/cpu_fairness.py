"""CPU fairness between two jobs side by side: a hog (16 busy threads) and a steady job (one
busy thread), each one's CPU time from its cgroups (corral_testbed.cpu_shares), with the
per-job CPU quota on (cpu_cores_per_job, 1 core by default) and off. Needs root.

    python bench/cpu_fairness.py [--runs 10] [--wall-ms 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from baseline import SETTINGS
from corral_sandbox import prepare_host
from corral_testbed.cpu_shares import measure, with_cpu_cores


async def main(runs: int, wall_ms: int) -> None:
    host = prepare_host(SETTINGS)
    for label, cores in (("quota on", host.settings.cpu_cores_per_job), ("quota off", 1024.0)):
        shares = []
        for _ in range(runs):
            measured = await measure(with_cpu_cores(host, cores), wall_time_ms=wall_ms)
            shares.append(measured.steady_share)
            print(f"{label}: hog {measured.hog_cpu_ms} ms, steady {measured.steady_cpu_ms} ms, steady share {measured.steady_share:.3f}")
        print(f"{label}: steady share min {min(shares):.3f} median {statistics.median(shares):.3f} max {max(shares):.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--wall-ms", type=int, default=3_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.wall_ms))
