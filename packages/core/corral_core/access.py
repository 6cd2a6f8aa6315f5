"""Who may do what: API keys, the jobs each key owns, and the quotas that bound each key.

A key is known by the SHA-256 of its secret only; the secret is shown once, when it is made.
A job belongs to the key that submitted it (`Job.owner`, the key's id): any other key is told
the job does not exist, an admin key reads every job. Quotas bound what one key may hold at
once (unfinished jobs, stored bytes) and how fast it may ask (requests per window); each has a
service-wide default and may be overridden per key.

The ports here are the storage of keys and of each key's usage; core's use cases apply the
rules (corral_core.usecases), adapters only keep the counts.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import msgspec

from corral_core.job import Job

if TYPE_CHECKING:
    from corral_core.ports import JobQueue


def secret_hash(secret: str) -> str:
    """What a key is stored and looked up by. A fast hash is enough: the secret has 256 bits."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Quotas(msgspec.Struct, frozen=True, kw_only=True):
    """One key's bounds. As a key's overrides, None means the service default."""

    rate_limit: int | None = None  # requests per rate window
    rate_window_s: int | None = None
    max_unfinished: int | None = None  # jobs PENDING or RUNNING at once
    max_stored_bytes: int | None = None  # bytes its jobs may hold in storage (see SubmitJob)
    max_waiters: int | None = None  # long-polls at once, per API process

    def over(self, defaults: Quotas) -> Quotas:
        """These overrides on top of `defaults`."""
        mine = {name: getattr(self, name) for name in Quotas.__struct_fields__}
        return Quotas(**{name: getattr(defaults, name) if value is None else value for name, value in mine.items()})


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # public: stored on the jobs it submits, shown by `keys list`; never the secret
    name: str
    created_at: datetime
    admin: bool = False
    quotas: Quotas = Quotas()
    # What signs the key's callbacks (corral_core.callbacks.webhook_secret): stored by
    # KeyStore.add, read back only by KeyStore.webhook_secret, where a callback is signed.
    webhook_secret: str = ""


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """Who a use case acts for: a key with its quotas resolved, or ANONYMOUS when auth is off."""

    key_id: str
    admin: bool = False
    quotas: Quotas = Quotas()
    # The hash of the request's key when its submit is to confirm the key and count the
    # request, in the one storage step that queues the job (SubmitJob); empty when the request
    # was already counted.
    uncounted_key: str = ""

    def may_read(self, owner: str) -> bool:
        return self.admin or owner == self.key_id


# Auth off (a trusted single-user install): one caller who owns and reads everything.
ANONYMOUS = Caller(key_id="", admin=True)


class KeyRevoked(Exception):
    """The caller's key was revoked since it was looked up (HTTP 401)."""

    def __init__(self) -> None:
        super().__init__("this API key is unknown or was revoked")


class OverQuota(Exception):
    """A key is at one of its quotas: try again once it has less in flight (HTTP 429)."""

    def __init__(self, quota: str, limit: int, retry_after_s: int = 1, rate: RateDecision | None = None) -> None:
        super().__init__(f"this key is at its limit of {limit} {quota}")
        self.quota = quota
        self.limit = limit
        self.retry_after_s = retry_after_s
        # The request's count against the key's rate, when the refused submit made it.
        self.rate = rate


class RateDecision(msgspec.Struct, frozen=True):
    """A request counted against its key's rate (GCRA), and what is left of it."""

    allowed: bool
    limit: int
    window_s: int
    remaining: int
    reset_s: int  # until the key's full allowance is back
    retry_after_s: int  # 0 when allowed


class Authorized(msgspec.Struct, frozen=True):
    key: ApiKey
    rate: RateDecision


class KeyStore(Protocol):
    """API keys by the hash of their secret, and each key's request rate."""

    async def add(self, key: ApiKey, hashed: str) -> None: ...

    async def keys(self) -> list[ApiKey]: ...

    async def revoke(self, key_id: str) -> bool:
        """Forget the key at once; False when no key has that id."""
        ...

    async def authorize(self, hashed: str, defaults: Quotas) -> Authorized | None:
        """The key with this hash, with one request counted against its rate (its override,
        else `defaults`'); None, nothing counted, when there is no such key."""
        ...

    async def find(self, hashed: str) -> ApiKey | None:
        """The key with this hash, nothing counted; None when there is no such key."""
        ...

    async def webhook_secret(self, key_id: str) -> str | None:
        """The secret that signs the callbacks of the key with this id; None when there is no
        such key, "" when it has none (made before callbacks were)."""
        ...

    async def rotate_webhook_secret(self, key_id: str, secret: str) -> bool:
        """Sign the key's callbacks with `secret` from now on; False when no key has that id."""
        ...


