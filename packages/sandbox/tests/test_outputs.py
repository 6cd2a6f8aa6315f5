"""Files back from a job: read from its working directory with nothing followed, nothing waited
on, nothing read past its bounds, whatever the program (or a racing process) left there."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral_core.job import RunRequest, RunResult, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_sandbox import NsJailSandbox
from corral_sandbox.outputs import MAX_DEPTH, MAX_LISTED_LEFT_OUT, Bounds, collect
from corral_testbed.nsjail_host import nsjail_host

BOUNDS = Bounds(files=16, file_bytes=1 << 20, total_bytes=4 << 20)
SECRET = b"host secret, never to be read\n"


def reasons(box: Path, patterns: tuple[str, ...] = ("**",), bounds: Bounds = BOUNDS) -> dict[str, str]:
    collected = collect(str(box), patterns, bounds)
    return {left.name: left.reason for left in collected.left_out}


def returned(box: Path, patterns: tuple[str, ...] = ("**",), bounds: Bounds = BOUNDS) -> dict[str, bytes]:
    return {file.name: file.content for file in collect(str(box), patterns, bounds).files}


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A host file no job may ever have read back."""
    path = tmp_path / "secret"
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def box(tmp_path: Path) -> Path:
    path = tmp_path / "box"
    path.mkdir()
    return path


def test_matching_regular_files_come_back_byte_for_byte_with_their_hash_and_type(box: Path) -> None:
    (box / "out" / "deep").mkdir(parents=True)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    (box / "plot.png").write_bytes(png)
    (box / "out" / "a.csv").write_text("x,y\n1,2\n")
    (box / "out" / "deep" / "b.csv").write_text("z\n")
    (box / "out" / "c.txt").write_text("not asked\n")
    (box / "main.py").write_text("print(1)")
    collected = collect(str(box), ("plot.png", "out/**/*.csv"), BOUNDS)
    by_name = {file.name: file for file in collected.files}
    assert set(by_name) == {"plot.png", "out/a.csv", "out/deep/b.csv"}
    assert by_name["plot.png"].content == png and by_name["plot.png"].size == len(png)
    assert by_name["plot.png"].sha256 == hashlib.sha256(png).hexdigest()
    assert by_name["plot.png"].media_type == "image/png"
    assert by_name["out/a.csv"].media_type == "text/csv"
    assert collected.left_out == []


def test_a_symbolic_link_is_never_followed_to_a_host_file_a_directory_or_the_workers_own(box: Path, secret: Path) -> None:
    (box / "to-secret").symlink_to(secret)
    (box / "to-environ").symlink_to("/proc/self/environ")
    (box / "to-etc").symlink_to("/etc")
    (box / "to-shadow").symlink_to("/etc/shadow")
    assert returned(box) == {}
    assert set(reasons(box).values()) == {"a symbolic link"}
    assert len(reasons(box)) == 4


def test_a_file_with_another_hard_link_is_refused(box: Path) -> None:
    (box / "a").write_bytes(b"shared")
    os.link(box / "a", box / "b")
    assert returned(box) == {}
    assert reasons(box) == {"a": "a file with other hard links", "b": "a file with other hard links"}


def test_a_fifo_is_skipped_without_waiting_and_sockets_and_devices_too(box: Path) -> None:
    os.mkfifo(box / "pipe")
    os.mknod(box / "null", 0o600 | 0o020000, os.makedev(1, 3))  # a character device
    started = time.monotonic()
    assert returned(box) == {}
    assert time.monotonic() - started < 2
    assert reasons(box)["pipe"] == "not a regular file"
    assert reasons(box)["null"] in ("not a regular file", "could not be opened: Permission denied")


def test_a_sparse_terabyte_is_refused_by_its_size_before_any_read(box: Path) -> None:
    with open(box / "huge", "wb") as huge:
        huge.truncate(1 << 40)
    (box / "small").write_bytes(b"ok")
    assert returned(box) == {"small": b"ok"}
    assert reasons(box)["huge"].startswith("larger than the job's max_file_size_kb")


def test_the_bounds_on_count_and_total_bytes_leave_the_rest_out_with_why(box: Path) -> None:
    for index in range(5):
        (box / f"f{index}").write_bytes(b"x" * 1000)
    bounds = Bounds(files=3, file_bytes=10_000, total_bytes=2_500)
    assert returned(box, bounds=bounds) == {"f0": b"x" * 1000, "f1": b"x" * 1000}
    assert reasons(box, bounds=bounds)["f2"].startswith("past the job's max_returned_files_kb")
    assert reasons(box, bounds=Bounds(files=3, file_bytes=10_000, total_bytes=10**6))["f3"].startswith("past the job's max_returned_files")


