"""Hello world in every runtime this host offers: through HTTP next to bare NsJail.

Per runtime, the p50 wall time of
  http   POST /execute?wait=30 of hello world on a real stack (Redis, the API and one worker
         from the PEX files of `make package`): queueing, the compile stage's jail if any, the
         run's jail, the result back
  nsjail the same compile and run commands under bare NsJail (the command lines the adapter
         builds, same config, seccomp policy, binds, limits and cgroups), one after the other
         in one scratch directory made once (no artifact copied between two), through
         subprocess.run
and the difference. Needs root, redis-server and `make package` (dist/).

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
from corral_sandbox.policy import RuntimeSpec
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


def bare_runs(host: HostReport, runtime: RuntimeSpec, runs: int) -> list[float]:
    """Wall times of the compile (if any) and run commands under bare NsJail, in ms."""
    limits = DEFAULT_LIMIT_POLICY.for_runtime(_as_runtime(runtime)).defaults
    stages = [("compile", _compile_limits(runtime, limits))] if runtime.compiled else []
    stages.append(("run", limits))
    settings = host.settings
    ids = JailIds(settings.jail_uid_first + settings.jail_id_count - 1, settings.jail_gid_first + settings.jail_id_count - 1)
    run = runname.new_run()
    scratch = Scratch.create(
        settings.work_root, runname.scratch_name(run), 256 << 20, 4096, ids.uid, ids.gid, executable=runtime.compiled
    )
    commands = []
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(scratch.remove)
        scratch.write(runtime.source, HELLO[runtime.language].encode())
        scratch.seal()
        for stage, stage_limits in stages:
            cgroups = run_cgroups(host.cgroups, runname.new_run(), stage_limits.memory_mb << 20, settings.cpu_cores_per_job)
            cleanup.callback(cgroups.remove)
            argv = jail_command(host.jail_host(), runtime, ids, scratch, cgroups, stage_limits, (), stage=stage)
            # NsJail logs to stderr here, as it would bare: the adapter passes it a memfd instead.
            argv[argv.index("--log_fd") + 1] = "2"
            commands.append(argv)
        times = []
        for index in range(runs + 1):
            started = time.perf_counter()
            for argv in commands:
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)
                assert done.returncode == 0, (argv, done.stderr[-2000:])
            assert done.stdout == b"hello\n", done
            if index:  # the first run warms the page cache
                times.append((time.perf_counter() - started) * 1000)
    return times


def _as_runtime(spec: RuntimeSpec) -> Runtime:
    return Runtime(spec.language, spec.version, spec.source, default_limits=spec.default_limits, max_limits=spec.max_limits, compiled=spec.compiled)


def http_runs(url: str, language: str, runs: int) -> list[float]:
    times = []
    with httpx.Client(timeout=60) as client:
        for index in range(runs + 1):
            started = time.perf_counter()
            response = client.post(f"{url}/execute", params={"wait": 30}, json={"language": language, "code": HELLO[language]})
            elapsed = (time.perf_counter() - started) * 1000
            result = response.json()["result"]
            assert (result["verdict"], result["stdout"]) == ("ok", "hello\n"), result
            if index:
                times.append(elapsed)
    return times


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
    bare = {spec.language: percentile(bare_runs(host, spec, runs), 0.5) for spec in runtimes}
    with stack() as url:
        http = {spec.language: percentile(http_runs(url, spec.language, runs), 0.5) for spec in runtimes}
    print(f"hello world per runtime, {runs} runs each; p50 wall time in ms")
    print(f"{'runtime':12}{'version':28}{'http':>9}{'nsjail':>9}{'http-nsjail':>13}")
    for spec in runtimes:
        language = spec.language
        version = spec.version if len(spec.version) <= 26 else spec.version[:25] + "…"
        print(f"{language:12}{version:28}{http[language]:9.0f}{bare[language]:9.0f}{http[language] - bare[language]:+13.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    arguments = parser.parse_args()
    if sys.platform != "linux":
        sys.exit("Linux only")
    main(arguments.runs)
