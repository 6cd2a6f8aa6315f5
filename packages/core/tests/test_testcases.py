"""Test cases: the built-in checkers, and judging a job's tests over a scripted runner."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from corral_contract.clock import ManualClock
from corral_core.access import Caller, Quotas
from corral_core.job import Job, RunRequest, StdinMode, Verdict, verdict_of_tests
from corral_core.policy import DEFAULT_LIMIT_POLICY, InvalidSubmission, SizePolicy, SubmissionTooLarge
from corral_core.ports import Runtime
from corral_core.submission import JobRequest, SubmitJob, booked_bytes
from corral_core.testcases import (
    CHECKER_EXPECTED,
    CHECKER_INPUT,
    CHECKER_OUTPUT,
    TEST_OUTPUT_BYTES,
    Checker,
    CheckerProgram,
    Exact,
    Floats,
    Lines,
    Ran,
    TestCase,
    TestVerdict,
    Tokens,
    check,
    judge_tests,
)
from corral_memory.jobs import InMemoryJobQueue, InMemoryJobs
from corral_memory.runtimes import InMemoryRuntimeCatalog
from corral_system.ids import RandomIds

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ("1 2\n", "1 2\n", True),
        ("1 2\n", "1 2", False),  # the final newline counts
        ("1 2\n", "1  2\n", False),
        ("a\nb", "a\nc", False),
    ],
)
def test_exact_compares_byte_for_byte(expected: str, actual: str, ok: bool) -> None:
    assert check(Exact(), expected, actual).ok is ok


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ("a\nb\n", "a\nb", True),  # the final newline does not count
        ("a\nb", "a  \nb\t\n\n\n", True),  # nor trailing whitespace and blank lines
        ("a\nb", "a\n\nb", False),  # a blank line inside does
        ("a b", "a  b", False),  # and spacing within a line
        ("a\nb", " a\nb", False),  # and leading whitespace
        ("", "\n\n", True),
        ("x", "", False),
    ],
)
def test_lines_ignores_trailing_whitespace_and_final_newlines_only(expected: str, actual: str, ok: bool) -> None:
    assert check(Lines(), expected, actual).ok is ok


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ("1 2 3", "1\n2\t\t3\n", True),
        ("1 2 3", "1 2", False),
        ("1 2 3", "1 2 4", False),
        ("", "  \n", True),
    ],
)
def test_tokens_compares_words_however_spaced(expected: str, actual: str, ok: bool) -> None:
    assert check(Tokens(), expected, actual).ok is ok


@pytest.mark.parametrize(
    ("checker", "expected", "actual", "ok"),
    [
        (Floats(abs_tol=0.1, rel_tol=0), "1.0", "1.1", True),  # at the absolute tolerance
        (Floats(abs_tol=0.1, rel_tol=0), "1.0", "0.9", True),
        (Floats(abs_tol=0.1, rel_tol=0), "1.0", "1.1000001", False),  # just past it
        (Floats(abs_tol=0, rel_tol=0.01), "100", "101", True),  # at the relative tolerance
        (Floats(abs_tol=0, rel_tol=0.01), "100", "101.0001", False),
        (Floats(abs_tol=0, rel_tol=0.01), "-100", "-99", True),
        (Floats(abs_tol=1e-6, rel_tol=0), "3.14159", "3.14159 2", False),  # word count
        (Floats(), "yes 1.5", "yes 1.5000000001", True),  # words and numbers together
        (Floats(), "yes 1.5", "no 1.5", False),
        (Floats(), "nan inf", "nan inf", True),
        (Floats(), "inf", "-inf", False),
        (Floats(), "1", "nan", False),
        (Floats(), "1", "1e400", False),  # inf is no number near 1
    ],
)
def test_float_accepts_numbers_within_either_tolerance_at_its_edge(checker: Floats, expected: str, actual: str, ok: bool) -> None:
    assert check(checker, expected, actual).ok is ok


def test_a_refusal_says_where_the_output_differs() -> None:
    assert check(Lines(), "a\nb\nc", "a\nx\nc").message == "line 2: expected 'b', got 'x'"
    assert check(Tokens(), "1 2", "1").message == "expected 2 words, got 1"
    assert check(Exact(), "abc", "abd").message == "differs at byte 3"


def test_checkers_decode_from_their_kind_and_refuse_unknown_fields() -> None:
    decoded = msgspec.json.decode(b'{"kind": "float", "abs_tol": 0.5}', type=Checker)
    assert decoded == Floats(abs_tol=0.5)
    assert msgspec.json.decode(b'{"kind": "program", "language": "python", "code": "x"}', type=Checker) == CheckerProgram(
        language="python", code="x"
    )
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"kind": "lines", "tolerance": 1}', type=Checker)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"kind": "regex"}', type=Checker)


class Scripted:
    """A runner whose program prints, per test, what the test's stdin names: `echo X` prints X,
    `crash` exits 1, `slow` runs out of time. Its checker program answers with the exit code
    named in the expected output (`exit N`; -N: killed by signal N), printing what it saw."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.checked: list[dict[str, bytes]] = []

    async def run_test(self, test: TestCase) -> Ran:
        self.ran.append(test.stdin)
        word, _, rest = test.stdin.partition(" ")
        if word == "crash":
            return Ran(verdict=Verdict.RUNTIME_ERROR, exit_code=1, stderr="boom")
        if word == "slow":
            return Ran(verdict=Verdict.TIME_LIMIT_EXCEEDED, signal=9)
        return Ran(verdict=Verdict.OK, exit_code=0, stdout=rest, cpu_time_ms=3, wall_time_ms=5, memory_kb=100)

    async def run_checker(self, checker: CheckerProgram, files: dict[str, bytes]) -> Ran:
        self.checked.append(files)
        code = int(files[CHECKER_EXPECTED].decode().split()[1])
        if code < 0:
            return Ran(verdict=Verdict.RUNTIME_ERROR, signal=-code)
        verdict = Verdict.OK if code == 0 else Verdict.RUNTIME_ERROR
        return Ran(verdict=verdict, exit_code=code, stdout=f"saw {files[CHECKER_OUTPUT].decode()!r}\n")


