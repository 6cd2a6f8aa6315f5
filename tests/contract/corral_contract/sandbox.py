"""The Sandbox contract: what every sandbox does for a well-behaved Python program.

Bind it with a fixture `sandbox`. Isolation and resource limits are the NsJail adapter's own
attack suite: a sandbox that isolates nothing (the in-memory one) cannot promise them.
"""

from __future__ import annotations

import pytest

from corral_core.job import InputFile, RunRequest, RunResult, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY, LimitRequest
from corral_core.ports import Sandbox, UnsupportedLanguage
from corral_core.testcases import CheckerProgram, Floats, TestCase, TestVerdict

LIMITS = DEFAULT_LIMIT_POLICY.defaults


def request(code: str, **fields: object) -> RunRequest:
    return RunRequest(language="python", code=code, limits=fields.pop("limits", LIMITS), **fields)  # type: ignore[arg-type]


class SandboxContract:
    @pytest.fixture
    def sandbox(self) -> Sandbox:
        raise NotImplementedError("bind the contract: provide a `sandbox` fixture")

    async def test_print_runs_ok(self, sandbox: Sandbox) -> None:
        result = await sandbox.run(request("print(1)"))
        assert result == RunResult(
            verdict=Verdict.OK,
            exit_code=0,
            signal=None,
            stdout="1\n",
            stderr="",
            cpu_time_ms=result.cpu_time_ms,
            wall_time_ms=result.wall_time_ms,
            memory_kb=result.memory_kb,
        )
        assert result.wall_time_ms >= 0 and result.cpu_time_ms >= 0 and result.memory_kb >= 0

    async def test_stdin_reaches_the_program(self, sandbox: Sandbox) -> None:
        code = "import sys\nsys.stdout.write(sys.stdin.read().upper())"
        result = await sandbox.run(request(code, stdin="hello\nworld\n"))
        assert result.verdict is Verdict.OK
        assert result.stdout == "HELLO\nWORLD\n"

    async def test_args_reach_the_program(self, sandbox: Sandbox) -> None:
        result = await sandbox.run(request("import sys\nprint(sys.argv[1:])", args=("a b", "-c", "")))
        assert result.stdout == "['a b', '-c', '']\n"

    async def test_input_files_are_readable_by_name(self, sandbox: Sandbox) -> None:
        files = (InputFile("data.txt", b"41\n"), InputFile("blob.bin", bytes(range(256))))
        code = (
            "print(int(open('data.txt').read()) + 1)\n"
            "print(open('blob.bin', 'rb').read() == bytes(range(256)))"
        )
        result = await sandbox.run(request(code, files=files))
        assert result.verdict is Verdict.OK, result.stderr
        assert result.stdout == "42\nTrue\n"

    async def test_exit_status_is_reported(self, sandbox: Sandbox) -> None:
        result = await sandbox.run(request("import sys\nprint('bye')\nsys.exit(3)"))
        assert result.verdict is Verdict.RUNTIME_ERROR
        assert result.exit_code == 3
        assert result.stdout == "bye\n"

    async def test_an_exception_is_a_runtime_error_with_its_traceback(self, sandbox: Sandbox) -> None:
        result = await sandbox.run(request("print('before')\n1 / 0"))
        assert result.verdict is Verdict.RUNTIME_ERROR
        assert result.exit_code == 1
        assert result.stdout == "before\n"
        assert "Traceback" in result.stderr and "ZeroDivisionError" in result.stderr

    async def test_a_syntax_error_is_a_runtime_error(self, sandbox: Sandbox) -> None:
        result = await sandbox.run(request("def broken(:\n"))
        assert result.verdict is Verdict.RUNTIME_ERROR
        assert "SyntaxError" in result.stderr

    async def test_stdout_and_stderr_stay_apart(self, sandbox: Sandbox) -> None:
        code = "import sys\nprint('out')\nprint('err', file=sys.stderr)"
        result = await sandbox.run(request(code))
        assert (result.stdout, result.stderr) == ("out\n", "err\n")

    async def test_unicode_output_round_trips(self, sandbox: Sandbox) -> None:
        result = await sandbox.run(request("print('héllo wörld ✓ 🐍')"))
        assert result.stdout == "héllo wörld ✓ 🐍\n"

    async def test_invalid_utf8_output_is_replaced_not_fatal(self, sandbox: Sandbox) -> None:
        code = "import sys\nsys.stdout.buffer.write(b'a\\xffb\\x00c')\nsys.stdout.flush()"
        result = await sandbox.run(request(code))
        assert result.verdict is Verdict.OK
        assert result.stdout == "a\ufffdb\x00c"

    async def test_output_past_the_limit_is_cut_and_flagged(self, sandbox: Sandbox) -> None:
        limits = DEFAULT_LIMIT_POLICY.resolve(LimitRequest(max_output_bytes=1000))
        result = await sandbox.run(request("print('x' * 100_000)\nprint('done')", limits=limits))
        assert result.verdict is Verdict.OUTPUT_LIMIT_EXCEEDED
        assert result.stdout_truncated and not result.stderr_truncated
        assert result.stdout == "x" * 1000

    async def test_stderr_past_the_limit_is_cut_and_flagged(self, sandbox: Sandbox) -> None:
        limits = DEFAULT_LIMIT_POLICY.resolve(LimitRequest(max_output_bytes=500))
        code = "import sys\nprint('ok')\nsys.stderr.write('e' * 10_000)"
        result = await sandbox.run(request(code, limits=limits))
        assert result.verdict is Verdict.OUTPUT_LIMIT_EXCEEDED
        assert result.stderr_truncated and not result.stdout_truncated
        assert result.stdout == "ok\n" and result.stderr == "e" * 500

    async def test_an_unknown_language_is_refused(self, sandbox: Sandbox) -> None:
        with pytest.raises(UnsupportedLanguage):
            await sandbox.run(RunRequest(language="cobol-85", code="", limits=LIMITS))

    def test_python_is_a_listed_runtime(self, sandbox: Sandbox) -> None:
        languages = {runtime.language: runtime.version for runtime in sandbox.runtimes()}
        assert languages["python"].startswith("3.")

    async def test_each_test_runs_the_program_with_its_own_stdin_and_args_and_is_judged(self, sandbox: Sandbox) -> None:
        code = "import sys\nprint(int(input()) * 2, *sys.argv[1:])"
        tests = (
            TestCase(name="double", stdin="21\n", expected_stdout="42\n"),
            TestCase(stdin="1\n", args=("x",), expected_stdout="2 x"),
            TestCase(stdin="5\n", expected_stdout="11\n"),
            TestCase(stdin="oops\n", expected_stdout="0"),
        )
        result = await sandbox.run(request(code, tests=tests))
        assert [(test.name, test.verdict) for test in result.tests] == [
            ("double", TestVerdict.OK),
            ("2", TestVerdict.OK),
            ("3", TestVerdict.WRONG_ANSWER),
            ("4", TestVerdict.RUNTIME_ERROR),
        ]
        assert result.verdict is Verdict.WRONG_ANSWER
        assert result.tests[0].stdout == "42\n" and result.tests[0].exit_code == 0
        assert "ValueError" in result.tests[3].stderr
        assert (result.stdout, result.stderr) == ("", "")

    async def test_all_tests_passing_is_ok_and_a_failure_can_skip_the_rest(self, sandbox: Sandbox) -> None:
        tests = (TestCase(stdin="1", expected_stdout="1"), TestCase(stdin="2", expected_stdout="2"))
        passing = await sandbox.run(request("print(input())", tests=tests))
        assert passing.verdict is Verdict.OK and [t.verdict for t in passing.tests] == [TestVerdict.OK] * 2
        failing = (TestCase(stdin="1", expected_stdout="0"), *tests)
        stopped = await sandbox.run(request("print(input())", tests=failing, stop_on_first_failure=True))
        assert [t.verdict for t in stopped.tests] == [TestVerdict.WRONG_ANSWER, TestVerdict.SKIPPED, TestVerdict.SKIPPED]

    async def test_a_checker_program_judges_with_the_tests_files(self, sandbox: Sandbox) -> None:
        checker = CheckerProgram(
            language="python",
            code=(
                "import sys\n"
                "given, want, got = (open(name).read().split() for name in ('input.txt', 'expected.txt', 'output.txt'))\n"
                "ok = sorted(got) == sorted(want) and given == ['sort']\n"
                "print('same words' if ok else f'got {got}')\n"
                "sys.exit(42 if ok else 43)\n"
            ),
        )
        tests = (
            TestCase(stdin="sort", expected_stdout="b a", checker=checker),
            TestCase(stdin="sort", expected_stdout="c a", checker=checker),
        )
        result = await sandbox.run(request("print('a b')", tests=tests))
        assert [(t.verdict, t.checker_message) for t in result.tests] == [
            (TestVerdict.OK, "same words"),
            (TestVerdict.WRONG_ANSWER, "got ['a', 'b']"),
        ]

    async def test_a_checker_that_crashes_is_a_checker_error_not_a_wrong_answer(self, sandbox: Sandbox) -> None:
        crashing = CheckerProgram(language="python", code="raise RuntimeError('checker bug')")
        result = await sandbox.run(request("print(1)", tests=(TestCase(expected_stdout="1", checker=crashing),)))
        assert result.tests[0].verdict is TestVerdict.CHECKER_ERROR
        assert "checker bug" in result.tests[0].checker_message
        assert result.verdict is Verdict.CHECKER_ERROR

    async def test_a_float_checker_takes_its_tolerance(self, sandbox: Sandbox) -> None:
        tests = (TestCase(expected_stdout="0.333", checker=Floats(abs_tol=1e-3, rel_tol=0)),)
        result = await sandbox.run(request("print(1 / 3)", tests=tests))
        assert result.tests[0].verdict is TestVerdict.OK
