"""Connecting to Redis, checking it is set up to keep jobs, and what its failures mean to Corral.

Any lost connection or refusing server surfaces from the adapters as the core's
StorageUnavailable, which the API turns into 503 and the worker into a retry with backoff.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from corral_core.ports import StorageUnavailable

# Server replies that mean "not now" rather than "wrong request": out of memory under
# noeviction, a failing AOF (MISCONF), a replica, a long script, a cluster in transition.
_UNAVAILABLE_REPLIES = ("OOM", "MISCONF", "READONLY", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN")


def connect(
    url: str,
    *,
    socket_timeout: float = 5.0,
    connect_timeout: float = 2.0,
    retries: int = 3,
    health_check_interval: int = 15,
) -> Redis:
    """A client that retries a dropped connection a few times, then lets the error through.

    The adapters' scripts are safe to run twice (see scripts.py), which is what a retry after a
    lost reply does. `socket_timeout` must stay above RedisSettings.claim_block_s.
    """
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        socket_keepalive=True,
        health_check_interval=health_check_interval,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
    )


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Translate Redis being unreachable or refusing writes into StorageUnavailable."""
    try:
        yield
    except (ConnectionError, TimeoutError) as error:
        raise StorageUnavailable(f"Redis is unreachable: {error}") from error
    except ResponseError as error:
        if str(error).startswith(_UNAVAILABLE_REPLIES):
            raise StorageUnavailable(f"Redis refused the write: {error}") from error
        raise


async def check_durability(client: Redis) -> list[str]:
    """Warnings about server settings under which Redis can lose accepted jobs; [] when none."""
    warnings: list[str] = []
    try:
        with storage_errors():
            config = {
                **_text(await client.config_get("appendonly")),
                **_text(await client.config_get("maxmemory-policy")),
            }
    except ResponseError as error:
        # Managed services often disable CONFIG; the operator has to check by hand there.
        return [
            f"cannot read the Redis configuration ({error}): make sure appendonly is yes and "
            "maxmemory-policy is noeviction, or accepted jobs can be lost"
        ]
    appendonly, policy = config.get("appendonly", "?"), config.get("maxmemory-policy", "?")
    if appendonly != "yes":
        warnings.append(
            f"Redis appendonly is {appendonly!r}: a Redis restart loses accepted jobs; " "set appendonly yes"
        )
    if policy != "noeviction":
        warnings.append(
            f"Redis maxmemory-policy is {policy!r}: Redis may evict queue keys and "
            "silently lose jobs; set maxmemory-policy noeviction"
        )
    return warnings


def _text(config: Mapping[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in config.items()
    }