async def test_each_test_is_run_and_judged_and_the_job_takes_the_first_failures_verdict() -> None:
    tests = (
        TestCase(name="right", stdin="echo 42\n", expected_stdout="42\n"),
        TestCase(stdin="echo 41", expected_stdout="42"),
        TestCase(stdin="crash", expected_stdout="42"),
        TestCase(stdin="echo anything"),  # no expected output: exit 0 is enough
    )
    runner = Scripted()
    results = await judge_tests(tests, runner, stop_on_first_failure=False, output_bytes=100)
    assert [(r.name, r.verdict) for r in results] == [
        ("right", TestVerdict.OK),
        ("2", TestVerdict.WRONG_ANSWER),
        ("3", TestVerdict.RUNTIME_ERROR),
        ("4", TestVerdict.OK),
    ]
    assert results[1].checker_message == "line 1: expected '42', got '41'"
    assert results[2].stderr == "boom" and results[2].exit_code == 1
    assert verdict_of_tests(results) is Verdict.WRONG_ANSWER
    assert len(runner.ran) == 4


async def test_after_a_failure_the_rest_are_skipped_when_asked() -> None:
    tests = (TestCase(stdin="slow"), TestCase(stdin="echo 1"), TestCase(stdin="echo 2"))
    runner = Scripted()
    results = await judge_tests(tests, runner, stop_on_first_failure=True, output_bytes=100)
    assert [r.verdict for r in results] == [TestVerdict.TIME_LIMIT_EXCEEDED, TestVerdict.SKIPPED, TestVerdict.SKIPPED]
    assert runner.ran == ["slow"]
    assert verdict_of_tests(results) is Verdict.TIME_LIMIT_EXCEEDED


async def test_a_checker_program_accepts_with_42_refuses_with_43_and_anything_else_is_its_own_error() -> None:
    checker = CheckerProgram(language="python", code="...")
    tests = tuple(
        TestCase(stdin=f"echo out{n}", expected_stdout=f"exit {code}", checker=checker)
        for n, code in enumerate((42, 43, 0, 1, -11))
    )
    runner = Scripted()
    results = await judge_tests(tests, runner, stop_on_first_failure=False, output_bytes=100)
    assert [r.verdict for r in results] == [
        TestVerdict.OK,
        TestVerdict.WRONG_ANSWER,
        TestVerdict.CHECKER_ERROR,  # 0, 1: what a program exits with by default or on a crash
        TestVerdict.CHECKER_ERROR,
        TestVerdict.CHECKER_ERROR,
    ]
    assert results[1].checker_message == "saw 'out1'"
    assert results[3].checker_message == "the checker ended with runtime_error (exit code 1): saw 'out3'"
    assert runner.checked[0] == {CHECKER_INPUT: b"echo out0", CHECKER_EXPECTED: b"exit 42", CHECKER_OUTPUT: b"out0"}
    assert verdict_of_tests(results) is Verdict.WRONG_ANSWER


