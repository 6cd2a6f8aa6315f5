"""The worker's settings as operators see them: the tables of docs/configuration.md and `corral-worker config`."""

from __future__ import annotations

from click.testing import CliRunner

from corral_testbed.settings_docs import config_rows, documented_tables_test
from corral_worker.cli import main
from corral_worker.settings import SECTIONS

test_the_readme_table_of_each_section_is_the_one_its_struct_produces = documented_tables_test(SECTIONS)


def test_config_prints_every_section_of_the_worker_sandbox_included() -> None:
    rows = config_rows(main, {"CORRAL_KILL_GRACE_MS": "500"})
    assert ["sandbox", "kill_grace_ms", "CORRAL_KILL_GRACE_MS", "500", "2000", "env"] in rows
    assert {row[0] for row in rows[1:]} == {"worker", "limits", "redis", "sandbox"}


def test_config_checks_the_sandbox_bounds() -> None:
    result = CliRunner().invoke(main, ["config"], env={"CORRAL_JAIL_UID_FIRST": "0", "CORRAL_SCRATCH_INODES": "1"})
    assert result.exit_code == 1
    assert "CORRAL_JAIL_UID_FIRST" in result.output and "CORRAL_SCRATCH_INODES" in result.output
