"""Delivering callbacks: every API process takes due deliveries from the durable line
(CallbackDeliveries), sends each finished job to its URL, signed, and records the attempt.

Sending is guarded against server-side request forgery (a client aiming Corral at its own
network): the host is resolved once, every address it resolves to must be public
(corral_core.callbacks.refusal_of_address) unless the host is allowed by name, and the
connection goes to that resolved address, the name kept only for the Host header and TLS (SNI
and the certificate check), so a second resolution cannot swap in another address. No redirect
is followed, an attempt takes 5 s at most, and at most 4 KiB of the answer is read.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from datetime import timedelta

import httpx
import msgspec
from prometheus_client import CollectorRegistry, Counter

from corral_core.access import KeyStore
from corral_core.callbacks import (
    Callback,
    CallbackDeliveries,
    CallbackFormat,
    DeliveryState,
    DueDelivery,
    Outcome,
    after_attempt,
    backoff_s,
    refusal_of_address,
    signature,
)
from corral_core.job import Job
from corral_core.ports import Clock, JobStore, StorageUnavailable
from corral_http.compat.judge0 import views as judge0
from corral_http.schemas import JobView

_log = logging.getLogger("corral_api.deliveries")

TIMEOUT_S = 5.0
MAX_ANSWER_BYTES = 4096


class DeliveryOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What the delivery loop is told of the settings ([api] callback_*)."""

    retry_for_s: float = 3600.0
    backoff_s: float = 1.0
    backoff_max_s: float = 300.0
    # Hosts a callback may reach whatever they resolve to (lower case, as in the URL).
    allowed_hosts: frozenset[str] = frozenset()
    # Signs the callbacks of jobs without a key (the API with auth off).
    service_secret: str = ""
    concurrency: int = 16
    poll_s: float = 0.5
    # How long a taken delivery is this process's: well past an attempt's TIMEOUT_S.
    lease_ms: int = 60_000


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.attempts = Counter(
            "corral_callback_attempts",
            "Callback attempts, by outcome: delivered (2xx), failed (another answer, a timeout, no connection; "
            "retried), refused (a private address, a redirect: never retried).",
            ["outcome"],
            registry=registry,
        )


class Message(msgspec.Struct, frozen=True):
    method: str
    body: bytes
    content_type: str = "application/json"


def message_of(job: Job) -> Message:
    """What is sent for a finished job: Corral's job view POSTed, or Judge0's submission PUT
    (its default fields, base64-encoded, as Judge0's own callbacks are)."""
    assert job.callback is not None
    if job.callback.format is CallbackFormat.JUDGE0:
        return Message("PUT", msgspec.json.encode(judge0.view(job, judge0.DEFAULT_FIELDS, True, {})))
    return Message("POST", msgspec.json.encode(JobView.of(msgspec.structs.replace(job, callback=None))))


class CallbackSender:
    """Sends one message to one URL under the guard above; `client` is made once per process."""

    def __init__(self, allowed_hosts: frozenset[str], client: httpx.AsyncClient | None = None) -> None:
        self._allowed = allowed_hosts
        # No proxy from the environment (it would connect by name, not to the pinned address), and
        # no connection kept: pooled by address, one could carry another name's requests.
        self._client = client or httpx.AsyncClient(
            follow_redirects=False, trust_env=False, timeout=TIMEOUT_S, limits=httpx.Limits(max_keepalive_connections=0)
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, url: str, message: Message, headers: dict[str, str]) -> Outcome:
        target = httpx.URL(url)
        host = target.raw_host.decode("ascii")
        port = target.port or (443 if target.scheme == "https" else 80)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                addresses = await self._resolve(host, port)
                if isinstance(addresses, Outcome):
                    return addresses
                # Each address in the resolver's order, every one of them checked: the first
                # that takes the connection gets the message.
                for address in addresses:
                    try:
                        return await self._post(target, address, host, message, headers)
                    except httpx.ConnectError as error:
                        refused = error
                return Outcome(False, f"no connection: {refused}")
        except TimeoutError:
            return Outcome(False, "timeout")
        except httpx.HTTPError as error:
            return Outcome(False, f"no answer: {type(error).__name__}")

    async def _resolve(self, host: str, port: int) -> list[str] | Outcome:
        """The addresses the attempt may connect to, resolved once, or why there are none."""
        try:
            # The loop's getaddrinfo runs the blocking resolver in a thread.
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as error:
            return Outcome(False, f"no address: {error}")
        addresses = [str(info[4][0]) for info in found]
        if not addresses:
            return Outcome(False, "no address")
        if host.lower() not in self._allowed:
            for address in addresses:
                if (refused := refusal_of_address(address)) is not None:
                    return Outcome(False, f"refused: {refused}", retry=False)
        return list(dict.fromkeys(addresses))

    async def _post(self, target: httpx.URL, address: str, host: str, message: Message, headers: dict[str, str]) -> Outcome:
        pinned = target.copy_with(host=address)
        extensions = {"sni_hostname": host} if target.scheme == "https" else {}
        request = self._client.build_request(
            message.method,
            pinned,
            content=message.body,
            headers={**headers, "host": target.netloc.decode("ascii"), "content-type": message.content_type},
            extensions=extensions,
        )
        response = await self._client.send(request, stream=True)
        try:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= MAX_ANSWER_BYTES:
                    break
        finally:
            await response.aclose()
        status = response.status_code
        if response.is_redirect or 300 <= status < 400:
            return Outcome(False, f"refused: {status} redirect (redirects are not followed)", retry=False)
        return Outcome(200 <= status < 300, str(status))


