"""Test cases: one program run many times, each run judged against what it should print.

A job may carry test cases (`Program.tests`). The program is compiled once; each test runs in
a fresh sandbox of its own with the job's limits and the test's stdin and arguments, and its
output is judged by the test's checker: a built-in comparison here (pure functions), or a
checker program the sandbox runs in a jail of its own. Each test ends with a TestVerdict; the
job's verdict is its first failing test's, or ok.
"""

from __future__ import annotations

import enum
import math
from typing import Protocol

import msgspec


class Exact(msgspec.Struct, frozen=True, tag_field="kind", tag="exact", forbid_unknown_fields=True):
    """The output is the expected one byte for byte."""


class Lines(msgspec.Struct, frozen=True, tag_field="kind", tag="lines", forbid_unknown_fields=True):
    """Line by line, trailing whitespace of each line and trailing blank lines not counted (as
    Judge0 compares)."""


class Tokens(msgspec.Struct, frozen=True, tag_field="kind", tag="tokens", forbid_unknown_fields=True):
    """The same whitespace-separated words, however they are spaced."""


Tolerance = msgspec.Meta(ge=0, le=1e6)


class Floats(msgspec.Struct, frozen=True, tag_field="kind", tag="float", forbid_unknown_fields=True):
    """Word by word: numbers equal within `abs_tol` or `rel_tol` (relative to the expected
    value), other words exactly."""

    abs_tol: float = 1e-6
    rel_tol: float = 1e-6


class CheckerProgram(msgspec.Struct, frozen=True, tag_field="kind", tag="program", forbid_unknown_fields=True):
    """A program in any offered language that judges one test: it finds the test's input, the
    expected output and the program's output in `input.txt`, `expected.txt` and `output.txt`,
    and exits 42 to accept, 43 to refuse (DOMjudge's codes: no crash ends with them, where a
    Python exception exits 1); what it prints is the test's checker message. Any other ending
    (another code, a signal, a limit) is a checker error, never a wrong answer. It runs in a
    jail of its own, with the job's limits."""

    language: str
    code: str


Checker = Exact | Lines | Tokens | Floats | CheckerProgram
# The most of each test's stdout and stderr a job keeps, and of its checker's message (less
# when the job's max_output_bytes is less): what a job with many tests stores stays small.
TEST_OUTPUT_BYTES = 16 * 1024
# How a checker program answers.
CHECKER_ACCEPTS, CHECKER_REFUSES = 42, 43
# The files a checker program finds in its working directory.
CHECKER_INPUT, CHECKER_EXPECTED, CHECKER_OUTPUT = "input.txt", "expected.txt", "output.txt"


class TestCase(msgspec.Struct, frozen=True, kw_only=True):
    __test__ = False  # a test case, not a test for pytest to collect

    name: str = ""
    stdin: str = ""
    args: tuple[str, ...] = ()
    # None: the test passes when the program exits 0 within its limits.
    expected_stdout: str | None = None
    # None: Lines, when there is an expected output.
    checker: Checker | None = None

    def effective_checker(self) -> Checker | None:
        if self.checker is None and self.expected_stdout is not None:
            return Lines()
        return self.checker


class TestVerdict(enum.StrEnum):
    __test__ = False  # a test case, not a test for pytest to collect

    OK = "ok"
    WRONG_ANSWER = "wrong_answer"
    RUNTIME_ERROR = "runtime_error"
    TIME_LIMIT_EXCEEDED = "time_limit_exceeded"
    MEMORY_LIMIT_EXCEEDED = "memory_limit_exceeded"
    OUTPUT_LIMIT_EXCEEDED = "output_limit_exceeded"
    # The checker program crashed, ran out of a limit or answered neither 0 nor 1.
    CHECKER_ERROR = "checker_error"
    # Not run: an earlier test failed and the job asked to stop there.
    SKIPPED = "skipped"

    @classmethod
    def of_run(cls, verdict: str) -> TestVerdict:
        """How a run that ended with `verdict` (a job's Verdict) fares as a test, before its
        output is judged."""
        return cls(verdict)


class Measured(msgspec.Struct, frozen=True, kw_only=True):
    """How one run of a program ended and what it printed: what a test's run and its result
    share."""

    exit_code: int | None = None
    signal: int | None = None
    cpu_time_ms: int = 0
    wall_time_ms: int = 0
    memory_kb: int = 0
    stdout: str = ""
    stdout_truncated: bool = False
    stderr: str = ""
    stderr_truncated: bool = False


class TestResult(Measured, frozen=True, kw_only=True):
    """A test's run, judged; its stdout and stderr cut to TEST_OUTPUT_BYTES."""

    __test__ = False  # a test case, not a test for pytest to collect

    name: str
    verdict: TestVerdict
    checker_message: str = ""


class Checked(msgspec.Struct, frozen=True):
    """A built-in checker's judgement, and why when it refuses."""

    ok: bool
    message: str = ""


def check(checker: Exact | Lines | Tokens | Floats, expected: str, actual: str) -> Checked:
    """Judge `actual` against `expected` with a built-in checker."""
    match checker:
        case Exact():
            return _first_difference(expected, actual, "byte") if expected != actual else Checked(True)
        case Lines():
            want, got = _lines(expected), _lines(actual)
            return Checked(True) if want == got else _listed_difference(want, got, "line")
        case Tokens():
            want, got = expected.split(), actual.split()
            return Checked(True) if want == got else _listed_difference(want, got, "word")
        case Floats():
            return _floats(checker, expected.split(), actual.split())


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.rstrip().split("\n")] if text.rstrip() else []


