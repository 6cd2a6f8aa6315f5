"""The jail policy as data: where it lives, and the runtimes table (runtimes.toml) in it.

The policy directory (the repo's nsjail/) holds NsJail configs (*.cfg), Kafel seccomp policies
(*.kafel) and runtimes.toml. `policy_dir` is the one place that decides where it is found.
"""

from __future__ import annotations

import importlib.resources
import os
import subprocess
import tomllib
from pathlib import Path

import msgspec

from corral_core.job import LimitRequest
from corral_sandbox.java_source import source_and_entry

RUNTIMES_FILE = "runtimes.toml"
SOURCE = "{source}"
ARGS = "{args}"
# Where a compile command takes the job's compiler arguments (Program.compiler_args).
COMPILER_ARGS = "{compiler_args}"
ARTIFACT = "{artifact}"
ENTRY = "{entry}"
# How a runtime names its source after the code: "" keeps `source`; "java_class" names it after
# the public class and runs that class (java_source.py).
SOURCE_FROM = ("", "java_class")


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
    # Symlinks made in the jail's own root, "target:link" (nothing on the host is touched).
    symlinks: tuple[str, ...] = ()
    # The job prepare_host runs to prove the runtime works, and what it must print.
    selftest_code: str = ""
    selftest_stdout: str = ""
    # Compiled languages: the compile command (its own jail), the one file it leaves in /box
    # that moves to the run's fresh jail, and the compile jail's seccomp policy.
    compile_argv: tuple[str, ...] = ()
    artifact: str = ""
    compile_seccomp: str = ""
    # Processes (threads count) and file size (the artifact) of the compile stage.
    compile_max_processes: int = 64
    compile_max_file_size_mb: int = 64
    # "file:jail_path": a file of the policy bound read-only at jail_path in every run, which
    # lets a jail of this runtime start before its job is known (warm.py); "" for none.
    warm_hook: str = ""
    # The source's file name and the entry point ("{entry}", a class) read from the code.
    source_from: str = ""
    entry: str = ""
    # Paths that must exist for the runtime to be offered (besides the commands' own).
    requires: tuple[str, ...] = ()
    # Limits other than the server's (Limits field names): defaults, and maxima that can only
    # lower the server's (corral_core.policy.LimitPolicy.for_runtime).
    default_limits: LimitRequest = LimitRequest()
    max_limits: LimitRequest = LimitRequest()

    @property
    def compiled(self) -> bool:
        return bool(self.compile_argv)

    @property
    def warmable(self) -> bool:
        return bool(self.warm_hook) and not self.compiled

    def for_code(self, code: str) -> RuntimeSpec:
        """This runtime for one program: its source file name and entry point, when the
        runtime reads them from the code (only names java_source.py checked as plain)."""
        if self.source_from != "java_class":
            return self
        source, entry = source_and_entry(code, self.entry)
        return msgspec.structs.replace(self, source=source, entry=entry)

    def warm_hook_bind(self, directory: Path) -> str:
        """The --bindmount_ro argument of the warm hook: policy file, then jail path."""
        file, _, jail_path = self.warm_hook.partition(":")
        return f"{directory / file}:{jail_path}"

    def command(self, args: tuple[str, ...]) -> list[str]:
        """The argv run in the jail: whole-element placeholders only, nothing formatted."""
        return self._fill(self.argv, args)

    def compile_command(self, compiler_args: tuple[str, ...] = ()) -> list[str]:
        """The compiler's argv, the job's compiler arguments each one element of it."""
        return self._fill(self.compile_argv, compiler_args)

    @property
    def takes_compiler_args(self) -> bool:
        return COMPILER_ARGS in self.compile_argv

    def _fill(self, template: tuple[str, ...], args: tuple[str, ...]) -> list[str]:
        argv: list[str] = []
        for element in template:
            if element == SOURCE:
                argv.append(self.source)
            elif element == ARTIFACT:
                argv.append(self.artifact)
            elif element == ENTRY:
                argv.append(self.entry)
            elif element in (ARGS, COMPILER_ARGS):
                argv.extend(args)
            else:
                argv.append(element)
        return argv

    def installed(self) -> bool:
        """Whether this host has what the runtime runs: it is offered only then."""
        # A compiled runtime's argv[0] is its artifact, a path in the jail only.
        run = [] if self.compiled else [self.argv[0]]
        paths = [*run, *self.compile_argv[:1], *self.version_argv[:1], *self.requires]
        return all(os.path.exists(path) for path in paths)


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
        if spec.compiled:
            if not spec.compile_argv[0].startswith("/") or spec.compile_argv.count(SOURCE) != 1:
                raise PolicyError(f"{where}: compile_argv must start with an absolute path and name {SOURCE!r} once")
            if "/" in spec.artifact or spec.artifact in {"", ".", "..", spec.source}:
                raise PolicyError(f"{where}: a compiled runtime needs an artifact, a plain file name")
            if SOURCE in spec.argv:
                raise PolicyError(f"{where}: the run has no source, only {ARTIFACT!r}")
            if spec.compile_argv.count(COMPILER_ARGS) > 1:
                raise PolicyError(f"{where}: compile_argv may name {COMPILER_ARGS!r} once at most")
        elif spec.argv.count(SOURCE) != 1:
            raise PolicyError(f"{where}: argv must contain {SOURCE!r} exactly once")
        if COMPILER_ARGS in spec.argv:
            raise PolicyError(f"{where}: {COMPILER_ARGS!r} belongs in compile_argv, not argv")
        if "/" in spec.source or spec.source in {"", ".", ".."}:
            raise PolicyError(f"{where}: source must be a plain file name")
        if spec.source_from not in SOURCE_FROM:
            raise PolicyError(f"{where}: source_from must be one of {SOURCE_FROM}")
        if bool(spec.source_from) != (ENTRY in (*spec.argv, *spec.compile_argv)) or (spec.source_from and not spec.entry):
            raise PolicyError(f"{where}: source_from, entry and an {ENTRY!r} element come together")
        if not spec.version and not spec.version_argv:
            raise PolicyError(f"{where}: give version or version_argv")
        for name in (spec.config, spec.seccomp, *([spec.compile_seccomp] if spec.compile_seccomp else [])):
            if "/" in name or not (directory / name).is_file():
                raise PolicyError(f"{where}: no file {name!r} in {directory}")
        if spec.warm_hook:
            file, _, jail_path = spec.warm_hook.partition(":")
            if "/" in file or not (directory / file).is_file() or not jail_path.startswith("/") or ":" in jail_path:
                raise PolicyError(f"{where}: warm_hook {spec.warm_hook!r} is not 'file:/jail/path' with a file here")
            if spec.compiled or spec.argv[-2:] != (SOURCE, ARGS):
                raise PolicyError(f"{where}: warm_hook needs an interpreted runtime whose argv ends in source, args")
        for bind in spec.bind_ro:
            if not bind.startswith("/") or bind.count(":") > 1:
                raise PolicyError(f"{where}: bind_ro entry {bind!r} is not 'path' or 'src:dst'")
        for link in spec.symlinks:
            target, _, name = link.partition(":")
            if not target.startswith("/") or not name.startswith("/") or ":" in name or name.startswith("/box"):
                raise PolicyError(f"{where}: symlinks entry {link!r} is not 'target:link' (absolute, outside /box)")
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
