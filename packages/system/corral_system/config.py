"""Settings from the environment (`CORRAL_…`) and, optionally, a TOML file.

Each deployable declares its settings as a frozen msgspec Struct with defaults; this module
fills it from `CORRAL_<FIELD>` variables, over the values of the file named by
`CORRAL_CONFIG_FILE`, and refuses the whole start with one message per bad value.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec

PREFIX = "CORRAL_"
S = TypeVar("S", bound=msgspec.Struct)


class ConfigError(Exception):
    pass


def load_settings(kind: type[S], environ: Mapping[str, str] | None = None) -> S:
    environ = os.environ if environ is None else environ
    fields = set(kind.__struct_fields__)
    values: dict[str, Any] = {}
    if file := environ.get(f"{PREFIX}CONFIG_FILE"):
        values.update(_read_file(Path(file), fields))
    for key, value in environ.items():
        name = key[len(PREFIX) :].lower()
        if key.startswith(PREFIX) and name in fields:
            values[name] = value
    # Each value on its own first, so that one start reports every bad value, not the first.
    types = {field.name: field.type for field in msgspec.structs.fields(kind)}
    problems = [problem for name, value in values.items() if (problem := _check(name, types[name], value))]
    if problems:
        raise ConfigError("bad settings:\n  " + "\n  ".join(problems))
    try:
        return msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as error:  # a rule between settings (__post_init__)
        raise ConfigError(f"bad settings: {error}") from None


def _check(name: str, kind: Any, value: Any) -> str | None:
    try:
        # strict=False lets "8000" from the environment become the int the field asks for.
        msgspec.convert(value, kind, strict=False)
    except msgspec.ValidationError as error:
        return f"{PREFIX}{name.upper()}: {error}"
    return None


def _read_file(path: Path, fields: set[str]) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"config file {path}: unknown settings {', '.join(unknown)}")
    return data
