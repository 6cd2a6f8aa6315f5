"""Piston v2 to the letter, as its own source (api/src/api/v2.js, job.js) answers: requests
exactly as Piston accepts them, answers compared field by field, and a fuzz of every field of
its execute route that must never reach a 5xx."""

from __future__ import annotations

import json
import math
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
from corral_core.ports import Runtime
from corral_http.compat import piston
from corral_http.compat.languages import offered
from corral_redis import RedisSettings
from corral_system.clock import SystemClock

Client = AsyncTestClient[Any]
# The keys of a stage in Piston's answer (job.js safe_call) and of a runtime (v2.js /runtimes).
STAGE_KEYS = {"stdout", "stderr", "code", "signal", "output", "memory", "message", "status", "cpu_time", "wall_time"}
RUNTIME_KEYS = {"language", "version", "aliases"}
MAXIMA = DEFAULT_LIMIT_POLICY.maxima


@pytest.fixture
def client(compat_client: Client) -> Client:
    return compat_client


def execute(**fields: object) -> dict[str, object]:
    return {"language": "python", "version": "3.x", "files": [{"content": "print(input())"}], **fields}


async def test_runtimes_carry_pistons_keys_and_no_runtime_key_without_alternatives(client: Client) -> None:
    runtimes = (await client.get("/api/v2/runtimes")).json()
    assert runtimes and all(set(runtime) == RUNTIME_KEYS for runtime in runtimes)
    assert runtimes[0] == {"language": "python", "version": "3.11.2", "aliases": ["py", "py3", "python3"]}


async def test_the_documented_example_request_is_answered_in_pistons_shape(client: Client) -> None:
    # docs/api-v2.md's example, for a runtime this server has: -1 memory limits and both timeouts.
    body = {
        "language": "py",
        "version": "3.11.2",
        "files": [{"name": "my_cool_code.py", "content": "import sys; print(sys.argv[1:])"}],
        "stdin": "",
        "args": ["1", "2", "3"],
        "compile_timeout": 10000,
        "run_timeout": 3000,
        "compile_memory_limit": -1,
        "run_memory_limit": -1,
    }
    response = await client.post("/api/v2/execute", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert list(answer) == ["run", "language", "version"]  # no compile stage: Piston omits the key
    assert set(answer["run"]) == STAGE_KEYS
    run = answer["run"]
    assert (run["stdout"], run["stderr"], run["output"]) == ("['1', '2', '3']\n", "", "['1', '2', '3']\n")
    assert (run["code"], run["signal"], run["message"], run["status"]) == (0, None, None, None)
    assert all(isinstance(run[key], int) for key in ("memory", "cpu_time", "wall_time"))


@pytest.mark.parametrize(("stdin", "read"), [("in", "'in\\n'"), ("", "'\\n'"), (None, "'\\n'"), ("a\n", "'a\\n'")])
async def test_stdin_ends_with_a_newline_as_piston_adds_one(client: Client, stdin: str | None, read: str) -> None:
    body = execute(files=[{"content": "import sys; print(repr(sys.stdin.read()))"}], stdin=stdin)
    assert (await client.post("/api/v2/execute", json=body)).json()["run"]["stdout"] == read + "\n"


async def test_numbers_as_arguments_are_written_as_javascript_writes_them(client: Client) -> None:
    body = execute(files=[{"content": "import sys; print(sys.argv[1:])"}], args=["a", 1, 2.0, 2.5])
    assert (await client.post("/api/v2/execute", json=body)).json()["run"]["stdout"] == "['a', '1', '2', '2.5']\n"


async def test_an_encoding_piston_does_not_know_is_written_as_utf8(client: Client) -> None:
    files = [{"content": "print(open('d.txt').read())"}, {"name": "d.txt", "content": "plain", "encoding": "latin1"}]
    assert (await client.post("/api/v2/execute", json=execute(files=files))).json()["run"]["stdout"] == "plain\n"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        # Piston checks memory limits, then timeouts, then CPU times; compile before run.
        ({"run_timeout": -5, "compile_memory_limit": "x"}, "If specified, compile_memory_limit must be a number"),
        ({"run_cpu_time": -5, "compile_timeout": []}, "If specified, compile_timeout must be a number"),
        ({"run_timeout": "0"}, "If specified, run_timeout must be a number"),
        ({"run_timeout": {}}, "If specified, run_timeout must be a number"),
        ({"run_timeout": True}, "If specified, run_timeout must be a number"),
        ({"run_timeout": -1}, "run_timeout must be non-negative"),
        ({"run_cpu_time": 1e308}, f"run_cpu_time cannot exceed the configured limit of {MAXIMA.cpu_time_ms}"),
        ({"run_memory_limit": 10**30}, f"run_memory_limit cannot exceed the configured limit of {MAXIMA.memory_mb << 20}"),
        ({"files": [{"content": "x", "encoding": "latin1"}]}, "files must include at least one utf8 encoded file"),
        ({"files": [None]}, "files[0].content is required as a string"),
        ({"files": "x"}, "files is required as an array"),
        ({"version": 3}, "version is required as a string"),
        ({"language": ""}, "language is required as a string"),
    ],
)
async def test_refusals_name_the_first_wrong_field_in_pistons_order(client: Client, fields: dict[str, object], message: str) -> None:
    response = await client.post("/api/v2/execute", json=execute(**fields))
    assert (response.status_code, response.json()) == (400, {"message": message})


