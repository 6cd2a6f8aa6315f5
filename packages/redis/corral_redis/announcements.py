"""Job ids announced on one pub/sub channel, read by one background task per process.

The job store hears finishes on the queue's `finished` channel, the cancel notices hear cancels
on `cancelled`; both need the same reader: subscribe (SSUBSCRIBE on a Cluster, where the
scripts announce with SPUBLISH), hand each id heard to `on_heard` (with what follows it in the
message after a newline: a finished job's view, see scripts.FINISH), remember the ids heard lately
for a waiter that comes after its announcement, and resubscribe with a backoff after an outage.

Pub/sub delivers at most once: an id announced while the subscription was down is gone. So each
time the subscription is (re)established `on_live` runs, for the owner to have every waiter
read its record again, and `live_since` says since when nothing can have been missed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from corral_redis.settings import RedisSettings

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 2.0


class Announcements:
    """The ids announced on `channel`, from `listen` on (idempotent) until `aclose`."""

    def __init__(
        self,
        client: Redis,
        channel: str,
        settings: RedisSettings,
        on_heard: Callable[[str, bytes], None],
        on_live: Callable[[], None],
        *,
        heard_for_s: float,
        heard_most: int,
        what: str,
    ) -> None:
        self._client = client
        self._channel = channel
        self._sharded = settings.cluster
        self._idle_s = settings.listen_idle_s
        self._heard_for_s = heard_for_s
        self._heard_most = heard_most
        self._on_heard = on_heard
        self._on_live = on_live
        self._what = what
        self.subscribed = asyncio.Event()
        # The loop's time the live subscription was confirmed (None while there is none).
        self.live_since: float | None = None
        # Ids heard lately, each with the loop's time it was heard, oldest first.
        self._heard: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._reader: asyncio.Task[None] | None = None

    def heard(self, job_id: str) -> bool:
        """Whether `job_id` was announced lately (within heard_for_s, among the last heard_most)."""
        return job_id in self._heard

    def listen(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read(), name=f"corral {self._what} reader {self._channel}")

    async def aclose(self) -> None:
        """Stop the reader. The client stays open: it is the caller's."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self._client.pubsub()
            try:
                if self._sharded:
                    await pubsub.ssubscribe(self._channel)
                else:
                    await pubsub.subscribe(self._channel)
                while True:
                    if self._sharded:
                        message = await pubsub.get_sharded_message(timeout=self._idle_s)  # type: ignore[attr-defined]
                    else:
                        message = await pubsub.get_message(timeout=self._idle_s)
                    if message is None:
                        continue
                    if message["type"] in ("message", "smessage"):
                        job_id, _, rest = message["data"].partition(b"\n")
                        self._heard_now(job_id.decode(), rest)
                    elif message["type"] in ("subscribe", "ssubscribe"):
                        # Also sent when redis-py re-subscribes after a reconnect: what was
                        # announced while the connection was down is lost.
                        self.live_since = asyncio.get_running_loop().time()
                        self.subscribed.set()
                        self._on_live()
                        backoff = 0.05
            except (RedisError, OSError) as error:
                log.warning("%s interrupted, resubscribing: %s", self._what, error)
            except Exception:
                log.exception("%s reader failed, restarting it", self._what)
            finally:
                self.live_since = None
                self.subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    def _heard_now(self, job_id: str, rest: bytes) -> None:
        now = asyncio.get_running_loop().time()
        self._heard[job_id] = now
        self._heard.move_to_end(job_id)
        while self._heard and (len(self._heard) > self._heard_most or next(iter(self._heard.values())) < now - self._heard_for_s):
            self._heard.popitem(last=False)
        self._on_heard(job_id, rest)


async def wait_set(event: asyncio.Event, timeout_s: float) -> bool:
    """Whether `event` is set within `timeout_s`: how a waiter for an announcement waits."""
    if event.is_set():
        return True
    if timeout_s <= 0:
        return False
    try:
        # Not asyncio.wait_for: before Python 3.12 it loses a cancellation that arrives as the
        # event is set (see connection.py), and a cancelled reader would wait on to its deadline.
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True
