"""The language `corral run` assumes from a file's extension (--lang overrides it).

Names are Corral's; a language the server does not run is refused by the server, which lists
the ones it does.
"""

from __future__ import annotations

from pathlib import Path

BY_EXTENSION = {
    ".py": "python",
    ".sh": "bash",
    ".c": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".js": "javascript",
    ".mjs": "javascript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".rb": "ruby",
}


def language_of(path: Path) -> str | None:
    return BY_EXTENSION.get(path.suffix.lower())
