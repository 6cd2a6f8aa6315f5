"""Connecting to Redis, and what its failures mean to Corral.

Any lost connection or refusing server surfaces from the adapters as the core's
StorageUnavailable, which the API turns into 503 and the worker into a retry with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AskError,
    ClusterError,
    ConnectionError,
    MaxConnectionsError,
    MovedError,
    RedisClusterException,
    ResponseError,
    TimeoutError,
)
from redis.typing import EncodableT

from corral_core.ports import StorageUnavailable
from corral_redis.settings import RedisSettings

# Server replies that mean "not now" rather than "wrong request": out of memory under
# noeviction, a failing AOF (MISCONF), a replica, a long script, a cluster in transition.
_UNAVAILABLE_REPLIES = ("OOM", "MISCONF", "READONLY", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN")


class RedisCredentialsError(Exception):
    """A [redis] password_file that cannot be read: the deployable stops at start, saying so."""


def connect_to(settings: RedisSettings, **options: Any) -> Redis:
    """connect() with the [redis] settings: its URL, pool bounds, ACL user, password and TLS files.

    `options` are connect()'s own (client_name, timeouts, retries). With `cluster` set, a
    RedisCluster that found the other nodes from the URL's (connect_cluster).
    """
    if settings.cluster:
        return connect_cluster(settings.url, max_connections=settings.max_connections, **security_options(settings), **options)
    return connect(
        settings.url,
        max_connections=settings.max_connections,
        pool_timeout_s=settings.pool_timeout_s,
        **security_options(settings),
        **options,
    )


def security_options(settings: RedisSettings) -> dict[str, Any]:
    """What connect() needs to log in and check the server: user, password and TLS files.

    Unset settings are left out, so that a user or password given in the URL still counts.
    """
    found: dict[str, Any] = {}
    if settings.username:
        found["username"] = settings.username
    if settings.password_file:
        try:
            found["password"] = Path(settings.password_file).read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            raise RedisCredentialsError(
                f"cannot read the Redis password from password_file {settings.password_file}: {error}"
            ) from error
    tls = {
        "ssl_ca_certs": settings.tls_ca_file,
        "ssl_certfile": settings.tls_cert_file,
        "ssl_keyfile": settings.tls_key_file,
    }
    found.update({option: path for option, path in tls.items() if path})
    return found


def connect(url: str, *, max_connections: int = 32, pool_timeout_s: float = 5.0, **options: Any) -> Redis:
    """A client of at most `max_connections` connections that retries a dropped one a few times.

    A command that finds every connection busy waits up to `pool_timeout_s` for one to come
    back: a burst of requests queues for a moment instead of failing, and the process never
    opens more connections than it was given (the notification subscription holds one of them).
    `options` are _connection_options()'s: client name, timeouts, retries and security.

    The adapters' scripts are safe to run twice (see scripts.py), which is what a retry after a
    lost reply does. A rediss:// connection always checks the server's certificate and that it
    names the URL's host.
    """
    pool = _BoundedPool.from_url(
        url, max_connections=max_connections, timeout=pool_timeout_s, **_connection_options(url, **options)
    )
    # The URL's scheme picked the class (TCP, TLS or a Unix socket); keep it, fixed.
    pool.connection_class = _keeping_cancellations(pool.connection_class)
    return Redis.from_pool(pool)


def connect_cluster(url: str, *, max_connections: int = 32, **options: Any) -> Redis:
    """A Redis Cluster client, as connect() is for one server: `url` names any one node.

    RedisCluster follows MOVED and ASK replies and reloads the slot map after a failover; a
    command that still fails surfaces as StorageUnavailable (storage_errors). Each node gets at
    most `max_connections` connections and a busy node refuses at once rather than queueing
    (MaxConnectionsError, a 503). Typed as Redis: the cluster client answers every command the
    adapters send (each names keys under one hash tag), so the adapters keep one signature.
    """
    client = _ClusterClient.from_url(url, max_connections=max_connections, **_connection_options(url, **options))
    # The same cancellation fix as connect()'s, for every node this client will meet.
    kwargs = client.nodes_manager.connection_kwargs
    kwargs["connection_class"] = _keeping_cancellations(kwargs.get("connection_class", Connection))
    for node in client.nodes_manager.startup_nodes.values():
        node.connection_class = _keeping_cancellations(node.connection_class)  # type: ignore[assignment]
    return cast(Redis, client)


def _connection_options(
    url: str,
    *,
    client_name: str | None = None,
    socket_timeout: float = 5.0,
    connect_timeout: float = 2.0,
    retries: int = 3,
    health_check_interval: int = 15,
    **security: Any,
) -> dict[str, Any]:
    """What connect() and connect_cluster() set on every connection: the options they take.

    Connections carry `client_name`, so `CLIENT LIST` tells whose they are. `socket_timeout`
    must stay above RedisSettings.claim_block_s. `security` (security_options()) logs in as an
    ACL user and, for rediss://, names the CA and client certificate.
    """
    options: dict[str, Any] = {
        "client_name": client_name,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "health_check_interval": health_check_interval,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
    }
    # TCP keepalive has no meaning on a Unix socket, whose connection class refuses the option.
    if not url.startswith("unix:"):
        options["socket_keepalive"] = True
    if url.startswith("rediss:"):
        # redis-py's defaults, stated here so that no upgrade relaxes them.
        options |= {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    return options | security


class _ClusterClient(RedisCluster):
    """A RedisCluster that learns the cluster's map once, before its first command goes out.

    redis-py 8.1 races when many tasks send the first commands of a new RedisCluster together:
    one task's initialization closes connections that others are using, which then fail with
    AttributeError. The learning is done once, under a lock, and every command waits for it.
    """

    _learned = False
    _learning: asyncio.Lock | None = None

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if not self._learned:
            if self._learning is None:
                self._learning = asyncio.Lock()
            async with self._learning:
                if not self._learned:
                    await self.initialize()
                    self._learned = True
        return await super().execute_command(*args, **kwargs)


class PoolExhausted(MaxConnectionsError):
    """Every connection of this process stayed busy for the pool's whole timeout.

    Redis itself may be fine: the limit reached is this process's own.
    """


class _BoundedPool(BlockingConnectionPool):
    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        try:
            connection: AbstractConnection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
            return connection
        except ConnectionError as error:
            # redis-py says "No connection available." whether Redis is down or merely busy
            # elsewhere; only a timeout waiting for a free connection ends up here that way.
            if isinstance(error.__cause__, asyncio.TimeoutError):
                raise PoolExhausted(
                    f"all {self.max_connections} Redis connections of this process stayed busy for "
                    f"{self.timeout:g} s (the redis max_connections setting, CORRAL_REDIS_MAX_CONNECTIONS)"
                ) from error
            raise


class _CancellationKeepingConnection(AbstractConnection):
    """A connection whose commands never swallow the cancellation of the task sending them.

    redis-py writes every command under `asyncio.wait_for(..., socket_timeout)`. Before Python
    3.12, wait_for loses a cancellation that arrives once the write it wraps has completed but
    before wait_for resumes (CPython gh-86296): the command carries on and returns normally, and
    the cancelled task runs on as if nothing had happened. `task.cancel(); await task` then never
    returns, and an `asyncio.timeout` whose cancellation is lost never fires.

    Here a send that returns normally although the task was cancelled meanwhile raises the
    CancelledError itself. The command may have reached Redis, as with a cancellation an instant
    later; the connection is dropped so that its unread reply can never be taken for the reply
    to the next command. From Python 3.12 on, the check never fires.
    """

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        task = asyncio.current_task()
        requested = task.cancelling() if task is not None else 0
        try:
            await super().send_packed_command(command, check_health)
        except AttributeError as error:
            # RedisCluster (redis-py 8.1) refreshing its map after a failover closes a node's
            # connections, some still in use: the send then finds no writer. That is a lost
            # connection, which callers retry, not a bug of theirs.
            if getattr(self, "_writer", None) is not None:
                raise
            raise ConnectionError(f"the connection was closed while in use: {error}") from error
        if task is not None and task.cancelling() > requested:
            await self.disconnect(nowait=True)
            raise asyncio.CancelledError


class _HiredisPacking(AbstractConnection):
    """A connection that packs its commands with hiredis, as redis-py's synchronous ones do.

    redis-py's asyncio connections pack in Python, copying the command so far once per
    argument, which a script's many arguments make slow; hiredis packs in C. What hiredis refuses (None, a bool, a bytearray) goes to redis-py's own packing,
    which packs it or raises its DataError as before.
    """

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        encoder = self.encoder
        if encoder.encoding != "utf-8" or encoder.encoding_errors != "strict":
            return super().pack_command(*args)  # hiredis encodes text as strict UTF-8 only
        name, rest = args[0], args[1:]
        # A command name may carry its first arguments ("CONFIG GET"): sent as separate words.
        words = name.encode().split() if isinstance(name, str) else name.split() if isinstance(name, bytes) else [name]
        try:
            return [hiredis.pack_command((*words, *rest))]
        except TypeError:
            return super().pack_command(*args)


_keeping: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _keeping_cancellations(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """`base` (Connection, SSLConnection, UnixDomainSocketConnection...) with the fix above,
    packing its commands with hiredis."""
    if issubclass(base, _CancellationKeepingConnection):
        return base
    if base not in _keeping:
        _keeping[base] = type(base.__name__, (_CancellationKeepingConnection, _HiredisPacking, base), {})
    return _keeping[base]


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Translate Redis being unreachable or refusing writes into StorageUnavailable."""
    try:
        yield
    except PoolExhausted as error:
        raise StorageUnavailable(f"too busy: {error}") from error
    except (ConnectionError, TimeoutError) as error:
        raise StorageUnavailable(f"Redis is unreachable: {error}") from error
    except (ClusterError, RedisClusterException, MovedError, AskError) as error:
        # A Cluster in failover or resharding that its client's retries did not outlast.
        raise StorageUnavailable(f"Redis Cluster is not serving that slot now: {error!r}") from error
    except ResponseError as error:
        if str(error).startswith(_UNAVAILABLE_REPLIES):
            raise StorageUnavailable(f"Redis refused the write: {error}") from error
        raise
