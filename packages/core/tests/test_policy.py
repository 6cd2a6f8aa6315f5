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
    check_file_name,
    check_language,
    source_files,
)
from corral_core.ports import Runtime


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


def test_an_input_file_may_not_take_the_source_files_name() -> None:
    with pytest.raises(InvalidSubmission, match="the program's own source file") as raised:
        SizePolicy().check("", "", (), (InputFile("data.txt", b""), InputFile("main.py", b"")), reserved={"main.py"})
    assert raised.value.field == "files[1].name"
    check_file_name("files[0].name", "main.py")  # reserved only where a runtime writes it


def test_a_language_no_worker_offers_is_refused_naming_those_offered() -> None:
    runtimes = [Runtime("python", "3.11", "main.py"), Runtime("c", "12", "main.c")]
    with pytest.raises(InvalidSubmission, match=r"'ruby' is not offered; try one of \['c', 'python'\]"):
        check_language("ruby", runtimes)
    check_language("c", runtimes)


def test_with_no_live_worker_every_language_is_accepted_and_waits() -> None:
    check_language("ruby", [])


def test_the_source_files_are_those_of_the_requested_language() -> None:
    runtimes = [Runtime("python", "3.11", "main.py"), Runtime("python", "3.12", "prog.py"), Runtime("c", "12", "main.c")]
    assert source_files("python", runtimes) == {"main.py", "prog.py"}


def test_annotations_past_their_bound_are_too_large() -> None:
    SizePolicy(max_annotation_bytes=4).check_annotations({"ab": "cd"})
    with pytest.raises(SubmissionTooLarge) as refused:
        SizePolicy(max_annotation_bytes=4).check_annotations({"ab": "cde"})
    assert refused.value.field == "annotations"


def test_a_runtime_replaces_defaults_and_can_only_lower_maxima() -> None:
    jvm = Runtime(
        "java",
        "17",
        default_limits=LimitRequest(memory_mb=384, compile_memory_mb=1024),
        max_limits=LimitRequest(memory_mb=100_000, max_processes=64),
    )
    policy = DEFAULT_LIMIT_POLICY.for_runtime(jvm)
    assert policy.defaults.memory_mb == 384 and policy.defaults.compile_memory_mb == 1024
    assert policy.maxima.memory_mb == DEFAULT_LIMIT_POLICY.maxima.memory_mb  # not raised
    assert policy.maxima.max_processes == 64
    assert policy.defaults.cpu_time_ms == DEFAULT_LIMIT_POLICY.defaults.cpu_time_ms
    assert DEFAULT_LIMIT_POLICY.for_runtime(None) is DEFAULT_LIMIT_POLICY


@pytest.mark.parametrize("pattern", ["/etc/passwd", "../x", "out/../../x", "a//b", "./x", "", "x\ny", "a\\b"])
def test_a_pattern_of_files_to_send_back_must_stay_below_the_working_directory(pattern: str) -> None:
    with pytest.raises(InvalidSubmission) as refused:
        SizePolicy().check_outputs(("ok.txt", pattern))
    assert refused.value.field == "outputs[1]"


def test_plain_patterns_of_files_to_send_back_are_taken() -> None:
    SizePolicy().check_outputs(("plot.png", "out/**/*.csv", "out/**", "[ab]?.txt"))
    with pytest.raises(InvalidSubmission):
        SizePolicy(max_output_patterns=1).check_outputs(("a", "b"))
