"""Fixtures the Redis adapter's own tests ask for by name: a real Redis for the session, and per
test a key prefix of its own and a client that deletes the test's keys afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from corral_redis import RedisSettings, connect
from corral_testbed.redis_server import redis_url as redis_url


@pytest.fixture
def settings() -> RedisSettings:
    return RedisSettings(key_prefix=f"test:{uuid.uuid4().hex[:12]}:{{q}}:")


@pytest.fixture
async def client(redis_url: str, settings: RedisSettings) -> AsyncIterator[Redis]:  # noqa: F811 (the fixture imported above)
    client = connect(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{settings.key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