@pytest.mark.parametrize("skipped", [0, None, False, ""])
async def test_a_limit_piston_skips_is_the_servers_default(client: Client, skipped: object) -> None:
    response = await client.post("/api/v2/execute", json=execute(stdin="x", run_timeout=skipped, run_memory_limit=skipped))
    assert response.status_code == 200 and response.json()["run"]["stdout"] == "x\n"


async def test_a_json_body_that_is_not_an_object_misses_the_language(client: Client) -> None:
    response = await client.post("/api/v2/execute", json=[1])
    assert (response.status_code, response.json()) == (400, {"message": "language is required as a string"})


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/api/v2/nothing", 404, "Not Found"),
        ("GET", "/api/v2/execute", 405, "Method Not Allowed"),
        ("POST", "/api/v2/packages", 415, "requests must be of type application/json"),
        ("DELETE", "/api/v2/packages", 415, "requests must be of type application/json"),
    ],
)
async def test_route_errors_are_pistons_message_bodies(client: Client, method: str, path: str, status: int, message: str) -> None:
    response = await client.request(method, path, content=b"x", headers={"content-type": "text/plain"})
    assert (response.status_code, response.json()) == (status, {"message": message})


def _done(language: str, result: RunResult) -> Job:
    job = Job(id="p", request=RunRequest(language=language, code="", limits=DEFAULT_LIMIT_POLICY.defaults), created_at=SystemClock().now())
    return jobs.complete(jobs.start(job, SystemClock().now()), result, SystemClock().now())


COMPILE_ERROR = RunResult(
    verdict=Verdict.COMPILE_ERROR,
    compile_output="main.c:1: error\n",
    compile=CompileResult(verdict=Verdict.RUNTIME_ERROR, exit_code=1, cpu_time_ms=40, wall_time_ms=50, memory_kb=3000),
)


def test_a_compile_error_is_answered_as_the_run_stage_too() -> None:
    chosen = offered([Runtime("c", "12.2.0", "main.c", compiled=True)])[0]
    answer = msgspec.to_builtins(piston.answer(_done("c", COMPILE_ERROR), chosen, "c", "*"))
    assert list(answer) == ["compile", "run", "language", "version"]
    assert answer["run"] == answer["compile"]
    assert answer["compile"] == {
        "stdout": "", "stderr": "main.c:1: error\n", "output": "main.c:1: error\n", "code": 1, "signal": None,
        "message": "Exited with error status 1", "status": "RE", "memory": 3_000_000, "cpu_time": 40, "wall_time": 50,
    }  # fmt: skip


