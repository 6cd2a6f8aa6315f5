"""Test cases in the client and `corral run --tests`: what is sent, what is read back, and what
the command line prints and exits with."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from click.testing import CliRunner
from corral_client import Client, Float, Job, TestCase, Tokens
from corral_client.cases import BadTests, natural, read_tests
from corral_client.cli import EXIT_FAILED, EXIT_TESTS_FAILED, exit_code_of_tests, lines_of_tests, main

ACCEPTED = {"job_id": "j1", "status": "PENDING"}


def _recording(sent: list[Any]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(202, json=ACCEPTED)

    return httpx.MockTransport(answer)


def test_submit_sends_test_cases_given_as_objects_or_dicts() -> None:
    sent: list[Any] = []
    tests: list[TestCase | dict[str, Any]] = [
        TestCase(stdin="1 2\n", expected_stdout="3\n"),
        TestCase(name="floats", stdin="1\n", expected_stdout="0.333", checker=Float(abs_tol=0.001)),
        {"stdin": "x", "args": ["-v"], "checker": {"kind": "exact"}},
        TestCase(stdin="", checker=Tokens()),
    ]
    with Client("http://corral.test", transport=_recording(sent)) as client:
        client.submit("print(1)", tests=tests, stop_on_first_failure=True)
    assert sent[0]["tests"] == [
        {"stdin": "1 2\n", "expected_stdout": "3\n"},
        {"name": "floats", "stdin": "1\n", "expected_stdout": "0.333", "checker": {"kind": "float", "abs_tol": 0.001, "rel_tol": 1e-6}},
        {"stdin": "x", "args": ["-v"], "checker": {"kind": "exact"}},
        {"checker": {"kind": "tokens"}},
    ]
    assert sent[0]["stop_on_first_failure"] is True


def test_a_submit_without_tests_sends_what_it_always_has() -> None:
    sent: list[Any] = []
    with Client("http://corral.test", transport=_recording(sent)) as client:
        client.submit("print(1)")
    assert sent == [{"code": "print(1)", "language": "python", "stdin": "", "args": []}]


FINISHED: dict[str, Any] = {
    "job_id": "j1",
    "status": "COMPLETED",
    "language": "cpp",
    "result": {
        "verdict": "wrong_answer",
        "exit_code": None,
        "signal": None,
        "stdout": "",
        "stderr": "",
        "stdout_truncated": False,
        "stderr_truncated": False,
        "cpu_time_ms": 9,
        "wall_time_ms": 12,
        "memory_kb": 2048,
        "sandbox_start": "cold",
        "compile": {"verdict": "ok", "exit_code": 0, "signal": None, "cpu_time_ms": 1, "wall_time_ms": 2, "memory_kb": 3, "cached": True},
        "tests": [
            {"name": "1", "verdict": "ok", "exit_code": 0, "signal": None, "cpu_time_ms": 4, "wall_time_ms": 5,
             "memory_kb": 2048, "stdout": "3\n", "stdout_truncated": False, "stderr": "", "stderr_truncated": False,
             "checker_message": ""},
            {"name": "10", "verdict": "wrong_answer", "exit_code": 0, "signal": None, "cpu_time_ms": 5, "wall_time_ms": 7,
             "memory_kb": 1024, "stdout": "4\n", "stdout_truncated": False, "stderr": "", "stderr_truncated": False,
             "checker_message": "line 1: expected '5', got '4'"},
            {"name": "11", "verdict": "skipped", "exit_code": None, "signal": None, "cpu_time_ms": 0, "wall_time_ms": 0,
             "memory_kb": 0, "stdout": "", "stdout_truncated": False, "stderr": "", "stderr_truncated": False,
             "checker_message": ""},
        ],  # fmt: skip
        "summary": {"passed": 1, "failed": 1, "skipped": 1, "total": 3},
    },
    "error": None,
}


def _job(body: dict[str, Any]) -> Job:
    return msgspec.convert(body, Job)


def test_a_job_with_tests_reads_each_test_the_summary_and_the_cached_compile() -> None:
    job = _job(FINISHED)
    assert job.result is not None and job.result.compile is not None and job.result.summary is not None
    assert job.result.compile.cached is True
    assert [(test.name, test.verdict) for test in job.result.tests] == [("1", "ok"), ("10", "wrong_answer"), ("11", "skipped")]
    assert (job.result.summary.passed, job.result.summary.total) == (1, 3)
    assert exit_code_of_tests(job) == (EXIT_TESTS_FAILED, None)


def test_all_tests_passing_is_exit_code_0_and_a_server_without_tests_is_not() -> None:
    result = {**FINISHED["result"], "verdict": "ok", "summary": {"passed": 3, "failed": 0, "skipped": 0, "total": 3}}
    assert exit_code_of_tests(_job({**FINISHED, "result": result})) == (0, None)
    older = {key: value for key, value in FINISHED["result"].items() if key not in ("tests", "summary")}
    assert exit_code_of_tests(_job({**FINISHED, "result": {**older, "verdict": "ok"}}))[0] == EXIT_FAILED
    broken = {**older, "verdict": "compile_error"}
    assert exit_code_of_tests(_job({**FINISHED, "result": broken})) == (EXIT_TESTS_FAILED, "the program did not compile; no test ran")


def test_each_test_is_one_line_with_its_verdict_time_memory_and_checker_message() -> None:
    job = _job(FINISHED)
    assert job.result is not None
    assert lines_of_tests(job.result.tests) == [
        "1   ok                          4 ms      2048 KB",
        "10  wrong_answer                5 ms      1024 KB  line 1: expected '5', got '4'",
        "11  skipped                     0 ms         0 KB",
    ]


# ---- tests read from files ------------------------------------------------------------------


def test_a_yaml_list_reads_as_tests_numbers_as_text(tmp_path: Path) -> None:
    path = tmp_path / "tests.yaml"
    path.write_text(
        "- stdin: 5\n"
        "  expected_stdout: 25\n"
        "- name: floats\n"
        "  stdin: |\n"
        "    1 3\n"
        "  expected_stdout: '0.333'\n"
        "  checker: {kind: float, abs_tol: 0.001}\n"
        "- stdin: ''\n"
        "  args: [-n, 3]\n"
        "  checker: tokens\n"
    )
    assert read_tests(path) == [
        TestCase(stdin="5", expected_stdout="25"),
        TestCase(name="floats", stdin="1 3\n", expected_stdout="0.333", checker=Float(abs_tol=0.001)),
        TestCase(args=["-n", "3"], checker=Tokens()),
    ]


def test_a_json_list_reads_as_tests(tmp_path: Path) -> None:
    path = tmp_path / "tests.json"
    path.write_text(json.dumps([{"stdin": "1", "expected_stdout": "1"}]))
    assert read_tests(path) == [TestCase(stdin="1", expected_stdout="1")]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("stdin: 1\n", "must hold a list of tests"),
        ("- {stdin: 1, expectd_stdout: 2}\n", "expectd_stdout"),
        ("- {checker: regex}\n", "kind"),
        ("- [unclosed\n", "is not valid YAML"),
    ],
)
def test_tests_that_do_not_read_say_why(tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / "tests.yaml"
    path.write_text(text)
    with pytest.raises(BadTests, match=said):
        read_tests(path)


def test_a_directory_of_in_and_out_files_reads_in_natural_order(tmp_path: Path) -> None:
    for name in ("1", "2", "10"):
        (tmp_path / f"{name}.in").write_text(f"in {name}\n")
    (tmp_path / "1.out").write_text("out 1\n")
    (tmp_path / "10.out").write_text("out 10\n")
    assert read_tests(tmp_path) == [
        TestCase(name="1", stdin="in 1\n", expected_stdout="out 1\n"),
        TestCase(name="2", stdin="in 2\n"),
        TestCase(name="10", stdin="in 10\n", expected_stdout="out 10\n"),
    ]


def test_an_out_file_without_its_in_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1.in").write_text("")
    (tmp_path / "2.out").write_text("")
    with pytest.raises(BadTests, match="2.out has no 2.in"):
        read_tests(tmp_path)


def test_natural_order_counts_numbers_as_numbers() -> None:
    assert sorted(["10", "2", "b1", "1", "a10", "a9"], key=natural) == ["1", "2", "10", "a9", "a10", "b1"]


# ---- `corral run --tests` against a scripted server -----------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[str, list[Any]]]:
    """Accepts any job and answers every read with FINISHED; records the bodies it was sent."""
    sent: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            sent.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self._answer(202, ACCEPTED)

        def do_GET(self) -> None:
            self._answer(200, FINISHED)

        def log_message(self, *_: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_address[1]}", sent
    http.shutdown()
    http.server_close()


def test_corral_run_with_a_tests_directory_prints_each_test_and_fails_on_a_wrong_answer(
    server: tuple[str, list[Any]], tmp_path: Path
) -> None:
    url, sent = server
    (tmp_path / "prog.py").write_text("print(int(input()) + 1)")
    cases = tmp_path / "cases"
    cases.mkdir()
    for name in ("1", "10", "11"):
        (cases / f"{name}.in").write_text(name)
        (cases / f"{name}.out").write_text(str(int(name) + 2))
    result = CliRunner().invoke(
        main, ["--server", url, "run", str(tmp_path / "prog.py"), "--tests", str(cases), "--stop-on-first-failure"]
    )
    assert result.exit_code == EXIT_TESTS_FAILED, result.output
    assert [test["name"] for test in sent[0]["tests"]] == ["1", "10", "11"]
    assert sent[0]["tests"][1] == {"name": "10", "stdin": "10", "expected_stdout": "12"}
    assert sent[0]["stop_on_first_failure"] is True
    lines = result.stdout.splitlines()
    assert lines[1] == "10  wrong_answer                5 ms      1024 KB  line 1: expected '5', got '4'"
    assert lines[-1] == "1/3 passed (1 failed, 1 skipped): wrong_answer"


def test_stop_on_first_failure_without_tests_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("")
    result = CliRunner().invoke(main, ["run", str(tmp_path / "prog.py"), "--stop-on-first-failure"])
    assert result.exit_code == 2
    assert "goes with --tests" in result.output
