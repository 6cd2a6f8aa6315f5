"""Core calls no builtin that does I/O or runs code. Imports and attributes (os, time, socket,
datetime.now, ...) are ruff's to refuse (corral_core/ruff.toml); ruff cannot see builtins."""

from __future__ import annotations

import ast
from importlib.resources import files

import pytest

import corral_core

IMPURE_BUILTINS = {"open", "input", "print", "breakpoint", "exec", "eval", "compile", "__import__"}


def impure_calls(source: str) -> list[str]:
    calls = [
        (node.lineno, node.func.id)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in IMPURE_BUILTINS
    ]
    return [f"line {line}: {name}()" for line, name in sorted(calls)]


def core_modules() -> list[str]:
    package = files(corral_core)
    return sorted(entry.name for entry in package.iterdir() if entry.name.endswith(".py"))


@pytest.mark.parametrize("module", core_modules())
def test_core_module_calls_no_io_builtin(module: str) -> None:
    assert impure_calls((files(corral_core) / module).read_text()) == []


def test_the_check_sees_an_open_call() -> None:
    assert impure_calls('data = open("settings.toml").read()\nprint(data)\n') == ["line 1: open()", "line 2: print()"]
