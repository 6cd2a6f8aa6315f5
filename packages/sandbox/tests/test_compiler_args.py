"""Compiler and program arguments reach the compiler and the program as argv elements, in real
NsJail jails: no shell reads them, so a line break, `;`, `$()` or backticks in one cannot add a
command (Judge0 runs its compiler options through bash, which CVE-2024-28185's exploit used).
"""

from __future__ import annotations

import pytest

from corral_core.job import RunRequest, RunResult, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_sandbox import NsJailSandbox
from corral_testbed.nsjail_host import nsjail_sandbox

SHOUT = '#include <stdio.h>\nint main(int argc, char **argv) { printf("%d %s\\n", N * 7, argc > 1 ? argv[1] : "-"); return 0; }\n'
# What a shell would run as commands of their own; each must stay one word of an argument.
INJECTIONS = ("-DN=6\necho INJECTED", "-DN=6;echo INJECTED", "-DN=6$(echo INJECTED)", "-DN=6`echo INJECTED`", "-DN=6 && echo INJECTED")


@pytest.fixture(scope="module")
def sandbox() -> NsJailSandbox:
    return nsjail_sandbox()


def _c(sandbox: NsJailSandbox, code: str, **changes: object) -> RunRequest:
    runtime = next((runtime for runtime in sandbox.runtimes() if runtime.language == "c"), None)
    if runtime is None:
        pytest.fail("c is not offered here: run the install step (scripts/install-system-deps.sh)")
    return RunRequest(language="c", code=code, limits=DEFAULT_LIMIT_POLICY.for_runtime(runtime).defaults, **changes)  # type: ignore[arg-type]


def _said(result: RunResult) -> str:
    return result.compile_output + result.stdout + result.stderr


async def test_compiler_arguments_reach_the_compiler_each_as_one_argument(sandbox: NsJailSandbox) -> None:
    result = await sandbox.run(_c(sandbox, SHOUT, compiler_args=("-DN=6", "-Wall"), args=("a b",)))
    assert result.verdict is Verdict.OK, _said(result)
    assert result.stdout == "42 a b\n"


@pytest.mark.parametrize("flag", INJECTIONS)
async def test_a_compiler_argument_cannot_add_a_command(sandbox: NsJailSandbox, flag: str) -> None:
    result = await sandbox.run(_c(sandbox, SHOUT, compiler_args=(flag,)))
    # gcc is handed one strange option or macro and nothing else runs: no line of the output is
    # what `echo INJECTED` would have printed.
    lines = _said(result).splitlines()
    assert not any(line.startswith("INJECTED") for line in lines), _said(result)


@pytest.mark.parametrize("arg", INJECTIONS)
async def test_a_program_argument_cannot_add_a_command(sandbox: NsJailSandbox, arg: str) -> None:
    result = await sandbox.run(_c(sandbox, SHOUT, compiler_args=("-DN=6",), args=(arg,)))
    assert result.verdict is Verdict.OK, _said(result)
    assert result.stdout == f"42 {arg}\n"


async def test_a_compile_with_other_arguments_is_not_taken_from_the_cache(sandbox: NsJailSandbox) -> None:

    first = await sandbox.run(_c(sandbox, SHOUT, compiler_args=("-DN=6",)))
    second = await sandbox.run(_c(sandbox, SHOUT, compiler_args=("-DN=7",)))
    assert (first.stdout, second.stdout) == ("42 -\n", "49 -\n")

