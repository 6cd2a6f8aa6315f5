"""Adding a runtime is data: a runtimes.toml of the operator's own (the worker's policy_dir,
CORRAL_NSJAIL_POLICY_DIR) adds Perl, which Corral's code knows nothing of, and a job runs in it
through HTTP on the real stack."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral_sandbox.policy_files import policy_dir
from corral_testbed.redis_server import RedisServerProcess, require_redis_server
from corral_testbed.services import Corral, corral

# The example in docs/languages.md (Adding a language), as an operator would write it.
PERL = """
[runtimes.perl]
source = "main.pl"
argv = ["/usr/bin/perl", "{source}", "{args}"]
version_argv = ["/usr/bin/perl", "-e", "printf '%vd', $^V"]
default_limits = { memory_mb = 64 }
selftest_code = "print 6 * 7, qq(\\n);"
selftest_stdout = "42\\n"
"""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    if not Path("/usr/bin/perl").exists():
        pytest.fail("this test adds Perl as a runtime: /usr/bin/perl (Debian's perl-base) is missing")
    require_redis_server()
    # The shipped jail config and seccomp policy, and a runtimes table of the operator's own.
    policy = tmp_path_factory.mktemp("policy")
    shipped = policy_dir()
    for name in ("default.cfg", "seccomp.kafel"):
        shutil.copyfile(shipped / name, policy / name)
    (policy / "runtimes.toml").write_text(PERL)
    redis = RedisServerProcess(tmp_path_factory.mktemp("redis"))
    redis.start()
    try:
        env = {"CORRAL_NSJAIL_POLICY_DIR": str(policy)}
        with corral(redis.url, tmp_path_factory.mktemp("logs"), workers=1, env=env) as running:
            yield running
    finally:
        redis.stop()


def test_the_runtime_is_offered_with_its_version_and_limits(service: Corral) -> None:
    runtimes = httpx.get(f"{service.url}/runtimes").json()
    assert [runtime["language"] for runtime in runtimes] == ["perl"], runtimes
    assert runtimes[0]["version"].startswith("5."), runtimes


def test_a_job_runs_in_it_with_stdin_arguments_and_its_exit_code(service: Corral) -> None:
    code = 'my $s = <STDIN>; chomp $s; print "hi $s $ARGV[0]\\n"; exit 3;'
    response = httpx.post(
        f"{service.url}/execute",
        params={"wait": 30},
        json={"language": "perl", "code": code, "stdin": "there\n", "args": ["arg1"]},
        timeout=40,
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert (result["verdict"], result["exit_code"], result["stdout"]) == ("runtime_error", 3, "hi there arg1\n"), result


def test_a_language_the_worker_was_not_given_is_refused(service: Corral) -> None:
    response = httpx.post(f"{service.url}/execute", json={"language": "python", "code": "print(1)"}, timeout=10)
    assert response.status_code == 422, response.text
