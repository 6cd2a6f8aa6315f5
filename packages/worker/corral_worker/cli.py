"""`corral-worker`: run jobs on this sandbox host (the worker PEX's entry point)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Awaitable

import click
import msgspec
import uvloop
from dependency_injector import providers
from prometheus_client import CollectorRegistry
from setproctitle import setproctitle

from corral_redis import RedisCanLoseJobs, RedisSettings, require_durable_redis
from corral_sandbox import HostNotReady, HostReport, SandboxSettings, prepare_host
from corral_system import logs, metrics
from corral_system.commands import config_command, log_level_option, processes_option, settings_of
from corral_system.process_supervisor import ProcessSupervisor
from corral_worker.container import WorkerContainer
from corral_worker.settings import SECTIONS, WorkerSettings

log = logging.getLogger("corral_worker")


@click.group()
def main() -> None:
    """Corral's worker. Settings come from CORRAL_* variables or CORRAL_CONFIG_FILE."""


@main.command()
@click.option("--concurrency", type=int, help="Jobs run at once per process [CORRAL_CONCURRENCY, default 2].")
@processes_option("Worker processes", "CORRAL_WORKER_PROCESSES")
@log_level_option
def run(concurrency: int | None, processes: int | None, log_level: str) -> None:
    """Prepare the sandbox host, then run jobs until SIGTERM or Ctrl-C."""
    logs.configure("corral-worker", log_level)
    settings = settings_of(SECTIONS)
    worker = settings.get(WorkerSettings)
    if concurrency is not None:
        worker = msgspec.structs.replace(worker, concurrency=concurrency)
    if processes is not None:
        worker = msgspec.structs.replace(worker, processes=processes)
    host = _prepare(settings.get(SandboxSettings))
    for line in host.describe():
        log.info("sandbox host: %s", line)
    _require_durable_redis(settings.get(RedisSettings))
    # Before the first metric exists: every worker process writes its samples where the
    # endpoint below (served by this process, the supervisor when there is one) sums them.
    metrics.enable_multiprocess()
    if worker.metrics_port:
        try:
            metrics.serve_http(worker.metrics_host, worker.metrics_port, CollectorRegistry())
        except OSError as error:
            raise click.ClickException(
                f"cannot serve metrics on {worker.metrics_host}:{worker.metrics_port}: {error}"
            ) from None

    def run_worker(index: int | None) -> int:
        role = "corral-worker" if index is None else f"corral-worker: slot {index + 1}"
        logs.set_role(role)
        setproctitle(f"{role} idle" if index is not None else role)
        worker_id = worker.worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        if index is not None and worker.worker_id:
            worker_id = f"{worker.worker_id}-{index + 1}"
        container = WorkerContainer(
            settings=worker, redis_settings=settings.get(RedisSettings), worker_id=worker_id, host=host
        )
        container.title.override(providers.Object(lambda state: setproctitle(f"{role} {state}")))
        # uvloop takes a little off every job's Redis round trips and process watching.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(container))
        return 0

    if worker.processes == 1:
        run_worker(None)
        return
    setproctitle("corral-worker: supervisor")
    supervisor = ProcessSupervisor(
        "corral-worker",
        worker.processes,
        run_worker,
        # Children hand their jobs back within their grace; only a stuck one is killed.
        stop_timeout_s=worker.shutdown_grace_s + 30,
        on_child_exit=metrics.retire,
    )
    sys.exit(supervisor.run())


@main.command("check-host")
def check_host() -> None:
    """Check that this host can enforce every sandbox limit, and say what it found."""
    for line in _prepare(settings_of(SECTIONS).get(SandboxSettings)).describe():
        click.echo(line)


async def _serve(container: WorkerContainer) -> None:
    await _awaited(container.init_resources())
    try:
        worker = container.worker()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.serve()
    finally:
        await _awaited(container.shutdown_resources())


async def _awaited(step: Awaitable[None] | None) -> None:
    # dependency-injector answers an awaitable only when a resource is async; the worker's are.
    if step is not None:
        await step


def _require_durable_redis(settings: RedisSettings) -> None:
    try:
        require_durable_redis(settings)
    except RedisCanLoseJobs as error:
        raise click.ClickException(str(error)) from None


def _prepare(settings: SandboxSettings) -> HostReport:
    try:
        return prepare_host(settings)
    except HostNotReady as error:
        raise click.ClickException(f"this host cannot run jobs safely: {error}") from None


main.add_command(config_command(SECTIONS))

if __name__ == "__main__":
    main()