def test_a_hundred_thousand_tiny_files_are_walked_within_a_bound(box: Path) -> None:
    for index in range(100_000):
        (box / f"{index:06}").write_bytes(b"")
    started = time.monotonic()
    collected = collect(str(box), ("**",), BOUNDS)
    assert time.monotonic() - started < 10
    assert len(collected.files) == BOUNDS.files
    assert len(collected.left_out) <= MAX_LISTED_LEFT_OUT + 1
    assert collected.left_out[-1].reason.endswith("more left out, not listed")


def test_names_that_are_not_plain_text_are_left_out(box: Path) -> None:
    (box / "line\nbreak").write_bytes(b"1")
    os.close(os.open(os.path.join(os.fsencode(box), b"bad-\xff"), os.O_CREAT | os.O_WRONLY, 0o600))
    (box / "fine.txt").write_bytes(b"2")
    assert returned(box) == {"fine.txt": b"2"}
    assert set(reasons(box).values()) == {"its name has control characters", "its name is not UTF-8"}


def test_a_directory_nested_ten_thousand_deep_stops_at_the_depth_bound() -> None:
    # Outside pytest's temporary directories: deeper than its own (recursive) clean-up can go.
    box = Path(tempfile.mkdtemp(prefix="corral-deep-"))
    fd = os.open(box, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(10_000):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("bottom", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
    os.close(fd)
    try:
        collected = collect(str(box), ("**",), BOUNDS)
        assert collected.files == []
        assert collected.left_out[0].reason == f"nested deeper than {MAX_DEPTH} directories"
    finally:
        subprocess.run(["rm", "-rf", str(box)], check=True)  # rm walks it without recursion


def test_a_file_swapped_for_a_link_while_collection_runs_is_never_followed(box: Path, secret: Path) -> None:
    names = [f"f{index:03}" for index in range(200)]
    for name in names:
        (box / name).write_bytes(b"mine")
    stop = threading.Event()

    def swap() -> None:
        # As a racing process would: each file becomes a link to the host secret, and back.
        while not stop.is_set():
            for name in names:
                with contextlib.suppress(OSError):
                    os.replace(box / name, box / f".{name}")
                    os.symlink(secret, box / name)
                    os.unlink(box / name)
                    os.replace(box / f".{name}", box / name)

    racer = threading.Thread(target=swap)
    racer.start()
    try:
        for _ in range(20):
            contents = set(returned(box, bounds=Bounds(files=1000, file_bytes=1000, total_bytes=10**6)).values())
            assert contents <= {b"mine"}
    finally:
        stop.set()
        racer.join()


@pytest.fixture
async def sandbox() -> AsyncIterator[NsJailSandbox]:
    yield NsJailSandbox(host=nsjail_host())


def request(code: str, outputs: tuple[str, ...]) -> RunRequest:
    return RunRequest(language="python", code=code, outputs=outputs, limits=DEFAULT_LIMIT_POLICY.defaults)


async def ran_ok(sandbox: NsJailSandbox, code: str, outputs: tuple[str, ...]) -> RunResult:
    """The result of `code` asking back the files matching `outputs`; the run must be OK."""
    result = await sandbox.run(request(code, outputs))
    assert result.verdict is Verdict.OK, result.stderr
    return result


async def test_a_job_gets_back_the_files_its_program_wrote(sandbox: NsJailSandbox) -> None:
    code = (
        "import os\nos.makedirs('out/sub')\n"
        "open('out/data.csv', 'w').write('a,b\\n1,2\\n')\n"
        "open('out/sub/raw.bin', 'wb').write(bytes(range(256)))\n"
        "open('ignored.txt', 'w').write('no')\n"
    )
    result = await ran_ok(sandbox, code, ("out/**",))
    assert {file.name: file.content for file in result.files} == {"out/data.csv": b"a,b\n1,2\n", "out/sub/raw.bin": bytes(range(256))}


async def test_what_a_jailed_program_plants_never_leads_the_worker_outside_the_box(sandbox: NsJailSandbox) -> None:
    # Links to the worker's own environment, a host secret and a directory; a hard link; a FIFO.
    code = (
        "import os\n"
        "os.symlink('/proc/self/environ', 'environ')\n"
        "os.symlink('/etc/shadow', 'shadow')\n"
        "os.symlink('/etc', 'etc')\n"
        "open('a', 'w').write('a'); os.link('a', 'b')\n"
        "os.mkfifo('pipe')\n"
        "open('plain.txt', 'w').write('fine')\n"
    )
    result = await ran_ok(sandbox, code, ("*",))
    assert {file.name: file.content for file in result.files} == {
        "main.py": code.encode(),
        "plain.txt": b"fine",
    }
    assert {left.name: left.reason for left in result.files_left_out} == {
        "environ": "a symbolic link",
        "shadow": "a symbolic link",
        "etc": "a symbolic link",
        "a": "a file with other hard links",
        "b": "a file with other hard links",
        "pipe": "not a regular file",
    }
