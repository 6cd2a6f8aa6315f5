"""The policy directory and the runtimes table: found in one place, checked before use."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral_sandbox.policy_files import PolicyError, RuntimeSpec, load_runtimes, policy_dir

GOOD = """
[runtimes.python]
source = "main.py"
argv = ["/usr/bin/python3", "-s", "{source}", "{args}"]
version = "3.11.2"
"""


def write_policy(directory: Path, runtimes: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "runtimes.toml").write_text(runtimes)
    (directory / "default.cfg").write_text("")
    (directory / "seccomp.kafel").write_text("")
    return directory


def test_the_packaged_policy_is_the_repos_and_it_loads() -> None:
    directory = policy_dir()
    runtimes = load_runtimes(directory)
    assert (directory / "default.cfg").is_file() and (directory / "seccomp.kafel").is_file()
    assert runtimes["python"].argv[0] == "/usr/bin/python3"
    assert runtimes["python"].source == "main.py"


def test_a_configured_directory_takes_precedence_over_the_packaged_one(tmp_path: Path) -> None:
    explicit = write_policy(tmp_path / "explicit", GOOD)
    assert policy_dir(str(explicit)) == explicit
    assert policy_dir("") == policy_dir(None) != explicit


def test_a_directory_without_runtimes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="runtimes.toml"):
        policy_dir(str(tmp_path))


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (GOOD.replace('"{source}", ', ""), "exactly once"),
        (GOOD.replace('"/usr/bin/python3"', '"python3"'), "absolute path"),
        (GOOD.replace('source = "main.py"', 'source = "../main.py"'), "plain file name"),
        (GOOD.replace('version = "3.11.2"', ""), "version"),
        (GOOD + 'config = "missing.cfg"\n', "missing.cfg"),
        (GOOD + "surprise = 1\n", "surprise"),
        (GOOD + 'env = ["NOEQUALS"]\n', "NAME=value"),
    ],
)
def test_a_wrong_runtimes_table_is_refused(tmp_path: Path, broken: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_runtimes(write_policy(tmp_path, broken))


def test_the_command_substitutes_whole_elements_only() -> None:
    spec = RuntimeSpec(source="main.py", argv=("/bin/x", "{source}", "--", "{args}", "{source}x"), version="1")
    assert spec.command(("{source}", "a b")) == ["/bin/x", "main.py", "--", "{source}", "a b", "{source}x"]


def test_each_runtimes_own_seccomp_policy_keeps_the_default_policy_whole() -> None:
    """Kafel in NsJail 3.6 has no #include: a runtime's policy copies the default's groups and
    adds its own; a change to the default must reach every copy."""
    directory = policy_dir()
    base = (directory / "seccomp.kafel").read_text()
    groups = base[base.index("POLICY refused_gently") : base.index("POLICY corral {")]
    for spec in load_runtimes(directory).values():
        for name in {spec.seccomp, spec.compile_seccomp or spec.seccomp}:
            assert groups in (directory / name).read_text(), f"{name} differs from seccomp.kafel's groups"
