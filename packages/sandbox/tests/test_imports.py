"""The package's modules import one another in one direction only: no cycle, not even one
hidden in a function body or behind TYPE_CHECKING; and each imports on its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import corral_sandbox

PACKAGE = "corral_sandbox"
ROOT = Path(corral_sandbox.__file__).parent


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """module -> the package's modules it imports, wherever in the file the import is.

    `from a import b` points at the module a.b if there is one, else at a. A package's parent is
    not counted: Python runs it first, but a re-exporting __init__ is no design cycle.
    """
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [target if target in sources else node.module for target in targets]
            graph[name] |= {target for target in targets if target in sources and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in `graph` (as a path that ends where it starts), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            cycle = visit(target, [*path, node])
            if cycle is not None:
                return cycle
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node, [])
        if cycle is not None:
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    sources = {name: path.read_text() for name, path in modules().items()}
    assert find_cycle(import_graph(sources)) is None


def test_a_cycle_hidden_in_a_function_body_is_found() -> None:
    # The shape host.py and jail.py had: one imports at the top, the other at call time.
    sources = {
        "corral_sandbox.host": "from corral_sandbox.jail import run_job\n",
        "corral_sandbox.jail": "def run():\n    from corral_sandbox.host import HostReport\n",
        "corral_sandbox.policy": "",
    }
    cycle = find_cycle(import_graph(sources))
    assert cycle == ["corral_sandbox.host", "corral_sandbox.jail", "corral_sandbox.host"]


def test_a_cycle_behind_type_checking_is_found() -> None:
    sources = {
        "corral_sandbox.a": "from corral_sandbox import b\n",
        "corral_sandbox.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import corral_sandbox.a\n",
    }
    assert find_cycle(import_graph(sources)) is not None


@pytest.mark.parametrize("module", sorted(modules()))
def test_each_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
