"""The API's settings as operators see them: the tables in docs/configuration.md and `corral-api config`."""

from __future__ import annotations

from click.testing import CliRunner

from corral_api.cli import main
from corral_api.settings import SECTIONS
from corral_testbed.settings_docs import config_rows, documented_tables_test

test_the_readme_table_of_each_section_is_the_one_its_struct_produces = documented_tables_test(SECTIONS)


def test_config_prints_each_setting_in_effect_and_where_it_came_from() -> None:
    rows = config_rows(main, {"CORRAL_PORT": "9000"})
    assert ["api", "port", "CORRAL_PORT", "9000", "8000", "env"] in rows
    assert ["redis", "max_unfinished", "CORRAL_MAX_UNFINISHED_JOBS", "10000", "10000", "default"] in rows


def test_config_refuses_bad_values_naming_each_variable() -> None:
    result = CliRunner().invoke(main, ["config"], env={"CORRAL_PORT": "0", "CORRAL_MAX_WAIT_S": "soon"})
    assert result.exit_code == 1
    assert "CORRAL_PORT" in result.output and "CORRAL_MAX_WAIT_S" in result.output