async def test_a_run_that_failed_is_never_shown_to_its_checker() -> None:
    runner = Scripted()
    checker = CheckerProgram(language="python", code="...")
    results = await judge_tests((TestCase(stdin="crash", expected_stdout="exit 42", checker=checker),), runner, stop_on_first_failure=False, output_bytes=100)
    assert results[0].verdict is TestVerdict.RUNTIME_ERROR and runner.checked == []


async def test_each_tests_output_is_cut_to_the_per_test_maximum() -> None:
    results = await judge_tests((TestCase(stdin="echo " + "é" * 10),), Scripted(), stop_on_first_failure=False, output_bytes=5)
    assert results[0].stdout == "éé" and results[0].stdout_truncated


def test_too_many_tests_or_too_many_bytes_of_them_are_refused_naming_the_field() -> None:
    sizes = SizePolicy(max_tests=3, max_tests_bytes=100)
    python = [Runtime("python", "3.11", "main.py")]
    sizes.check_tests((TestCase(stdin="1"),) * 3, python)
    with pytest.raises(InvalidSubmission) as many:
        sizes.check_tests((TestCase(),) * 4, python)
    assert many.value.field == "tests" and not isinstance(many.value, SubmissionTooLarge)
    with pytest.raises(SubmissionTooLarge) as large:
        sizes.check_tests((TestCase(expected_stdout="x" * 101),), python)
    assert large.value.field == "tests"
    with pytest.raises(InvalidSubmission) as checker:
        sizes.check_tests((TestCase(checker=CheckerProgram(language="cobol", code="")),), python)
    assert checker.value.field == "tests[0].checker.language"
    with pytest.raises(InvalidSubmission) as arg:
        sizes.check_tests((TestCase(args=("a\0b",)),), python)
    assert arg.value.field == "tests[0].args"


def test_a_jobs_booking_counts_its_tests_and_their_outputs() -> None:
    limits = DEFAULT_LIMIT_POLICY.defaults
    plain = Job(id="j", request=RunRequest(language="python", code="x", limits=limits), created_at=NOW)
    tested = msgspec.structs.replace(plain, request=msgspec.structs.replace(plain.request, tests=(TestCase(stdin="abc", expected_stdout="de"),) * 2))
    per_test = 3 * min(limits.max_output_bytes, TEST_OUTPUT_BYTES)
    assert booked_bytes(tested) == booked_bytes(plain) + 2 * (5 + per_test)


async def test_an_interactive_job_books_the_most_its_client_may_send_it() -> None:
    booked: list[int] = []

    class Ledger:
        async def book(self, owner: str, job_id: str, size: int, max_unfinished: int, max_bytes: int) -> str | None:
            booked.append(size)
            return None

        async def unbook(self, owner: str, job_id: str) -> None: ...

        async def held_bytes(self, owner: str) -> int:
            return sum(booked)

        async def repair(self, owner: str) -> tuple[int, int]:
            return sum(booked), sum(booked)

    clock = ManualClock()
    sizes = SizePolicy(max_stdin_bytes=5000)
    submit = SubmitJob(
        InMemoryJobQueue(InMemoryJobs(clock)),
        RandomIds(),
        clock,
        DEFAULT_LIMIT_POLICY,
        sizes,
        InMemoryRuntimeCatalog(),
        usage=Ledger(),
    )
    caller = Caller(key_id="k", quotas=Quotas(max_unfinished=9, max_stored_bytes=10**9))
    plain = (await submit(caller, JobRequest(code="x"))).job
    await submit(caller, JobRequest(code="x", stdin_mode=StdinMode.INTERACTIVE))
    assert booked == [booked_bytes(plain), booked_bytes(plain) + 5000]
