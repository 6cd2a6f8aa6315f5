"""`corral-api`: serve the HTTP API (the API PEX's entry point)."""

from __future__ import annotations

import logging

import click
import uvicorn

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import SECTIONS, ApiSettings
from corral_redis import Durability, RedisCanLoseJobs, RedisSettings, require_durable_redis
from corral_system.config import ConfigError, Settings, load_settings, markdown, text_table


@click.group()
def main() -> None:
    """Corral's HTTP API. Settings come from CORRAL_* variables or CORRAL_CONFIG_FILE."""


@main.command()
@click.option("--host", help="Address to listen on [CORRAL_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [CORRAL_PORT, default 8000].")
@click.option("--log-level", default="info", show_default=True)
def serve(host: str | None, port: int | None, log_level: str) -> None:
    """Serve the API until SIGTERM or Ctrl-C."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings()
    api = settings.get(ApiSettings)
    redis = settings.get(RedisSettings)
    container = ApiContainer(settings=api, redis_settings=redis, durability=_require_durable_redis(redis))
    uvicorn.run(
        create_app(container),
        host=host or api.host,
        port=port or api.port,
        log_level=log_level,
        access_log=False,
    )


@main.command()
@click.option("--markdown", "as_markdown", is_flag=True, help="Print the README's tables of these settings instead.")
def config(as_markdown: bool) -> None:
    """Check the settings, then print each: section, name, variable, value, default, source."""
    click.echo(markdown(SECTIONS) if as_markdown else text_table(_settings()), nl=False)


@main.command("check-config", hidden=True)
@click.pass_context
def check_config(context: click.Context) -> None:
    """The name of `config` before it showed where each value came from."""
    context.invoke(config)


def _require_durable_redis(settings: RedisSettings) -> Durability:
    try:
        return require_durable_redis(settings)
    except RedisCanLoseJobs as error:
        raise click.ClickException(str(error)) from None


def _settings() -> Settings:
    try:
        return load_settings(SECTIONS)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


if __name__ == "__main__":
    main()
