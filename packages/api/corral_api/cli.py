"""`corral-api`: serve the HTTP API (the API PEX's entry point)."""

from __future__ import annotations

import socket
import sys

import click
import uvicorn
from setproctitle import setproctitle

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import SECTIONS, ApiSettings
from corral_redis import Durability, RedisCanLoseJobs, RedisSettings, require_durable_redis
from corral_system import logs, metrics
from corral_system.config import ConfigError, Settings, load_settings, markdown, text_table
from corral_system.supervisor import Supervisor


@click.group()
def main() -> None:
    """Corral's HTTP API. Settings come from CORRAL_* variables or CORRAL_CONFIG_FILE."""


@main.command()
@click.option("--host", help="Address to listen on [CORRAL_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [CORRAL_PORT, default 8000].")
@click.option(
    "--processes",
    type=click.IntRange(1, 256),
    help="Processes sharing the port; above 1, under a supervisor [CORRAL_API_PROCESSES, default 1].",
)
@click.option("--log-level", default="info", show_default=True)
def serve(host: str | None, port: int | None, processes: int | None, log_level: str) -> None:
    """Serve the API until SIGTERM or Ctrl-C."""
    logs.configure("corral-api", log_level)
    settings = _settings()
    api = settings.get(ApiSettings)
    redis = settings.get(RedisSettings)
    # Checked once, before any process serves: Redis must not be able to lose accepted jobs.
    durability = _require_durable_redis(redis)
    processes = processes or api.processes
    # Bound once, here: every API process accepts on this one socket, and a process that dies
    # takes no connection but its own with it.
    try:
        listener = socket.create_server((host or api.host, port or api.port), backlog=2048)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host or api.host}:{port or api.port}: {error}") from None
    metrics.enable_multiprocess()

    def serve_api(index: int | None) -> int:
        setproctitle("corral-api")
        logs.set_role("corral-api" if index is None else f"corral-api: {index + 1}")
        container = ApiContainer(settings=api, redis_settings=redis, durability=durability)
        # log_config=None: uvicorn's lines go through the JSON lines set up above. The lifespan
        # (Redis connections) runs in each process.
        config = uvicorn.Config(create_app(container), log_level=log_level, access_log=False, log_config=None)
        uvicorn.Server(config).run(sockets=[listener])
        return 0

    if processes == 1:
        serve_api(None)
        return
    setproctitle("corral-api: supervisor")
    supervisor = Supervisor(
        "corral-api",
        processes,
        serve_api,
        # Long polls (?wait=) end within max_wait_s; uvicorn waits for them before it exits.
        stop_timeout_s=api.max_wait_s + 30,
        on_child_exit=metrics.retire,
    )
    sys.exit(supervisor.run())


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
