"""Judge0's `additional_files` (a base64 zip) becomes the job's input files, opened safely: no
link, no absolute or `..` name, a bound on entries and on what they expand to (a zip bomb is a
422), read in chunks rather than by the sizes the archive claims."""

from __future__ import annotations

import base64
import io
import stat
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_core.job import InputFile
from corral_core.policy import SizePolicy
from corral_core.ports import Runtime, WorkerInfo
from corral_http.compat.judge0.archive import ArchiveRefused, input_files
from corral_memory.container import InMemoryStorage
from corral_memory.jobs import InMemoryJobs
from corral_redis import RedisSettings
from corral_system.clock import SystemClock

SIZES = SizePolicy(max_files=4, max_files_bytes=64 * 1024)


def _zip(*entries: tuple[str | zipfile.ZipInfo, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, content in entries:
            archive.writestr(name, content)
    return buffer.getvalue()


def _link(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def _encrypted(name: str) -> bytes:
    """An archive whose one entry says it is encrypted (general purpose flag bit 0, set in its
    local and central headers: zipfile itself writes no encrypted entries)."""
    archive = bytearray(_zip((name, b"x")))
    for header, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = archive.find(header) + offset
        archive[at] |= 0x1
    return bytes(archive)


def test_the_files_of_an_archive_at_its_top_are_the_job_s_files() -> None:
    archive = _zip(("data.txt", b"1 2 3\n"), ("empty", b""), ("bin.dat", bytes(range(256))))
    assert input_files(archive, SIZES) == (
        InputFile("data.txt", b"1 2 3\n"),
        InputFile("empty", b""),
        InputFile("bin.dat", bytes(range(256))),
    )


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (b"not a zip at all", "is not a zip archive"),
        (_zip(_link("passwd", "/etc/passwd")), "'passwd' is not a regular file"),
        (_zip(("/etc/cron.d/x", b"x")), "'/etc/cron.d/x' is not a relative path"),
        (_zip(("../escape", b"x")), "'../escape' is not a plain path"),
        (_zip(("a/../../escape", b"x")), "is not a plain path"),
        (_zip(("C:/x", b"x")), "is not a relative path"),
        (_zip(("dir/file.txt", b"x")), "is in a directory"),
        (_zip(*((f"f{n}", b"x") for n in range(5))), "has more than 4 files"),
        (_zip(*((f"d{n}/", b"") for n in range(17))), "has more than 4 files"),
        (_zip(("big", b"x" * (64 * 1024 + 1))), "expands to more than 65536 bytes"),
        (_zip(("a", b"x" * 40_000), ("b", b"x" * 40_000)), "expands to more than 65536 bytes"),
        (_encrypted("secret"), "'secret' is encrypted"),
        (_zip(("x.bz", b"x"), method=zipfile.ZIP_BZIP2), "compressed with a method other than deflate"),
    ],
)
def test_an_archive_that_cannot_be_opened_safely_is_refused(archive: bytes, message: str) -> None:
    with pytest.raises(ArchiveRefused, match=message.replace("(", r"\(").replace(".", r"\.")):
        input_files(archive, SIZES)


def test_a_zip_bomb_is_refused_reading_no_more_than_its_budget() -> None:
    # 100 MB of zeros deflate to about 100 KB; its header says so too, and is not believed
    # either way: the entry is read in chunks until the budget is passed.
    bomb = _zip(("zeros", bytes(100 * 1024 * 1024)))
    assert len(bomb) < 200 * 1024
    with pytest.raises(ArchiveRefused, match="expands to more than"):
        input_files(bomb, SIZES)


def test_a_header_that_lies_about_its_size_is_still_read_against_the_budget() -> None:
    archive = bytearray(_zip(("zeros", bytes(200_000))))
    # The central directory's uncompressed size (offset 24 of the entry) claims 10 bytes.
    central = archive.rfind(b"PK\x01\x02")
    archive[central + 24 : central + 28] = (10).to_bytes(4, "little")
    with pytest.raises(ArchiveRefused):
        input_files(bytes(archive), SIZES)


Client = AsyncTestClient[Any]


@pytest.fixture
async def api() -> AsyncIterator[tuple[Client, InMemoryJobs]]:
    clock = SystemClock()
    storage = InMemoryStorage(clock=clock, client=InMemoryJobs(clock, max_unfinished=100))
    runtimes = (Runtime("python", "3.11.2", "main.py"), Runtime("multifile", "5.2.15", "run", compiled=True))
    await storage.registry().heartbeat(WorkerInfo("w", clock.now(), runtimes), 60_000)
    container = ApiContainer(settings=ApiSettings(auth=False), redis_settings=RedisSettings(max_unfinished=100))
    container.storage.override(storage)
    async with AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000") as client:
        yield client, storage.client()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_a_submission_s_additional_files_are_beside_its_program(api: tuple[Client, InMemoryJobs]) -> None:
    client, state = api
    body = {"source_code": "print(open('data.txt').read())", "language_id": 71, "additional_files": _b64(_zip(("data.txt", b"42")))}
    created = await client.post("/judge0/submissions", json=body)
    assert created.status_code == 201, created.text
    assert state.records[created.json()["token"]].request.files == (InputFile("data.txt", b"42"),)
    config = (await client.get("/judge0/config_info")).json()
    assert config["enable_additional_files"] is True and config["max_extract_size"] > 0


@pytest.mark.parametrize(
    ("additional_files", "message"),
    [
        (_b64(_zip(("zeros", bytes(64 * 1024 * 1024)))), "expands to more than"),
        (_b64(_zip(_link("x", "/etc/shadow"))), "is not a regular file"),
        (_b64(_zip(("main.py", b"print('replaced')"))), "is the program's own source file"),
        ("%%%%", "is not a zip archive"),
    ],
)
async def test_a_refused_archive_is_judge0_s_422(api: tuple[Client, InMemoryJobs], additional_files: str, message: str) -> None:
    client, state = api
    body = {"source_code": "print(1)", "language_id": 71, "additional_files": additional_files}
    refused = await client.post("/judge0/submissions", json=body)
    assert refused.status_code == 422, refused.text
    assert list(refused.json()) == ["additional_files"] and message in refused.json()["additional_files"][0]
    assert not state.records


# What Corral's model cannot honour is refused as a Judge0 configured without it refuses it
# (and config_info says so), never silently ignored: one run per job (number_of_runs, which
# Judge0 averages over), limits over the whole jail's cgroup, never per process.
@pytest.mark.parametrize(
    ("attributes", "errors"),
    [
        ({"number_of_runs": 2}, {"number_of_runs": ["must be less than or equal to 1"]}),
        ({"number_of_runs": 0}, {"number_of_runs": ["must be greater than 0"]}),
        ({"enable_per_process_and_thread_time_limit": True}, {"enable_per_process_and_thread_time_limit": ["this option cannot be enabled"]}),
        (
            {"enable_per_process_and_thread_memory_limit": "true"},
            {"enable_per_process_and_thread_memory_limit": ["this option cannot be enabled"]},
        ),
    ],
)
async def test_runs_and_per_process_limits_corral_cannot_honour_are_refused(
    api: tuple[Client, InMemoryJobs], attributes: dict[str, object], errors: dict[str, list[str]]
) -> None:
    client, _ = api
    refused = await client.post("/judge0/submissions", json={"source_code": "print(1)", "language_id": 71, **attributes})
    assert (refused.status_code, refused.json()) == (422, errors)
    accepted = await client.post(
        "/judge0/submissions",
        json={"source_code": "print(1)", "language_id": 71, "number_of_runs": 1, "enable_per_process_and_thread_time_limit": False},
    )
    assert accepted.status_code == 201
    config = (await client.get("/judge0/config_info")).json()
    assert config["max_number_of_runs"] == 1
    assert not config["allow_enable_per_process_and_thread_time_limit"] and not config["allow_enable_per_process_and_thread_memory_limit"]


async def test_a_multi_file_program_runs_its_run_script_with_the_other_files_beside_it(api: tuple[Client, InMemoryJobs]) -> None:
    client, state = api
    archive = _b64(_zip(("run", b"./program\n"), ("compile", b"gcc -o program main.c\n"), ("main.c", b"int main(){}")))
    created = await client.post("/judge0/submissions", json={"language_id": 89, "additional_files": archive})
    assert created.status_code == 201, created.text
    request = state.records[created.json()["token"]].request
    assert (request.language, request.code) == ("multifile", "./program\n")
    assert [file.name for file in request.files] == ["compile", "main.c"]


@pytest.mark.parametrize(
    ("submission", "errors"),
    [
        ({"source_code": "echo 1", "additional_files": _b64(_zip(("run", b"x")))}, {"source_code": ["must be blank"]}),
        ({}, {"additional_files": ["can't be blank"]}),
        ({"additional_files": _b64(_zip(("compile", b"true")))}, {"additional_files": ["holds no run script"]}),
        ({"additional_files": _b64(_zip(("run", b"\xff\xfe")))}, {"additional_files": ["has a run script that is not UTF-8 text"]}),
    ],
)
async def test_a_multi_file_program_is_refused_as_judge0_refuses_it(
    api: tuple[Client, InMemoryJobs], submission: dict[str, object], errors: dict[str, list[str]]
) -> None:
    client, state = api
    refused = await client.post("/judge0/submissions", json={"language_id": 89, **submission})
    assert (refused.status_code, refused.json()) == (422, errors)
