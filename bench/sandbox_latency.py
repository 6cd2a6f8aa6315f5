"""Latency of one `print(1)` job through NsJailSandbox, next to the same jail run bare.

Three ways, interleaved run by run so that a busy machine slows all of them alike:
  adapter  NsJailSandbox.run: scratch tmpfs, per-run cgroups, spawn, watch, verdict, clean-up
  nsjail   the same NsJail command line (same config, seccomp policy, binds and limit flags)
           through subprocess.run, with its scratch directory and cgroup parent made once
  python   bare `/usr/bin/python3 -s -c 'print(1)'`, the floor of any Python job
and the adapter's overhead over bare NsJail (target: under 10%). Needs root.

    python bench/sandbox_latency.py [--runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

from baseline import LIMITS, SETTINGS, bare_nsjail_argv, percentile
from corral_core.job import RunRequest, Verdict
from corral_sandbox import NsJailSandbox, prepare_host

CODE = "print(1)"


async def main(runs: int) -> None:
    host = prepare_host(SETTINGS)
    sandbox = NsJailSandbox(host=host)
    python_argv = ["/usr/bin/python3", "-s", "-c", CODE]
    request = RunRequest(language="python", code=CODE, limits=LIMITS)

    async def adapter() -> None:
        result = await sandbox.run(request)
        assert result.verdict is Verdict.OK and result.stdout == "1\n", result

    def bare(argv: list[str]) -> None:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
        assert done.returncode == 0 and done.stdout == b"1\n", done

    samples: dict[str, list[float]] = {"adapter": [], "nsjail": [], "python": []}
    with bare_nsjail_argv(CODE, LIMITS, host) as bare_argv:
        for index in range(runs + 10):
            order = ["adapter", "nsjail", "python"]
            order = order[index % 3 :] + order[: index % 3]
            for name in order:
                started = time.perf_counter()
                if name == "adapter":
                    await adapter()
                elif name == "nsjail":
                    bare(bare_argv)
                else:
                    bare(python_argv)
                if index >= 10:  # warm-up runs are not counted
                    samples[name].append((time.perf_counter() - started) * 1000)

    print(f"print(1), {runs} runs each, interleaved; wall time in ms")
    print(f"{'':10}{'p50':>8}{'p90':>8}{'mean':>8}")
    for name, values in samples.items():
        p50, p90 = percentile(values, 0.5), percentile(values, 0.9)
        print(f"{name:10}{p50:8.2f}{p90:8.2f}{statistics.fmean(values):8.2f}")
    adapter_p50, nsjail_p50 = percentile(samples["adapter"], 0.5), percentile(samples["nsjail"], 0.5)
    adapter_p90, nsjail_p90 = percentile(samples["adapter"], 0.9), percentile(samples["nsjail"], 0.9)
    print(
        f"adapter overhead over bare NsJail: p50 {100 * (adapter_p50 / nsjail_p50 - 1):+.1f}%, "
        f"p90 {100 * (adapter_p90 / nsjail_p90 - 1):+.1f}% (target: under +10%)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    arguments = parser.parse_args()
    if sys.platform != "linux":
        sys.exit("Linux only")
    asyncio.run(main(arguments.runs))
