"""What the deployables' command lines share: their settings, loaded or reported as the
command's error, and the `config` command that shows them."""

from __future__ import annotations

from collections.abc import Sequence

import click
import msgspec

from corral_system.config import ConfigError, Settings, load_settings, markdown, text_table


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
