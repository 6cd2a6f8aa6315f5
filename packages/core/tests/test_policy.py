from __future__ import annotations

import msgspec
import pytest

from corral_core.job import InputFile
from corral_core.policy import (
    DEFAULT_LIMIT_POLICY,
    InvalidSubmission,
    LimitAboveMaximum,
    LimitPolicy,
    LimitRequest,
    SizePolicy,
    SubmissionTooLarge,
)


def test_unset_limits_take_the_server_defaults() -> None:
    assert DEFAULT_LIMIT_POLICY.resolve(LimitRequest()) == DEFAULT_LIMIT_POLICY.defaults


def test_a_limit_up_to_the_maximum_is_granted_exactly() -> None:
    maximum = DEFAULT_LIMIT_POLICY.maxima.memory_mb
    assert DEFAULT_LIMIT_POLICY.resolve(LimitRequest(memory_mb=maximum)).memory_mb == maximum


def test_a_limit_above_the_maximum_is_refused_not_clamped() -> None:
    maximum = DEFAULT_LIMIT_POLICY.maxima.wall_time_ms
    with pytest.raises(LimitAboveMaximum) as raised:
        DEFAULT_LIMIT_POLICY.resolve(LimitRequest(wall_time_ms=maximum + 1))
    assert raised.value.field == "limits.wall_time_ms"
    assert str(maximum) in raised.value.message


@pytest.mark.parametrize("value", [0, -5])
def test_a_limit_below_one_is_refused(value: int) -> None:
    with pytest.raises(InvalidSubmission, match="cpu_time_ms"):
        DEFAULT_LIMIT_POLICY.resolve(LimitRequest(cpu_time_ms=value))


def test_a_policy_whose_default_passes_its_maximum_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="memory_mb"):
        LimitPolicy(
            defaults=DEFAULT_LIMIT_POLICY.maxima,
            maxima=msgspec.structs.replace(DEFAULT_LIMIT_POLICY.maxima, memory_mb=1),
        )


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "../etc/passwd", "/abs", "nul\0byte", "back\\slash", "bell\a", "x" * 256]
)
def test_file_names_must_be_one_plain_component(name: str) -> None:
    with pytest.raises(InvalidSubmission, match=r"files\[0\]\.name"):
        SizePolicy().check("", "", (), (InputFile(name, b""),))


def test_plain_file_names_pass() -> None:
    SizePolicy().check("", "", (), (InputFile("data.txt", b"1"), InputFile(".hidden", b""), InputFile("é.csv", b"")))


def test_the_same_file_name_twice_is_refused() -> None:
    with pytest.raises(InvalidSubmission, match="given twice"):
        SizePolicy().check("", "", (), (InputFile("a", b""), InputFile("a", b"")))


def test_oversized_code_stdin_and_files_are_too_large() -> None:
    sizes = SizePolicy(max_code_bytes=10, max_stdin_bytes=10, max_files_bytes=10)
    with pytest.raises(SubmissionTooLarge, match="code"):
        sizes.check("é" * 6, "", (), ())
    with pytest.raises(SubmissionTooLarge, match="stdin"):
        sizes.check("", "x" * 11, (), ())
    with pytest.raises(SubmissionTooLarge, match="files"):
        sizes.check("", "", (), (InputFile("a", b"x" * 11),))


def test_args_with_nul_are_refused() -> None:
    with pytest.raises(InvalidSubmission, match=r"args\[1\]"):
        SizePolicy().check("", "", ("ok", "bad\0"), ())
