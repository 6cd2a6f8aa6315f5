"""Judge0's official Python SDK (PyPI `judge0` 0.0.8), unchanged, against the real stack.

The SDK is pointed at /judge0 as at a self-hosted Judge0 (`judge0.Client(endpoint, headers)`),
with a Corral key in `X-Auth-Token`, the header Judge0 deployments use. It sends every
submission base64-encoded (POST /submissions?base64_encoded=true&wait=false, or
/submissions/batch), then polls GET /submissions/{token} or /submissions/batch with fields=*
until the status is neither In Queue nor Processing; it parses created_at and finished_at with
`%Y-%m-%dT%H:%M:%S.%fZ` and time, wall_time as floats (issue 35: it failed on every answer).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import judge0  # type: ignore[import-untyped]  # the SDK ships no type information
import pytest
from judge0 import LanguageAlias, Status, Submission

from corral_testbed.services import Corral, corral_on_its_own_redis

# Bounds the SDK's polling: its default retries forever.
WAIT = judge0.MaxWaitTime(120)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    with corral_on_its_own_redis(tmp_path_factory, workers=2, auth=True) as running:
        yield running


@pytest.fixture(scope="module")
def client(service: Corral) -> judge0.Client:
    return judge0.Client(f"{service.url}/judge0", headers={"X-Auth-Token": service.create_key("sdk")}, retry_strategy=WAIT)


def test_the_client_reads_languages_config_statuses_and_about(client: judge0.Client) -> None:
    assert client.version == "1.13.1"
    assert client.is_language_supported(LanguageAlias.PYTHON)
    assert client.get_language(71).name.startswith("Python (3.")
    assert client.config.max_submission_batch_size == 20 and client.config.enable_wait_result
    assert [status["id"] for status in client.get_statuses()] == list(range(1, 15))


def test_a_key_is_required_as_judge0_requires_its_auth_token(service: Corral) -> None:
    with pytest.raises(RuntimeError, match="Authentication failed"):
        judge0.Client(f"{service.url}/judge0", headers={"X-Auth-Token": "corral_not_a_key"})


def test_sync_execute_with_stdin_answers_stdout_times_and_timestamps(client: judge0.Client) -> None:
    done = judge0.sync_execute(client=client, source_code="print(input()[::-1])", language=LanguageAlias.PYTHON, stdin="judge0")
    assert isinstance(done, Submission)
    assert (done.status, done.stdout, done.stderr, done.exit_code) == (Status.ACCEPTED, "0egduj\n", None, 0)
    assert done.time is not None and done.time >= 0 and done.memory is not None and done.memory > 0
    assert done.created_at is not None and done.finished_at is not None and done.created_at <= done.finished_at


def test_base64_carries_text_that_is_not_ascii_both_ways(client: judge0.Client) -> None:
    source = "import sys\nprint('héllo ✓', input())\nprint('ошибка', file=sys.stderr)"
    done = judge0.run(client=client, source_code=source, language=LanguageAlias.PYTHON, stdin="naïve")
    assert (done.stdout, done.stderr) == ("héllo ✓ naïve\n", "ошибка\n")


def test_async_execute_then_wait(client: judge0.Client) -> None:
    created = judge0.async_execute(client=client, source_code="print(6 * 7)", language=LanguageAlias.PYTHON)
    assert isinstance(created, Submission) and created.token and created.status is None
    done = judge0.wait(client=client, submissions=created)
    assert (done.status, done.stdout) == (Status.ACCEPTED, "42\n")


def test_expected_output_accepted_and_wrong_answer(client: judge0.Client) -> None:
    right = Submission(source_code="print('yes')", language=LanguageAlias.PYTHON, expected_output="yes")
    wrong = Submission(source_code="print('no')", language=LanguageAlias.PYTHON, expected_output="yes")
    done = judge0.execute(client=client, submissions=[right, wrong])
    assert [submission.status for submission in done] == [Status.ACCEPTED, Status.WRONG_ANSWER]


def test_a_batch_of_submissions_goes_through_the_batch_routes(client: judge0.Client) -> None:
    submissions = [Submission(source_code=f"print({n} ** 2)", language=LanguageAlias.PYTHON) for n in range(25)]
    # 25 is over the batch size Judge0 reports (20): the SDK splits them in two batches.
    done = judge0.execute(client=client, submissions=submissions)
    assert [submission.stdout for submission in done] == [f"{n**2}\n" for n in range(25)]


def test_test_cases_each_judged_against_their_expected_output(client: judge0.Client) -> None:
    cases = [("1 2", "3"), ("5 5", "10"), ("2 2", "5")]
    done = judge0.run(client=client, source_code="print(sum(map(int, input().split())))", language=LanguageAlias.PYTHON, test_cases=cases)
    assert [submission.status for submission in done] == [Status.ACCEPTED, Status.ACCEPTED, Status.WRONG_ANSWER]
    assert [submission.stdout for submission in done] == ["3\n", "10\n", "4\n"]


def test_additional_files_sit_beside_the_program(client: judge0.Client) -> None:
    files = judge0.Filesystem(content=[judge0.File(name="data.txt", content="6 7\n"), judge0.File(name="note", content="hi")])
    source = "a, b = open('data.txt').read().split(); print(int(a) * int(b), open('note').read())"
    done = judge0.run(client=client, source_code=source, language=LanguageAlias.PYTHON, additional_files=files)
    assert (done.status, done.stdout) == (Status.ACCEPTED, "42 hi\n")


def test_compiler_options_and_arguments_are_words_no_shell_runs(client: judge0.Client) -> None:
    source = '#include <stdio.h>\nint main(int c, char **v) { for (int i = 1; i < c; i++) printf("[%s]", v[i]); printf("%d\\n", N); }'
    done = judge0.run(
        client=client,
        source_code=source,
        language=LanguageAlias.C,
        compiler_options="-DN=42 -Wall",
        command_line_arguments="a 'b c'\necho INJECTED",
    )
    assert (done.status, done.stdout) == (Status.ACCEPTED, "[a][b c][echo][INJECTED]42\n")
    injected = judge0.run(client=client, source_code=source, language=LanguageAlias.C, compiler_options="-DN=1\necho INJECTED")
    assert injected.status == Status.COMPILATION_ERROR
    assert injected.compile_output is not None
    assert not any(line.startswith("INJECTED") for line in injected.compile_output.splitlines())


def test_a_multi_file_program_compiles_and_runs_with_its_scripts(client: judge0.Client) -> None:
    project = judge0.Filesystem(
        content=[
            judge0.File(name="compile", content="/usr/bin/gcc -o program main.c twice.c\n"),
            judge0.File(name="run", content='./program "$@"\n'),
            judge0.File(name="main.c", content='#include <stdio.h>\nint twice(int);\nint main(void) { printf("%d\\n", twice(21)); }\n'),
            judge0.File(name="twice.c", content="int twice(int x) { return 2 * x; }\n"),
        ]
    )
    # The SDK always sends source_code; a blank one is what Judge0 takes for language 89.
    done = judge0.run(client=client, source_code="", language=LanguageAlias.MULTI_FILE, additional_files=project)
    assert (done.status, done.stdout) == (Status.ACCEPTED, "42\n")


def test_a_compile_error_answers_the_compiler_s_output(client: judge0.Client) -> None:
    assert client.is_language_supported(LanguageAlias.C)
    done = judge0.run(client=client, source_code="int main(void) { return undeclared; }", language=LanguageAlias.C)
    assert done.status == Status.COMPILATION_ERROR
    assert done.compile_output is not None and "undeclared" in done.compile_output
    assert (done.stdout, done.time, done.memory, done.exit_code) == (None, None, None, None)


def test_a_time_limit_and_a_runtime_error(client: judge0.Client) -> None:
    spin = Submission(source_code="while True: pass", language=LanguageAlias.PYTHON, cpu_time_limit=0.5, wall_time_limit=3)
    fail = Submission(source_code="raise SystemExit(3)", language=LanguageAlias.PYTHON)
    spun, failed = judge0.execute(client=client, submissions=[spin, fail])
    assert spun.status == Status.TIME_LIMIT_EXCEEDED
    # Judge0 base64-encodes the message too (SubmissionSerializer#message); this SDK leaves it so.
    assert spun.message is not None and base64.b64decode(spun.message) == b"Time limit exceeded"
    assert (failed.status, failed.exit_code) == (Status.RUNTIME_ERROR_NZEC, 3)


def test_a_refused_submission_raises_the_sdk_s_http_error_with_judge0_s_422(client: judge0.Client) -> None:
    with pytest.raises(httpx.HTTPStatusError) as raised:
        judge0.async_execute(client=client, source_code="print(1)", language=LanguageAlias.PYTHON, memory_limit=1000)
    assert raised.value.response.status_code == 422
    assert raised.value.response.json() == {"memory_limit": ["must be greater than or equal to 2048"]}
    unknown = Submission(source_code="print(1)", language=LanguageAlias.PYTHON)
    unknown.token = "AAAAAAAAAAAAAAAAAAAAAA"
    with pytest.raises(httpx.HTTPStatusError) as raised:
        client.get_submission(unknown)
    assert raised.value.response.status_code == 404


# ---- DELETE /submissions/{token}: not in the SDK; Judge0's own route, with the same key ------


def test_delete_removes_the_owner_s_finished_submission_and_another_key_sees_none(service: Corral, client: judge0.Client) -> None:
    done = judge0.run(client=client, source_code="print('gone')", language=LanguageAlias.PYTHON)
    url = f"{service.url}/judge0/submissions/{done.token}"
    stranger = httpx.delete(url, headers={"X-Auth-Token": service.create_key("stranger")})
    assert (stranger.status_code, stranger.json()) == (404, {"error": "Not Found"})
    owner = {"X-Auth-Token": client.headers["X-Auth-Token"]}
    deleted = httpx.delete(url, params={"fields": "stdout,status_id"}, headers=owner)
    assert deleted.status_code == 200, deleted.text
    assert base64.b64decode(deleted.json()["stdout"]) == b"gone\n" and deleted.json()["status_id"] == 3
    assert httpx.get(url, headers=owner).status_code == 404


def test_delete_of_a_submission_still_running_is_refused_with_its_status(service: Corral, client: judge0.Client) -> None:
    created = judge0.async_execute(client=client, source_code="import time; time.sleep(4)", language=LanguageAlias.PYTHON)
    owner = {"X-Auth-Token": client.headers["X-Auth-Token"]}
    refused = httpx.delete(f"{service.url}/judge0/submissions/{created.token}", headers=owner)
    assert refused.status_code == 400
    assert refused.json()["error"] in (
        "submission cannot be deleted because its status is 1 (In Queue)",
        "submission cannot be deleted because its status is 2 (Processing)",
    )
    assert judge0.wait(client=client, submissions=created).status == Status.ACCEPTED
