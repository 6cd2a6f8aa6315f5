from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from corral_core.callbacks import (
    Callback,
    CallbackRefused,
    DeliveryState,
    Outcome,
    after_attempt,
    backoff_s,
    check_callback_url,
    refusal_of_address,
    signature,
    webhook_secret,
)

SECRET = webhook_secret(bytes(range(32)))
NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def test_a_signature_is_the_one_the_standard_webhooks_library_verifies() -> None:
    body = b'{"job_id":"abc","status":"COMPLETED"}'
    timestamp = int(datetime.now(UTC).timestamp())
    headers = {"webhook-id": "msg_abc", "webhook-timestamp": str(timestamp)}
    headers["webhook-signature"] = signature(SECRET, "msg_abc", timestamp, body)
    assert Webhook(SECRET).verify(body, headers) == {"job_id": "abc", "status": "COMPLETED"}
    assert headers["webhook-signature"] == Webhook(SECRET).sign("msg_abc", datetime.fromtimestamp(timestamp, UTC), body.decode())


def test_a_signature_follows_the_specification_s_example() -> None:
    # The example of the Standard Webhooks specification (spec/standard-webhooks.md).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_a_webhook_secret_is_whsec_and_base64_of_its_bytes() -> None:
    assert base64.b64decode(SECRET.removeprefix("whsec_")) == bytes(range(32))
    with pytest.raises(ValueError):
        webhook_secret(b"short")


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1", "172.16.5.4", "192.168.1.1", "127.0.0.1", "0.0.0.0", "169.254.169.254", "100.64.0.1",
        "224.0.0.1", "255.255.255.255", "240.0.0.1", "::", "::1", "fe80::1", "fe80::1%eth0", "fc00::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a00:1", "2002:a00:1::",
        "fd00:ec2::254",
    ],
)  # fmt: skip
def test_private_loopback_link_local_metadata_and_mapped_addresses_are_refused(address: str) -> None:
    assert refusal_of_address(address) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal_of_address(address) is None


def test_a_name_is_not_an_address() -> None:
    assert refusal_of_address("localhost") is not None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("https://user:pw@example.com/", "user name or password"),
        ("https://user@example.com/", "user name or password"),
        ("https:///path", "must name a host"),
        ("https://example.com:99999/", "valid URL"),
        ("https://example.com/" + "a" * 2048, "longer than 2048"),
        ("https://exa mple.com/", "spaces"),
    ],
)
def test_callback_urls_that_are_refused_say_why(url: str, why: str) -> None:
    with pytest.raises(CallbackRefused, match=why):
        check_callback_url(url)


def test_http_and_https_urls_with_a_host_are_accepted() -> None:
    for url in ("https://hooks.example.com/corral?x=1", "http://127.0.0.1:8080/cb", "http://[::1]:9/"):
        assert check_callback_url(url) == url


def test_backoff_doubles_up_to_its_most_and_is_a_random_part_of_it() -> None:
    assert [backoff_s(attempt, 1, 10, 0.999999) for attempt in (1, 2, 3, 4, 5)] == pytest.approx([1, 2, 4, 8, 10], rel=1e-3)
    assert backoff_s(3, 1, 10, 0.0) == 0
    assert backoff_s(3, 1, 10, 0.5) == 2
    assert backoff_s(10_000, 1, 10, 0.5) == 5  # no overflow however many attempts


def test_an_attempt_moves_the_callback_to_delivered_pending_or_failed() -> None:
    pending = Callback(url="https://example.com/")
    give_up_at = NOW + timedelta(hours=1)
    delivered = after_attempt(pending, Outcome(True, "200"), NOW, give_up_at, 1)
    assert (delivered.state, delivered.attempts, delivered.last_status, delivered.next_at) == (DeliveryState.DELIVERED, 1, "200", None)
    again = after_attempt(pending, Outcome(False, "503"), NOW, give_up_at, 2)
    assert (again.state, again.attempts, again.next_at) == (DeliveryState.PENDING, 1, NOW + timedelta(seconds=2))
    late = after_attempt(again, Outcome(False, "503"), NOW, give_up_at, 3601)
    assert (late.state, late.attempts, late.next_at) == (DeliveryState.FAILED, 2, None)
    refused = after_attempt(pending, Outcome(False, "refused: 10.0.0.1 is a private address", retry=False), NOW, give_up_at, 1)
    assert refused.state is DeliveryState.FAILED and refused.last_status.startswith("refused")