class DeliverCallbacks:
    """The delivery loop: take what is due, attempt each, record the outcome on its job."""

    def __init__(
        self,
        deliveries: CallbackDeliveries,
        store: JobStore,
        keys: KeyStore,
        sender: CallbackSender,
        clock: Clock,
        options: DeliveryOptions,
        metrics: DeliveryMetrics,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._deliveries = deliveries
        self._store = store
        self._keys = keys
        self._sender = sender
        self._clock = clock
        self._options = options
        self._metrics = metrics
        self._draw = draw

    async def run(self) -> None:
        """Deliver until cancelled; a storage outage is waited out."""
        while True:
            try:
                taken = await self.once()
            except StorageUnavailable as error:
                _log.warning("callbacks: storage unavailable: %s", error)
                taken = 0
            if taken < self._options.concurrency:
                await asyncio.sleep(self._options.poll_s)

    async def once(self) -> int:
        """Attempt every delivery due now (up to `concurrency` at once); how many were taken."""
        due = await self._deliveries.due(self._options.lease_ms, self._options.concurrency)
        # Every attempt runs to its end before a storage error is raised: none is left orphaned.
        outcomes = await asyncio.gather(*(self._attempt(delivery) for delivery in due), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return len(due)

    async def _attempt(self, due: DueDelivery) -> None:
        try:
            job = await self._store.get(due.job_id)
            if job is None or job.callback is None:
                # The record expired before its callback landed: nothing left to send or record.
                await self._deliveries.settle(due, Callback(url="", state=DeliveryState.FAILED))
                return
            callback = job.callback
            secret = self._options.service_secret if not job.owner else await self._keys.webhook_secret(job.owner)
            if secret is None:
                outcome = Outcome(False, "refused: the job's API key was revoked", retry=False)
            else:
                outcome = await self._sender.send(callback.url, message := message_of(job), self._headers(job, secret, message))
            self._metrics.attempts.labels(_outcome_label(outcome)).inc()
            now = self._clock.now()
            finished = job.finished_at or now
            delay = backoff_s(callback.attempts + 1, self._options.backoff_s, self._options.backoff_max_s, self._draw())
            after = after_attempt(callback, outcome, now, finished + timedelta(seconds=self._options.retry_for_s), delay)
            if not await self._deliveries.settle(due, after):
                _log.warning("callbacks: job %s: the delivery's lease ran out before its attempt was recorded", job.id)
        except StorageUnavailable:
            raise
        except Exception:
            # Left in the line: it comes due again when its lease ends.
            _log.exception("callbacks: job %s: the attempt failed", due.job_id)

    def _headers(self, job: Job, secret: str, message: Message) -> dict[str, str]:
        # One message per job, whatever the attempt: its id is the job's.
        message_id = f"msg_{job.id}"
        timestamp = int(self._clock.now().timestamp())
        headers = {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "user-agent": "corral-callbacks"}
        if secret:
            headers["webhook-signature"] = signature(secret, message_id, timestamp, message.body)
        return headers


def _outcome_label(outcome: Outcome) -> str:
    if outcome.delivered:
        return "delivered"
    return "failed" if outcome.retry else "refused"


async def delivering_while_serving(loop: DeliverCallbacks, sender: CallbackSender, *needs: object) -> AsyncIterator[None]:
    """The delivery loop, running while the API serves; its HTTP client closed at the end.
    `needs`: the resources it uses (the storage's), which naming makes dependency-injector
    shut down after it."""
    task = asyncio.get_running_loop().create_task(loop.run(), name="corral callbacks")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await sender.aclose()
