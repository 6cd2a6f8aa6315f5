"""The NsJail command line: built as a list, --config first, client text never interpreted."""

from __future__ import annotations

from pathlib import Path

import msgspec

from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_sandbox.command import JailPaths, limit_flags, nsjail_command
from corral_sandbox.policy_files import RuntimeSpec

RUNTIME = RuntimeSpec(
    language="python",
    source="main.py",
    argv=("/usr/bin/python3", "-s", "{source}", "{args}"),
    version="3.11.2",
    bind_ro=("/opt/lib:/lib/extra",),
    env=("EXTRA=1",),
)
# Odd values, to see each flag rounded up (test_limits_are_rounded_up_and_the_backstops_sit_above_them).
LIMITS = msgspec.structs.replace(
    DEFAULT_LIMIT_POLICY.defaults, cpu_time_ms=1_500, wall_time_ms=2_001, max_processes=8, max_file_size_kb=1536
)
PATHS = JailPaths("/w/job/box", "/w/job/tmp", "/w/job/shm")


def command(args: tuple[str, ...] = ()) -> list[str]:
    return nsjail_command(
        binary="/bin/nsjail",
        policy=Path("/policy"),
        runtime=RUNTIME,
        paths=PATHS,
        limits=LIMITS,
        jail_uid=99_999,
        jail_gid=99_998,
        cgroup_flags=["--cgroup_mem_max", "1"],
        args=args,
    )


def test_the_config_comes_first_so_that_it_overrides_nothing_after_it() -> None:
    argv = command()
    assert argv[:3] == ["/bin/nsjail", "--config", "/policy/default.cfg"]


def test_the_program_follows_the_separator_with_its_arguments_verbatim() -> None:
    args = ("--config", "/etc/evil.cfg", "{source}", "{args}", "$(id)", "")
    argv = command(args)
    separator = argv.index("--")
    assert argv[separator + 1 :] == ["/usr/bin/python3", "-s", "main.py", *args]
    assert "/etc/evil.cfg" not in argv[:separator]


def test_the_jail_user_maps_to_the_unprivileged_host_ids() -> None:
    argv = command()
    assert argv[argv.index("--user") + 1] == "1000:99999:1"
    assert argv[argv.index("--group") + 1] == "1000:99998:1"


def test_scratch_directories_are_bound_and_policy_and_runtime_extras_added() -> None:
    argv = command()
    binds = [argv[i + 1] for i, flag in enumerate(argv) if flag == "--bindmount"]
    assert binds == ["/w/job/box:/box", "/w/job/tmp:/tmp", "/w/job/shm:/dev/shm"]
    assert argv[argv.index("--seccomp_policy") + 1] == "/policy/seccomp.kafel"
    assert argv[argv.index("--log_fd") + 1] == "3"
    assert "--log" not in argv  # no log file: the job could fill the file system it is on
    assert argv[argv.index("--bindmount_ro") + 1] == "/opt/lib:/lib/extra"
    assert argv[argv.index("--env") + 1] == "EXTRA=1"
    assert argv[argv.index("--cgroup_mem_max") + 1] == "1"


def test_limits_are_rounded_up_and_the_backstops_sit_above_them() -> None:
    flags = limit_flags(LIMITS)
    values = dict(zip(flags[::2], flags[1::2], strict=True))
    assert values == {
        "--time_limit": "4",  # ceil(2.001 s) + 1
        "--rlimit_cpu": "3",  # ceil(1.5 s) + 1
        "--rlimit_fsize": "2",  # 1536 KiB -> 2 MiB
        "--rlimit_nproc": "8",
    }