def test_java_is_answered_in_one_stage_as_pistons_source_file_mode_runs_it() -> None:
    chosen = offered([Runtime("java", "17.0.9", "Main.java", compiled=True)])[0]
    failed = msgspec.to_builtins(piston.answer(_done("java", COMPILE_ERROR), chosen, "java", "*"))
    assert list(failed) == ["run", "language", "version"]
    assert (failed["run"]["stderr"], failed["run"]["code"]) == ("main.c:1: error\n", 1)
    ran = RunResult(verdict=Verdict.OK, exit_code=0, stdout="hi\n", memory_kb=7, compile=COMPILE_ERROR.compile)
    answer = msgspec.to_builtins(piston.answer(_done("java", ran), chosen, "java", "*"))
    assert list(answer) == ["run", "language", "version"] and answer["run"]["stdout"] == "hi\n"
    assert answer["run"]["memory"] == 7000


# ---- the fuzz -------------------------------------------------------------------------------

ODD_VALUES: list[object] = [
    None, True, False, 0, -1, 1, 1.5, -0.5, 1e308, -1e308, 10**30, -(10**30), "", "NaN", "Infinity", "-1",
    "x" * 100_000, "\ud800", "a\0b", "../../etc/passwd", [], [1], ["\ud800"], [None], [[]], {}, {"a": 1},
    {"content": 1}, [{"content": "print(1)", "encoding": 5}], [{"content": "x", "name": 5}],
    [{"content": "print(1)", "name": "../x"}], [{"content": "print(1)"}, {"content": "zz", "encoding": "base64"}],
    [{"content": "print(1)"}, {"content": "zz", "encoding": "hex", "name": "a"}],
]  # fmt: skip
# JSON has no NaN or Infinity: Piston's body parser refuses them, and so must this route.
NON_JSON_NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"1e400"]
FIELDS = [
    "language", "version", "files", "stdin", "args", "compile_timeout", "run_timeout", "compile_cpu_time",
    "run_cpu_time", "compile_memory_limit", "run_memory_limit",
]  # fmt: skip


async def test_every_field_of_execute_with_odd_values_is_never_a_server_error(client: Client) -> None:
    answered: dict[int, int] = {}
    for field in FIELDS:
        for value in ODD_VALUES:
            # json.dumps writes a lone surrogate as its \\ud800 escape, as a JavaScript client does.
            body = json.dumps(execute(**{field: value})).encode()
            response = await client.post("/api/v2/execute", content=body, headers={"content-type": "application/json"})
            assert response.status_code < 500, (field, value, response.text)
            answered[response.status_code] = answered.get(response.status_code, 0) + 1
            if response.status_code != 200:
                assert set(response.json()) == {"message"}, (field, value, response.text)
        for raw in NON_JSON_NUMBERS:
            body = json.dumps(execute(**{field: "@"})).encode().replace(b'"@"', raw)
            response = await client.post("/api/v2/execute", content=body, headers={"content-type": "application/json"})
            assert response.status_code == 400 and "malformed JSON" in response.json()["message"], (field, raw)
    assert answered.get(200, 0) > 0 and answered.get(400, 0) > 0
    assert not math.isnan(sum(answered.values()))


async def test_the_openapi_document_gives_each_compatible_route_its_own_bodies() -> None:
    container = ApiContainer(settings=ApiSettings(auth=True), redis_settings=RedisSettings())
    async with AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000") as client:
        document = (await client.get("/schema/openapi.json")).json()
    execute = document["paths"]["/api/v2/execute"]["post"]
    assert execute["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PistonExecuteIn"}
    for status in ("400", "401", "415", "429", "503", "504"):
        assert execute["responses"][status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PistonMessage"}
    submissions = document["paths"]["/judge0/submissions"]["post"]["responses"]
    assert "content" not in submissions["401"]  # Judge0's 401 has no body
    assert submissions["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Judge0Error"}
    assert submissions["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Judge0AttributeErrors"}
    assert set(document["components"]["schemas"]["PistonExecuteIn"]["required"]) == {"language", "version", "files"}
