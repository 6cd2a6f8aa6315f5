"""The Judge0 and Piston APIs and the `corral` command line, against the real stack.

The API and worker PEX files, a real redis-server and real NsJail jails; requests are made as
those APIs' clients make them, and `corral` runs as its PEX in a subprocess with pipes (so it
must show no spinner).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral_testbed.services import Corral, corral_on_its_own_redis

CORRAL_PEX = Path("packages.client/corral.pex")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    with corral_on_its_own_redis(tmp_path_factory, workers=2) as running:
        yield running


# ---- Judge0 ---------------------------------------------------------------------------------


def judge0(service: Corral, method: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.request(method, f"{service.url}/judge0{path}", timeout=60, **kwargs)  # type: ignore[arg-type]


def test_judge0_create_and_wait_judges_against_the_expected_output(service: Corral) -> None:
    response = judge0(
        service,
        "POST",
        "/submissions?wait=true",
        json={"source_code": "print(input().upper())", "language_id": 71, "stdin": "judge0", "expected_output": "JUDGE0"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == {"id": 3, "description": "Accepted"}
    assert body["stdout"] == "JUDGE0\n"
    assert float(body["time"]) >= 0 and body["memory"] > 0


def test_judge0_create_then_poll_with_base64_and_fields(service: Corral) -> None:
    code = base64.b64encode(b"import sys; sys.stdout.buffer.write(b'\\xff\\n'); sys.exit(3)").decode()
    created = judge0(service, "POST", "/submissions?base64_encoded=true", json={"source_code": code, "language_id": 71})
    assert created.status_code == 201 and list(created.json()) == ["token"]
    token = created.json()["token"]
    read = {}
    for _ in range(100):
        read = judge0(service, "GET", f"/submissions/{token}?base64_encoded=true&fields=status,exit_code,stdout,message").json()
        if read["status"]["id"] > 2:
            break
    assert read["status"] == {"id": 11, "description": "Runtime Error (NZEC)"}
    assert read["exit_code"] == 3
    assert base64.b64decode(read["message"]) == b"Exited with error status 3"
    assert base64.b64decode(read["stdout"]).endswith(b"\n")


@pytest.mark.parametrize(
    ("source", "limits", "status", "message"),
    [
        ("while True: pass", {"cpu_time_limit": 0.5, "wall_time_limit": 3}, 5, "Time limit exceeded"),
        ("b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])", {"memory_limit": 65536}, 12, "Memory limit exceeded"),
        # A real fault: the program may be its namespace's pid 1, which ignores a kill(2) of SIGSEGV.
        ("import ctypes; ctypes.string_at(0)", {}, 7, "Caught fatal signal 11"),
    ],
)
def test_judge0_statuses_for_limits_and_signals(
    service: Corral, source: str, limits: dict[str, float], status: int, message: str
) -> None:
    body = judge0(
        service, "POST", "/submissions?wait=true", json={"source_code": source, "language_id": 71, **limits}
    ).json()
    assert (body["status"]["id"], body["message"]) == (status, message)


def test_judge0_batch_create_and_read(service: Corral) -> None:
    created = judge0(
        service,
        "POST",
        "/submissions/batch",
        json={"submissions": [{"source_code": f"print({n})", "language_id": 71} for n in range(3)] + [{"language_id": 71}]},
    )
    assert created.status_code == 201
    answers = created.json()
    assert answers[3] == {"source_code": ["can't be blank"]}
    tokens = ",".join(answer["token"] for answer in answers[:3])
    read: list[dict[str, object]] = []
    for _ in range(100):
        read = judge0(service, "GET", "/submissions/batch", params={"tokens": tokens, "fields": "token,stdout,status_id"}).json()[
            "submissions"
        ]
        if all(item["status_id"] == 3 for item in read):
            break
    assert [item["stdout"] for item in read] == ["0\n", "1\n", "2\n"]


def offered(service: Corral) -> list[str]:
    """The languages the workers offer: Python always, the others where installed."""
    return sorted(runtime["language"] for runtime in httpx.get(f"{service.url}/runtimes").json())


# Judge0 CE's ids of the languages a worker may offer (corral_http.compat.languages).
JUDGE0_IDS = {"bash": 46, "c": 50, "cpp": 54, "go": 60, "java": 62, "javascript": 63, "multifile": 89, "python": 71, "rust": 73}
# Offered by Corral, with no Judge0 CE language to stand for it: not in Judge0's list.
NO_JUDGE0_ID = {"python-sci"}


def test_judge0_languages_statuses_about_config(service: Corral) -> None:
    languages = judge0(service, "GET", "/languages").json()
    assert "python" in offered(service)
    assert sorted(language["id"] for language in languages) == sorted(JUDGE0_IDS[name] for name in offered(service) if name not in NO_JUDGE0_ID)
    python = next(language for language in languages if language["id"] == 71)
    assert python["name"].startswith("Python (3.")
    assert judge0(service, "GET", "/languages/71").json()["source_file"]
    assert len(judge0(service, "GET", "/statuses").json()) == 14
    assert judge0(service, "GET", "/about").json()["version"] == "1.13.1"
    assert judge0(service, "GET", "/config_info").json()["enable_wait_result"] is True


def test_judge0_refusals(service: Corral) -> None:
    network = judge0(service, "POST", "/submissions", json={"source_code": "1", "language_id": 71, "enable_network": True})
    assert (network.status_code, network.json()) == (422, {"enable_network": ["enabling network is not allowed"]})
    delete = judge0(service, "DELETE", "/submissions/AAAAAAAAAAAAAAAAAAAAAA")
    assert (delete.status_code, delete.json()) == (404, {"error": "Not Found"})


# ---- Piston ---------------------------------------------------------------------------------


def piston(service: Corral, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{service.url}/api/v2/execute", json=body, timeout=60)


def test_piston_runtimes(service: Corral) -> None:
    runtimes = httpx.get(f"{service.url}/api/v2/runtimes").json()
    assert sorted(runtime["language"] for runtime in runtimes) == offered(service)
    python = next(runtime for runtime in runtimes if runtime["language"] == "python")
    assert "py" in python["aliases"]


def test_piston_execute_python(service: Corral) -> None:
    response = piston(
        service,
        {
            "language": "python",
            "version": "3",
            "files": [{"name": "main.py", "content": "import sys; print(sys.argv[1:], input()); print('e', file=sys.stderr)"}],
            "stdin": "x",
            "args": ["a"],
        },
    )
    assert response.status_code == 200, response.text
    run = response.json()["run"]
    assert (run["stdout"], run["stderr"], run["code"], run["signal"]) == ("['a'] x\n", "e\n", 0, None)


def test_piston_execute_c_compiles_then_runs(service: Corral) -> None:
    code = '#include <stdio.h>\nint main(int argc, char **argv) { char s[16]; scanf("%15s", s); printf("%s %s\\n", argv[1], s); return 0; }\n'
    response = piston(service, {"language": "c", "version": "*", "files": [{"name": "main.c", "content": code}], "stdin": "in", "args": ["arg"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["compile"]["code"], body["compile"]["status"]) == (0, None)
    assert (body["run"]["stdout"], body["run"]["code"]) == ("arg in\n", 0)


def test_piston_a_compile_error_is_reported_in_the_compile_stage(service: Corral) -> None:
    broken = piston(service, {"language": "c", "version": "*", "files": [{"content": "int main(void) { return nope; }"}]})
    assert broken.status_code == 200, broken.text
    stage = broken.json()["compile"]
    assert stage["code"] not in (0, None) and stage["status"] == "RE"
    assert "nope" in stage["stderr"] and stage["output"] == stage["stderr"]
    # Nothing ran: Piston answers the compile stage as the run stage too.
    assert broken.json()["run"] == stage
    slow = piston(
        service,
        {"language": "c", "version": "*", "files": [{"content": "int main(void) { return 0; }"}], "compile_timeout": 10**9},
    )
    assert slow.status_code == 400 and "compile_timeout cannot exceed" in slow.json()["message"]


def test_piston_limits(service: Corral) -> None:
    slow = piston(service, {"language": "py", "version": "*", "files": [{"content": "while True: pass"}], "run_cpu_time": 500})
    assert (slow.json()["run"]["status"], slow.json()["run"]["signal"]) == ("TO", "SIGKILL")
    greedy = piston(
        service,
        {
            "language": "py",
            "version": "*",
            "files": [{"content": "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])"}],
            "run_memory_limit": 64 * 2**20,
        },
    )
    assert greedy.json()["run"]["message"] == "Memory limit exceeded"
    refused = piston(service, {"language": "py", "version": "*", "files": [{"content": ""}], "run_timeout": 10**9})
    assert refused.status_code == 400 and "run_timeout cannot exceed" in refused.json()["message"]


# ---- the corral command line ----------------------------------------------------------------


def corral_cli(service: Corral, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    if not CORRAL_PEX.exists():
        raise FileNotFoundError(f"{CORRAL_PEX} is missing: run the integration tests through `./pants test`")
    return subprocess.run(
        [sys.executable, str(CORRAL_PEX), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        # Not the test runner's own PEX variables: the corral PEX would warn about them.
        env={**{k: v for k, v in os.environ.items() if not k.startswith("__PEX")}, "CORRAL_URL": service.url},
    )


def test_corral_run_prints_the_programs_streams_and_exits_with_its_code(service: Corral, tmp_path: Path) -> None:
    program = tmp_path / "hello.py"
    program.write_text("import sys\nprint('hello', sys.argv[1:], input())\nprint('oops', file=sys.stderr)\nsys.exit(7)\n")
    data = tmp_path / "in.txt"
    data.write_text("world\n")
    done = corral_cli(service, "run", str(program), "--stdin", str(data), "--arg", "a", "--arg", "b")
    assert done.returncode == 7, done.stderr
    assert done.stdout == "hello ['a', 'b'] world\n"
    # Piped: the program's stderr and nothing else (no spinner, no carriage returns).
    assert done.stderr == "oops\n"


def test_corral_run_reports_a_limit_with_its_own_exit_code(service: Corral, tmp_path: Path) -> None:
    program = tmp_path / "spin.py"
    program.write_text("while True: pass\n")
    done = corral_cli(service, "run", str(program), "--time", "500ms")
    assert done.returncode == 124
    assert done.stderr.startswith("corral: time limit exceeded")


def test_corral_run_json_runtimes_and_job(service: Corral, tmp_path: Path) -> None:
    program = tmp_path / "one.py"
    program.write_text("print(1)\n")
    done = corral_cli(service, "run", str(program), "--json", "--memory", "64M")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["result"]["stdout"] == "1\n"
    again = corral_cli(service, "job", job["job_id"], "--wait")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["job_id"] == job["job_id"]
    listed = corral_cli(service, "runtimes").stdout.splitlines()
    assert [line.split("\t")[0] for line in listed] == offered(service)
    assert any(line.startswith("python\t3.") for line in listed)


def test_corral_job_and_cancel_take_an_id_that_begins_with_a_dash(service: Corral) -> None:
    # One id in 64 began with "-" (CI once drew one): it is an id, not an unknown option.
    for command in (["job", "-7ZrV1ZuKGeP8T8iSvjlm9Q", "--wait"], ["cancel", "-7ZrV1ZuKGeP8T8iSvjlm9Q"]):
        done = corral_cli(service, *command)
        assert done.returncode == 65, done.stderr
        assert "-7ZrV1ZuKGeP8T8iSvjlm9Q" in done.stderr and "No such option" not in done.stderr


def test_corral_run_refuses_an_unknown_extension_and_a_refused_request(service: Corral, tmp_path: Path) -> None:
    unknown = tmp_path / "notes.txt"
    unknown.write_text("")
    assert corral_cli(service, "run", str(unknown)).returncode == 2
    program = tmp_path / "big.py"
    program.write_text("print(1)\n")
    refused = corral_cli(service, "run", str(program), "--memory", "100G")
    assert refused.returncode == 65
    assert "memory_mb" in refused.stderr
