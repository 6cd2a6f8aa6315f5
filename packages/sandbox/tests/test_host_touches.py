"""Every place the host touches a job's files, with something planted there aimed at the host.

Judge0's CVE-2024-28185 and -28189: the worker wrote, then chowned, a path the program had
replaced with a symbolic link. The places where Corral's host acts on a job's files:

- the run's inputs (the source, input files, each test's files): written into a fresh scratch
  tmpfs before the jail starts (Scratch.write, O_CREAT|O_EXCL|O_NOFOLLOW relative to box/'s
  descriptor, then fchown on that descriptor). No program ever ran there, so a plant there is
  made host-side at the moment of the write; a program of an earlier test or stage gets a
  tmpfs of its own, which the second case shows;
- the compile -> run hand-over: the artifact read back from the compile's box/
  (Scratch.read_back), planted host-side as a compiler could leave it;
- output collection (outputs.collect), planted by the jailed program itself;
- clean-up (Scratch.remove: a lazy unmount of the tmpfs, then rmdir of the empty mount point),
  planted by the jailed program in box/, tmp/ and shm/.
stdin is a sealed memfd and NsJail's log a memfd of the worker's: neither is a file of the
job's. The compile cache keeps bytes in the worker's memory, never a file.

Each case aims a symbolic link, a hard link, a FIFO and a directory at a canary file on the host
outside the job's root; the canary's content, owner, mode and times stay as they were, and the
job fails closed: a sandbox error, a compile error, or the file listed as left out with why.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from corral_core.job import InputFile, RunRequest, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import SandboxError
from corral_core.testcases import TestCase
from corral_sandbox import HostReport, NsJailSandbox
from corral_sandbox.scratch import Scratch
from corral_testbed.nsjail_host import assert_host_unharmed, nsjail_host
from corral_testbed.time_scale import scaled

LIMITS = msgspec.structs.replace(
    DEFAULT_LIMIT_POLICY.defaults, cpu_time_ms=scaled(2_000), wall_time_ms=scaled(4_000), memory_mb=64, max_processes=16
)
KINDS = ("symlink", "hardlink", "fifo", "directory")


class Canary(msgspec.Struct, frozen=True):
    """A host file outside every job's root, and what it was."""

    path: str
    directory: str
    before: tuple[bytes, int, int, int, int, int]

    def now(self) -> tuple[bytes, int, int, int, int, int]:
        return _state(self.path)

    def assert_untouched(self) -> None:
        assert self.now() == self.before, "the host acted on the canary through a planted path"
        assert sorted(os.listdir(self.directory)) == ["kept"], "the canary directory changed"


def _state(path: str) -> tuple[bytes, int, int, int, int, int]:
    info = os.lstat(path)
    return Path(path).read_bytes(), info.st_uid, info.st_gid, info.st_mode, info.st_mtime_ns, info.st_ctime_ns


@pytest.fixture
def host() -> HostReport:
    return nsjail_host()


@pytest.fixture
def canary(host: HostReport) -> Iterator[Canary]:
    # Beside the work root, as the host's own files are: on another file system than the
    # job's tmpfs, so no hard link of the job's can reach it (EXDEV), only a link or a path.
    base = os.path.join(os.path.dirname(host.settings.work_root), f"canary-{os.getpid()}")
    os.makedirs(base, exist_ok=True)
    path = os.path.join(base, "secret")
    Path(path).write_bytes(b"host secret\n")
    os.chmod(path, 0o600)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    directory = os.path.join(base, "dir")
    os.makedirs(directory, exist_ok=True)
    Path(directory, "kept").write_bytes(b"kept")
    yield Canary(path, directory, _state(path))
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    os.rmdir(directory)
    os.unlink(path)
    os.rmdir(base)


@pytest.fixture(params=["cold", "started"])
async def sandbox(host: HostReport, request: pytest.FixtureRequest) -> AsyncIterator[NsJailSandbox]:
    sandbox = NsJailSandbox(host=host, warm_slots=0 if request.param == "cold" else 1)
    yield sandbox
    await sandbox.aclose()
    assert_host_unharmed(host)


def plant(kind: str, path: str, canary: Canary) -> None:
    """Put a `kind` at `path` aimed at the canary (a hard link can only reach a file of the
    same tmpfs: one beside it, made for the purpose)."""
    if kind == "symlink":
        os.symlink(canary.path, path)
    elif kind == "hardlink":
        other = os.path.join(os.path.dirname(path), ".planted")
        if not os.path.exists(other):
            Path(other).write_bytes(b"planted")
        os.link(other, path)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        os.mkdir(path)
        os.symlink(canary.path, os.path.join(path, "inside"))


def python(code: str, **changes: object) -> RunRequest:
    return RunRequest(language="python", code=textwrap.dedent(code), limits=LIMITS, **changes)  # type: ignore[arg-type]


