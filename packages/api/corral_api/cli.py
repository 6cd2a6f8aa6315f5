"""`corral-api`: serve the HTTP API (the API PEX's entry point)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
import uvicorn
from setproctitle import setproctitle

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import SECTIONS, ApiSettings
from corral_core.access import ApiKey, Quotas, secret_hash
from corral_core.callbacks import webhook_secret
from corral_core.ports import StorageUnavailable
from corral_redis import (
    Durability,
    RedisCanLoseJobs,
    RedisCredentialsError,
    RedisKeyStore,
    RedisSettings,
    RedisUsageLedger,
    connect_to,
    require_durable_redis,
)
from corral_system import logs, metrics
from corral_system.clock import SystemClock
from corral_system.commands import config_command, log_level_option, processes_option, settings_of
from corral_system.process_supervisor import ProcessSupervisor


@click.group()
def main() -> None:
    """Corral's HTTP API. Settings come from CORRAL_* variables or CORRAL_CONFIG_FILE."""


@main.command()
@click.option("--host", help="Address to listen on [CORRAL_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [CORRAL_PORT, default 8000].")
@processes_option("Processes sharing the port", "CORRAL_API_PROCESSES")
@log_level_option
def serve(host: str | None, port: int | None, processes: int | None, log_level: str) -> None:
    """Serve the API until SIGTERM or Ctrl-C."""
    logs.configure("corral-api", log_level)
    settings = settings_of(SECTIONS)
    api = settings.get(ApiSettings)
    redis = settings.get(RedisSettings)
    # Checked once, before any process serves: Redis must not be able to lose accepted jobs.
    durability = _require_durable_redis(redis)
    processes = processes or api.processes
    _warn_if_open(api.auth, host or api.host)
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
        # ws="wsproto": the WebSocket protocol (Piston's /api/v2/connect), named so that a missing
        # package fails at start rather than refusing every upgrade.
        config = uvicorn.Config(
            create_app(container), log_level=log_level, access_log=False, log_config=None, ws="wsproto"
        )
        uvicorn.Server(config).run(sockets=[listener])
        return 0

    if processes == 1:
        serve_api(None)
        return
    setproctitle("corral-api: supervisor")
    supervisor = ProcessSupervisor(
        "corral-api",
        processes,
        serve_api,
        # Long polls (?wait=) end within max_wait_s; uvicorn waits for them before it exits.
        stop_timeout_s=api.max_wait_s + 30,
        on_child_exit=metrics.retire,
    )
    sys.exit(supervisor.run())


# A key's secret: a recognisable prefix, then 256 random bits.
SECRET_PREFIX = "corral_"
# A key's webhook secret: whsec_ and base64 of this many random bytes (Standard Webhooks asks 24 to 64).
WEBHOOK_SECRET_BYTES = 32
T = TypeVar("T")


@main.group()
def keys() -> None:
    """API keys: clients send one as `Authorization: Bearer <key>` (or `X-Auth-Token`)."""


@keys.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May read every key's jobs.")
@click.option("--rate", metavar="N/SECONDS", help="Requests per window, e.g. 100/60 [CORRAL_KEY_RATE_LIMIT/_WINDOW_S].")
@click.option("--max-unfinished", type=click.IntRange(1), help="Jobs pending or running at once [CORRAL_KEY_MAX_UNFINISHED].")
@click.option("--max-stored-bytes", type=click.IntRange(1), help="Bytes its jobs may hold [CORRAL_KEY_MAX_STORED_BYTES].")
@click.option("--max-waiters", type=click.IntRange(1), help="Long-polls at once per API process [CORRAL_KEY_MAX_WAITERS].")
@click.option("--quiet", is_flag=True, help="Print the key alone, for scripts (not its webhook secret).")
def create_key(
    name: str,
    admin: bool,
    rate: str | None,
    max_unfinished: int | None,
    max_stored_bytes: int | None,
    max_waiters: int | None,
    quiet: bool,
) -> None:
    """Make a key named NAME and print it: it is shown this once, and stored only hashed."""
    rate_limit, window = _rate(rate) if rate else (None, None)
    quotas = Quotas(
        rate_limit=rate_limit,
        rate_window_s=window,
        max_unfinished=max_unfinished,
        max_stored_bytes=max_stored_bytes,
        max_waiters=max_waiters,
    )
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    signing = webhook_secret(secrets.token_bytes(WEBHOOK_SECRET_BYTES))
    key = ApiKey(
        id=secrets.token_hex(6),
        name=name,
        created_at=SystemClock().now(),
        admin=admin,
        quotas=quotas,
        webhook_secret=signing,
    )
    _with_keys(lambda store: store.add(key, secret_hash(secret)))
    if quiet:
        # The key alone, as scripts read it: its webhook secret is had with rotate-webhook-secret.
        click.echo(secret)
        return
    click.echo(f"Key {key.id} ({name}{', admin' if admin else ''}) created. It is shown only now:\n\n  {secret}\n")
    click.echo("Send it as:  Authorization: Bearer <key>   (or X-Auth-Token: <key>)")
    click.echo(f"\nIts callbacks are signed (Standard Webhooks) with this secret, shown only now:\n\n  {signing}\n")


