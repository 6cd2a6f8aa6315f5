"""Settings: every section of a deployable, from `CORRAL_…` variables over one TOML file.

A section is a frozen msgspec Struct owned by the package it configures (ApiSettings,
WorkerSettings, RedisSettings, SandboxSettings). It names itself with class attributes:

- `config_section`: its table in the file named by `CORRAL_CONFIG_FILE` (`[redis]`, …);
- `env_prefix` (default `CORRAL_`): its variables are `<env_prefix><FIELD>`, upper case;
- `env_names` (optional): fields whose variable breaks that rule, names kept from before.

Both deployables read the same file: each refuses an unknown table, or an unknown key in one
of its own tables, and skips the tables that only the other one reads. Every bad value is
reported at once, with its variable, before anything starts.
"""

from __future__ import annotations

import inspect
import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

CONFIG_FILE_VARIABLE = "CORRAL_CONFIG_FILE"
DEFAULT_PREFIX = "CORRAL_"
# The tables of the one file both deployables share: the API reads api and redis, the worker
# worker, redis and sandbox. A table named nowhere here is a typo, whoever reads the file.
FILE_SECTIONS = ("api", "redis", "sandbox", "worker")

S = TypeVar("S", bound=msgspec.Struct)


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Setting:
    """One setting in effect, and where its value came from."""

    section: str
    name: str
    variable: str
    value: Any
    default: Any
    source: str  # "default", "file" or "env"


class Settings:
    """The sections of one deployable, validated, and the provenance of every value."""

    def __init__(self, structs: Mapping[type[msgspec.Struct], msgspec.Struct], rows: Sequence[Setting]) -> None:
        self._structs = dict(structs)
        self.rows = tuple(rows)

    def get(self, kind: type[S]) -> S:
        found = self._structs[kind]
        assert isinstance(found, kind)
        return found

    def __iter__(self) -> Iterator[Setting]:
        return iter(self.rows)


def section_name(kind: type[msgspec.Struct]) -> str:
    name: str = getattr(kind, "config_section", "")
    if name not in FILE_SECTIONS:
        raise TypeError(f"{kind.__name__}.config_section must be one of {', '.join(FILE_SECTIONS)}")
    return name


def variable(kind: type[msgspec.Struct], field: str) -> str:
    names: Mapping[str, str] = getattr(kind, "env_names", {})
    prefix: str = getattr(kind, "env_prefix", DEFAULT_PREFIX)
    return names.get(field) or f"{prefix}{field.upper()}"


def check_sections(kinds: Sequence[type[msgspec.Struct]]) -> None:
    """A deployable's sections have distinct tables and distinct variable names."""
    tables = [section_name(kind) for kind in kinds]
    owners: dict[str, str] = {}
    for kind in kinds:
        for field in kind.__struct_fields__:
            name = variable(kind, field)
            if name in owners or name == CONFIG_FILE_VARIABLE:
                other = owners.get(name, "the config file")
                raise TypeError(f"{name} would set both {other} and {kind.__name__}.{field}")
            owners[name] = f"{kind.__name__}.{field}"
    if len(set(tables)) != len(tables):
        raise TypeError(f"two sections share a table: {tables}")


def load_settings(kinds: Sequence[type[msgspec.Struct]], environ: Mapping[str, str] | None = None) -> Settings:
    check_sections(kinds)
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    path = environ.get(CONFIG_FILE_VARIABLE)
    tables = _read_file(Path(path), {section_name(kind) for kind in kinds}, problems) if path else {}
    structs: dict[type[msgspec.Struct], msgspec.Struct] = {}
    rows: list[Setting] = []
    for kind in kinds:
        if loaded := _load_section(kind, environ, tables.get(section_name(kind), {}), path, problems):
            structs[kind] = loaded[0]
            rows += loaded[1]
    if problems:
        raise ConfigError("bad settings:\n  " + "\n  ".join(problems))
    return Settings(structs, rows)


def _load_section(
    kind: type[S], environ: Mapping[str, str], in_file: Mapping[str, Any], path: str | None, problems: list[str]
) -> tuple[S, list[Setting]] | None:
    """The section's Struct and rows, or None after adding what is wrong with it to `problems`."""
    table = section_name(kind)
    before = len(problems)
    unknown = [key for key in in_file if key not in kind.__struct_fields__]
    problems += [f"config file {path}: [{table}] {key!r} is not a setting" for key in unknown]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for field in msgspec.structs.fields(kind):
        name = variable(kind, field.name)
        if name in environ:
            values[field.name], sources[field.name], where = environ[name], "env", name
        elif field.name in in_file:
            values[field.name], sources[field.name] = in_file[field.name], "file"
            where = f"{name} ([{table}] {field.name} in {path})"
        else:
            continue
        # Each value on its own first, so that one start reports every bad value, not the first.
        if problem := _check(where, field.type, values[field.name]):
            problems.append(problem)
    if len(problems) > before:
        return None
    try:
        made = msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as error:  # a rule between fields (__post_init__)
        named = [variable(kind, name) for name in kind.__struct_fields__ if re.search(rf"\b{name}\b", str(error))]
        problems.append(f"[{table}] {error}" + (f" ({', '.join(named)})" if named else ""))
        return None
    rows = [
        Setting(
            section=table,
            name=field.name,
            variable=variable(kind, field.name),
            value=getattr(made, field.name),
            default=_default(field),
            source=sources.get(field.name, "default"),
        )
        for field in msgspec.structs.fields(kind)
    ]
    return made, rows


