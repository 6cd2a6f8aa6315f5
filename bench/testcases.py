"""One program, 20 test cases: as one Corral job, as 20 Corral jobs, and under bare NsJail.

Per language (C++ and Python), the p50 over the repetitions of the wall time of
  (a) one    POST /execute?wait with the 20 tests: compiled once, each test a fresh jail
  (b) twenty POST /execute?wait, one after another, each compiling again (how a Judge0 user
             sends them today)
  (c) bare   NsJail with the adapter's command lines: one compile, then 20 runs of the program,
             each in a scratch directory made afresh, cold, through subprocess.run
on one stack (Redis, the API and one worker from the PEX files of `make package`) whose worker
keeps no compiled program ([sandbox] compile_cache_bytes = 0), so that (a) compiles on every
repetition as (c) does. The same repetitions on a stack with the compile cache on, where a
repeated job skips its compile, are printed as (a') and (b'). The ways take turns within each
repetition. Needs root, redis-server and `make package` (dist/).

    python bench/testcases.py [--repetitions 10]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgspec

from baseline import SETTINGS, percentile
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_sandbox import HostReport, prepare_host, runname
from corral_sandbox.jail import _compile_limits, jail_command, run_cgroups
from corral_sandbox.jailids import JailIds
from corral_sandbox.policy_files import RuntimeSpec
from corral_sandbox.scratch import Scratch
from corral_testbed.redis_server import RedisServerProcess
from corral_testbed.services import corral
from runtimes import _as_runtime

TESTS = 20
PROGRAMS = {
    "cpp": "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << std::endl; }\n",
    "python": "a, b = map(int, input().split())\nprint(a + b)\n",
}
CASES = [(f"{n} {n * 7}\n", f"{n * 8}\n") for n in range(1, TESTS + 1)]


class BareNsJail:
    """One compile (for a compiled runtime), then one fresh jail per test, cold."""

    def __init__(self, host: HostReport, runtime: RuntimeSpec) -> None:
        self._host = host
        self._runtime = runtime
        self._limits = DEFAULT_LIMIT_POLICY.for_runtime(_as_runtime(runtime)).defaults
        last = host.settings.jail_id_count - 1
        self._ids = JailIds(host.settings.jail_uid_first + last, host.settings.jail_gid_first + last)

    def run_all(self) -> float:
        """Wall time of the compile and every run, in ms, set-up of each jail included."""
        started = time.perf_counter()
        program = (self._runtime.source, PROGRAMS[self._runtime.language].encode())
        if self._runtime.compiled:
            _, artifact = self._jail(program, "compile", "", keep=self._runtime.artifact)
            program = (self._runtime.artifact, artifact)
        for stdin, expected in CASES:
            stdout, _ = self._jail(program, "run", stdin)
            assert stdout == expected.encode(), (stdout, expected)
        return (time.perf_counter() - started) * 1000

    def _jail(self, file: tuple[str, bytes], stage: str, stdin: str, keep: str = "") -> tuple[bytes, bytes]:
        host, runtime, ids = self._host, self._runtime, self._ids
        limits = _compile_limits(runtime, self._limits) if stage == "compile" else self._limits
        with contextlib.ExitStack() as cleanup:
            scratch = Scratch.create(
                host.settings.work_root, runname.scratch_name(runname.new_run()), 256 << 20, 4096, ids.uid, ids.gid,
                executable=runtime.compiled,
            )  # fmt: skip
            cleanup.callback(scratch.remove)
            scratch.write(file[0], file[1], 0o755 if stage == "run" and runtime.compiled else 0o644)
            scratch.seal()
            cgroups = run_cgroups(host.cgroups, runname.new_run(), limits.memory_mb << 20, host.settings.cpu_cores_per_job)
            cleanup.callback(cgroups.remove)
            argv = jail_command(host.jail_host(), runtime, ids, scratch, cgroups, limits, (), stage=stage)
            argv[argv.index("--log_fd") + 1] = "2"
            with cgroups.spawning():
                process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            stdout, stderr = process.communicate(stdin.encode())
            assert process.returncode == 0, stderr[-2000:]
            kept = (scratch.read_back(keep, 256 << 20) or b"") if keep else b""
            return stdout, kept


def one_job(client: httpx.Client, url: str, language: str) -> float:
    tests = [{"stdin": stdin, "expected_stdout": expected} for stdin, expected in CASES]
    started = time.perf_counter()
    response = client.post(f"{url}/execute", params={"wait": 30}, json={"language": language, "code": PROGRAMS[language], "tests": tests})
    elapsed = (time.perf_counter() - started) * 1000
    result = response.json()["result"]
    assert result["verdict"] == "ok" and result["summary"]["passed"] == TESTS, result
    return elapsed


def twenty_jobs(client: httpx.Client, url: str, language: str) -> float:
    started = time.perf_counter()
    for stdin, expected in CASES:
        response = client.post(f"{url}/execute", params={"wait": 30}, json={"language": language, "code": PROGRAMS[language], "stdin": stdin})
        result = response.json()["result"]
        assert result["stdout"] == expected, result
    return (time.perf_counter() - started) * 1000


@contextlib.contextmanager
def stack(cache_bytes: int) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        redis = RedisServerProcess(Path(directory))
        redis.start()
        try:
            env = {"CORRAL_COMPILE_CACHE_BYTES": str(cache_bytes)}
            with corral(redis.url, Path(directory), workers=1, pex_root=Path("dist"), env=env) as running:
                yield running.url
        finally:
            redis.stop()


def in_turns(ways: dict[str, Callable[[], float]], repetitions: int) -> dict[str, float]:
    """p50 of each way, taking turns (the order rotates); a first round warms caches, uncounted."""
    times: dict[str, list[float]] = {name: [] for name in ways}
    names = list(ways)
    for round_ in range(repetitions + 1):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = ways[name]()
            if round_:
                times[name].append(elapsed)
    return {name: percentile(samples, 0.5) for name, samples in times.items()}


def main(repetitions: int) -> None:
    host = prepare_host(msgspec.structs.replace(SETTINGS, selftest=False))
    runtimes = {spec.language: spec for spec in host.runtimes if spec.language in PROGRAMS}
    results: dict[str, dict[str, float]] = {}
    with stack(0) as uncached, stack(256 << 20) as cached, httpx.Client(timeout=120) as client:
        for language, spec in runtimes.items():
            ways: dict[str, Callable[[], float]] = {
                "a": functools.partial(one_job, client, uncached, language),
                "b": functools.partial(twenty_jobs, client, uncached, language),
                "c": BareNsJail(host, spec).run_all,
                "a'": functools.partial(one_job, client, cached, language),
                "b'": functools.partial(twenty_jobs, client, cached, language),
            }
            results[language] = in_turns(ways, repetitions)
    print(f"one program, {TESTS} tests; p50 of {repetitions} repetitions, wall ms")
    print(f"{'language':10}{'(a) one':>10}{'(b) 20':>10}{'(c) bare':>10}{'a/c':>7}{'b/a':>7}{'(a) cache':>11}{'(b) cache':>11}")
    for language, p50 in results.items():
        one, twenty, bare_nsjail, one_cached, twenty_cached = (p50[way] for way in ("a", "b", "c", "a'", "b'"))
        print(
            f"{language:10}{one:10.0f}{twenty:10.0f}{bare_nsjail:10.0f}{one / bare_nsjail:7.2f}"
            f"{twenty / one:7.1f}{one_cached:11.0f}{twenty_cached:11.0f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=10)
    arguments = parser.parse_args()
    if sys.platform != "linux":
        sys.exit("Linux only")
    main(arguments.repetitions)