@keys.command("rotate-webhook-secret")
@click.argument("key_id")
def rotate_webhook_secret(key_id: str) -> None:
    """Give the key with id KEY_ID a new webhook secret and print it: its callbacks are signed
    with it from now on (a receiver should accept both secrets until it has the new one)."""
    signing = webhook_secret(secrets.token_bytes(WEBHOOK_SECRET_BYTES))
    if not _with_keys(lambda store: store.rotate_webhook_secret(key_id, signing)):
        raise click.ClickException(f"no key with id {key_id!r} (see `corral-api keys list`)")
    click.echo(signing)


@keys.command("list")
def list_keys() -> None:
    """Every key: id, name, creation time, admin, and its own quotas (- is the default)."""
    found = _with_keys(lambda store: store.keys())
    click.echo("id            name                 created                    admin  rate     unfinished  bytes       waiters")
    for key in found:
        q = key.quotas
        rate = f"{q.rate_limit}/{q.rate_window_s or '-'}" if q.rate_limit else "-"
        click.echo(
            f"{key.id:<13} {key.name[:20]:<20} {key.created_at.isoformat(timespec='seconds'):<26} "
            f"{'yes' if key.admin else 'no':<6} {rate:<8} {q.max_unfinished or '-'!s:<11} "
            f"{q.max_stored_bytes or '-'!s:<11} {q.max_waiters or '-'}"
        )


@keys.command("revoke")
@click.argument("key_id")
def revoke_key(key_id: str) -> None:
    """Revoke the key with id KEY_ID: refused from its next request on."""
    if not _with_keys(lambda store: store.revoke(key_id)):
        raise click.ClickException(f"no key with id {key_id!r} (see `corral-api keys list`)")
    click.echo(f"Key {key_id} revoked.")


@keys.command("repair-bookings")
@click.argument("key_ids", nargs=-1)
def repair_bookings(key_ids: tuple[str, ...]) -> None:
    """Recompute the bytes booked for the keys KEY_IDS (every key when none) from their jobs'
    live records: a booking whose record is gone is dropped, a finished job's is what it stored.
    For bookings that drifted (a crash between two steps, a restore); safe to run any time."""

    async def repair(store: RedisKeyStore, ledger: RedisUsageLedger) -> list[tuple[str, int, int]]:
        ids = list(key_ids) or [key.id for key in await store.keys()]
        return [(key_id, *await ledger.repair(key_id)) for key_id in ids]

    try:
        repaired = _with_storage(repair)
    except NotImplementedError as error:
        raise click.ClickException(str(error)) from None
    for key_id, before, after in repaired:
        click.echo(f"{key_id}  {before} -> {after} bytes")


def _rate(text: str) -> tuple[int, int]:
    count, _, window = text.partition("/")
    try:
        rate, seconds = int(count), int(window or "60")
    except ValueError:
        raise click.BadParameter(f"{text!r} is not N/SECONDS", param_hint="--rate") from None
    if rate < 1 or seconds < 1:
        raise click.BadParameter("both numbers must be positive", param_hint="--rate")
    return rate, seconds


def _with_keys(action: Callable[[RedisKeyStore], Awaitable[T]]) -> T:
    return _with_storage(lambda store, _: action(store))


def _with_storage(action: Callable[[RedisKeyStore, RedisUsageLedger], Awaitable[T]]) -> T:
    redis = settings_of(SECTIONS).get(RedisSettings)

    async def run() -> T:
        # The [redis] settings as `serve` uses them: on a secured Redis the key store is
        # reached only as the API's ACL user, over TLS with its certificates.
        client = connect_to(redis, client_name="corral-api-keys")
        try:
            return await action(RedisKeyStore(client, redis), RedisUsageLedger(client, redis))
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except (StorageUnavailable, RedisCredentialsError) as error:
        raise click.ClickException(str(error)) from None


def _warn_if_open(auth: bool, host: str) -> None:
    if auth:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        logging.getLogger("corral_api").warning(
            "API keys are off (CORRAL_AUTH=false) and the API listens on %s: anyone who reaches it may run "
            "code and read every job",
            host,
        )


def _require_durable_redis(settings: RedisSettings) -> Durability:
    try:
        return require_durable_redis(settings)
    except RedisCanLoseJobs as error:
        raise click.ClickException(str(error)) from None


main.add_command(config_command(SECTIONS))

if __name__ == "__main__":
    main()
