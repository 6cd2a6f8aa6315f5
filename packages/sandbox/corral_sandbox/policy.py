"""The jail policy as data: where it lives, and the runtimes table (runtimes.toml) in it.

The policy directory (the repo's nsjail/) holds NsJail configs (*.cfg), Kafel seccomp policies
(*.kafel) and runtimes.toml. `policy_dir` is the one place that decides where it is found.
"""

from __future__ import annotations

import importlib.resources
import subprocess
import tomllib
from pathlib import Path

import msgspec

RUNTIMES_FILE = "runtimes.toml"
SOURCE = "{source}"
ARGS = "{args}"


class PolicyError(Exception):
    """The policy directory or the runtimes table is missing or wrong."""


def policy_dir(configured: str | None = None) -> Path:
    """The policy directory: `configured`, else the packaged copy.

    The packaged copy is corral_sandbox/nsjail_policy: a symlink to the repo's nsjail/ in a
    checkout, the files themselves in the worker PEX.
    """
    if configured:
        path = Path(configured)
    else:
        path = Path(str(importlib.resources.files("corral_sandbox") / "nsjail_policy"))
    path = path.resolve()
    if not (path / RUNTIMES_FILE).is_file():
        raise PolicyError(f"no NsJail policy at {path} (no {RUNTIMES_FILE}); set policy_dir")
    return path


class RuntimeSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One language as runtimes.toml describes it (see the comment at the top of that file)."""

    language: str = ""
    source: str
    argv: tuple[str, ...]
    version: str = ""
    version_argv: tuple[str, ...] = ()
    config: str = "default.cfg"
    seccomp: str = "seccomp.kafel"
    bind_ro: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    # The job prepare_host runs to prove the runtime works, and what it must print.
    selftest_code: str = ""
    selftest_stdout: str = ""

    def command(self, args: tuple[str, ...]) -> list[str]:
        """The argv run in the jail: whole-element placeholders only, nothing formatted."""
        argv: list[str] = []
        for element in self.argv:
            if element == SOURCE:
                argv.append(self.source)
            elif element == ARGS:
                argv.extend(args)
            else:
                argv.append(element)
        return argv


class _RuntimesFile(msgspec.Struct, forbid_unknown_fields=True):
    runtimes: dict[str, RuntimeSpec]


def load_runtimes(directory: Path) -> dict[str, RuntimeSpec]:
    """Read and check runtimes.toml; versions are not resolved yet (see `resolve_version`)."""
    path = directory / RUNTIMES_FILE
    try:
        raw = tomllib.loads(path.read_text())
        table = msgspec.convert(raw, _RuntimesFile)
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as error:
        raise PolicyError(f"{path}: {error}") from None
    runtimes: dict[str, RuntimeSpec] = {}
    for language, spec in table.runtimes.items():
        where = f"{path} [runtimes.{language}]"
        if not spec.argv or not spec.argv[0].startswith("/"):
            raise PolicyError(f"{where}: argv must start with an absolute path")
        if spec.argv.count(SOURCE) != 1:
            raise PolicyError(f"{where}: argv must contain {SOURCE!r} exactly once")
        if "/" in spec.source or spec.source in {"", ".", ".."}:
            raise PolicyError(f"{where}: source must be a plain file name")
        if not spec.version and not spec.version_argv:
            raise PolicyError(f"{where}: give version or version_argv")
        for name in (spec.config, spec.seccomp):
            if "/" in name or not (directory / name).is_file():
                raise PolicyError(f"{where}: no file {name!r} in {directory}")
        for bind in spec.bind_ro:
            if not bind.startswith("/") or bind.count(":") > 1:
                raise PolicyError(f"{where}: bind_ro entry {bind!r} is not 'path' or 'src:dst'")
        for variable in spec.env:
            if "=" not in variable:
                raise PolicyError(f"{where}: env entry {variable!r} is not NAME=value")
        runtimes[language] = msgspec.structs.replace(spec, language=language)
    if not runtimes:
        raise PolicyError(f"{path}: no runtimes")
    return runtimes


def resolve_version(spec: RuntimeSpec) -> RuntimeSpec:
    """Fill in the version by running `version_argv` on the host (once, at worker start)."""
    if spec.version:
        return spec
    try:
        done = subprocess.run(list(spec.version_argv), capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        raise PolicyError(f"runtime {spec.language}: version command failed: {error}") from None
    version = done.stdout.strip().splitlines()[0].strip() if done.stdout.strip() else ""
    if not version:
        raise PolicyError(f"runtime {spec.language}: version command printed nothing")
    return msgspec.structs.replace(spec, version=version)
