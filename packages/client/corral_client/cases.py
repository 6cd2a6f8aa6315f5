"""Test cases read from disk for `corral run --tests`: a YAML (or JSON) list, or a directory of
`N.in` / `N.out` pairs as judges ship them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from corral_client.models import TestCase

# The fields a test's text may be written as a bare YAML number in (`stdin: 5`): they are text.
_TEXT_FIELDS = ("name", "stdin", "expected_stdout")


class BadTests(Exception):
    """The tests' file or directory cannot be read as tests; the message says where."""


def read_tests(path: Path) -> list[TestCase]:
    """The tests in `path`: a directory of `.in`/`.out` pairs, or a `.json` or YAML list."""
    if path.is_dir():
        return _directory(path)
    text = path.read_text()
    try:
        listed = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise BadTests(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}") from None
    if not isinstance(listed, list):
        raise BadTests(f"{path} must hold a list of tests, each with stdin, expected_stdout and so on")
    try:
        return msgspec.convert([_as_text(test) for test in listed], list[TestCase])
    except msgspec.ValidationError as error:
        raise BadTests(f"{path}: {error}") from None


def _as_text(test: Any) -> Any:
    if not isinstance(test, dict):
        return test
    shown = {key: str(value) if key in _TEXT_FIELDS and _is_number(value) else value for key, value in test.items()}
    if isinstance(args := shown.get("args"), list):
        shown["args"] = [str(arg) if _is_number(arg) else arg for arg in args]
    if isinstance(checker := shown.get("checker"), str):
        shown["checker"] = {"kind": checker}  # `checker: tokens` for a checker without options
    return shown


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _directory(path: Path) -> list[TestCase]:
    inputs = {file.stem: file for file in path.glob("*.in") if file.is_file()}
    outputs = {file.stem: file for file in path.glob("*.out") if file.is_file()}
    if orphans := sorted(set(outputs) - set(inputs), key=natural):
        raise BadTests(f"{path}: {orphans[0]}.out has no {orphans[0]}.in")
    if not inputs:
        raise BadTests(f"{path} has no tests: name them 1.in, 2.in, … with 1.out, 2.out, … beside them")
    return [
        TestCase(
            name=name,
            stdin=inputs[name].read_text(),
            expected_stdout=outputs[name].read_text() if name in outputs else None,
        )
        for name in sorted(inputs, key=natural)
    ]


def natural(name: str) -> list[tuple[int, int | str]]:
    """Sort key of `name` with its numbers as numbers: 1, 2, …, 10, not 1, 10, 2."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]
