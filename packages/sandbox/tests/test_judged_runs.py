"""Jobs with test cases in real jails: compiled once, each test a fresh jail, checkers in jails
of their own, compiled programs kept per scope (API key) and never shared between scopes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from corral_core.job import RunRequest, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import RunContext
from corral_core.testcases import TEST_OUTPUT_BYTES, CheckerProgram, TestCase, TestVerdict
from corral_sandbox import NsJailSandbox
from corral_testbed.nsjail_host import jail_processes, nsjail_host

SUM = "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << std::endl; }\n"
TESTS = (
    TestCase(name="small", stdin="1 2", expected_stdout="3\n"),
    TestCase(name="large", stdin="1000000000 1000000000", expected_stdout="2000000000"),
    TestCase(name="negative", stdin="-5 3", expected_stdout="-1"),
)


@pytest.fixture
async def sandbox() -> AsyncIterator[NsJailSandbox]:
    """Warm (forked) jails for the interpreted runtimes, as a worker has them."""
    warm = NsJailSandbox(host=nsjail_host(), warm_slots=1, fork_jails=True)
    yield warm
    await warm.aclose()
    assert jail_processes() == []


def request(language: str, code: str, tests: tuple[TestCase, ...], **changes: object) -> RunRequest:
    limits = DEFAULT_LIMIT_POLICY.defaults
    return RunRequest(language=language, code=code, tests=tests, limits=limits, **changes)  # type: ignore[arg-type]


def source(text: str) -> str:
    """A C++ source unique to one test, so that no other test's compile is in the cache."""
    return f"// {text}\n{SUM}"


async def test_a_compiled_program_is_compiled_once_and_run_once_per_test(sandbox: NsJailSandbox) -> None:
    result = await sandbox.run(request("cpp", source("once"), TESTS), RunContext(scope="alice"))
    assert [(t.name, t.verdict) for t in result.tests] == [
        ("small", TestVerdict.OK),
        ("large", TestVerdict.OK),
        ("negative", TestVerdict.WRONG_ANSWER),
    ]
    assert result.verdict is Verdict.WRONG_ANSWER
    assert result.compile is not None and result.compile.verdict is Verdict.OK and not result.compile.cached
    assert result.tests[2].checker_message == "line 1: expected '-1', got '-2'"
    assert all(t.cpu_time_ms >= 0 and t.memory_kb > 0 for t in result.tests)


async def test_the_same_sources_in_the_same_scope_skip_the_compile_and_another_scope_never_does(sandbox: NsJailSandbox) -> None:
    code = source("cache")
    first = await sandbox.run(request("cpp", code, TESTS[:1]), RunContext(scope="alice"))
    again = await sandbox.run(request("cpp", code, TESTS[:1]), RunContext(scope="alice"))
    other_key = await sandbox.run(request("cpp", code, TESTS[:1]), RunContext(scope="bob"))
    changed = await sandbox.run(request("cpp", code + "\n", TESTS[:1]), RunContext(scope="alice"))
    assert first.compile is not None and not first.compile.cached
    assert again.compile is not None and again.compile.cached
    assert other_key.compile is not None and not other_key.compile.cached
    assert changed.compile is not None and not changed.compile.cached
    assert {r.tests[0].verdict for r in (first, again, other_key, changed)} == {TestVerdict.OK}
    # A job without tests uses the same cache (Judge0 submissions of one source, say).
    plain = await sandbox.run(msgspec.structs.replace(request("cpp", code, ()), stdin="2 2"), RunContext(scope="alice"))
    assert plain.stdout == "4\n" and plain.compile is not None and plain.compile.cached


async def test_a_sandbox_without_a_compile_cache_compiles_every_time() -> None:
    host = nsjail_host()
    uncached = NsJailSandbox(host=msgspec.structs.replace(host, settings=msgspec.structs.replace(host.settings, compile_cache_bytes=0)))
    code = source("no cache")
    for _ in range(2):
        result = await uncached.run(request("cpp", code, TESTS[:1]), RunContext(scope="alice"))
        assert result.compile is not None and not result.compile.cached


async def test_a_compile_error_ends_the_job_before_any_test_runs(sandbox: NsJailSandbox) -> None:
    result = await sandbox.run(request("cpp", "int main() { undeclared(); }\n", TESTS), RunContext(scope="alice"))
    assert result.verdict is Verdict.COMPILE_ERROR
    assert "undeclared" in result.compile_output
    assert [t.verdict for t in result.tests] == [TestVerdict.SKIPPED] * 3


