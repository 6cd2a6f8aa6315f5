"""Hello world in every runtime this host offers: through HTTP next to bare NsJail.

Per runtime, the p50 wall time of
  http   POST /execute?wait=30 of hello world on a real stack (Redis, the API and one worker
         from the PEX files of `make package`): queueing, the compile stage's jail if any, the
         run's jail, the result back
  nsjail the same compile and run commands under bare NsJail (the command lines the adapter
         builds, same config, seccomp policy, binds, limits and cgroups, NsJail started inside
         the run's cpu cgroups as the adapter starts it, so the same CPU quota holds), one after
         the other in a scratch directory made afresh for each run (no artifact copied between
         the two; nothing a compiler caches, such as Go's build cache, survives to the next run,
         as none survives from one job to the next), through subprocess.run
and the difference. The two sides take turns, run by run, so that a load that comes and goes
on a shared machine weighs on both alike. Needs root, redis-server and `make package` (dist/).

    python bench/runtimes.py [--runs 10]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec

from baseline import SETTINGS, percentile
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import Runtime
from corral_sandbox import HostReport, prepare_host, runname
from corral_sandbox.jail import _compile_limits, jail_command, run_cgroups
from corral_sandbox.jailids import JailIds
from corral_sandbox.policy_files import RuntimeSpec
from corral_sandbox.scratch import Scratch
from corral_testbed.redis_server import RedisServerProcess
from corral_testbed.services import corral

HELLO = {
    "python": 'print("hello")\n',
    "python-sci": 'import numpy\nprint("hello")\n',
    "c": '#include <stdio.h>\nint main(void) { puts("hello"); }\n',
    "cpp": '#include <iostream>\nint main() { std::cout << "hello\\n"; }\n',
    "javascript": 'console.log("hello")\n',
    "bash": "echo hello\n",
    "java": 'public class Main { public static void main(String[] a) { System.out.println("hello"); } }\n',
    "go": 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }\n',
    "rust": 'fn main() { println!("hello"); }\n',
}


class BareNsJail:
    """One runtime's compile and run commands under bare NsJail, each run in a fresh scratch."""

    def __init__(self, host: HostReport, runtime: RuntimeSpec) -> None:
        limits = DEFAULT_LIMIT_POLICY.for_runtime(_as_runtime(runtime)).defaults
        self._stages = [("compile", _compile_limits(runtime, limits))] if runtime.compiled else []
        self._stages.append(("run", limits))
        self._host = host
        self._runtime = runtime
        settings = host.settings
        # The last ids of the range: the adapter hands out the first ones first.
        last = settings.jail_id_count - 1
        self._ids = JailIds(settings.jail_uid_first + last, settings.jail_gid_first + last)

    def run_once(self) -> float:
        """Wall time of the compile (if any) and run commands, in ms, set-up excluded."""
        settings, ids, runtime = self._host.settings, self._ids, self._runtime
        with contextlib.ExitStack() as cleanup:
            scratch = Scratch.create(
                settings.work_root, runname.scratch_name(runname.new_run()), 256 << 20, 4096, ids.uid, ids.gid,
                executable=runtime.compiled,
            )  # fmt: skip
            cleanup.callback(scratch.remove)
            scratch.write(runtime.source, HELLO[runtime.language].encode())
            scratch.seal()
            stages = []
            for stage, limits in self._stages:
                cgroups = run_cgroups(self._host.cgroups, runname.new_run(), limits.memory_mb << 20, settings.cpu_cores_per_job)
                cleanup.callback(cgroups.remove)
                argv = jail_command(self._host.jail_host(), runtime, ids, scratch, cgroups, limits, (), stage=stage)
                # NsJail logs to stderr here, as it would bare: the adapter passes it a memfd instead.
                argv[argv.index("--log_fd") + 1] = "2"
                stages.append((cgroups, argv))
            started = time.perf_counter()
            for cgroups, argv in stages:
                with cgroups.spawning():  # the child starts in the run's cpu and cpuacct cgroups
                    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                stdout, stderr = process.communicate()
                assert process.returncode == 0, (argv, stderr[-2000:])
            elapsed = (time.perf_counter() - started) * 1000
        assert stdout == b"hello\n", stdout
        return elapsed


def _as_runtime(spec: RuntimeSpec) -> Runtime:
    return Runtime(spec.language, spec.version, spec.source, default_limits=spec.default_limits, max_limits=spec.max_limits, compiled=spec.compiled)


def http_once(client: httpx.Client, url: str, language: str) -> float:
    started = time.perf_counter()
    response = client.post(f"{url}/execute", params={"wait": 30}, json={"language": language, "code": HELLO[language]})
    elapsed = (time.perf_counter() - started) * 1000
    result = response.json()["result"]
    assert (result["verdict"], result["stdout"]) == ("ok", "hello\n"), result
    return elapsed


def taking_turns(host: HostReport, runtime: RuntimeSpec, client: httpx.Client, url: str, runs: int) -> tuple[float, float]:
    """p50 of HTTP and of bare NsJail, in ms, one run of each in turn (which goes first
    alternates); a first run of each warms the page cache and is not counted."""
    bare = BareNsJail(host, runtime)
    sides = [lambda: http_once(client, url, runtime.language), bare.run_once]
    times: list[list[float]] = [[], []]
    for index in range(runs + 1):
        order = (0, 1) if index % 2 else (1, 0)
        for side in order:
            elapsed = sides[side]()
            if index:
                times[side].append(elapsed)
    return percentile(times[0], 0.5), percentile(times[1], 0.5)


@contextlib.contextmanager
def stack() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        redis = RedisServerProcess(Path(directory))
        redis.start()
        try:
            with corral(redis.url, Path(directory), workers=1, pex_root=Path("dist")) as running:
                yield running.url
        finally:
            redis.stop()


def main(runs: int) -> None:
    host = prepare_host(msgspec.structs.replace(SETTINGS, selftest=False))
    runtimes = [spec for spec in host.runtimes if spec.language in HELLO]
    results = {}
    with stack() as url, httpx.Client(timeout=60) as client:
        for spec in runtimes:
            results[spec.language] = taking_turns(host, spec, client, url, runs)
    print(f"hello world per runtime, {runs} runs each, HTTP and bare NsJail in turn; p50 wall time in ms")
    print(f"{'runtime':12}{'version':28}{'http':>9}{'nsjail':>9}{'http-nsjail':>13}")
    for spec in runtimes:
        http, bare = results[spec.language]
        version = spec.version if len(spec.version) <= 26 else spec.version[:25] + "…"
        print(f"{spec.language:12}{version:28}{http:9.0f}{bare:9.0f}{http - bare:+13.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    arguments = parser.parse_args()
    if sys.platform != "linux":
        sys.exit("Linux only")
    main(arguments.runs)
