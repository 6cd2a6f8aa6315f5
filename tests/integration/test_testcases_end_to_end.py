"""Test cases end to end: one program and its tests over HTTP, on the API and a worker from
their PEX files, a real redis-server and NsJail, with API keys on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from corral_testbed.services import Corral, corral_on_its_own_redis

SUM = "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << std::endl; }\n"
TESTS = [
    {"name": "small", "stdin": "1 2", "expected_stdout": "3"},
    {"stdin": "2 2", "expected_stdout": "4\n", "checker": {"kind": "exact"}},
    {"stdin": "0.5 1", "expected_stdout": "1.4", "checker": {"kind": "float", "abs_tol": 0.2}},
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    with corral_on_its_own_redis(tmp_path_factory, workers=1, auth=True) as running:
        yield running


def run(service: Corral, key: str, body: dict[str, Any]) -> httpx.Response:
    """The finished job (waiting as long as it takes on a loaded machine), or the refusal."""
    headers = {"Authorization": f"Bearer {key}"}
    answer = httpx.post(f"{service.url}/execute", params={"wait": 30}, json=body, headers=headers, timeout=60)
    for _ in range(10):
        if answer.status_code != 202:
            return answer
        answer = httpx.get(f"{service.url}/jobs/{answer.json()['job_id']}", params={"wait": 30}, headers=headers, timeout=60)
        if answer.json()["status"] not in ("PENDING", "RUNNING"):
            return answer
    return answer


def test_a_cpp_program_is_judged_test_by_test_and_compiled_once_per_key(service: Corral) -> None:
    alice, bob = service.create_key("alice"), service.create_key("bob")
    body = {"language": "cpp", "code": SUM, "tests": TESTS}
    first = run(service, alice, body)
    assert first.status_code == 200, first.text
    result = first.json()["result"]
    # cin reads "0.5" as 0 and stops: 0 + garbage is the program's bug, caught by the checker.
    assert [(test["name"], test["verdict"]) for test in result["tests"]] == [
        ("small", "ok"),
        ("2", "ok"),
        ("3", "wrong_answer"),
    ]
    assert result["verdict"] == "wrong_answer"
    assert result["summary"] == {"passed": 2, "failed": 1, "skipped": 0, "total": 3}
    assert result["compile"]["cached"] is False
    again = run(service, alice, body).json()["result"]
    theirs = run(service, bob, body).json()["result"]
    assert again["compile"]["cached"] is True
    assert theirs["compile"]["cached"] is False  # never another key's program
    assert [test["verdict"] for test in again["tests"]] == [test["verdict"] for test in result["tests"]]


def test_a_python_program_with_a_checker_program_and_a_stop_at_the_first_failure(service: Corral) -> None:
    key = service.create_key("carol")
    checker = {
        "kind": "program",
        "language": "python",
        "code": "import sys\nok = open('output.txt').read().split() == open('expected.txt').read().split()[::-1]\nprint('reversed' if ok else 'not reversed')\nsys.exit(42 if ok else 43)\n",
    }
    tests = [
        {"stdin": "a b c", "expected_stdout": "c b a", "checker": checker},
        {"stdin": "x y", "expected_stdout": "x y", "checker": checker},
        {"stdin": "p q", "expected_stdout": "q p", "checker": checker},
    ]
    body = {"code": "print(*input().split())", "tests": tests, "stop_on_first_failure": True}
    result = run(service, key, body).json()["result"]
    assert [(t["verdict"], t["checker_message"]) for t in result["tests"]] == [
        ("ok", "reversed"),
        ("wrong_answer", "not reversed"),
        ("skipped", ""),
    ]
    assert result["summary"] == {"passed": 1, "failed": 1, "skipped": 1, "total": 3}


def test_a_compile_error_runs_no_test(service: Corral) -> None:
    result = run(service, service.create_key("dave"), {"language": "cpp", "code": "int main() { nope(); }", "tests": TESTS}).json()["result"]
    assert result["verdict"] == "compile_error" and "nope" in result["compile_output"]
    assert [test["verdict"] for test in result["tests"]] == ["skipped"] * 3


def test_hostile_test_lists_are_refused_with_a_clear_4xx(service: Corral) -> None:
    key = service.create_key("eve")
    many = run(service, key, {"code": "print(1)", "tests": [{"stdin": ""}] * 10_000})
    assert many.status_code == 422 and "tests" in many.text
    huge = run(service, key, {"code": "print(1)", "tests": [{"expected_stdout": "x" * (100 << 20)}]})
    assert huge.status_code == 413
    unknown = run(service, key, {"code": "print(1)", "tests": [{"checker": {"kind": "regex"}}]})
    assert unknown.status_code == 422
    assert httpx.get(f"{service.url}/readyz").status_code == 200


def test_a_jobs_tests_count_against_its_keys_stored_bytes(service: Corral) -> None:
    # Each test books its outputs (16 KiB each of stdout, stderr and checker message at most):
    # 50 tests book over 2 MB, which a key with 1 MB may not hold.
    small = service.create_key("frugal", "--max-stored-bytes", "1000000")
    refused = run(service, small, {"code": "print(1)", "tests": [{"stdin": ""}] * 50})
    assert refused.status_code == 429 and "stored bytes" in refused.json()["detail"]
    assert run(service, small, {"code": "print(1)", "tests": [{"stdin": ""}] * 2}).status_code == 200
