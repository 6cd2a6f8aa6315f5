"""The Judge0 and Piston APIs over in-memory adapters and an in-process worker.

tests/integration/test_compat_end_to_end.py drives the same flows against the real stack.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from corral_core import job as jobs
from corral_core.job import Job, RunRequest, RunResult, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import Runtime
from corral_http.compat import piston, piston_request
from corral_http.compat.judge0 import schemas as judge0_schemas
from corral_http.compat.judge0 import views as judge0
from corral_http.compat.languages import offered
from corral_system.clock import SystemClock

Client = AsyncTestClient[Any]


@pytest.fixture
def client(compat_client: Client) -> Client:
    return compat_client


# ---- Judge0 ---------------------------------------------------------------------------------


async def test_judge0_create_with_wait_answers_201_with_the_default_fields(client: Client) -> None:
    response = await client.post(
        "/judge0/submissions?wait=true",
        json={"source_code": "print(input())", "language_id": 71, "stdin": "hi", "expected_output": "hi  \n\n"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert list(body) == list(judge0.DEFAULT_FIELDS)
    assert body["status"] == {"id": 3, "description": "Accepted"}
    assert body["stdout"] == "hi\n" and body["stderr"] is None and body["compile_output"] is None


async def test_judge0_create_without_wait_answers_only_the_token(client: Client) -> None:
    response = await client.post("/judge0/submissions", json={"source_code": "print(1)", "language_id": "71"})
    assert response.status_code == 201
    assert list(response.json()) == ["token"]
    token = response.json()["token"]
    for _ in range(100):
        read = (await client.get(f"/judge0/submissions/{token}?fields=status_id,stdout,language_id")).json()
        if read["status_id"] > 2:
            break
    assert read == {"status_id": 3, "stdout": "1\n", "language_id": 71}
    # A job read back carries no inputs (the store drops them): null, never an empty program.
    inputs = (await client.get(f"/judge0/submissions/{token}?fields=source_code,stdin")).json()
    assert inputs == {"source_code": None, "stdin": None}


async def test_judge0_wrong_answer_and_base64_both_ways(client: Client) -> None:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in {"source_code": "print('a')", "expected_output": "b"}.items()}
    response = await client.post("/judge0/submissions?wait=true&base64_encoded=true", json={**encoded, "language_id": 71})
    body = response.json()
    assert body["status"]["id"] == 4
    assert base64.b64decode(body["stdout"]) == b"a\n"


@pytest.mark.parametrize(
    ("submission", "errors"),
    [
        ({"language_id": 71}, {"source_code": ["can't be blank"]}),
        ({"source_code": "x"}, {"language_id": ["can't be blank"]}),
        ({"source_code": "x", "language_id": 150000}, {"language_id": ["language with id 150000 doesn't exist"]}),
        ({"source_code": "x", "language_id": 71, "enable_network": True}, {"enable_network": ["enabling network is not allowed"]}),
        ({"source_code": "x", "language_id": 71, "wall_time_limit": 1000}, {"wall_time_limit": ["must be less than or equal to 30"]}),
        ({"source_code": "x", "language_id": 71, "memory_limit": 1000}, {"memory_limit": ["must be greater than or equal to 2048"]}),
        ({"source_code": "x", "language_id": "seventy"}, {"language_id": ["is not a number"]}),
        # Known to Judge0, but no worker runs it.
        ({"source_code": "x", "language_id": 50}, {"language_id": ["language with id 50 doesn't exist"]}),
    ],
)
async def test_judge0_refuses_as_judge0_does(client: Client, submission: dict[str, object], errors: dict[str, list[str]]) -> None:
    response = await client.post("/judge0/submissions", json=submission)
    assert response.status_code == 422
    assert response.json() == errors


async def test_judge0_limits_are_converted_to_corral_units(client: Client) -> None:
    response = await client.post(
        "/judge0/submissions?wait=true&fields=cpu_time_limit,wall_time_limit,memory_limit,max_file_size",
        json={"source_code": "1", "language_id": 71, "cpu_time_limit": 1.5, "wall_time_limit": 3, "memory_limit": 100_000, "max_file_size": 64},
    )
    # 100,000 KB is 97.7 MB: rounded up, never down.
    assert response.json() == {"cpu_time_limit": "1.5", "wall_time_limit": "3.0", "memory_limit": 98 * 1024, "max_file_size": 64}


async def test_judge0_invalid_fields_and_batch_bounds_are_400(client: Client) -> None:
    response = await client.get("/judge0/submissions/abc?fields=stdout,nope,zap")
    assert (response.status_code, response.json()) == (400, {"error": "invalid fields: [nope, zap]"})
    response = await client.post("/judge0/submissions/batch", json={"submissions": []})
    assert (response.status_code, response.json()) == (400, {"error": "there should be at least one submission in a batch"})


async def test_judge0_batch_answers_each_submission_in_order(client: Client) -> None:
    response = await client.post(
        "/judge0/submissions/batch",
        json={"submissions": [{"source_code": "print(5)", "language_id": 71}, {"source_code": "", "language_id": 71}]},
    )
    assert response.status_code == 201
    first, second = response.json()
    assert second == {"source_code": ["can't be blank"]}
    tokens = f"{first['token']},AAAAAAAAAAAAAAAAAAAAAA"
    read = await client.get(f"/judge0/submissions/batch?tokens={tokens}&fields=token")
    assert read.json() == {"submissions": [{"token": first["token"]}, None]}


async def test_judge0_delete_of_an_unknown_submission_is_404(client: Client) -> None:
    response = await client.delete("/judge0/submissions/AAAAAAAAAAAAAAAAAAAAAA")
    assert (response.status_code, response.json()) == (404, {"error": "Not Found"})


async def test_judge0_unknown_submission_is_404(client: Client) -> None:
    response = await client.get("/judge0/submissions/AAAAAAAAAAAAAAAAAAAAAA")
    assert response.status_code == 404


async def test_judge0_languages_statuses_and_config(client: Client) -> None:
    assert (await client.get("/judge0/languages")).json() == [{"id": 71, "name": "Python (3.11.2)"}]
    language = (await client.get("/judge0/languages/71")).json()
    assert language["source_file"] == "main.py" and language["compile_cmd"] is None
    assert (await client.get("/judge0/languages/50")).status_code == 404
    statuses = (await client.get("/judge0/statuses")).json()
    assert [s["id"] for s in statuses] == list(range(1, 15))
    config = (await client.get("/judge0/config_info")).json()
    assert config["max_cpu_time_limit"] == DEFAULT_LIMIT_POLICY.maxima.cpu_time_ms / 1000
    assert config["enable_network"] is False and config["enable_submission_delete"] is True
    assert (await client.get("/judge0/about")).json()["version"] == "1.13.1"


def _finished(verdict: Verdict, **result: object) -> Job:
    job = Job(
        id="t",
        request=RunRequest(language="python", code="", limits=DEFAULT_LIMIT_POLICY.defaults),
        created_at=SystemClock().now(),
    )
    started = jobs.start(job, SystemClock().now())
    return jobs.complete(started, RunResult(verdict=verdict, **result), SystemClock().now())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("verdict", "result", "status", "message"),
    [
        (Verdict.OK, {"exit_code": 0}, 3, None),
        (Verdict.RUNTIME_ERROR, {"exit_code": 1}, 11, "Exited with error status 1"),
        (Verdict.RUNTIME_ERROR, {"signal": 11}, 7, "Caught fatal signal 11"),
        (Verdict.RUNTIME_ERROR, {"signal": 8}, 9, "Caught fatal signal 8"),
        (Verdict.RUNTIME_ERROR, {"signal": 6}, 10, "Caught fatal signal 6"),
        (Verdict.RUNTIME_ERROR, {"signal": 9}, 12, "Caught fatal signal 9"),
        (Verdict.TIME_LIMIT_EXCEEDED, {}, 5, "Time limit exceeded"),
        (Verdict.MEMORY_LIMIT_EXCEEDED, {}, 12, "Memory limit exceeded"),
        (Verdict.OUTPUT_LIMIT_EXCEEDED, {}, 8, "Output limit exceeded"),
    ],
)
def test_judge0_status_of_every_verdict(verdict: Verdict, result: dict[str, object], status: int, message: str | None) -> None:
    found, said = judge0.status_of(_finished(verdict, **result))
    assert (found.id, said) == (status, message)


@pytest.mark.parametrize("started", [False, True], ids=["pending", "running"])
def test_judge0_reads_a_cancelled_job_as_internal_error_cancelled(started: bool) -> None:
    job = _cancelled(started)
    assert judge0.status_of(job) == (judge0_schemas.INTERNAL_ERROR, judge0_schemas.CANCELLED_MESSAGE)
    view = judge0.view(job, ("status", "message", "stdout", "time"), base64_encoded=False, names={})
    assert view == {
        "status": {"id": 13, "description": "Internal Error"},
        "message": judge0_schemas.CANCELLED_MESSAGE,
        "stdout": None,
        "time": None,
    }


def _cancelled(started: bool) -> Job:
    job = Job(
        id="c", request=RunRequest(language="python", code="", limits=DEFAULT_LIMIT_POLICY.defaults), created_at=SystemClock().now()
    )
    if started:
        job = jobs.start(job, SystemClock().now())
    return jobs.cancel(job, SystemClock().now())


# ---- Piston ---------------------------------------------------------------------------------


def test_piston_answers_a_cancelled_job_with_409_and_says_so() -> None:
    chosen = offered([Runtime("python", "3.11.2", "main.py")])[0]
    with pytest.raises(piston_request.PistonError) as raised:
        piston.answer(_cancelled(started=True), chosen, "python", "3.x")
    assert raised.value.status_code == 409
    assert raised.value.message == "job c was cancelled (DELETE /jobs/c) before it finished"


async def test_piston_runtimes_and_packages(client: Client) -> None:
    assert (await client.get("/api/v2/runtimes")).json() == [
        {"language": "python", "version": "3.11.2", "aliases": ["py", "py3", "python3"]}
    ]
    assert (await client.get("/api/v2/packages")).json() == [{"language": "python", "language_version": "3.11.2", "installed": True}]
    refused = await client.post("/api/v2/packages", json={"language": "bash", "version": "5"})
    assert refused.status_code == 405 and "read-only" in refused.json()["message"]


async def test_piston_execute_runs_the_first_file_with_the_others_beside_it(client: Client) -> None:
    response = await client.post(
        "/api/v2/execute",
        json={
            "language": "py",
            "version": "3.x",
            "files": [
                {"name": "prog.py", "content": "import sys; print(open('data.txt').read(), sys.argv[1:], input())"},
                {"name": "data.txt", "content": base64.b64encode(b"DATA").decode(), "encoding": "base64"},
            ],
            "stdin": "in",
            "args": ["1", "2"],
            "run_timeout": 3000,
            "run_memory_limit": 100_000_000,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["language"], body["version"]) == ("python", "3.11.2")
    assert "compile" not in body
    run = body["run"]
    assert run["stdout"] == run["output"] == "DATA ['1', '2'] in\n"
    assert (run["code"], run["signal"], run["status"], run["message"]) == (0, None, None, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"version": "*", "files": []}, "language is required as a string"),
        ({"language": "python", "files": []}, "version is required as a string"),
        ({"language": "python", "version": "*"}, "files is required as an array"),
        ({"language": "python", "version": "*", "files": [{}]}, "files[0].content is required as a string"),
        ({"language": "cobol", "version": "*", "files": [{"content": ""}]}, "cobol-* runtime is unknown"),
        ({"language": "python", "version": "2.7", "files": [{"content": ""}]}, "python-2.7 runtime is unknown"),
        (
            {"language": "python", "version": "*", "files": [{"content": "", "encoding": "hex"}]},
            "files must include at least one utf8 encoded file",
        ),
        (
            {"language": "python", "version": "*", "files": [{"content": ""}], "run_timeout": 10**9},
            f"run_timeout cannot exceed the configured limit of {DEFAULT_LIMIT_POLICY.maxima.wall_time_ms}",
        ),
        (
            {"language": "python", "version": "*", "files": [{"content": ""}], "run_memory_limit": "lots"},
            "If specified, run_memory_limit must be a number",
        ),
    ],
)
async def test_piston_refuses_as_piston_does(client: Client, body: dict[str, object], message: str) -> None:
    response = await client.post("/api/v2/execute", json=body)
    assert (response.status_code, response.json()) == (400, {"message": message})


async def test_piston_wants_json(client: Client) -> None:
    response = await client.post("/api/v2/execute", content=b"{}", headers={"content-type": "text/plain"})
    assert (response.status_code, response.json()) == (415, {"message": "requests must be of type application/json"})



@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/judge0/submissions", b'{"source_code": "\xff", "language_id": 71}'),
        ("/judge0/submissions", b'{"source_code": "1", "language_id": 71, "x": ' + b"[" * 100_000),
        ("/judge0/submissions", b'{"source_code": '),
        ("/judge0/submissions/batch", b'{"submissions": [{"source_code": "\xff", "language_id": 71}]}'),
        ("/judge0/submissions/batch", b'{"submissions": ' + b"[" * 100_000),
        ("/api/v2/execute", b'{"language": "\xff"}'),
        ("/api/v2/execute", b"[" * 100_000),
        ("/api/v2/execute", b'{"language": '),
    ],
)
async def test_compat_bodies_that_are_not_well_formed_json_are_400(client: Client, path: str, body: bytes) -> None:
    response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "malformed JSON" in response.text
