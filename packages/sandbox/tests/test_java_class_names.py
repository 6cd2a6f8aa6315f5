"""Java programs whatever their public class is called, in real jails: the source is written to
the public class's file and that class runs; a hostile name never becomes a path."""

from __future__ import annotations

import pytest

from corral_core.job import RunRequest, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.testcases import TestCase, TestVerdict
from corral_sandbox import NsJailSandbox
from corral_testbed.nsjail_host import nsjail_sandbox

MAIN = "public static void main(String[] a) { System.out.println(NAME + new java.util.Scanner(System.in).next()); }"


def program(header: str, name: str) -> str:
    return f"{header} {{ static final String NAME = \"{name} \"; {MAIN} }}\n"


@pytest.fixture(scope="module")
def sandbox() -> NsJailSandbox:
    sandbox = nsjail_sandbox()
    if "java" not in {runtime.language for runtime in sandbox.runtimes()}:
        pytest.fail("java is not offered here: run the install step (scripts/install-system-deps.sh)")
    return sandbox


def request(code: str, **changes: object) -> RunRequest:
    runtime = next(runtime for runtime in nsjail_sandbox().runtimes() if runtime.language == "java")
    limits = DEFAULT_LIMIT_POLICY.for_runtime(runtime).defaults
    return RunRequest(language="java", code=code, limits=limits, stdin="x", **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "printed"),
    [
        (program("public class HelloWorld", "HelloWorld"), "HelloWorld x\n"),
        (program("import java.util.*;\n\npublic final class Solution", "Solution"), "Solution x\n"),
        (program("public class Main", "Main"), "Main x\n"),
        # No public class: javac takes any file name; the first top-level class runs.
        (program("class Program", "Program"), "Program x\n"),
        (f"class Helper {{}}\n{program('class Main', 'Main')}", "Main x\n"),
        # A class named in a comment and in a string before the real one is not taken.
        ('// public class Decoy {}\n/* public class Other {} */\n' + program("public class Real", "Real")
         + 'class Later { String s = "public class InString {"; }\n', "Real x\n"),
    ],
)  # fmt: skip
async def test_a_java_program_runs_whatever_its_public_class_is_named(sandbox: NsJailSandbox, code: str, printed: str) -> None:
    result = await sandbox.run(request(code))
    assert result.verdict is Verdict.OK, result.compile_output + result.stderr
    assert result.stdout == printed


async def test_a_hostile_class_name_is_a_compile_error_in_main_java_not_a_path(sandbox: NsJailSandbox) -> None:
    result = await sandbox.run(request(program("public class ../../../tmp/pwned", "x")))
    assert result.verdict is Verdict.COMPILE_ERROR
    # javac saw the code in the runtime's own file name: the name in the code chose no path.
    assert "Main.java" in result.compile_output and "pwned.java" not in result.compile_output


async def test_a_public_solution_class_is_compiled_once_for_its_test_cases(sandbox: NsJailSandbox) -> None:
    tests = (TestCase(name="a", stdin="1", expected_stdout="Solution 1\n"), TestCase(name="b", stdin="2", expected_stdout="Solution 3\n"))
    code = program("public class Solution", "Solution")
    first = await sandbox.run(request(code, tests=tests), scope="java-names")
    again = await sandbox.run(request(code, tests=tests[:1]), scope="java-names")
    assert [t.verdict for t in first.tests] == [TestVerdict.OK, TestVerdict.WRONG_ANSWER]
    assert first.compile is not None and not first.compile.cached
    assert again.compile is not None and again.compile.cached and again.tests[0].verdict is TestVerdict.OK
