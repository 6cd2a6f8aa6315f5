"""The line of callbacks in a real Redis: filled by FINISH in the same step as the final state,
leased and fenced by its due time, surviving the process that took a delivery; and keys'
webhook secrets. The delivery to a receiver on loopback goes through the API's loop."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec
from redis.asyncio import Redis
from standardwebhooks.webhooks import Webhook

from corral_api.deliveries import CallbackSender, DeliverCallbacks, DeliveryMetrics, DeliveryOptions
from corral_contract.clock import ManualClock
from corral_contract.queue import LEASE_MS, new_job, ok_result
from corral_core import job as jobs
from corral_core.access import ApiKey
from corral_core.callbacks import Callback, DeliveryState, webhook_secret
from corral_core.job import Job
from corral_redis import RedisCallbackDeliveries, RedisJobQueue, RedisJobStore, RedisKeyStore, RedisSettings, connect
from corral_redis.keyspace import QueueKeys
from corral_system.clock import SystemClock

SECRET = webhook_secret(b"r" * 32)


def with_callback(job: Job, url: str = "http://127.0.0.1:9/hook") -> Job:
    return msgspec.structs.replace(job, callback=Callback(url=url))


async def finished(queue: RedisJobQueue, clock: ManualClock, job: Job) -> Job:
    await queue.submit(job)
    lease = await queue.claim("w1", LEASE_MS, 1)
    assert lease is not None and lease.job.callback == job.callback
    done = jobs.complete(lease.job, ok_result(), clock.now())
    assert await queue.finish(lease, done)
    return done


async def test_finish_puts_a_job_with_a_callback_in_the_line_and_a_job_without_none(client: Redis, settings: RedisSettings) -> None:
    clock = ManualClock()
    queue, keys = RedisJobQueue(client, clock, settings), QueueKeys(settings.key_prefix)
    await finished(queue, clock, with_callback(new_job(clock, "called")))
    await finished(queue, clock, new_job(clock, "silent"))
    assert await client.zrange(keys.deliveries, 0, -1) == [b"called"]


async def test_a_delivery_is_leased_then_comes_due_again_when_its_taker_dies(
    client: Redis, settings: RedisSettings, redis_url: str
) -> None:
    clock = ManualClock()
    queue = RedisJobQueue(client, clock, settings)
    await finished(queue, clock, with_callback(new_job(clock, "a")))
    deliveries = RedisCallbackDeliveries(client, settings)
    [taken] = await deliveries.due(lease_ms=150, most=10)
    assert taken.job_id == "a"
    assert await deliveries.due(lease_ms=150, most=10) == []  # leased: nobody else gets it
    await asyncio.sleep(0.2)
    # The taker died without settling: another process (its own client) takes it again.
    other = RedisCallbackDeliveries(second := connect(redis_url), settings)
    [again] = await other.due(lease_ms=10_000, most=10)
    assert again.job_id == "a" and again.claim != taken.claim
    # The first taker's late write is fenced off; the second's is recorded on the job.
    late = Callback(url="http://127.0.0.1:9/hook", state=DeliveryState.DELIVERED, attempts=1, last_status="200")
    assert not await deliveries.settle(taken, late)
    assert await other.settle(again, late)
    assert await other.due(lease_ms=10, most=10) == []
    stored = await RedisJobStore(client, settings).get("a")
    assert stored is not None and stored.callback == late
    await second.aclose()


async def test_a_pending_callback_comes_back_at_its_next_time(client: Redis, settings: RedisSettings) -> None:
    clock = ManualClock()
    done = await finished(RedisJobQueue(client, clock, settings), clock, with_callback(new_job(clock, "b")))
    deliveries = RedisCallbackDeliveries(client, settings)
    [taken] = await deliveries.due(lease_ms=10_000, most=10)
    system_now = SystemClock().now()
    retry = Callback(url="http://127.0.0.1:9/hook", attempts=1, last_status="503", next_at=system_now + timedelta(seconds=0.2))
    assert await deliveries.settle(taken, retry)
    assert await deliveries.due(lease_ms=10_000, most=10) == []
    await asyncio.sleep(0.25)
    [again] = await deliveries.due(lease_ms=10_000, most=10)
    assert again.job_id == done.id
    stored = await RedisJobStore(client, settings).get("b")
    assert stored is not None and stored.callback == retry


async def test_a_callback_settled_after_its_record_expired_makes_no_record(client: Redis, settings: RedisSettings) -> None:
    clock = ManualClock()
    await finished(RedisJobQueue(client, clock, settings), clock, with_callback(new_job(clock, "c")))
    deliveries = RedisCallbackDeliveries(client, settings)
    [taken] = await deliveries.due(lease_ms=10_000, most=10)
    keys = QueueKeys(settings.key_prefix)
    await client.delete(keys.job("c"))
    assert await deliveries.settle(taken, Callback(url="", state=DeliveryState.FAILED))
    assert not await client.exists(keys.job("c"))
    assert await client.zcard(keys.deliveries) == 0


async def test_a_job_failed_by_recovery_has_its_callback_queued(client: Redis, settings: RedisSettings) -> None:
    clock = ManualClock()
    queue, keys = RedisJobQueue(client, clock, settings), QueueKeys(settings.key_prefix)
    await queue.submit(with_callback(new_job(clock, "lost")))
    assert await queue.claim("w1", 50, 1) is not None
    await asyncio.sleep(0.1)
    report = await queue.recover(max_attempts=1)
    assert report.failed == ("lost",)
    assert await client.zscore(keys.deliveries, "lost") is not None


async def test_a_key_s_webhook_secret_is_stored_read_and_rotated(client: Redis, settings: RedisSettings) -> None:
    store = RedisKeyStore(client, settings)
    await store.add(ApiKey(id="k1", name="one", created_at=SystemClock().now(), webhook_secret=SECRET), "hash-1")
    assert await store.webhook_secret("k1") == SECRET
    newer = webhook_secret(b"n" * 32)
    assert await store.rotate_webhook_secret("k1", newer)
    assert await store.webhook_secret("k1") == newer
    assert not await store.rotate_webhook_secret("nobody", newer)
    assert await store.webhook_secret("nobody") is None
    assert await store.revoke("k1")
    assert not await store.rotate_webhook_secret("k1", newer)
    assert await client.exists(QueueKeys(settings.key_prefix).api_key("hash-1")) == 0


async def test_a_delivery_queued_before_a_restart_is_delivered_by_a_new_loop(
    client: Redis, settings: RedisSettings, redis_url: str
) -> None:
    got: list[tuple[dict[str, str], bytes]] = []

    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:] if line)}
        got.append((headers, await reader.readexactly(int(headers["content-length"]))))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(receive, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    clock = SystemClock()
    async with server:
        # The worker finishes the job; the API that took its delivery dies before sending it.
        await finished(RedisJobQueue(client, ManualClock(), settings), ManualClock(), with_callback(new_job(clock, "d"), url))
        assert len(await RedisCallbackDeliveries(client, settings).due(lease_ms=200, most=10)) == 1
        # A new API process: its own connection, its own loop.
        fresh = connect(redis_url)
        options = DeliveryOptions(allowed_hosts=frozenset({"127.0.0.1"}), service_secret=SECRET, poll_s=0.05, lease_ms=10_000)
        sender = CallbackSender(options.allowed_hosts)
        loop = DeliverCallbacks(
            RedisCallbackDeliveries(fresh, settings), RedisJobStore(fresh, settings), RedisKeyStore(fresh, settings),
            sender, clock, options, DeliveryMetrics(None),
        )  # fmt: skip
        running = asyncio.ensure_future(loop.run())
        try:
            for _ in range(200):
                stored = await RedisJobStore(fresh, settings).get("d")
                if stored is not None and stored.callback is not None and stored.callback.state is DeliveryState.DELIVERED:
                    break
                await asyncio.sleep(0.02)
        finally:
            running.cancel()
            await sender.aclose()
            await fresh.aclose()
    assert stored is not None and stored.callback is not None
    assert (stored.callback.state, stored.callback.attempts, stored.callback.last_status) == (DeliveryState.DELIVERED, 1, "200")
    [(headers, body)] = got
    assert Webhook(SECRET).verify(body, headers)["job_id"] == "d"

