"""`corral-api`: serve the HTTP API (the API PEX's entry point)."""

from __future__ import annotations

import logging
import sys

import click
import msgspec
import uvicorn

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_system.config import ConfigError, load_settings


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
    container = ApiContainer(settings=settings)
    uvicorn.run(
        create_app(container),
        host=host or settings.host,
        port=port or settings.port,
        log_level=log_level,
        access_log=False,
    )


@main.command("check-config")
def check_config() -> None:
    """Validate the settings and print them."""
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(_settings())).decode() + "\n")


def _settings() -> ApiSettings:
    try:
        settings = load_settings(ApiSettings)
        settings.limit_policy()  # a default above its maximum is refused here, at start
    except (ConfigError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    return settings


if __name__ == "__main__":
    main()