def _first_difference(expected: str, actual: str, unit: str) -> Checked:
    at = next((i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b), min(len(expected), len(actual)))
    return Checked(False, f"differs at {unit} {at + 1}")


def _listed_difference(want: list[str], got: list[str], unit: str) -> Checked:
    for index, (a, b) in enumerate(zip(want, got, strict=False)):
        if a != b:
            return Checked(False, f"{unit} {index + 1}: expected {_shown(a)}, got {_shown(b)}")
    return Checked(False, f"expected {len(want)} {unit}s, got {len(got)}")


def _floats(checker: Floats, want: list[str], got: list[str]) -> Checked:
    if len(want) != len(got):
        return Checked(False, f"expected {len(want)} words, got {len(got)}")
    for index, (a, b) in enumerate(zip(want, got, strict=True)):
        if not _same_word(a, b, checker):
            return Checked(False, f"word {index + 1}: expected {_shown(a)}, got {_shown(b)}")
    return Checked(True)


def _same_word(expected: str, actual: str, checker: Floats) -> bool:
    if expected == actual:
        return True
    try:
        want, got = float(expected), float(actual)
    except ValueError:
        return False
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    if math.isinf(want) or math.isinf(got):
        return want == got
    # A value exactly at the tolerance passes: the margin covers binary rounding of decimals
    # (1.1 - 1.0 is a hair over 0.1 in doubles).
    return abs(want - got) <= max(checker.abs_tol, checker.rel_tol * abs(want)) * (1 + 1e-12) + 1e-15


def _shown(word: str) -> str:
    return repr(word if len(word) <= 40 else word[:40] + "…")


class Ran(Measured, frozen=True, kw_only=True):
    """One run of a program, as judging a test needs it (a sandbox's RunResult, narrowed)."""

    verdict: str  # a job's Verdict


class TestRunner(Protocol):
    """What judging a job's tests needs of a sandbox: the program run with one test's stdin and
    arguments, and a checker program run over one test's files. Each run is a fresh sandbox."""

    async def run_test(self, test: TestCase) -> Ran: ...

    async def run_checker(self, checker: CheckerProgram, files: dict[str, bytes]) -> Ran: ...


async def judge_tests(
    tests: tuple[TestCase, ...], runner: TestRunner, *, stop_on_first_failure: bool, output_bytes: int
) -> list[TestResult]:
    """Run and judge each test in order; after a failure, with `stop_on_first_failure`, the
    rest are SKIPPED. Each result keeps at most `output_bytes` of its stdout and stderr."""
    results: list[TestResult] = []
    failed = False
    for index, test in enumerate(tests):
        name = test.name or str(index + 1)
        if failed and stop_on_first_failure:
            results.append(TestResult(name=name, verdict=TestVerdict.SKIPPED))
            continue
        ran = await runner.run_test(test)
        verdict, message = await _judged(test, ran, runner)
        results.append(_result(name, ran, verdict, message, output_bytes))
        failed = failed or verdict is not TestVerdict.OK
    return results


async def _judged(test: TestCase, ran: Ran, runner: TestRunner) -> tuple[TestVerdict, str]:
    verdict = TestVerdict.of_run(ran.verdict)
    checker = test.effective_checker()
    if verdict is not TestVerdict.OK or checker is None:
        return verdict, ""
    expected = test.expected_stdout or ""
    if not isinstance(checker, CheckerProgram):
        checked = check(checker, expected, ran.stdout)
        return (TestVerdict.OK if checked.ok else TestVerdict.WRONG_ANSWER), checked.message
    files = {CHECKER_INPUT: test.stdin.encode(), CHECKER_EXPECTED: expected.encode(), CHECKER_OUTPUT: ran.stdout.encode()}
    judged = await runner.run_checker(checker, files)
    message = (judged.stdout + judged.stderr).strip()
    if judged.verdict == "runtime_error" and judged.signal is None and judged.exit_code == CHECKER_ACCEPTS:
        return TestVerdict.OK, message
    if judged.verdict == "runtime_error" and judged.signal is None and judged.exit_code == CHECKER_REFUSES:
        return TestVerdict.WRONG_ANSWER, message
    why = f"the checker ended with {judged.verdict}" + (f" (exit code {judged.exit_code})" if judged.exit_code is not None else "")
    return TestVerdict.CHECKER_ERROR, f"{why}: {message}" if message else why


def _result(name: str, ran: Ran, verdict: TestVerdict, message: str, output_bytes: int) -> TestResult:
    stdout, stdout_cut = _cut(ran.stdout, output_bytes)
    stderr, stderr_cut = _cut(ran.stderr, output_bytes)
    checker_message, _ = _cut(message, output_bytes)
    return TestResult(
        name=name,
        verdict=verdict,
        exit_code=ran.exit_code,
        signal=ran.signal,
        cpu_time_ms=ran.cpu_time_ms,
        wall_time_ms=ran.wall_time_ms,
        memory_kb=ran.memory_kb,
        stdout=stdout,
        stdout_truncated=ran.stdout_truncated or stdout_cut,
        stderr=stderr,
        stderr_truncated=ran.stderr_truncated or stderr_cut,
        checker_message=checker_message,
    )


def _cut(text: str, most_bytes: int) -> tuple[str, bool]:
    encoded = text.encode()
    if len(encoded) <= most_bytes:
        return text, False
    return encoded[:most_bytes].decode(errors="ignore"), True


def skipped(tests: tuple[TestCase, ...]) -> list[TestResult]:
    """The tests of a job whose program never ran (it did not compile): none ran."""
    return [TestResult(name=test.name or str(index + 1), verdict=TestVerdict.SKIPPED) for index, test in enumerate(tests)]
