"""`corral-worker`: run jobs on this sandbox host (the worker PEX's entry point)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket

import click
import msgspec
import uvloop

from corral_redis import RedisCanLoseJobs, RedisSettings, require_durable_redis
from corral_sandbox import HostNotReady, HostReport, SandboxSettings, prepare_host
from corral_system.config import ConfigError, Settings, load_settings, markdown, text_table
from corral_worker.container import WorkerContainer
from corral_worker.settings import SECTIONS, WorkerSettings

log = logging.getLogger("corral_worker")


@click.group()
def main() -> None:
    """Corral's worker. Settings come from CORRAL_* variables or CORRAL_CONFIG_FILE."""


@main.command()
@click.option("--concurrency", type=int, help="Jobs run at once [CORRAL_CONCURRENCY, default 2].")
@click.option("--log-level", default="info", show_default=True)
def run(concurrency: int | None, log_level: str) -> None:
    """Prepare the sandbox host, then run jobs until SIGTERM or Ctrl-C."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings()
    worker = settings.get(WorkerSettings)
    if concurrency is not None:
        worker = msgspec.structs.replace(worker, concurrency=concurrency)
    host = _prepare(settings.get(SandboxSettings))
    for line in host.describe():
        log.info("sandbox host: %s", line)
    _require_durable_redis(settings.get(RedisSettings))
    worker_id = worker.worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    container = WorkerContainer(
        settings=worker, redis_settings=settings.get(RedisSettings), worker_id=worker_id, host=host
    )
    # uvloop takes a little off every job's Redis round trips and process watching.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(container))


@main.command("check-host")
def check_host() -> None:
    """Check that this host can enforce every sandbox limit, and say what it found."""
    for line in _prepare(_settings().get(SandboxSettings)).describe():
        click.echo(line)


@main.command()
@click.option("--markdown", "as_markdown", is_flag=True, help="Print the README's tables of these settings instead.")
def config(as_markdown: bool) -> None:
    """Check the settings, then print each: section, name, variable, value, default, source."""
    click.echo(markdown(SECTIONS) if as_markdown else text_table(_settings()), nl=False)


async def _serve(container: WorkerContainer) -> None:
    worker = container.worker()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.serve()
    finally:
        await container.redis().aclose()


def _require_durable_redis(settings: RedisSettings) -> None:
    try:
        require_durable_redis(settings)
    except RedisCanLoseJobs as error:
        raise click.ClickException(str(error)) from None


def _settings() -> Settings:
    try:
        return load_settings(SECTIONS)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _prepare(settings: SandboxSettings) -> HostReport:
    try:
        return prepare_host(settings)
    except HostNotReady as error:
        raise click.ClickException(f"this host cannot run jobs safely: {error}") from None


if __name__ == "__main__":
    main()
