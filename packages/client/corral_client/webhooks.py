"""Checking a callback's signature as the Standard Webhooks specification says, with the
standard library only: HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}" under the key's
secret ("whsec_" and its base64), sent as space-separated "v1,<base64>" signatures (several while
a secret is rotated), and a timestamp within a few minutes of now so that an old delivery cannot
be replayed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from corral_client.errors import CorralError

TOLERANCE_S = 5 * 60


class WebhookVerificationError(CorralError):
    """The callback's signature is missing, malformed or wrong, or its timestamp is too far off."""


def verify_webhook(
    payload: bytes | str, headers: Mapping[str, str], secret: str, *, tolerance_s: int = TOLERANCE_S, now: float | None = None
) -> Any:
    """The callback's body, decoded from JSON, once its signature and timestamp check out;
    raises WebhookVerificationError otherwise. `payload` is the body exactly as received."""
    body = payload.encode() if isinstance(payload, str) else payload
    found = {name.lower(): value for name, value in headers.items()}
    try:
        message_id, timestamp, signatures = (found[name] for name in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    except KeyError as missing:
        raise WebhookVerificationError(f"the {missing.args[0]} header is missing") from None
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError(f"the webhook-timestamp {timestamp[:32]!r} is not a number of seconds") from None
    if abs((time.time() if now is None else now) - sent_at) > tolerance_s:
        raise WebhookVerificationError(f"the webhook-timestamp is more than {tolerance_s} s from now")
    signed = f"{message_id}.{sent_at}.".encode() + body
    expected = base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest())
    for signature in signatures.split():
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            try:
                return msgspec.json.decode(body)
            except msgspec.DecodeError:
                raise WebhookVerificationError("the body is signed but is not JSON") from None
    raise WebhookVerificationError("no signature matches the body under this secret")


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("the secret is not whsec_ followed by base64") from None
