"""Corral's languages as Judge0 and Piston name them: one row per Corral language.

Data, not code: a language Corral learns to run (its workers announce it) shows up in both APIs
once it has a row here. Judge0 ids are those of Judge0 CE 1.13's published table (its newest
entry for the family); its names carry the version the workers actually run.
"""

from __future__ import annotations

import msgspec

from corral_core.ports import Runtime


class LanguageRow(msgspec.Struct, frozen=True, kw_only=True):
    language: str  # Corral's name
    judge0_id: int
    judge0_name: str  # "{version}" is replaced by the runtime's version
    run_cmd: str  # "{source}" is replaced by the runtime's source file
    compile_cmd: str | None = None
    piston_aliases: tuple[str, ...] = ()
    # Whether Piston answers a compile stage of its own for it (not for java and go, which its
    # packages run in one step); Corral compiles them apart either way.
    piston_compile_stage: bool = True


ROWS = (
    LanguageRow(
        language="python",
        judge0_id=71,
        judge0_name="Python ({version})",
        run_cmd="python3 {source}",
        piston_aliases=("py", "py3", "python3"),
    ),
    # The files of additional_files, with `run` and perhaps `compile` scripts (nsjail/runtimes.toml).
    LanguageRow(
        language="multifile",
        judge0_id=89,
        judge0_name="Multi-file program",
        compile_cmd="/bin/bash compile",
        run_cmd="/bin/bash run",
    ),
    LanguageRow(language="bash", judge0_id=46, judge0_name="Bash ({version})", run_cmd="bash {source}", piston_aliases=("sh",)),
    LanguageRow(
        language="c",
        judge0_id=50,
        judge0_name="C (GCC {version})",
        compile_cmd="gcc {source}",
        run_cmd="./a.out",
        piston_aliases=("gcc",),
    ),
    LanguageRow(
        language="cpp",
        judge0_id=54,
        judge0_name="C++ (GCC {version})",
        compile_cmd="g++ {source}",
        run_cmd="./a.out",
        piston_aliases=("c++", "g++"),
    ),
    LanguageRow(
        language="javascript",
        judge0_id=63,
        judge0_name="JavaScript (Node.js {version})",
        run_cmd="node {source}",
        piston_aliases=("js", "node", "node-js", "node-javascript"),
    ),
    LanguageRow(language="go", judge0_id=60, judge0_name="Go ({version})", compile_cmd="go build {source}", run_cmd="./main", piston_aliases=("golang",), piston_compile_stage=False),
    LanguageRow(language="rust", judge0_id=73, judge0_name="Rust ({version})", compile_cmd="rustc {source}", run_cmd="./main", piston_aliases=("rs",)),
    LanguageRow(language="java", judge0_id=62, judge0_name="Java (OpenJDK {version})", compile_cmd="javac {source}", run_cmd="java Main", piston_compile_stage=False),
    LanguageRow(language="ruby", judge0_id=72, judge0_name="Ruby ({version})", run_cmd="ruby {source}", piston_aliases=("rb",)),
)

BY_LANGUAGE = {row.language: row for row in ROWS}
BY_JUDGE0_ID = {row.judge0_id: row for row in ROWS}


class OfferedLanguage(msgspec.Struct, frozen=True):
    """A runtime some live worker offers, with its row (None: no row names it yet)."""

    runtime: Runtime
    row: LanguageRow | None

    @property
    def compiled(self) -> bool:
        return self.row is not None and self.row.compile_cmd is not None

    def judge0_name(self) -> str:
        if self.row is None:
            return f"{self.runtime.language} ({self.runtime.version})"
        return self.row.judge0_name.format(version=self.runtime.version)


def offered(runtimes: list[Runtime]) -> list[OfferedLanguage]:
    """One entry per (language, version) the workers offer, newest version first per language."""
    unique = {(runtime.language, runtime.version): runtime for runtime in runtimes}
    ordered = sorted(unique.values(), key=lambda r: (r.language, _version_key(r.version)), reverse=True)
    ordered.sort(key=lambda r: r.language)
    return [OfferedLanguage(runtime, BY_LANGUAGE.get(runtime.language)) for runtime in ordered]


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))
