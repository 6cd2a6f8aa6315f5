"""The system programs tests run for real, found on PATH."""

from __future__ import annotations

import os
import shutil

import pytest


def require_program(program: str, package: str) -> str:
    """The executable `program` (from Debian's `package`); skips the test without it (fails it
    under CI, where a missing tool is a failure)."""
    found = shutil.which(program)
    if found is None:
        message = f"{program} is not installed: install it (apt-get install {package})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found