class Admitted(msgspec.Struct, frozen=True):
    """What a keyed submit found: `refused` is None when the job was queued, else "revoked"
    (no such key), "rate" (rate is the refusal), or the quota the booking would break."""

    refused: str | None
    rate: RateDecision | None  # None only when revoked


class AdmittingQueue(Protocol):
    """Queues a keyed job in one atomic step with the checks of its request: the key still
    exists, one request is counted against its rate, the job is booked against its quotas."""

    async def submit_admitted(self, job: Job, hashed: str, quotas: Quotas, size: int) -> Admitted:
        """Queue `job` (owned by the key with hash `hashed`) as JobQueue.submit does, if the key
        exists, its rate (its override, else `quotas`') allows the request and the booking of
        `size` bytes fits `quotas`; nothing is booked or queued otherwise. Raises what
        JobQueue.submit raises (QueueFull, StorageFull), with nothing booked."""
        ...


class AdmittingInSteps:
    """An AdmittingQueue made of the other ports, one step after another in the order an atomic
    one takes them, the booking given back if the queue refuses the job: for storage where the
    key, its usage and the job cannot be reached in one step (the in-memory adapters; Redis
    queue shards). Each step is atomic on its own; a key revoked between the first and the
    last lets that one submit through."""

    def __init__(self, keys: KeyStore, usage: UsageLedger, queue: JobQueue) -> None:
        self._keys = keys
        self._usage = usage
        self._queue = queue

    async def submit_admitted(self, job: Job, hashed: str, quotas: Quotas, size: int) -> Admitted:
        assert quotas.max_unfinished is not None and quotas.max_stored_bytes is not None, "quotas are resolved"
        found = await self._keys.authorize(hashed, quotas)
        if found is None or found.key.id != job.owner:
            return Admitted("revoked", None)
        if not found.rate.allowed:
            return Admitted("rate", found.rate)
        refused = await self._usage.book(job.owner, job.id, size, quotas.max_unfinished, quotas.max_stored_bytes)
        if refused is not None:
            return Admitted(refused, found.rate)
        try:
            await self._queue.submit(job)
        except BaseException:
            await self._usage.unbook(job.owner, job.id)
            raise
        return Admitted(None, found.rate)


class UsageLedger(Protocol):
    """What each key holds in storage: its unfinished jobs and the bytes booked for its jobs.

    A booking stays unfinished until the queue finishes the job. It is the most the job may
    grow to while it runs; when the job ends (finished, failed or cancelled) it shrinks to what
    the job really stored, in the step that stores the end, and is held until the record
    expires. The queue adapter of the same storage keeps that in step.
    """

    async def book(self, owner: str, job_id: str, size: int, max_unfinished: int, max_bytes: int) -> str | None:
        """Book one unfinished job of `size` bytes; None when booked, else the quota it would
        break ("unfinished jobs" or "stored bytes"), nothing booked."""
        ...

    async def unbook(self, owner: str, job_id: str) -> None:
        """Take back a booking whose job was never queued."""
        ...

    async def held_bytes(self, owner: str) -> int:
        """The bytes the key's jobs hold now: each unfinished job's booking, each finished job's
        stored size, nothing for a job whose record has expired."""
        ...

    async def repair(self, owner: str) -> tuple[int, int]:
        """Recompute the key's bookings from its live records (a booking without a record is
        dropped, a finished job's is what it stored); the bytes held before and after."""
        ...


class IdempotencyRecords(Protocol):
    """The job each (key, Idempotency-Key) pair first created, for a while."""

    async def claim(self, scope: str, key: str, job_id: str, fingerprint: str, ttl_s: int) -> tuple[str, str] | None:
        """Record `job_id` for the pair unless one is recorded; None when this call recorded
        it, else the (job id, fingerprint) recorded first. Atomic: of two calls racing, one wins."""
        ...

    async def release(self, scope: str, key: str, job_id: str) -> None:
        """Forget the pair if it still names `job_id` (its submission failed)."""
        ...
