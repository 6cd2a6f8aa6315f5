"""What the deployables' command lines share: their settings, loaded or reported as the
command's error, and the `config` command that shows them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
import msgspec

from corral_system.config import MAX_PROCESSES, ConfigError, Settings, load_settings, markdown, text_table

C = TypeVar("C", bound=Callable[..., Any])

# Every deployable's command that runs it logs at this level.
log_level_option = click.option("--log-level", default="info", show_default=True)


def processes_option(what: str, variable: str) -> Callable[[C], C]:
    """The --processes option of a deployable's command: `what` they are, and the variable
    its `processes` setting is read from."""
    return click.option(
        "--processes",
        type=click.IntRange(1, MAX_PROCESSES),
        help=f"{what}; above 1, under a supervisor [{variable}, default 1].",
    )


def settings_of(sections: Sequence[type[msgspec.Struct]]) -> Settings:
    """The settings, or the command ended with every bad value (click's error, not a traceback)."""
    try:
        return load_settings(sections)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def config_command(sections: Sequence[type[msgspec.Struct]]) -> click.Command:
    @click.command()
    @click.option("--markdown", "as_markdown", is_flag=True, help="Print the tables of these settings in docs/configuration.md instead.")
    def config(as_markdown: bool) -> None:
        """Check the settings, then print each: section, name, variable, value, default, source."""
        click.echo(markdown(sections) if as_markdown else text_table(settings_of(sections)), nl=False)

    return config
