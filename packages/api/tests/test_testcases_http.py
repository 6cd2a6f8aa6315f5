"""Test cases over HTTP: what the API accepts, refuses and shows of a job's tests.

Over in-memory adapters and no worker: running and judging tests is the sandbox's (its suites);
here the HTTP layer's part, the request schema, the refusals and the views mapped from a
RunResult built by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_core import job as jobs
from corral_core.job import CompileResult, Job, RunRequest, RunResult, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import Runtime, WorkerInfo
from corral_core.testcases import CheckerProgram, Floats, Lines, TestCase, TestResult, TestVerdict, Tokens
from corral_http.compat import piston
from corral_http.compat.judge0 import views as judge0
from corral_http.schemas import JobView
from corral_memory.container import InMemoryStorage
from corral_memory.jobs import InMemoryJobs
from corral_redis import RedisSettings
from corral_system.clock import SystemClock

Client = AsyncTestClient[Any]
SMALL = ApiSettings(auth=False, max_code_bytes=1000, max_stdin_bytes=1000, max_files_bytes=1000, max_tests=10, max_tests_bytes=100_000)


class Api(msgspec.Struct):
    client: Client
    state: InMemoryJobs


async def _api(settings: ApiSettings) -> AsyncIterator[Api]:
    clock = SystemClock()
    state = InMemoryJobs(clock, max_unfinished=100)
    storage = InMemoryStorage(clock=clock, client=state)
    runtime = Runtime("python", "3.11.2", "main.py")
    await storage.registry().heartbeat(WorkerInfo("test-worker", clock.now(), (runtime,)), 60_000)
    container = ApiContainer(settings=settings, redis_settings=RedisSettings(max_unfinished=100))
    container.storage.override(storage)
    async with AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000") as client:
        yield Api(client, storage.client())


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async for made in _api(ApiSettings(auth=False)):
        yield made


@pytest.fixture
async def small() -> AsyncIterator[Api]:
    async for made in _api(SMALL):
        yield made


async def test_tests_reach_the_job_as_the_domain_s_test_cases(api: Api) -> None:
    body = {
        "code": "print(input())",
        "stop_on_first_failure": True,
        "tests": [
            {"stdin": "1\n", "expected_stdout": "1\n"},
            {"name": "big", "stdin": "2", "args": ["-v"], "expected_stdout": "2", "checker": {"kind": "tokens"}},
            {"stdin": "", "expected_stdout": "0.5", "checker": {"kind": "float", "abs_tol": 0.01}},
            {"expected_stdout": "x", "checker": {"kind": "program", "language": "python", "code": "exit(0)"}},
            {"expected_stdout": "x", "checker": {"kind": "lines"}},
        ],
    }
    response = await api.client.post("/execute", json=body)
    assert response.status_code == 202, response.text
    request = api.state.records[response.json()["job_id"]].request
    assert request.stop_on_first_failure is True
    assert request.tests == (
        TestCase(stdin="1\n", expected_stdout="1\n"),
        TestCase(name="big", stdin="2", args=("-v",), expected_stdout="2", checker=Tokens()),
        TestCase(expected_stdout="0.5", checker=Floats(abs_tol=0.01, rel_tol=1e-6)),
        TestCase(expected_stdout="x", checker=CheckerProgram(language="python", code="exit(0)")),
        TestCase(expected_stdout="x", checker=Lines()),
    )


async def test_ten_thousand_tests_are_422_naming_tests_and_nothing_is_stored(api: Api) -> None:
    response = await api.client.post("/execute", json={"code": "", "tests": [{"stdin": ""}] * 10_000})
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"field": "tests", "message": "more than 256 tests"}]
    assert api.state.records == {}


async def test_one_test_past_the_configured_maximum_is_422(small: Api) -> None:
    response = await small.client.post("/execute", json={"code": "", "tests": [{}] * 11})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "tests", "message": "more than 10 tests"}]
    assert (await small.client.post("/execute", json={"code": "", "tests": [{}] * 10})).status_code == 202


async def test_tests_past_their_bytes_are_413_naming_tests(small: Api) -> None:
    tests = [{"stdin": "x" * 50_000, "expected_stdout": "y" * 50_001}]
    response = await small.client.post("/execute", json={"code": "", "tests": tests})
    assert response.status_code == 413, response.text
    assert response.json()["errors"] == [{"field": "tests", "message": "larger than 100000 bytes in all"}]
    assert small.state.records == {}


async def test_a_100_mb_expected_output_is_413_before_it_is_read(api: Api) -> None:
    body = b'{"code": "", "tests": [{"expected_stdout": "' + b"x" * 100_000_000 + b'"}]}'
    response = await api.client.post("/execute", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert api.state.records == {}


async def test_a_request_at_every_maximum_is_not_refused_for_its_size(small: Api) -> None:
    # Quotes take two bytes each in JSON: the body limit must leave room for the escaped text.
    quote = '"'
    body = {
        "code": quote * 1000,
        "stdin": quote * 1000,
        "files": [{"name": "a.txt", "content": quote * 1000}],
        "tests": [{"name": quote * 10, "stdin": quote * 5000, "expected_stdout": quote * 4990, "args": []}] * 10,
    }
    response = await small.client.post("/execute", json=body)
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("test", "field"),
    [
        ({"checker": {"kind": "regex"}}, "tests[0].checker"),
        ({"checker": {}}, "tests[0].checker"),
        ({"checker": {"kind": "float", "abs_tol": -1}}, "tests[0].checker.abs_tol"),
        ({"checker": {"kind": "float", "rel_tol": -0.5}}, "tests[0].checker.rel_tol"),
        ({"checker": {"kind": "float", "abs_tol": "NaN"}}, "tests[0].checker.abs_tol"),
        ({"checker": {"kind": "float", "abs_tol": 1e300}}, "tests[0].checker.abs_tol"),
        ({"checker": {"kind": "exact", "surprise": 1}}, "surprise"),
        ({"checker": {"kind": "program", "language": "python"}}, "code"),
        ({"stdin": 5}, "tests[0].stdin"),
        ({"expected_stdout": ["a"]}, "tests[0].expected_stdout"),
        ({"surprise": 1}, "surprise"),
        ({"name": "n" * 129}, "tests[0].name"),
        ({"name": "a\nb"}, "tests[0].name"),
        ({"args": ["a\u0000b"]}, "tests[0].args"),
    ],
)
async def test_an_invalid_test_is_422_naming_the_field(api: Api, test: dict[str, object], field: str) -> None:
    response = await api.client.post("/execute", json={"code": "", "tests": [test]})
    assert response.status_code == 422, response.text
    assert field in response.text
    assert api.state.records == {}


async def test_a_nan_tolerance_is_refused_whichever_way_it_is_written(api: Api) -> None:
    # JSON has no NaN: as the bare word Python's json writes, the body is not JSON at all (400).
    body = b'{"code": "", "tests": [{"checker": {"kind": "float", "abs_tol": NaN}}]}'
    response = await api.client.post("/execute", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "not valid JSON" in response.json()["detail"]
    assert api.state.records == {}


async def test_a_checker_program_in_a_language_not_offered_is_422_naming_it(api: Api) -> None:
    test = {"expected_stdout": "", "checker": {"kind": "program", "language": "cobol", "code": ""}}
    response = await api.client.post("/execute", json={"code": "", "tests": [{}, test]})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "tests[1].checker.language", "message": "'cobol' is not offered; try one of ['python']"}
    ]


async def test_the_openapi_document_states_the_tests_maximum_and_the_checkers(small: Api) -> None:
    document = (await small.client.get("/schema/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert schemas["ExecuteIn"]["properties"]["tests"]["maxItems"] == 10
    assert "stop_on_first_failure" in schemas["ExecuteIn"]["properties"]
    assert set(schemas["TestIn"]["properties"]) == {"name", "stdin", "args", "expected_stdout", "checker"}
    kinds = {schemas[name]["properties"]["kind"]["const"] for name in ("ExactIn", "LinesIn", "TokensIn", "FloatIn", "ProgramIn")}
    assert kinds == {"exact", "lines", "tokens", "float", "program"}
    assert schemas["FloatIn"]["properties"]["abs_tol"]["minimum"] == 0


# ---- the views ------------------------------------------------------------------------------


def _finished(result: RunResult) -> Job:
    clock = SystemClock()
    job = Job(id="t", request=RunRequest(language="cpp", code="", limits=DEFAULT_LIMIT_POLICY.defaults), created_at=clock.now())
    return jobs.complete(jobs.start(job, clock.now()), result, clock.now())


def _as_json(job: Job) -> Any:
    return msgspec.json.decode(msgspec.json.encode(JobView.of(job)))


TESTS = (
    TestResult(name="1", verdict=TestVerdict.OK, exit_code=0, cpu_time_ms=3, wall_time_ms=5, memory_kb=900, stdout="1\n"),
    TestResult(
        name="big",
        verdict=TestVerdict.WRONG_ANSWER,
        exit_code=0,
        cpu_time_ms=4,
        wall_time_ms=6,
        memory_kb=1000,
        stdout="3" * 10,
        stdout_truncated=True,
        checker_message="line 1: expected '2', got '3333333333'",
    ),
    TestResult(name="3", verdict=TestVerdict.SKIPPED),
)


def test_a_result_with_tests_shows_each_test_and_a_summary() -> None:
    compiled = CompileResult(verdict=Verdict.OK, exit_code=0, cpu_time_ms=300, wall_time_ms=350, memory_kb=50_000, cached=True)
    result = RunResult(verdict=Verdict.WRONG_ANSWER, cpu_time_ms=7, wall_time_ms=11, memory_kb=1000, compile=compiled, tests=TESTS)
    body = _as_json(_finished(result))["result"]
    assert body["verdict"] == "wrong_answer"
    assert body["compile"] == {
        "verdict": "ok", "exit_code": 0, "signal": None, "cpu_time_ms": 300, "wall_time_ms": 350, "memory_kb": 50_000, "cached": True,
    }  # fmt: skip
    assert body["summary"] == {"passed": 1, "failed": 1, "skipped": 1, "total": 3}
    assert body["tests"][1] == {
        "name": "big",
        "verdict": "wrong_answer",
        "exit_code": 0,
        "signal": None,
        "cpu_time_ms": 4,
        "wall_time_ms": 6,
        "memory_kb": 1000,
        "stdout": "3333333333",
        "stdout_truncated": True,
        "stderr": "",
        "stderr_truncated": False,
        "checker_message": "line 1: expected '2', got '3333333333'",
    }
    assert [(test["name"], test["verdict"]) for test in body["tests"]] == [("1", "ok"), ("big", "wrong_answer"), ("3", "skipped")]


def test_a_result_without_tests_has_neither_tests_nor_summary() -> None:
    body = _as_json(_finished(RunResult(verdict=Verdict.OK, exit_code=0, stdout="hi\n")))["result"]
    assert list(body) == [
        "verdict", "exit_code", "signal", "stdout", "stderr", "stdout_truncated", "stderr_truncated",
        "cpu_time_ms", "wall_time_ms", "memory_kb", "sandbox_start",
    ]  # fmt: skip


def test_a_fresh_compile_says_it_was_not_cached() -> None:
    result = RunResult(verdict=Verdict.OK, exit_code=0, compile=CompileResult(verdict=Verdict.OK, exit_code=0))
    assert _as_json(_finished(result))["result"]["compile"]["cached"] is False


# ---- Judge0 and Piston: a job with tests, read through them ---------------------------------


def test_judge0_reads_a_wrong_answer_as_4_and_a_checker_error_as_an_internal_error() -> None:
    wrong, said = judge0.status_of(_finished(RunResult(verdict=Verdict.WRONG_ANSWER, tests=TESTS)))
    assert (wrong.id, wrong.description, said) == (4, "Wrong Answer", None)
    failed, said = judge0.status_of(_finished(RunResult(verdict=Verdict.CHECKER_ERROR)))
    assert (failed.id, failed.description) == (13, "Internal Error")
    assert said == "Checker error: a test's checker program failed"


def test_piston_reads_a_wrong_answer_and_a_checker_error_plainly() -> None:
    wrong = piston.stage_of(RunResult(verdict=Verdict.WRONG_ANSWER, exit_code=0))
    assert (wrong.code, wrong.signal, wrong.status, wrong.message) == (0, None, None, "Wrong answer")
    failed = piston.stage_of(RunResult(verdict=Verdict.CHECKER_ERROR, exit_code=0))
    assert (failed.status, failed.message) == ("XX", "Checker error: a test's checker program failed")
