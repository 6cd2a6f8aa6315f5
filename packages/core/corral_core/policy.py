"""What a client may ask for: limit defaults and maxima, and the size of what it sends.

A request above a maximum is refused with the field, the value and the maximum, never clamped:
a judge that silently gets less memory than it asked for reports wrong verdicts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import msgspec

from corral_core.job import InputFile, Limits
from corral_core.job import LimitRequest as LimitRequest  # re-exported: clients import it from here
from corral_core.ports import Runtime
from corral_core.testcases import CheckerProgram, TestCase

LIMIT_FIELDS: tuple[str, ...] = tuple(Limits.__struct_fields__)


class InvalidSubmission(Exception):
    """The submission breaks a rule; `field` names the part of the request at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class LimitAboveMaximum(InvalidSubmission):
    def __init__(self, field: str, value: int, maximum: int) -> None:
        super().__init__(f"limits.{field}", f"{value} is above the server maximum of {maximum}")
        self.value = value
        self.maximum = maximum


class SubmissionTooLarge(InvalidSubmission):
    """Code, stdin or files are larger than the server accepts (HTTP 413)."""


class LimitPolicy(msgspec.Struct, frozen=True, kw_only=True):
    defaults: Limits
    maxima: Limits

    def __post_init__(self) -> None:
        for name in LIMIT_FIELDS:
            default, maximum = getattr(self.defaults, name), getattr(self.maxima, name)
            if not 0 < default <= maximum:
                raise ValueError(f"limit {name}: default {default} must be in 1..{maximum}")

    def resolve(self, requested: LimitRequest) -> Limits:
        values: dict[str, int] = {}
        for name in LIMIT_FIELDS:
            value = getattr(requested, name)
            if value is None:
                value = getattr(self.defaults, name)
            maximum = getattr(self.maxima, name)
            if value < 1:
                raise InvalidSubmission(f"limits.{name}", f"must be at least 1, got {value}")
            if value > maximum:
                raise LimitAboveMaximum(name, value, maximum)
            values[name] = value
        return Limits(**values)

    def for_runtime(self, runtime: Runtime | None) -> LimitPolicy:
        """The policy for one runtime: its own defaults replace the server's (a JVM needs more
        memory than CPython), and its own maxima can only lower the server's."""
        if runtime is None:
            return self
        maxima = {name: getattr(self.maxima, name) for name in LIMIT_FIELDS}
        for name in LIMIT_FIELDS:
            value = getattr(runtime.max_limits, name)
            if value is not None and value > 0:
                maxima[name] = min(maxima[name], value)
        defaults = {name: min(getattr(self.defaults, name), maxima[name]) for name in LIMIT_FIELDS}
        for name in LIMIT_FIELDS:
            value = getattr(runtime.default_limits, name)
            if value is not None and value > 0:
                defaults[name] = min(value, maxima[name])
        return LimitPolicy(defaults=Limits(**defaults), maxima=Limits(**maxima))


DEFAULT_LIMIT_POLICY = LimitPolicy(
    defaults=Limits(
        cpu_time_ms=2_000,
        wall_time_ms=5_000,
        memory_mb=128,
        max_processes=32,
        max_output_bytes=64 * 1024,
        max_file_size_kb=1024,
        compile_cpu_time_ms=10_000,
        compile_wall_time_ms=20_000,
        compile_memory_mb=512,
    ),
    maxima=Limits(
        cpu_time_ms=10_000,
        wall_time_ms=30_000,
        memory_mb=512,
        max_processes=128,
        max_output_bytes=1024 * 1024,
        max_file_size_kb=16 * 1024,
        compile_cpu_time_ms=30_000,
        compile_wall_time_ms=60_000,
        compile_memory_mb=2048,
        max_returned_files=256,
        max_returned_files_kb=64 * 1024,
    ),
)


