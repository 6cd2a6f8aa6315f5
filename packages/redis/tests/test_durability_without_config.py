"""The start check against a Redis user that may not run CONFIG (docs/operations.md, "Deployment")."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral_redis import RedisCanLoseJobs, check_durability, connect
from corral_testbed.redis_server import RedisServerProcess, require_redis_server


async def test_info_tells_the_durability_check_what_config_would_have(tmp_path: Path) -> None:
    require_redis_server()
    with RedisServerProcess(tmp_path, unix_socket=True, appendonly=False, maxmemory_policy="allkeys-lru") as server:
        admin = connect(server.url)
        await admin.acl_setuser("narrow", enabled=True, passwords=["+pw"], keys=["corral:*"], commands=["-@all", "+ping", "+info"])
        await admin.acl_setuser("blind", enabled=True, passwords=["+pw"], keys=["corral:*"], commands=["-@all", "+ping"])
        narrow = connect(server.url, username="narrow", password="pw")
        blind = connect(server.url, username="blind", password="pw")
        try:
            with pytest.raises(RedisCanLoseJobs, match="appendonly is 'no'.*maxmemory-policy is 'allkeys-lru'"):
                await check_durability(narrow)
            accepted = await check_durability(narrow, accept_data_loss=True)
            with pytest.raises(RedisCanLoseJobs, match="cannot read the Redis configuration"):
                await check_durability(blind)
            await admin.config_set("appendonly", "yes")
            await admin.config_set("maxmemory-policy", "noeviction")
            durable = await check_durability(narrow)
        finally:
            for client in (narrow, blind, admin):
                await client.aclose()
    assert accepted.appendfsync == "unknown (CONFIG refused)"
    assert (durable.appendonly, durable.maxmemory_policy, durable.risks) == ("yes", "noeviction", ())
