"""Whether Redis keeps what it acknowledged: the start check both deployables run.

With snapshots only, a Redis restart loses every job accepted since the last snapshot; under
any evicting maxmemory-policy, Redis may drop queue keys to make room. Both mean an accepted
job silently never runs, so a deployable refuses to start against such a Redis unless the
operator accepts the risk by name (RedisSettings.accept_data_loss), and then says so in its
start log and, for the API, in every /readyz answer. appendfsync is reported either way:
`everysec` survives a Redis crash but may lose the last second to a machine crash, `always`
loses nothing at a cost (bench/queue_throughput.py measures it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from corral_core.ports import StorageUnavailable
from corral_redis.connection import RedisCredentialsError, connect_to, storage_errors
from corral_redis.settings import RedisSettings

log = logging.getLogger(__name__)

ACCEPT_VARIABLE = "CORRAL_REDIS_ACCEPT_DATA_LOSS"
# How long a starting deployable waits for Redis to answer before it gives up.
START_WAIT_S = 30.0


class RedisCanLoseJobs(Exception):
    """Redis is set up so that it can lose accepted jobs, and nobody accepted that risk."""


class Durability(msgspec.Struct, frozen=True, kw_only=True):
    """What the start check found. The defaults describe a Redis that was not checked."""

    appendonly: str = "unchecked"
    appendfsync: str = "unchecked"
    maxmemory_policy: str = "unchecked"
    # Why this Redis can lose accepted jobs; empty when it cannot.
    risks: tuple[str, ...] = ()
    risk_accepted: bool = False

    def describe(self) -> str:
        return (
            f"Redis appendonly {self.appendonly}, appendfsync {self.appendfsync}, "
            f"maxmemory-policy {self.maxmemory_policy}"
        )

    def accepted_risks(self) -> list[str]:
        """What /readyz says in every answer: the risks someone chose to run with."""
        if not self.risk_accepted:
            return []
        return [f"accepted by {ACCEPT_VARIABLE}: {risk}" for risk in self.risks]


async def check_durability(client: Redis, *, accept_data_loss: bool = False) -> Durability:
    """What Redis' configuration means for accepted jobs. Raises RedisCanLoseJobs when it can
    lose them and `accept_data_loss` is false, StorageUnavailable when Redis does not answer."""
    try:
        config = await _read_config(client)
    except ResponseError as error:
        # Some managed services refuse both CONFIG and INFO: the operator has to check by hand
        # and say so.
        found = Durability(
            appendonly="unknown",
            appendfsync="unknown",
            maxmemory_policy="unknown",
            risks=(
                f"cannot read the Redis configuration ({error}): check that appendonly is yes "
                "and maxmemory-policy is noeviction",
            ),
        )
    else:
        appendonly, policy = config.get("appendonly", "?"), config.get("maxmemory-policy", "?")
        risks = []
        if appendonly != "yes":
            risks.append(f"appendonly is {appendonly!r}: a Redis restart loses accepted jobs; set appendonly yes")
        if policy != "noeviction":
            risks.append(
                f"maxmemory-policy is {policy!r}: Redis may evict queue keys and lose jobs; "
                "set maxmemory-policy noeviction"
            )
        found = Durability(
            appendonly=appendonly,
            appendfsync=config.get("appendfsync", "?"),
            maxmemory_policy=policy,
            risks=tuple(risks),
        )
    if found.risks and not accept_data_loss:
        raise RedisCanLoseJobs(
            "Redis can lose accepted jobs: " + "; ".join(found.risks) + f". Fix Redis, or set {ACCEPT_VARIABLE}=true "
            "to run anyway"
        )
    return msgspec.structs.replace(found, risk_accepted=bool(found.risks))


async def _read_config(client: Redis) -> dict[str, str]:
    """appendonly, appendfsync and maxmemory-policy, from CONFIG GET or else from INFO.

    Managed services and the narrow ACL users of the deployment section of docs/operations.md refuse CONFIG
    (it would show every setting, secrets included); INFO shows the two settings that decide,
    though not appendfsync. Raises ResponseError when Redis refuses both.
    """
    with storage_errors():
        try:
            return {
                **_text(await client.config_get("appendonly")),
                **_text(await client.config_get("appendfsync")),
                **_text(await client.config_get("maxmemory-policy")),
            }
        except ResponseError as refused:
            try:
                persistence = await client.info("persistence")
                memory = await client.info("memory")
            except ResponseError as error:
                raise ResponseError(f"CONFIG GET: {refused}; INFO: {error}") from error
    return {
        "appendonly": "yes" if str(persistence.get("aof_enabled")) == "1" else "no",
        "appendfsync": "unknown (CONFIG refused)",
        "maxmemory-policy": str(memory.get("maxmemory_policy", "?")),
    }


def require_durable_redis(settings: RedisSettings, wait_s: float = START_WAIT_S) -> Durability:
    """The start check of both deployables, run before they serve: waits up to `wait_s` for
    Redis to answer, refuses (RedisCanLoseJobs) a Redis that can lose jobs unless
    settings.accept_data_loss, and logs what it found."""
    durability = asyncio.run(_check_when_up(settings, wait_s))
    log.info("%s", durability.describe())
    for risk in durability.accepted_risks():
        log.warning("Redis can lose accepted jobs, %s", risk)
    return durability


async def _check_when_up(settings: RedisSettings, wait_s: float) -> Durability:
    try:
        client = connect_to(settings, retries=0, connect_timeout=1.0)
    except RedisCredentialsError as error:
        raise RedisCanLoseJobs(f"cannot check Redis: {error}") from error
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                return await check_durability(client, accept_data_loss=settings.accept_data_loss)
            except StorageUnavailable as error:
                if time.monotonic() > deadline:
                    raise RedisCanLoseJobs(f"cannot check Redis after {wait_s:g} s: {error}") from error
                log.warning("waiting for Redis to check its settings: %s", error)
                await asyncio.sleep(1)
    finally:
        await client.aclose()


def _text(config: Mapping[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in config.items()
    }