class SizePolicy(msgspec.Struct, frozen=True, kw_only=True):
    max_code_bytes: int = 64 * 1024
    max_stdin_bytes: int = 1024 * 1024
    max_args: int = 64
    max_arg_bytes: int = 4096
    max_files: int = 16
    max_files_bytes: int = 4 * 1024 * 1024
    max_annotation_bytes: int = 1024 * 1024
    # Test cases of one job, and their bytes in all (stdin, expected output, arguments and
    # checker programs).
    max_tests: int = 256
    max_tests_bytes: int = 16 * 1024 * 1024
    # Patterns of the files a job asks back (Program.outputs).
    max_output_patterns: int = 32

    def check(
        self,
        code: str,
        stdin: str,
        args: tuple[str, ...],
        files: tuple[InputFile, ...],
        *,
        reserved: Collection[str] = (),
    ) -> None:
        """Refuse a submission too large, or with a file name `check_file_name` refuses."""
        if len(code.encode()) > self.max_code_bytes:
            raise SubmissionTooLarge("code", f"larger than {self.max_code_bytes} bytes")
        if len(stdin.encode()) > self.max_stdin_bytes:
            raise SubmissionTooLarge("stdin", f"larger than {self.max_stdin_bytes} bytes")
        self.check_arguments("args", args)
        if len(files) > self.max_files:
            raise InvalidSubmission("files", f"more than {self.max_files} files")
        if sum(len(f.content) for f in files) > self.max_files_bytes:
            raise SubmissionTooLarge("files", f"larger than {self.max_files_bytes} bytes in all")
        seen: set[str] = set()
        for index, file in enumerate(files):
            check_file_name(f"files[{index}].name", file.name, reserved=reserved)
            if file.name in seen:
                raise InvalidSubmission(f"files[{index}].name", f"{file.name!r} given twice")
            seen.add(file.name)

    def check_arguments(self, field: str, args: tuple[str, ...]) -> None:
        """Refuse more than `max_args` arguments, one over `max_arg_bytes`, or a NUL (which
        exec cannot pass): the program's `args` and the compiler's `compiler_args` alike."""
        if len(args) > self.max_args:
            raise InvalidSubmission(field, f"more than {self.max_args} arguments")
        for index, arg in enumerate(args):
            if "\0" in arg:
                raise InvalidSubmission(f"{field}[{index}]", "contains a NUL character")
            if len(arg.encode()) > self.max_arg_bytes:
                raise SubmissionTooLarge(f"{field}[{index}]", f"longer than {self.max_arg_bytes} bytes")

    def check_tests(self, tests: tuple[TestCase, ...], runtimes: Sequence[Runtime]) -> None:
        """Refuse too many tests (422), too many bytes of them (413), a test argument as
        `check` refuses one, and a checker program in a language no worker offers."""
        if len(tests) > self.max_tests:
            raise InvalidSubmission("tests", f"more than {self.max_tests} tests")
        if sum(bytes_of_test(test) for test in tests) > self.max_tests_bytes:
            raise SubmissionTooLarge("tests", f"larger than {self.max_tests_bytes} bytes in all")
        for index, test in enumerate(tests):
            if len(test.name.encode()) > 128 or not test.name.isprintable():
                raise InvalidSubmission(f"tests[{index}].name", "must be at most 128 bytes of printable text")
            if len(test.args) > self.max_args:
                raise InvalidSubmission(f"tests[{index}].args", f"more than {self.max_args} arguments")
            for arg in test.args:
                if "\0" in arg or len(arg.encode()) > self.max_arg_bytes:
                    raise InvalidSubmission(f"tests[{index}].args", f"an argument has a NUL or is over {self.max_arg_bytes} bytes")
            if isinstance(test.checker, CheckerProgram):
                try:
                    check_language(test.checker.language, runtimes)
                except InvalidSubmission as error:
                    raise InvalidSubmission(f"tests[{index}].checker.language", error.message) from None

    def check_outputs(self, patterns: tuple[str, ...]) -> None:
        """Each pattern names files below the working directory: relative, no `..`, plain text."""
        if len(patterns) > self.max_output_patterns:
            raise InvalidSubmission("outputs", f"more than {self.max_output_patterns} patterns")
        for index, pattern in enumerate(patterns):
            field = f"outputs[{index}]"
            if not pattern or len(pattern.encode()) > 1024 or not pattern.isprintable():
                raise InvalidSubmission(field, "must be 1 to 1024 bytes of printable text")
            parts = pattern.split("/")
            if pattern.startswith("/") or "\\" in pattern or any(part in ("", ".", "..") for part in parts):
                raise InvalidSubmission(field, f"{pattern!r} must be relative to the working directory, without '.', '..' or '//'")

    def check_annotations(self, annotations: Mapping[str, str]) -> None:
        """Annotations ride along with the job in storage: bounded like stdin."""
        size = sum(len(key.encode()) + len(value.encode()) for key, value in annotations.items())
        if size > self.max_annotation_bytes:
            raise SubmissionTooLarge("annotations", f"larger than {self.max_annotation_bytes} bytes in all")


def bytes_of_test(test: TestCase) -> int:
    """What one test case holds: what it sends, what it expects, its checker program."""
    size = len(test.name.encode()) + len(test.stdin.encode()) + sum(len(arg.encode()) for arg in test.args)
    size += len((test.expected_stdout or "").encode())
    if isinstance(test.checker, CheckerProgram):
        size += len(test.checker.code.encode())
    return size


def check_file_name(field: str, name: str, *, reserved: Collection[str] = ()) -> None:
    """A file name must be one plain path component: the host writes it and nothing else.

    `reserved` names the files the host writes itself (the runtime's source file): an input
    file may not take their place.
    """
    if not name or len(name.encode()) > 255:
        raise InvalidSubmission(field, "must be 1 to 255 bytes long")
    if name in {".", ".."} or "/" in name or "\0" in name or "\\" in name:
        raise InvalidSubmission(field, f"{name!r} is not a plain file name")
    if not name.isprintable():
        raise InvalidSubmission(field, f"{name!r} has control characters")
    if name in reserved:
        raise InvalidSubmission(field, f"{name!r} is the program's own source file")


def check_language(language: str, runtimes: Sequence[Runtime]) -> None:
    """The language must be one a live worker offers; with no live worker nothing is known,
    so the job is accepted and waits (and fails as unsupported if no worker ever runs it)."""
    offered = {runtime.language for runtime in runtimes}
    if offered and language not in offered:
        raise InvalidSubmission("language", f"{language!r} is not offered; try one of {sorted(offered)}")


def check_compiler_args(language: str, runtimes: Sequence[Runtime]) -> None:
    """Compiler arguments need a runtime whose compile command takes them (with no live worker
    nothing is known: the job waits, and a worker that cannot compile so refuses it)."""
    if runtimes and not any(runtime.language == language and runtime.compiler_args for runtime in runtimes):
        raise InvalidSubmission("compiler_args", f"the {language!r} runtime takes no compiler arguments")


def runtime_of(language: str, runtimes: Sequence[Runtime]) -> Runtime | None:
    """The runtime of `language` (the first worker's, if workers disagree), or None."""
    return next((runtime for runtime in runtimes if runtime.language == language), None)


def source_files(language: str, runtimes: Sequence[Runtime]) -> frozenset[str]:
    """The names the runtimes of `language` write the program's code to."""
    return frozenset(runtime.source_file for runtime in runtimes if runtime.language == language and runtime.source_file)
