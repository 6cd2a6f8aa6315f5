"""What the HTTP adapter is told by the deployable that serves it: the values its routes and
middleware need, and nothing of where they came from (settings files, variables)."""

from __future__ import annotations

import msgspec

from corral_core.access import Quotas
from corral_core.policy import LimitPolicy, SizePolicy


class HttpOptions(msgspec.Struct, frozen=True, kw_only=True):
    limits: LimitPolicy
    sizes: SizePolicy
    # Host names clients may address the API by; `*` any, `*.example.com` its subdomains.
    hosts: tuple[str, ...]
    # Web origins whose pages may call the API (CORS); none sends no CORS headers.
    cors_origins: tuple[str, ...] = ()
    # A body must arrive at this rate once its first `body_grace_s` are over (408 past it).
    min_body_bytes_per_s: int
    body_grace_s: float
    max_body_bytes: int
    # The longest `?wait=` a client may ask for, in seconds.
    max_wait_s: float
    # The Retry-After of a 503.
    retry_after_s: int
    # None: no API keys, every caller is ANONYMOUS (a trusted single-user install).
    key_quotas: Quotas | None
    # The most unfinished jobs the queue holds, which Judge0's config_info reports.
    queue_size: int
    # Judge0's ENABLE_SUBMISSION_DELETE: whether DELETE /judge0/submissions/{token} removes one.
    judge0_submission_delete: bool = True
    # Event streams (GET /jobs/{id}/events) this process holds at once (503 past it) and one
    # key may hold in it (429 past it); a stream with nothing to send sends a comment this often.
    max_streams: int = 10_000
    key_max_streams: int = 100
    stream_heartbeat_s: float = 15.0
    # The most bytes one POST /jobs/{id}/stdin may carry, once decoded (413 past it).
    max_stdin_call_bytes: int = 64 * 1024

    @property
    def auth(self) -> bool:
        return self.key_quotas is not None
