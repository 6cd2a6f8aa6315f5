"""Judge0's multi-file program (language 89) in real NsJail jails: the job's files with a `run`
script and perhaps a `compile` one, each run by bash, the compiled program carried from the
compile's jail to the run's."""

from __future__ import annotations

import pytest

from corral_core.job import InputFile, RunRequest, RunResult, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_sandbox import NsJailSandbox
from corral_testbed.nsjail_host import nsjail_sandbox

MAIN_C = b'#include <stdio.h>\nint twice(int);\nint main(int c, char **v) { printf("%d %s\\n", twice(21), c > 1 ? v[1] : "-"); }\n'
TWICE_C = b"int twice(int x) { return 2 * x; }\n"


@pytest.fixture(scope="module")
def sandbox() -> NsJailSandbox:
    made = nsjail_sandbox()
    if "multifile" not in {runtime.language for runtime in made.runtimes()}:
        pytest.fail(f"multifile is not offered here ({made.runtimes()}): it needs bash and tar")
    return made


def _project(run: str, *files: tuple[str, bytes], args: tuple[str, ...] = ()) -> RunRequest:
    limits = DEFAULT_LIMIT_POLICY.defaults
    inputs = tuple(InputFile(name, content) for name, content in files)
    return RunRequest(language="multifile", code=run, files=inputs, args=args, limits=limits)


def _said(result: RunResult) -> str:
    return f"{result.verdict} {result.compile_output}\n{result.stdout}\n{result.stderr}"


async def test_a_compile_script_builds_what_the_run_script_runs(sandbox: NsJailSandbox) -> None:
    compile_script = b"/usr/bin/gcc -o program main.c twice.c\n"
    request = _project('./program "$@"\n', ("compile", compile_script), ("main.c", MAIN_C), ("twice.c", TWICE_C), args=("x y",))
    result = await sandbox.run(request)
    assert result.verdict is Verdict.OK, _said(result)
    assert result.stdout == "42 x y\n"


async def test_without_a_compile_script_the_run_script_runs_with_the_files_beside_it(sandbox: NsJailSandbox) -> None:
    result = await sandbox.run(_project("cat data.txt; echo $((6 * 7))\n", ("data.txt", b"data\n")))
    assert result.verdict is Verdict.OK, _said(result)
    assert result.stdout == "data\n42\n"


async def test_a_failing_compile_script_is_a_compile_error_and_nothing_runs(sandbox: NsJailSandbox) -> None:
    request = _project("echo RAN\n", ("compile", b"/usr/bin/gcc -o program missing.c\n"))
    result = await sandbox.run(request)
    assert result.verdict is Verdict.COMPILE_ERROR, _said(result)
    assert "missing.c" in result.compile_output and "RAN" not in result.stdout