def _check(where: str, kind: Any, value: Any) -> str | None:
    try:
        # strict=False lets "8000" from the environment become the int the field asks for.
        msgspec.convert(value, kind, strict=False)
    except msgspec.ValidationError as error:
        allowed = _allowed(kind).replace("`", "")
        return f"{where}: {error}" + (f" (allowed: {allowed})" if allowed and allowed != "text" else "")
    return None


def _read_file(path: Path, own: set[str], problems: list[str]) -> dict[str, dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    tables: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key not in FILE_SECTIONS or not isinstance(value, dict):
            where = "unknown section" if isinstance(value, dict) else "setting outside a section"
            known = ", ".join(f"[{name}]" for name in FILE_SECTIONS)
            problems.append(f"config file {path}: {where} {key!r} (the sections are {known})")
        elif key in own:
            tables[key] = value
    return tables


def _default(field: msgspec.structs.FieldInfo) -> Any:
    if field.default is not msgspec.NODEFAULT:
        return field.default
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return None


# What operators read: `<cli> config` and the README's tables.


def show(value: Any) -> str:
    """A value as it would be written in the TOML file (JSON for the scalars Corral uses)."""
    return "unset" if value is None else msgspec.json.encode(value).decode()


def text_table(settings: Iterable[Setting]) -> str:
    header = ("section", "name", "variable", "value", "default", "source")
    rows = [header] + [(s.section, s.name, s.variable, show(s.value), show(s.default), s.source) for s in settings]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def markdown_table(kind: type[msgspec.Struct]) -> str:
    """The README's table of one section, from its Struct: names, defaults, bounds, comments."""
    notes = field_comments(kind)
    lines = [
        f"| variable | key in `[{section_name(kind)}]` | default | allowed | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for field in msgspec.structs.fields(kind):
        cells = (
            f"`{variable(kind, field.name)}`",
            f"`{field.name}`",
            f"`{show(_default(field))}`",
            _allowed(field.type),
            notes.get(field.name, ""),
        )
        lines.append("| " + " | ".join(cell.replace("|", "\\|").replace("<", "&lt;") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def field_comments(kind: type[msgspec.Struct]) -> dict[str, str]:
    """The comment above each field in the Struct's source (one comment may head a run of fields)."""
    try:
        lines = inspect.getsource(kind).splitlines()[1:]
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    comment: list[str] = []
    after_field = False
    for line in lines:
        text = line.strip()
        declared = re.match(r"(\w+)\s*:", text)
        if text.startswith("#"):
            comment = [] if after_field else comment
            comment.append(text.lstrip("#").strip())
            after_field = False
        elif declared and declared.group(1) in kind.__struct_fields__:
            if comment:
                found[declared.group(1)] = " ".join(comment)
            after_field = True
        else:
            comment, after_field = [], False
    return found


def _allowed(kind: Any) -> str:
    info = msgspec.inspect.type_info(kind)
    if isinstance(info, msgspec.inspect.UnionType):
        parts = [_allowed_info(member) for member in info.types if not isinstance(member, msgspec.inspect.NoneType)]
        return " or ".join(part for part in parts if part)
    return _allowed_info(info)


def _allowed_info(info: msgspec.inspect.Type) -> str:
    if isinstance(info, msgspec.inspect.EnumType):
        return ", ".join(f"`{member.value}`" for member in info.cls)
    if isinstance(info, msgspec.inspect.BoolType):
        return "`true`, `false`"
    if isinstance(info, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        low, high = info.ge, info.le
        word = "integer" if isinstance(info, msgspec.inspect.IntType) else "number"
        if low is not None and high is not None:
            return f"{word} {low} … {high}"
        if low is not None:
            return f"{word} ≥ {low}"
        return word
    if isinstance(info, msgspec.inspect.StrType):
        return "text"
    return ""


BEGIN = "<!-- settings [{}]: generated from its Struct by `corral-api config --markdown` (or corral-worker's) -->"
END = "<!-- end of settings [{}] -->"


def markdown_block(kind: type[msgspec.Struct]) -> str:
    """A section's README block, markers included: what README.md must contain."""
    table = section_name(kind)
    return f"{BEGIN.format(table)}\n{markdown_table(kind)}{END.format(table)}\n"


def markdown(kinds: Sequence[type[msgspec.Struct]]) -> str:
    return "\n".join(markdown_block(kind) for kind in kinds)


def documented_block(readme: str, kind: type[msgspec.Struct]) -> str | None:
    """The README's block for `kind`'s section, markers included, or None when it has none."""
    begin, end = BEGIN.format(section_name(kind)), END.format(section_name(kind))
    start = readme.find(begin)
    stop = readme.find(end, start)
    if start < 0 or stop < 0:
        return None
    return readme[start : stop + len(end)] + "\n"