# -- the run's inputs -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["main.py", "data.txt"])
async def test_an_input_written_where_something_was_planted_fails_the_job_and_spares_the_canary(
    sandbox: NsJailSandbox, canary: Canary, monkeypatch: pytest.MonkeyPatch, kind: str, name: str
) -> None:
    write = Scratch.write

    def planted_first(self: Scratch, file_name: str, content: bytes, mode: int = 0o644) -> None:
        if file_name == name:
            plant(kind, os.path.join(self.box, file_name), canary)
        write(self, file_name, content, mode)

    monkeypatch.setattr(Scratch, "write", planted_first)
    request = python("print(open('data.txt').read())", files=(InputFile("data.txt", b"mine"),))
    with pytest.raises(SandboxError, match="could not set up the sandbox"):
        await sandbox.run(request)
    canary.assert_untouched()


async def test_what_one_test_plants_at_the_inputs_never_reaches_the_next_test_or_the_host(
    canary: Canary, host: HostReport
) -> None:
    # Each test runs in a fresh jail with its files written again: the first test's program
    # replaces every input with a link to the canary, a FIFO and a directory; the second reads
    # its own input, and the host wrote through none of them.
    code = f"""
        import os, sys
        if sys.argv[1:] == ["plant"]:
            for name in ("main.py", "data.txt"):
                os.unlink(name)
            os.symlink({canary.path!r}, "main.py")
            os.mkfifo("data.txt")
            os.mkdir("extra.txt")
            print("planted")
        else:
            print(open("data.txt").read())
    """
    tests = (TestCase(args=("plant",), expected_stdout="planted\n"), TestCase(expected_stdout="mine\n"))
    request = python(code, files=(InputFile("data.txt", b"mine"),), tests=tests)
    result = await NsJailSandbox(host=host).run(request)
    assert [test.verdict.value for test in result.tests] == ["ok", "ok"], result.tests
    canary.assert_untouched()
    assert_host_unharmed(host)


# -- the compile -> run hand-over -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_an_artifact_the_compiler_left_as_a_link_fifo_or_directory_is_a_compile_error(
    host: HostReport, canary: Canary, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    if "c" not in {runtime.language for runtime in host.runtimes}:
        pytest.fail("the C runtime is not installed on this host")
    read_back = Scratch.read_back

    def planted_first(self: Scratch, name: str, max_bytes: int) -> bytes | None:
        os.unlink(os.path.join(self.box, name))
        plant(kind, os.path.join(self.box, name), canary)
        return read_back(self, name, max_bytes)

    monkeypatch.setattr(Scratch, "read_back", planted_first)
    code = "#include <stdio.h>\nint main(void) { puts(\"ran\"); return 0; }\n"
    result = await NsJailSandbox(host=host).run(RunRequest(language="c", code=code, limits=LIMITS))
    assert result.verdict is Verdict.COMPILE_ERROR, result
    assert "the compiler left no main" in result.compile_output
    assert result.stdout == ""
    canary.assert_untouched()
    assert_host_unharmed(host)


# -- output collection ----------------------------------------------------------------------


async def test_outputs_planted_as_links_fifos_and_directories_are_left_out_and_spare_the_canary(
    sandbox: NsJailSandbox, canary: Canary
) -> None:
    code = f"""
        import os
        os.makedirs("out")
        os.symlink({canary.path!r}, "out/symlink.txt")
        open("out/a", "w").write("a"); os.link("out/a", "out/hardlink.txt")
        os.mkfifo("out/fifo.txt")
        os.symlink({canary.directory!r}, "out/directory")
        os.mkdir("out/dir.txt")
        os.symlink({canary.path!r}, "out/dir.txt/inside.txt")
        open("out/plain.txt", "w").write("fine")
    """
    result = await sandbox.run(python(code, outputs=("out/*.txt", "out/directory/*", "out/dir.txt/*")))
    assert result.verdict is Verdict.OK, result.stderr
    assert {file.name: file.content for file in result.files} == {"out/plain.txt": b"fine"}
    assert {left.name: left.reason for left in result.files_left_out} == {
        "out/symlink.txt": "a symbolic link",
        "out/hardlink.txt": "a file with other hard links",
        "out/fifo.txt": "not a regular file",
        "out/dir.txt/inside.txt": "a symbolic link",
    }
    canary.assert_untouched()


# -- clean-up -------------------------------------------------------------------------------


async def test_what_a_program_leaves_in_box_tmp_and_shm_never_leads_the_clean_up_outside(
    sandbox: NsJailSandbox, canary: Canary, host: HostReport
) -> None:
    code = f"""
        import os
        for base in ("/box", "/tmp", "/dev/shm"):
            os.symlink({canary.path!r}, f"{{base}}/symlink")
            os.symlink({canary.directory!r}, f"{{base}}/directory")
            open(f"{{base}}/a", "w").write("a"); os.link(f"{{base}}/a", f"{{base}}/hardlink")
            os.mkfifo(f"{{base}}/fifo")
            os.makedirs(f"{{base}}/deep/" + "d/" * 40)
            os.symlink({canary.path!r}, f"{{base}}/deep/link")
            os.chmod(f"{{base}}/deep", 0)
        os.chmod("/box", 0)
        print("planted")
    """
    result = await sandbox.run(python(code))
    assert (result.verdict, result.stdout) == (Verdict.OK, "planted\n"), result.stderr
    await sandbox.aclose()  # a warm jail is removed after its job: wait for that too
    assert_host_unharmed(host)
    canary.assert_untouched()

