"""The worker's settings as operators see them: the tables of docs/configuration.md and `corral-worker config`."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from corral_system.config import documented_block, markdown_block, section_name
from corral_worker.cli import main
from corral_worker.settings import SECTIONS


@pytest.mark.parametrize("kind", SECTIONS, ids=section_name)
def test_the_readme_table_of_each_section_is_the_one_its_struct_produces(kind: type) -> None:
    expected = markdown_block(kind)
    assert documented_block(Path("docs/configuration.md").read_text(), kind) == expected, (
        "docs/configuration.md's settings table is stale: run `make settings-tables`, which rewrites it as:\n"
        f"{expected}"
    )


def test_config_prints_every_section_of_the_worker_sandbox_included() -> None:
    result = CliRunner().invoke(main, ["config"], env={"CORRAL_KILL_GRACE_MS": "500", "CORRAL_CONFIG_FILE": ""})
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()]
    assert ["sandbox", "kill_grace_ms", "CORRAL_KILL_GRACE_MS", "500", "2000", "env"] in rows
    assert {row[0] for row in rows[1:]} == {"worker", "limits", "redis", "sandbox"}


def test_config_checks_the_sandbox_bounds() -> None:
    result = CliRunner().invoke(main, ["config"], env={"CORRAL_JAIL_UID_FIRST": "0", "CORRAL_SCRATCH_INODES": "1"})
    assert result.exit_code == 1
    assert "CORRAL_JAIL_UID_FIRST" in result.output and "CORRAL_SCRATCH_INODES" in result.output
