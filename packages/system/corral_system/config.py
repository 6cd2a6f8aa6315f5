"""Settings: every section of a deployable, from `CORRAL_…` variables over one TOML file.

A section is a frozen msgspec Struct owned by the package it configures (ApiSettings,
WorkerSettings, RedisSettings, SandboxSettings). It names itself with class attributes:

- `config_section`: its table in the file named by `CORRAL_CONFIG_FILE` (`[redis]`, …);
- `env_prefix` (default `CORRAL_`): its variables are `<env_prefix><FIELD>`, upper case;
- `env_names` (optional): fields whose variable breaks that rule, names kept from before.

A field may itself be a Struct: its fields are the sub-table `[section.field]` in the file and
the variables `<env_prefix><FIELD>_<SUBFIELD>`, named `field.subfield` in `config`'s rows. A
field whose type is another section (has its own `config_section`) is that section, loaded
once from its own table and handed to every section that holds it.

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
from typing import Annotated, Any, TypeVar

import msgspec

CONFIG_FILE_VARIABLE = "CORRAL_CONFIG_FILE"
DEFAULT_PREFIX = "CORRAL_"
# The tables of the one file both deployables share: the API reads api, limits and redis, the
# worker worker, limits, redis and sandbox. A table named nowhere here is a typo, whoever reads the file.
FILE_SECTIONS = ("api", "limits", "redis", "sandbox", "worker")
# A deployable's processes (its `processes` setting and --processes): above 1, a supervisor
# forks them (corral_system.process_supervisor).
MAX_PROCESSES = 256
Processes = Annotated[int, msgspec.Meta(ge=1, le=MAX_PROCESSES)]

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
    """The variable of `field`, a dotted path for a field of a nested Struct."""
    names: Mapping[str, str] = getattr(kind, "env_names", {})
    prefix: str = getattr(kind, "env_prefix", DEFAULT_PREFIX)
    return names.get(field) or f"{prefix}{field.replace('.', '_').upper()}"


@dataclass(frozen=True)
class _Leaf:
    """A setting of a section: a field, or a field of a nested Struct (path of two or more)."""

    path: tuple[str, ...]
    type: Any
    default: Any
    comment: str

    @property
    def name(self) -> str:
        return ".".join(self.path)

    def key(self, table: str) -> str:
        """Where it is written in the file: `[api] port`, `[limits.max] wall_time_ms`."""
        return f"[{'.'.join((table, *self.path[:-1]))}] {self.path[-1]}"


def _is_struct(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, msgspec.Struct)


def _is_section(kind: Any) -> bool:
    return _is_struct(kind) and hasattr(kind, "config_section")


def _leaves(kind: type[msgspec.Struct], path: tuple[str, ...] = (), defaults: Any = None, heading: str = "") -> list[_Leaf]:
    """Every setting of `kind`, nested Structs flattened; sections held by it are not its own."""
    notes = field_comments(kind)
    found: list[_Leaf] = []
    for field in msgspec.structs.fields(kind):
        default = _default(field) if defaults is None else getattr(defaults, field.name)
        comment = " ".join(part for part in (heading, notes.get(field.name, "")) if part)
        if _is_section(field.type):
            continue
        if _is_struct(field.type):
            found += _leaves(field.type, (*path, field.name), default, comment)
        else:
            found.append(_Leaf((*path, field.name), field.type, default, comment))
    return found


def _held_sections(kind: type[msgspec.Struct]) -> dict[str, type[msgspec.Struct]]:
    """The fields of `kind` that are other sections, by field name."""
    return {field.name: field.type for field in msgspec.structs.fields(kind) if _is_section(field.type)}


def check_sections(kinds: Sequence[type[msgspec.Struct]]) -> None:
    """A deployable's sections have distinct tables and distinct variable names, and every
    section one of them holds is loaded too."""
    tables = [section_name(kind) for kind in kinds]
    owners: dict[str, str] = {}
    for kind in kinds:
        for leaf in _leaves(kind):
            name = variable(kind, leaf.name)
            if name in owners or name == CONFIG_FILE_VARIABLE:
                other = owners.get(name, "the config file")
                raise TypeError(f"{name} would set both {other} and {kind.__name__}.{leaf.name}")
            owners[name] = f"{kind.__name__}.{leaf.name}"
        for field, held in _held_sections(kind).items():
            if held not in kinds:
                raise TypeError(f"{kind.__name__}.{field} is the section {held.__name__}, which is not loaded")
    if len(set(tables)) != len(tables):
        raise TypeError(f"two sections share a table: {tables}")


def load_settings(kinds: Sequence[type[msgspec.Struct]], environ: Mapping[str, str] | None = None) -> Settings:
    check_sections(kinds)
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    path = environ.get(CONFIG_FILE_VARIABLE)
    tables = _read_file(Path(path), {section_name(kind) for kind in kinds}, problems) if path else {}
    structs: dict[type[msgspec.Struct], msgspec.Struct] = {}
    rows: dict[type[msgspec.Struct], list[Setting]] = {}
    # A section that holds others is made after them (one level: a held section holds none).
    for kind in sorted(kinds, key=lambda kind: bool(_held_sections(kind))):
        held = {field: structs.get(section) for field, section in _held_sections(kind).items()}
        if None in held.values():
            continue  # what is wrong with the held section is reported already
        if loaded := _load_section(kind, environ, tables.get(section_name(kind), {}), path, held, problems):
            structs[kind], rows[kind] = loaded
    if problems:
        raise ConfigError("bad settings:\n  " + "\n  ".join(problems))
    return Settings(structs, [row for kind in kinds for row in rows[kind]])


def _load_section(
    kind: type[S],
    environ: Mapping[str, str],
    in_file: Mapping[str, Any],
    path: str | None,
    held: Mapping[str, Any],
    problems: list[str],
) -> tuple[S, list[Setting]] | None:
    """The section's Struct and rows, or None after adding what is wrong with it to `problems`."""
    table = section_name(kind)
    before = len(problems)
    problems += [f"config file {path}: {problem}" for problem in _unknown_keys(kind, table, in_file)]
    values: dict[str, Any] = dict(held)
    sources: dict[str, str] = {}
    for leaf in _leaves(kind):
        name = variable(kind, leaf.name)
        found = _lookup(in_file, leaf.path)
        if name in environ:
            value, sources[leaf.name], where = environ[name], "env", name
        elif found is not None:
            value, sources[leaf.name] = found, "file"
            where = f"{name} ({leaf.key(table)} in {path})"
        elif len(leaf.path) > 1:
            value = leaf.default  # a nested Struct is made whole, from its own defaults
        else:
            continue
        # Each value on its own first, so that one start reports every bad value, not the first.
        if leaf.name in sources and (problem := _check(where, leaf.type, value)):
            problems.append(problem)
        _put(values, leaf.path, value)
    if len(problems) > before:
        return None
    try:
        made = msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as error:  # a rule between fields (__post_init__)
        problems.append(f"[{table}] {error}" + _variables_named(kind, str(error)))
        return None
    rows = [
        Setting(
            section=table,
            name=leaf.name,
            variable=variable(kind, leaf.name),
            value=_get(made, leaf.path),
            default=leaf.default,
            source=sources.get(leaf.name, "default"),
        )
        for leaf in _leaves(kind)
    ]
    return made, rows


