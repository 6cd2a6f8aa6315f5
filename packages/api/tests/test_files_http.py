"""Files a job returns, over HTTP on the in-memory adapters: asking for them (outputs), the
result's list of them, and GET /jobs/{id}/files/{name}, which serves each only as a download."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_core.access import ApiKey, Quotas, secret_hash
from corral_core.job import (
    Job,
    JobStatus,
    LeftOut,
    ReturnedFile,
    RunRequest,
    RunResult,
    Verdict,
    without_file_contents,
)
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import Runtime, WorkerInfo
from corral_core.usecases import RunNextJob
from corral_memory.container import InMemoryStorage
from corral_memory.jobs import InMemoryJobQueue, InMemoryJobs
from corral_memory.sandbox import InMemorySandbox
from corral_redis import RedisSettings
from corral_system.clock import SystemClock
from corral_testbed.scripted_sandbox import OnOutput, ScriptedSandbox, StdinSource

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
BIG = b"x" * (64 * 1024 + 1)
PAGE = b"<script>alert(document.cookie)</script>"


class PlottingSandbox(ScriptedSandbox):
    """The in-memory sandbox, whose every program that asks for files back leaves a plot."""

    def __init__(self) -> None:
        self._in_memory = InMemorySandbox()

    def runtimes(self) -> list[Runtime]:
        return self._in_memory.runtimes()

    async def outcome(self, request: RunRequest, on_output: OnOutput, stdin_source: StdinSource) -> RunResult:
        result = await self._in_memory.run(request, on_output=on_output, stdin_source=stdin_source)
        if not request.outputs:
            return result
        plot = ReturnedFile(name="out/plot.png", size=len(PNG), sha256=hashlib.sha256(PNG).hexdigest(), media_type="image/png", content=PNG)
        return msgspec.structs.replace(result, files=(plot,))


async def run_worker(state: InMemoryJobs) -> None:
    run_next = RunNextJob(InMemoryJobQueue(state), PlottingSandbox(), state.clock)
    while True:
        await run_next("test-worker", 1)


@dataclass
class Files:
    client: AsyncTestClient  # type: ignore[type-arg]
    state: InMemoryJobs
    mine: dict[str, str]
    theirs: dict[str, str]

    def add(
        self, job_id: str, *files: tuple[str, str, bytes], left_out: tuple[LeftOut, ...] = (), owner: str = "mine"
    ) -> None:
        returned = tuple(
            ReturnedFile(
                name=name,
                size=len(content),
                sha256=hashlib.sha256(content).hexdigest(),
                media_type=media_type,
                content=content,
            )
            for name, media_type, content in files
        )
        now = self.state.clock.now()
        limits = DEFAULT_LIMIT_POLICY.defaults
        # As a worker's finish stores a job: its files' content apart from its record.
        self.state.files[job_id] = {file.name: file.content for file in returned}
        self.state.records[job_id] = Job(
            id=job_id,
            request=RunRequest(language="python", code="", outputs=("out/**",), limits=limits),
            status=JobStatus.COMPLETED,
            created_at=now,
            started_at=now,
            finished_at=now,
            attempts=1,
            result=RunResult(verdict=Verdict.OK, files=returned, files_left_out=left_out),
            owner=owner,
        )
        self.state.records[job_id] = without_file_contents(self.state.records[job_id])


@pytest.fixture
async def api() -> AsyncIterator[Files]:
    clock = SystemClock()
    state = InMemoryJobs(clock)
    storage = InMemoryStorage(clock=clock, client=state)
    await storage.registry().heartbeat(WorkerInfo("w", clock.now(), (Runtime("python", "3.11.2", "main.py"),)), 60_000)
    keys = storage.key_store()
    secrets = {}
    for key_id in ("mine", "theirs"):
        await keys.add(
            ApiKey(id=key_id, name=key_id, created_at=clock.now(), quotas=Quotas()), secret_hash(f"corral_{key_id}")
        )
        secrets[key_id] = {"Authorization": f"Bearer corral_{key_id}"}
    container = ApiContainer(settings=ApiSettings(max_wait_s=5), redis_settings=RedisSettings())
    container.storage.override(storage)
    async with AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000") as client:
        # The test client serves the app on its own event loop: the worker must share it.
        running = client.blocking_portal.start_task_soon(run_worker, state)
        yield Files(client, state, secrets["mine"], secrets["theirs"])
        running.cancel()


# ---- asking for files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outputs", "field"),
    [
        (["/etc/passwd"], "outputs[0]"),
        (["plot.png", "../secret"], "outputs[1]"),
        (["out//x"], "outputs[0]"),
        (["a\nb"], "outputs[0]"),
        ([""], "outputs"),
        ("out", "outputs"),
        ([f"f{index}" for index in range(33)], "outputs"),
    ],
)
async def test_a_bad_output_pattern_is_422_naming_it(api: Files, outputs: object, field: str) -> None:
    response = await api.client.post("/execute", json={"code": "", "outputs": outputs}, headers=api.mine)
    assert response.status_code == 422, response.text
    assert field in {error["field"] for error in response.json()["errors"]} or field in response.text
    assert api.state.records == {}


async def test_outputs_are_glob_patterns_or_true_for_everything_under_out(api: Files) -> None:
    for outputs, asked in (
        (["plot.png", "out/**/*.csv"], ("plot.png", "out/**/*.csv")),
        (True, ("out/**",)),
        (False, ()),
    ):
        response = await api.client.post("/execute", json={"code": "", "outputs": outputs}, headers=api.mine)
        assert response.status_code == 202, response.text
        assert api.state.records[response.json()["job_id"]].request.outputs == asked


async def test_returned_file_limits_are_asked_for_and_bounded_by_the_server(api: Files) -> None:
    limits = {"max_returned_files": 3, "max_returned_files_kb": 100}
    response = await api.client.post("/execute", json={"code": "", "outputs": True, "limits": limits}, headers=api.mine)
    job = api.state.records[response.json()["job_id"]]
    assert (job.request.limits.max_returned_files, job.request.limits.max_returned_files_kb) == (3, 100)
    response = await api.client.post(
        "/execute", json={"code": "", "limits": {"max_returned_files": 100_000}}, headers=api.mine
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "limits.max_returned_files"


async def test_the_openapi_document_gives_the_returned_file_maxima(api: Files) -> None:
    schemas = (await api.client.get("/schema/openapi.json")).json()["components"]["schemas"]
    limits = schemas["LimitsIn"]["properties"]
    assert limits["max_returned_files"]["maximum"] == 256
    assert limits["max_returned_files_kb"]["maximum"] == 64 * 1024
    patterns = [
        choice for choice in schemas["ExecuteIn"]["properties"]["outputs"]["oneOf"] if choice.get("type") == "array"
    ]
    assert patterns[0]["maxItems"] == 32


# ---- the result lists them ----------------------------------------------------------------


async def test_a_result_lists_the_files_returned_and_left_out(api: Files) -> None:
    api.add("job1", ("out/plot.png", "image/png", PNG), left_out=(LeftOut("out/link", "a symbolic link"),))
    result = (await api.client.get("/jobs/job1", headers=api.mine)).json()["result"]
    assert result["files"] == [
        {"name": "out/plot.png", "size": len(PNG), "sha256": hashlib.sha256(PNG).hexdigest(), "media_type": "image/png"}
    ]
    assert result["files_left_out"] == [{"name": "out/link", "reason": "a symbolic link"}]
    assert list(result)[-2:] == ["files", "files_left_out"]


async def test_a_result_without_files_has_no_file_fields(api: Files) -> None:
    api.add("job1")
    result = (await api.client.get("/jobs/job1", headers=api.mine)).json()["result"]
    assert "files" not in result and "files_left_out" not in result


async def test_inline_files_carries_the_small_ones_content(api: Files) -> None:
    api.add("job1", ("plot.png", "image/png", PNG), ("big.bin", "application/octet-stream", BIG))
    files = (await api.client.get("/jobs/job1?inline_files=true", headers=api.mine)).json()["result"]["files"]
    assert base64.b64decode(files[0]["content_base64"]) == PNG
    assert "content_base64" not in files[1]
    plain = (await api.client.get("/jobs/job1", headers=api.mine)).json()["result"]["files"]
    assert all("content_base64" not in file for file in plain)


async def test_a_job_that_asks_for_files_gets_them_back_through_execute_and_the_files_route(api: Files) -> None:
    body = {"code": "print('drawn')", "outputs": True}
    response = await api.client.post("/execute?wait=5&inline_files=true", json=body, headers=api.mine)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["result"]["stdout"] == "drawn\n"
    (listed,) = job["result"]["files"]
    assert base64.b64decode(listed["content_base64"]) == PNG
    download = await api.client.get(f"/jobs/{job['job_id']}/files/{listed['name']}", headers=api.mine)
    assert download.content == PNG and download.headers["etag"] == f'"{listed["sha256"]}"'
    plain = (await api.client.post("/execute?wait=5", json={"code": "print(1)"}, headers=api.mine)).json()
    assert "files" not in plain["result"]


# ---- GET /jobs/{id}/files/{name} ----------------------------------------------------------


async def test_a_file_is_served_as_a_download_with_its_type_and_tag(api: Files) -> None:
    api.add("job1", ('out/plots/a plot;".png', "image/png", PNG))
    response = await api.client.get('/jobs/job1/files/out/plots/a plot;".png', headers=api.mine)
    assert response.status_code == 200, response.text
    assert response.content == PNG
    headers = response.headers
    assert headers["content-type"] == "image/png"
    assert headers["content-disposition"] == "attachment; filename*=UTF-8''a%20plot%3B%22.png"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "sandbox; default-src 'none'"
    assert headers["etag"] == f'"{hashlib.sha256(PNG).hexdigest()}"'
    assert headers["accept-ranges"] == "bytes"
    assert headers["cache-control"] == "private"


@pytest.mark.parametrize(
    "media_type", ["text/html", "image/svg+xml", "application/xhtml+xml", "text/javascript", "application/x-evil"]
)
async def test_an_active_media_type_is_served_as_octet_stream(api: Files, media_type: str) -> None:
    api.add("job1", ("page", media_type, PAGE))
    response = await api.client.get("/jobs/job1/files/page", headers=api.mine)
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == PAGE


async def test_if_none_match_with_the_tag_is_304(api: Files) -> None:
    api.add("job1", ("plot.png", "image/png", PNG))
    tag = f'"{hashlib.sha256(PNG).hexdigest()}"'
    for sent in (tag, f'"other", W/{tag}', "*"):
        response = await api.client.get("/jobs/job1/files/plot.png", headers={**api.mine, "If-None-Match": sent})
        assert response.status_code == 304, sent
        assert response.content == b"" and response.headers["etag"] == tag
    response = await api.client.get("/jobs/job1/files/plot.png", headers={**api.mine, "If-None-Match": '"other"'})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("sent", "first", "last"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=10-", 10, len(PNG) - 1),
        ("bytes=-5", len(PNG) - 5, len(PNG) - 1),
        ("bytes=5-99999", 5, len(PNG) - 1),
    ],
)
async def test_one_range_is_206_with_its_content_range(api: Files, sent: str, first: int, last: int) -> None:
    api.add("job1", ("plot.png", "image/png", PNG))
    response = await api.client.get("/jobs/job1/files/plot.png", headers={**api.mine, "Range": sent})
    assert response.status_code == 206, response.text
    assert response.content == PNG[first : last + 1]
    assert response.headers["content-range"] == f"bytes {first}-{last}/{len(PNG)}"


async def test_a_range_past_the_end_is_416_and_others_get_the_whole_file(api: Files) -> None:
    api.add("job1", ("plot.png", "image/png", PNG))
    response = await api.client.get("/jobs/job1/files/plot.png", headers={**api.mine, "Range": f"bytes={len(PNG)}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(PNG)}"
    for sent in ("bytes=0-1,4-5", "lines=1-2", "bytes=9-3", "bytes=" + "9" * 40 + "-"):
        response = await api.client.get("/jobs/job1/files/plot.png", headers={**api.mine, "Range": sent})
        assert response.status_code == 200, sent
        assert response.content == PNG
    stale = {**api.mine, "Range": "bytes=0-1", "If-Range": '"another"'}
    assert (await api.client.get("/jobs/job1/files/plot.png", headers=stale)).status_code == 200


async def test_another_keys_job_and_an_unknown_name_are_404(api: Files) -> None:
    api.add("job1", ("plot.png", "image/png", PNG))
    stranger = await api.client.get("/jobs/job1/files/plot.png", headers=api.theirs)
    missing = await api.client.get("/jobs/nojob/files/plot.png", headers=api.theirs)
    assert stranger.status_code == missing.status_code == 404
    assert stranger.json()["detail"] == missing.json()["detail"].replace("nojob", "job1")
    for name in ("other.png", "../plot.png", "PLOT.png", "plot.png%00"):
        response = await api.client.get(f"/jobs/job1/files/{name}", headers=api.mine)
        assert response.status_code == 404, name


async def test_the_files_route_is_behind_the_door(api: Files) -> None:
    api.add("job1", ("plot.png", "image/png", PNG))
    assert (await api.client.get("/jobs/job1/files/plot.png")).status_code == 401
