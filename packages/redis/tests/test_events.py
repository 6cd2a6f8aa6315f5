"""What only the Redis streams of a job's events and input have: expiry, trimming, a re-sent
script adding nothing, and one subscription for every waiting reader. On a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import cast

import pytest
from redis.asyncio import Redis

from corral_core.events import EventKind
from corral_redis import RedisJobEvents, RedisJobInput, RedisSettings
from corral_redis.keyspace import QueueKeys
from corral_redis.scripts import APPEND_EVENTS, SEND_INPUT

TTL_S = 600


@pytest.fixture
def settings() -> RedisSettings:
    return RedisSettings(key_prefix=f"test:{uuid.uuid4().hex[:12]}:{{q}}:", finished_ttl_s=TTL_S)


@pytest.fixture
async def events(client: Redis, settings: RedisSettings) -> AsyncIterator[RedisJobEvents]:
    adapter = RedisJobEvents(client, settings)
    yield adapter
    await adapter.aclose()


@pytest.fixture
async def job_input(client: Redis, settings: RedisSettings) -> AsyncIterator[RedisJobInput]:
    adapter = RedisJobInput(client, settings)
    yield adapter
    await adapter.aclose()


async def test_events_and_input_expire_with_the_finished_record_s_ttl(
    client: Redis, settings: RedisSettings, events: RedisJobEvents, job_input: RedisJobInput
) -> None:
    keys = QueueKeys(settings.key_prefix)
    await events.append("job-a", [(EventKind.STATUS, "RUNNING")])
    assert await job_input.send("job-a", b"x", max_bytes=10)
    for key in (keys.job_events("job-a"), keys.job_input("job-a"), keys.job_input_sent("job-a")):
        ttl_ms = await client.pttl(key)
        assert (TTL_S - 5) * 1000 < ttl_ms <= TTL_S * 1000, key


async def test_an_append_re_sent_after_a_lost_reply_adds_nothing(client: Redis, settings: RedisSettings) -> None:
    keys = QueueKeys(settings.key_prefix)
    stream = keys.job_events("job-a")
    args: list[str | bytes | int] = ["job-a", keys.appended, TTL_S * 1000, 10_000, "token-1", "stdout", "a", "stdout", "b"]
    first = await client.eval(APPEND_EVENTS, 1, stream, *args)
    assert await client.eval(APPEND_EVENTS, 1, stream, *args) == first
    assert await client.xlen(stream) == 2
    await client.eval(APPEND_EVENTS, 1, stream, *args[:4], "token-2", "stdout", "b")
    assert await client.xlen(stream) == 3


async def test_a_send_re_sent_after_a_lost_reply_adds_and_counts_nothing(client: Redis, settings: RedisSettings) -> None:
    keys = QueueKeys(settings.key_prefix)
    stream, sent = keys.job_input("job-a"), keys.job_input_sent("job-a")
    args: list[str | bytes | int] = ["job-a", keys.sent, TTL_S * 1000, 4, "token-1", "", b"abc"]
    assert await client.eval(SEND_INPUT, 2, stream, sent, *args) == 1
    assert await client.eval(SEND_INPUT, 2, stream, sent, *args) == 1
    assert await client.xlen(stream) == 1
    assert await client.hget(sent, "bytes") == b"3"


async def test_a_job_s_events_are_trimmed_to_about_the_most_kept(client: Redis, settings: RedisSettings) -> None:
    keys = QueueKeys(settings.key_prefix)
    stream = keys.job_events("job-a")
    for batch in range(10):
        pairs = [part for n in range(100) for part in ("stdout", f"{batch}.{n}")]
        await client.eval(APPEND_EVENTS, 1, stream, "job-a", keys.appended, TTL_S * 1000, 100, f"t{batch}", *pairs)
    # MAXLEN ~ trims whole macro nodes (100 entries each by default): about 100, never fewer.
    assert 100 <= await client.xlen(stream) <= 300
    newest = cast(list[tuple[bytes, dict[bytes, bytes]]], await client.xrevrange(stream, count=1))
    assert newest[0][1][b"d"] == b"9.99"


async def test_every_waiting_reader_shares_one_subscription(
    client: Redis, settings: RedisSettings, events: RedisJobEvents
) -> None:
    keys = QueueKeys(settings.key_prefix)
    readers = [asyncio.create_task(events.read(f"job-{n % 5}", timeout_s=5)) for n in range(50)]
    for _ in range(100):
        if events.waiting() == 50:
            break
        await asyncio.sleep(0.01)
    assert events.waiting() == 50
    subscribers = cast(list[tuple[bytes, int]], await client.pubsub_numsub(keys.appended))
    assert subscribers[0][1] == 1
    for n in range(5):
        await events.append(f"job-{n}", [(EventKind.STDOUT, str(n))])
    for n, reader in enumerate(readers):
        assert [event.data for event in await reader] == [str(n % 5)]
    assert events.waiting() == 0
