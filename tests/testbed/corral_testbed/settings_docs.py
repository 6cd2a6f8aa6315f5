"""What the API's and the worker's settings tests share: the check that docs/configuration.md
holds, for each section a deployable reads, the table its Struct produces (the page is run from
the repository's root, and `make settings-tables` rewrites it), and the rows `<cli> config` prints."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import click
import msgspec
import pytest
from click.testing import CliRunner

from corral_system.config import documented_block, markdown_block, section_name


def documented_tables_test(sections: Sequence[type[msgspec.Struct]]) -> Callable[[type[msgspec.Struct]], None]:
    """The test, one case a section, that the page's table of each of `sections` is current."""

    @pytest.mark.parametrize("kind", sections, ids=section_name)
    def test_the_readme_table_of_each_section_is_the_one_its_struct_produces(kind: type[msgspec.Struct]) -> None:
        expected = markdown_block(kind)
        assert documented_block(Path("docs/configuration.md").read_text(), kind) == expected, (
            "docs/configuration.md's settings table is stale: run `make settings-tables`, which rewrites it as:\n"
            f"{expected}"
        )

    return test_the_readme_table_of_each_section_is_the_one_its_struct_produces


def config_rows(main: click.Command, env: Mapping[str, str]) -> list[list[str]]:
    """The words of each line `main config` prints with `env` and no config file; it must succeed."""
    result = CliRunner().invoke(main, ["config"], env={**env, "CORRAL_CONFIG_FILE": ""})
    assert result.exit_code == 0, result.output
    return [line.split() for line in result.output.splitlines()]
