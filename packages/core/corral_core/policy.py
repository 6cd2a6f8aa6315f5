"""What a client may ask for: limit defaults and maxima, and the size of what it sends.

A request above a maximum is refused with the field, the value and the maximum, never clamped:
a judge that silently gets less memory than it asked for reports wrong verdicts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import msgspec

from corral_core.job import InputFile, Limits
from corral_core.ports import Runtime

LIMIT_FIELDS: tuple[str, ...] = tuple(Limits.__struct_fields__)


class LimitRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Limits as a client asks for them: every field may be left to the server's default."""

    cpu_time_ms: int | None = None
    wall_time_ms: int | None = None
    memory_mb: int | None = None
    max_processes: int | None = None
    max_output_bytes: int | None = None
    max_file_size_kb: int | None = None


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


DEFAULT_LIMIT_POLICY = LimitPolicy(
    defaults=Limits(
        cpu_time_ms=2_000,
        wall_time_ms=5_000,
        memory_mb=128,
        max_processes=32,
        max_output_bytes=64 * 1024,
        max_file_size_kb=1024,
    ),
    maxima=Limits(
        cpu_time_ms=10_000,
        wall_time_ms=30_000,
        memory_mb=512,
        max_processes=128,
        max_output_bytes=1024 * 1024,
        max_file_size_kb=16 * 1024,
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
        if len(args) > self.max_args:
            raise InvalidSubmission("args", f"more than {self.max_args} arguments")
        for index, arg in enumerate(args):
            if "\0" in arg:
                raise InvalidSubmission(f"args[{index}]", "contains a NUL character")
            if len(arg.encode()) > self.max_arg_bytes:
                raise SubmissionTooLarge(f"args[{index}]", f"longer than {self.max_arg_bytes} bytes")
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

    def check_annotations(self, annotations: Mapping[str, str]) -> None:
        """Annotations ride along with the job in storage: bounded like stdin."""
        size = sum(len(key.encode()) + len(value.encode()) for key, value in annotations.items())
        if size > self.max_annotation_bytes:
            raise SubmissionTooLarge("annotations", f"larger than {self.max_annotation_bytes} bytes in all")


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


def source_files(language: str, runtimes: Sequence[Runtime]) -> frozenset[str]:
    """The names the runtimes of `language` write the program's code to."""
    return frozenset(runtime.source_file for runtime in runtimes if runtime.language == language and runtime.source_file)