async def test_nothing_one_test_leaves_reaches_the_next(sandbox: NsJailSandbox) -> None:
    # The first test leaves a file in its working directory and in /tmp, and a process that
    # would write another a moment later; the second finds none of them.
    code = (
        "import os, sys, time\n"
        "if sys.argv[1] == 'leave':\n"
        "    open('left.txt', 'w').write('x'); open('/tmp/left.txt', 'w').write('x')\n"
        "    if os.fork() == 0:\n"
        "        os.setsid(); time.sleep(0.3); open('late.txt', 'w').write('x'); os._exit(0)\n"
        "    print('left')\n"
        "else:\n"
        "    time.sleep(0.6)\n"
        "    print(sorted(name for name in ('left.txt', '/tmp/left.txt', 'late.txt') if os.path.exists(name)))\n"
    )
    tests = (TestCase(args=("leave",), expected_stdout="left"), TestCase(args=("look",), expected_stdout="[]"))
    result = await sandbox.run(request("python", code, tests))
    assert [t.verdict for t in result.tests] == [TestVerdict.OK, TestVerdict.OK], result.tests


async def test_each_test_has_the_jobs_limits_on_its_own(sandbox: NsJailSandbox) -> None:
    limits = msgspec.structs.replace(DEFAULT_LIMIT_POLICY.defaults, cpu_time_ms=1000, wall_time_ms=2000)
    code = "import sys\nif input() == 'spin':\n    while True: pass\nprint('done')\n"
    tests = (TestCase(stdin="spin"), TestCase(stdin="go", expected_stdout="done"))
    result = await sandbox.run(RunRequest(language="python", code=code, tests=tests, limits=limits))
    assert [t.verdict for t in result.tests] == [TestVerdict.TIME_LIMIT_EXCEEDED, TestVerdict.OK]
    assert result.verdict is Verdict.TIME_LIMIT_EXCEEDED


CPP_CHECKER = CheckerProgram(
    language="cpp",
    code=(
        "#include <fstream>\n#include <iostream>\n#include <cmath>\n"
        "int main() { std::ifstream e(\"expected.txt\"), o(\"output.txt\"); double want, got;\n"
        "  if (!(e >> want) || !(o >> got)) { std::cout << \"unreadable\"; return 43; }\n"
        "  if (std::fabs(want - got) > 0.5) { std::cout << \"off by \" << std::fabs(want - got); return 43; }\n"
        "  std::cout << \"close enough\"; return 42; }\n"
    ),
)


async def test_a_checker_in_cpp_judges_each_test_in_a_jail_of_its_own(sandbox: NsJailSandbox) -> None:
    tests = (
        TestCase(stdin="1 2", expected_stdout="3.4", checker=CPP_CHECKER),
        TestCase(stdin="1 2", expected_stdout="4", checker=CPP_CHECKER),
    )
    result = await sandbox.run(request("cpp", source("cpp checker"), tests), RunContext(scope="alice"))
    assert [(t.verdict, t.checker_message) for t in result.tests] == [
        (TestVerdict.OK, "close enough"),
        (TestVerdict.WRONG_ANSWER, "off by 1"),
    ]


async def test_a_checker_that_prints_forever_is_a_bounded_checker_error(sandbox: NsJailSandbox) -> None:
    flood = CheckerProgram(language="python", code="while True:\n    print('x' * 1000)\n")
    result = await sandbox.run(request("python", "print(1)", (TestCase(expected_stdout="1", checker=flood),)))
    test = result.tests[0]
    assert test.verdict is TestVerdict.CHECKER_ERROR
    assert test.checker_message.startswith("the checker ended with output_limit_exceeded")
    assert len(test.checker_message.encode()) <= TEST_OUTPUT_BYTES


async def test_a_checker_cannot_see_or_change_the_programs_jail(sandbox: NsJailSandbox) -> None:
    # The program leaves a file; the checker, in its own jail, finds only its source and the test's files.
    program = "open('secret.txt', 'w').write('s')\nprint('out')\n"
    checker = CheckerProgram(
        language="python",
        code="import os, sys\nprint(sorted(os.listdir('.')))\nsys.exit(42 if sorted(os.listdir('.')) == ['expected.txt', 'input.txt', 'main.py', 'output.txt'] else 43)\n",
    )
    result = await sandbox.run(request("python", program, (TestCase(expected_stdout="out", checker=checker),)))
    assert result.tests[0].verdict is TestVerdict.OK, result.tests[0].checker_message
