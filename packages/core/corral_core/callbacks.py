"""Callbacks: a finished job sent to the URL its client gave, signed, retried until it lands.

The rules live here: which URLs a client may give, how a message is signed (Standard Webhooks),
how long to wait before the next attempt, which addresses a delivery may never reach, and how an
attempt's outcome moves a job's callback along. Sending is an adapter's (corral_api.deliveries);
the durable line of deliveries is the CallbackDeliveries port's.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import ipaddress
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

import msgspec

MAX_URL_LENGTH = 2048
# What a webhook secret starts with (Standard Webhooks), then base64 of its random bytes.
SECRET_PREFIX = "whsec_"


class CallbackFormat(enum.StrEnum):
    """Which body is sent: Corral's job view (POST), or Judge0's submission (PUT, as Judge0 does)."""

    NATIVE = "native"
    JUDGE0 = "judge0"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Callback(msgspec.Struct, frozen=True, kw_only=True):
    """Where a job is sent when it finishes, and how its delivery stands."""

    url: str
    format: CallbackFormat = CallbackFormat.NATIVE
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    # The last attempt's HTTP status ("200"), or why it had none ("timeout", "refused: ...").
    last_status: str = ""
    next_at: datetime | None = None


class CallbackRefused(Exception):
    """A callback URL a client may not give; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_callback_url(url: str) -> str:
    """The URL as given, if a callback may be sent there; raises CallbackRefused otherwise.

    Where it resolves to is checked at each delivery (refusal_of_address): a name's addresses
    change, and only the one resolution a delivery connects to counts.
    """
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise CallbackRefused(f"is not a valid URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise CallbackRefused("must be an http or https URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise CallbackRefused("must not carry a user name or password")
    if not parts.hostname:
        raise CallbackRefused("must name a host")
    if port == 0:
        raise CallbackRefused("must not name port 0")
    if any(char.isspace() or ord(char) < 0x21 for char in url):
        raise CallbackRefused("must not contain spaces or control characters")
    return url


def refusal_of_address(address: str) -> str | None:
    """Why a callback may not connect to `address` (an IP address), or None if it may: only
    public unicast addresses, so that a callback cannot reach the service's own network (cloud
    metadata at 169.254.169.254, Redis on 127.0.0.1, a 10/8 neighbour)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address in IPv6 clothing is judged as the IPv4 address it reaches.
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None:
            refused = refusal_of_address(str(inner))
            return None if refused is None else f"{address} maps to {refused}"
        if ip in _NAT64:
            refused = refusal_of_address(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
            return None if refused is None else f"{address} translates to {refused}"
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved", "site_local"):
        if getattr(ip, f"is_{kind}", False):
            return f"{address} is a {kind.replace('_', '-')} address"
    if not ip.is_global:
        return f"{address} is not a public address"
    return None


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def webhook_secret(random_bytes: bytes) -> str:
    """A webhook secret made of `random_bytes` (24 or more, from the caller's randomness)."""
    if len(random_bytes) < 24:
        raise ValueError("a webhook secret needs 24 random bytes or more")
    return SECRET_PREFIX + base64.b64encode(random_bytes).decode()


def secret_bytes(secret: str) -> bytes:
    """The bytes a webhook secret stands for; ValueError when it is not base64."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value for one message (Standard Webhooks, v1):
    HMAC-SHA256 of "{id}.{timestamp}.{body}" under the secret's bytes, base64."""
    key = secret_bytes(secret)
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def backoff_s(attempt: int, base_s: float, most_s: float, draw: float) -> float:
    """How long to wait after failed attempt number `attempt` (1 for the first): exponential
    backoff with full jitter, `draw` a uniform random number in [0, 1) from the caller."""
    doubled: float = base_s * 2.0 ** min(attempt - 1, 62)
    return draw * min(most_s, doubled)


class Outcome(msgspec.Struct, frozen=True):
    """One attempt's end: `status` the HTTP status or why there was none; `retry` False when
    another attempt cannot help (a refused target, a redirect)."""

    delivered: bool
    status: str
    retry: bool = True


def after_attempt(
    callback: Callback, outcome: Outcome, now: datetime, give_up_at: datetime, delay_s: float
) -> Callback:
    """The callback once an attempt ended with `outcome` at `now`: delivered, failed for good,
    or pending again `delay_s` from now, unless that is past `give_up_at`."""
    attempts = callback.attempts + 1
    if outcome.delivered:
        state, next_at = DeliveryState.DELIVERED, None
    elif not outcome.retry or now + timedelta(seconds=delay_s) > give_up_at:
        state, next_at = DeliveryState.FAILED, None
    else:
        state, next_at = DeliveryState.PENDING, now + timedelta(seconds=delay_s)
    return msgspec.structs.replace(
        callback, state=state, attempts=attempts, last_status=outcome.status, next_at=next_at
    )


class DueDelivery(msgspec.Struct, frozen=True):
    """A delivery taken from the line: its job, and the claim that fences what is written back."""

    job_id: str
    claim: int


class CallbackDeliveries(Protocol):
    """The durable line of callbacks to deliver. A job with a callback is put in it in the same
    atomic step that stores its final state (JobQueue.finish), so none is lost between the two."""

    async def due(self, lease_ms: int, most: int) -> list[DueDelivery]:
        """Up to `most` deliveries whose time has come, each leased for `lease_ms`: until then no
        other caller gets it; a caller that dies holding one lets it come due again after that."""
        ...

    async def settle(self, due: DueDelivery, callback: Callback) -> bool:
        """Store the job's callback as it stands after an attempt, and take the delivery out of
        the line (delivered, failed) or put it back for `callback.next_at` (pending). False,
        nothing written, when the claim was lost (its lease ran out and another caller took it)."""
        ...
