"""The API's [api] section (corral_system.config); the API also reads [limits] and [redis]."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from corral_api.deliveries import DeliveryOptions
from corral_core.access import Quotas
from corral_core.callbacks import SECRET_PREFIX, secret_bytes
from corral_core.limit_settings import LimitSettings
from corral_core.policy import LimitPolicy, SizePolicy
from corral_core.structs import copied
from corral_http.options import HttpOptions
from corral_http.schemas import MOST_TESTS
from corral_redis import RedisSettings
from corral_system.config import Processes

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

Positive = Annotated[int, msgspec.Meta(ge=1)]
_SIZES = SizePolicy()


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Its variables are CORRAL_<FIELD>."""

    config_section: ClassVar[str] = "api"
    env_names: ClassVar[dict[str, str]] = {"processes": "CORRAL_API_PROCESSES"}

    # Address and port `corral-api serve` listens on (its --host and --port win).
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8000
    # API processes sharing the port: above 1, a supervisor forks them, restarts a dead one and
    # stops them together (`corral-api serve --processes` wins); 1: this process serves itself.
    processes: Processes = 1
    # Host names clients may address the API by (the Host header, port aside), comma-separated;
    # any other gets 400, which stops DNS rebinding. Empty means localhost, 127.0.0.1, ::1 and
    # `host`; `*.example.com` allows its subdomains, `*` any host.
    allowed_hosts: str = ""
    # Web origins whose pages may call the API from a browser (CORS), comma-separated, such as
    # https://judge.example.com; `*` allows any. Empty (the default) sends no CORS headers.
    cors_allow_origins: str = ""
    # A request body must arrive at this many bytes per second at least, once its first
    # `body_grace_s` seconds are over, or the request is ended with 408: a trickling client
    # must not hold a connection for hours.
    min_body_bytes_per_s: Positive = 10_000
    # How long a request body may take before that rate applies, in seconds.
    body_grace_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 5
    # The longest `?wait=` a client may ask for, in seconds.
    max_wait_s: Annotated[float, msgspec.Meta(ge=0, le=300)] = 30
    # The most long-polls (`?wait=`) one API process holds at once; past it a request that
    # asks to wait gets 503 at once.
    max_waiters: Positive = 10_000
    # The Retry-After of a 503 (queue full, Redis unreachable), in seconds.
    retry_after_s: Positive = 2
    # Judge0's ENABLE_SUBMISSION_DELETE: DELETE /judge0/submissions/{token} removes a finished
    # submission of the caller's (an admin key's: any). false answers Judge0's 400 "delete not
    # allowed".
    judge0_submission_delete: bool = True
    # Sizes of a submission past which it is refused with 413.
    max_code_bytes: Positive = _SIZES.max_code_bytes
    max_stdin_bytes: Positive = _SIZES.max_stdin_bytes
    max_files: Positive = _SIZES.max_files
    max_files_bytes: Positive = _SIZES.max_files_bytes
    # Test cases one job may carry (422 past it), and their bytes in all: stdin, expected
    # output, arguments and checker programs (413 past it).
    max_tests: Annotated[int, msgspec.Meta(ge=1, le=MOST_TESTS)] = _SIZES.max_tests
    max_tests_bytes: Positive = _SIZES.max_tests_bytes
    # The job limits: the [limits] section, which the worker reads too.
    limits: LimitSettings = LimitSettings()

    # Clients must send an API key (`corral-api keys create`). false: anyone who reaches the
    # port may submit and read every job, for a trusted single-user install only.
    auth: bool = True
    # Requests a key may make per key_rate_window_s (GCRA; 429 past it), unless the key has its own.
    key_rate_limit: Positive = 600
    # The window of key_rate_limit, in seconds.
    key_rate_window_s: Positive = 60
    # Jobs a key may have pending or running at once (429 past it), unless the key has its own.
    key_max_unfinished: Positive = 100
    # Bytes a key's jobs may hold in Redis (429 past it), unless the key has its own: a job
    # counts the most it may grow to (its request plus max_output_bytes for stdout and for
    # stderr) while it runs, then what it stored, until its record expires. A small job stores
    # about 2.4 KB: a key at the default rate for a day (864,000 jobs) holds about 2 GB.
    key_max_stored_bytes: Positive = 3 * 1024 * 1024 * 1024
    # Long-polls one key may hold at once in one API process (429 past it), unless it has its own.
    key_max_waiters: Positive = 1000
    # Event streams (GET /jobs/{id}/events) one API process holds at once; past it a new one
    # gets 503 at once.
    max_streams: Positive = 10_000
    # Event streams one key may hold at once in one API process (429 past it).
    key_max_streams: Positive = 100
    # Seconds an event stream may go without sending before it sends a `: keep-alive` comment,
    # so that proxies keep a quiet stream's connection open.
    stream_heartbeat_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 15
    # Bytes one POST /jobs/{id}/stdin may send an interactive job (413 past it); the job's
    # stdin takes max_stdin_bytes in all.
    max_stdin_call_bytes: Positive = 64 * 1024
    # How long an Idempotency-Key is remembered, per key: a retry within it gets the first job.
    idempotency_ttl_s: Positive = 24 * 3600
    # Callbacks (a job's callback_url): how long after the job finished its delivery is retried,
    # in seconds; then it is recorded as failed.
    callback_retry_for_s: Annotated[float, msgspec.Meta(gt=0)] = 3600
    # The wait before a callback's first retry is at most this many seconds, doubling with each
    # attempt up to callback_backoff_max_s (each wait a random part of that: full jitter).
    callback_backoff_s: Annotated[float, msgspec.Meta(gt=0)] = 1
    # The longest wait between two attempts of a callback, in seconds.
    callback_backoff_max_s: Annotated[float, msgspec.Meta(gt=0)] = 300
    # Hosts callbacks may reach even where they resolve to a private, loopback or link-local
    # address, comma-separated (e.g. an internal receiver); any other host must be public.
    callback_allowed_hosts: str = ""
    # Callbacks one API process sends at once.
    callback_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 16
    # Signs the callbacks of jobs submitted without a key (auth=false): whsec_ and base64 of
    # 24 or more random bytes. Empty: such callbacks go unsigned. Keys have secrets of their own.
    webhook_secret: str = ""

    def __post_init__(self) -> None:
        if self.webhook_secret:
            try:
                valid = self.webhook_secret.startswith(SECRET_PREFIX) and len(secret_bytes(self.webhook_secret)) >= 24
            except ValueError:
                valid = False
            if not valid:
                raise ValueError("webhook_secret must be whsec_ and base64 of 24 or more random bytes")

    def delivery_options(self) -> DeliveryOptions:
        return DeliveryOptions(
            retry_for_s=self.callback_retry_for_s,
            backoff_s=self.callback_backoff_s,
            backoff_max_s=self.callback_backoff_max_s,
            allowed_hosts=frozenset(host.lower() for host in _split(self.callback_allowed_hosts)),
            service_secret=self.webhook_secret,
            concurrency=self.callback_concurrency,
        )

    def limit_policy(self) -> LimitPolicy:
        return self.limits.policy()

    def key_quotas(self) -> Quotas:
        return copied(Quotas, self, prefix="key_")

    def size_policy(self) -> SizePolicy:
        return SizePolicy(
            max_code_bytes=self.max_code_bytes,
            max_stdin_bytes=self.max_stdin_bytes,
            max_files=self.max_files,
            max_files_bytes=self.max_files_bytes,
            max_tests=self.max_tests,
            max_tests_bytes=self.max_tests_bytes,
        )

    def http_options(self, queue_size: int) -> HttpOptions:
        """What the HTTP adapter needs of these settings; `queue_size`: [redis] max_unfinished."""
        return HttpOptions(
            limits=self.limit_policy(),
            sizes=self.size_policy(),
            hosts=tuple(self.hosts()),
            cors_origins=tuple(self.cors_origins()),
            min_body_bytes_per_s=self.min_body_bytes_per_s,
            body_grace_s=self.body_grace_s,
            max_body_bytes=self.max_body_bytes(),
            max_wait_s=self.max_wait_s,
            retry_after_s=self.retry_after_s,
            key_quotas=self.key_quotas() if self.auth else None,
            queue_size=queue_size,
            judge0_submission_delete=self.judge0_submission_delete,
            max_streams=self.max_streams,
            key_max_streams=self.key_max_streams,
            stream_heartbeat_s=self.stream_heartbeat_s,
            max_stdin_call_bytes=self.max_stdin_call_bytes,
        )

    def hosts(self) -> list[str]:
        listed = _split(self.allowed_hosts)
        return listed or [*LOOPBACK_HOSTS, self.host]

    def cors_origins(self) -> list[str]:
        return _split(self.cors_allow_origins)

    def max_body_bytes(self) -> int:
        # Base64 files grow by 4/3 and JSON escaping can double text; anything past this is
        # refused by Litestar before it is parsed.
        text = 2 * (self.max_code_bytes + self.max_stdin_bytes + self.max_tests_bytes)
        # Each test's JSON keys and punctuation besides its text.
        return text + 2 * self.max_files_bytes + 256 * self.max_tests + 64 * 1024


def _split(names: str) -> list[str]:
    return [name.strip() for name in names.split(",") if name.strip()]


# The sections `corral-api` reads, in the order `corral-api config` shows them.
SECTIONS = (ApiSettings, LimitSettings, RedisSettings)