def _unknown_keys(kind: type[msgspec.Struct], table: str, in_file: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    held = _held_sections(kind)
    types = {field.name: field.type for field in msgspec.structs.fields(kind)}
    for key, value in in_file.items():
        if key in held:
            problems.append(f"[{table}] {key!r} is not a setting: it is the section [{section_name(held[key])}]")
        elif key not in types:
            problems.append(f"[{table}] {key!r} is not a setting")
        elif _is_struct(types[key]) and not isinstance(value, dict):
            problems.append(f"[{table}] {key!r} must be the table [{table}.{key}]")
        elif _is_struct(types[key]):
            problems += _unknown_keys(types[key], f"{table}.{key}", value)
    return problems


def _lookup(table: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The file's value at `path`, or None where it has none (TOML has no null)."""
    for key in path[:-1]:
        table = table.get(key)  # type: ignore[assignment]
        if not isinstance(table, dict):
            return None
    return table.get(path[-1])


def _put(values: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        values = values.setdefault(key, {})
    values[path[-1]] = value


def _get(made: msgspec.Struct, path: tuple[str, ...]) -> Any:
    value: Any = made
    for key in path:
        value = getattr(value, key)
    return value


def _variables_named(kind: type[msgspec.Struct], error: str) -> str:
    """The variables of the settings an error names: a field by its name (`max_processes`), a
    field of a held section by its dotted path there (`limits.max.wall_time_ms`)."""
    named = [variable(kind, leaf.name) for leaf in _leaves(kind) if re.search(rf"\b{leaf.path[-1]}\b", error)]
    for field, held in _held_sections(kind).items():
        named += [variable(held, leaf.name) for leaf in _leaves(held) if f"{field}.{leaf.name}" in error]
    return f" ({', '.join(named)})" if named else ""


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


# What operators read: `<cli> config` and the tables of docs/configuration.md.


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
    """The docs' table of one section, from its Struct: names, defaults, bounds, comments."""
    lines = [
        f"| variable | key in `[{section_name(kind)}]` | default | allowed | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for leaf in _leaves(kind):
        cells = (
            f"`{variable(kind, leaf.name)}`",
            f"`{leaf.name}`",
            f"`{show(leaf.default)}`",
            _allowed(leaf.type),
            leaf.comment,
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
    """A section's block in docs/configuration.md, markers included: what that page must contain."""
    table = section_name(kind)
    return f"{BEGIN.format(table)}\n{markdown_table(kind)}{END.format(table)}\n"


def markdown(kinds: Sequence[type[msgspec.Struct]]) -> str:
    return "\n".join(markdown_block(kind) for kind in kinds)


def documented_block(readme: str, kind: type[msgspec.Struct]) -> str | None:
    """The docs' block for `kind`'s section, markers included, or None when it has none."""
    begin, end = BEGIN.format(section_name(kind)), END.format(section_name(kind))
    start = readme.find(begin)
    stop = readme.find(end, start)
    if start < 0 or stop < 0:
        return None
    return readme[start : stop + len(end)] + "\n"
