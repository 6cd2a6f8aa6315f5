"""Test cases over HTTP: the strict request Structs of a job's tests and checkers, mapped to
core's, and the views of each test's result and of their summary."""

from __future__ import annotations

from typing import Annotated

import msgspec

from corral_core.testcases import (
    Checker,
    CheckerProgram,
    Exact,
    Floats,
    Lines,
    TestCase,
    TestResult,
    TestVerdict,
    Tokens,
)
from corral_http.fields import LISTED, CopiedView, Language


class ExactIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind", tag="exact"):
    """The output is the expected one byte for byte."""


class LinesIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind", tag="lines"):
    """Line by line; trailing whitespace and trailing blank lines do not count (the default)."""


class TokensIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind", tag="tokens"):
    """The same whitespace-separated words, however spaced."""


# Finite (a NaN fails both bounds) and at most a million: a tolerance past that accepts anything.
Tolerance = Annotated[float, msgspec.Meta(ge=0, le=1e6)]


class FloatIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind", tag="float"):
    """Word by word: numbers equal within `abs_tol` or `rel_tol` (of the expected value)."""

    abs_tol: Tolerance = 1e-6
    rel_tol: Tolerance = 1e-6


class ProgramIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind", tag="program"):
    """A program in any offered language that reads input.txt, expected.txt and output.txt and
    exits 0 to accept, 1 to refuse."""

    language: Language
    code: str


CheckerIn = ExactIn | LinesIn | TokensIn | FloatIn | ProgramIn


class TestIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One test case. Its text is bounded in all by the server's max_tests_bytes (SizePolicy),
    and the name's bytes and printability there too: only what a schema can say is said here."""

    __test__ = False  # a test case, not a test for pytest to collect

    name: Annotated[str, msgspec.Meta(max_length=128)] = ""
    stdin: str = ""
    args: Annotated[list[str], msgspec.Meta(max_length=LISTED)] = []
    # Absent: the test passes when the program exits 0 within its limits.
    expected_stdout: str | None = None
    # Absent: `lines` when there is an expected output.
    checker: CheckerIn | None = None

    def to_test(self) -> TestCase:
        return TestCase(
            name=self.name,
            stdin=self.stdin,
            args=tuple(self.args),
            expected_stdout=self.expected_stdout,
            checker=None if self.checker is None else _checker(self.checker),
        )


def _checker(checker: CheckerIn) -> Checker:
    match checker:
        case ExactIn():
            return Exact()
        case LinesIn():
            return Lines()
        case TokensIn():
            return Tokens()
        case FloatIn():
            return Floats(abs_tol=checker.abs_tol, rel_tol=checker.rel_tol)
        case ProgramIn():
            return CheckerProgram(language=checker.language, code=checker.code)




class TestResultView(CopiedView, frozen=True):
    __test__ = False  # a view, not a test for pytest to collect

    name: str
    verdict: TestVerdict
    exit_code: int | None
    signal: int | None
    cpu_time_ms: int
    wall_time_ms: int
    memory_kb: int
    stdout: str
    stdout_truncated: bool
    stderr: str
    stderr_truncated: bool
    checker_message: str


class SummaryView(msgspec.Struct, frozen=True):
    """How a job's tests fared: passed + failed + skipped = total."""

    passed: int
    failed: int
    skipped: int
    total: int

    @classmethod
    def of(cls, tests: tuple[TestResult, ...]) -> SummaryView:
        passed = sum(test.verdict is TestVerdict.OK for test in tests)
        skipped = sum(test.verdict is TestVerdict.SKIPPED for test in tests)
        return cls(passed=passed, failed=len(tests) - passed - skipped, skipped=skipped, total=len(tests))


