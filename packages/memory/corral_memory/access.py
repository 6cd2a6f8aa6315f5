"""In-memory API keys, usage ledger and idempotency records, as the Redis ones behave.

The usage ledger reads the in-memory jobs' state, so a finished job stops counting as
unfinished there exactly as FINISH settles it in Redis, and holds what it stored rather than
what it booked; in-memory records never expire, so those bytes stay held.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import msgspec

from corral_core.access import AdmittingInSteps, ApiKey, Authorized, Quotas, RateDecision
from corral_core.job import encode_job, without_inputs
from corral_core.ports import Clock, JobQueue
from corral_memory.jobs import InMemoryJobs


def _us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo)) // timedelta(microseconds=1)


def _seconds(us: float) -> int:
    return math.ceil(us / 1_000_000)


class InMemoryKeyStore:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._by_hash: dict[str, ApiKey] = {}
        self._arrivals: dict[str, float] = {}  # key id -> GCRA's theoretical arrival time (µs)

    async def add(self, key: ApiKey, hashed: str) -> None:
        self._by_hash[hashed] = key

    async def keys(self) -> list[ApiKey]:
        return sorted(self._by_hash.values(), key=lambda key: (key.created_at, key.id))

    async def revoke(self, key_id: str) -> bool:
        for hashed, key in list(self._by_hash.items()):
            if key.id == key_id:
                del self._by_hash[hashed]
                return True
        return False

    async def find(self, hashed: str) -> ApiKey | None:
        return self._by_hash.get(hashed)

    async def webhook_secret(self, key_id: str) -> str | None:
        return next((key.webhook_secret for key in self._by_hash.values() if key.id == key_id), None)

    async def rotate_webhook_secret(self, key_id: str, secret: str) -> bool:
        for hashed, key in self._by_hash.items():
            if key.id == key_id:
                self._by_hash[hashed] = msgspec.structs.replace(key, webhook_secret=secret)
                return True
        return False

    async def authorize(self, hashed: str, defaults: Quotas) -> Authorized | None:
        key = self._by_hash.get(hashed)
        if key is None:
            return None
        quotas = key.quotas.over(defaults)
        limit, window = quotas.rate_limit or 1, quotas.rate_window_s or 1
        now, window_us = _us(self._clock.now()), window * 1_000_000
        interval = window_us / limit
        arrival = max(self._arrivals.get(key.id, 0), now)
        following = arrival + interval
        if following - now > window_us:
            rate = RateDecision(False, limit, window, 0, _seconds(arrival - now), _seconds(following - now - window_us))
        else:
            self._arrivals[key.id] = following
            remaining = math.floor((window_us - (following - now)) / interval)
            rate = RateDecision(True, limit, window, remaining, _seconds(following - now), 0)
        return Authorized(key, rate)


class InMemoryUsageLedger:
    def __init__(self, state: InMemoryJobs) -> None:
        self._state = state
        self._booked: dict[str, dict[str, int]] = {}  # owner -> job id -> bytes

    async def book(self, owner: str, job_id: str, size: int, max_unfinished: int, max_bytes: int) -> str | None:
        booked = self._booked.setdefault(owner, {})
        for erased in self._state.erased.intersection(booked):
            del booked[erased]
        if job_id in booked:
            return None
        records = self._state.records
        unfinished = sum(1 for other in booked if other not in records or not records[other].finished)
        if unfinished >= max_unfinished:
            return "unfinished jobs"
        if self._held(owner) + size > max_bytes:
            return "stored bytes"
        booked[job_id] = size
        return None

    async def unbook(self, owner: str, job_id: str) -> None:
        record = self._state.records.get(job_id)
        if record is None or not record.finished:
            self._booked.get(owner, {}).pop(job_id, None)

    async def held_bytes(self, owner: str) -> int:
        return self._held(owner)

    async def repair(self, owner: str) -> tuple[int, int]:
        before = self._held(owner)
        booked = self._booked.get(owner, {})
        for job_id in [job_id for job_id in booked if job_id not in self._state.records]:
            del booked[job_id]
        return before, self._held(owner)

    def _held(self, owner: str) -> int:
        # A job that ended holds what it stored, never more than it booked: as FINISH shrinks
        # the Redis booking in the step that stores the end, here read when it is counted.
        records = self._state.records
        return sum(
            min(size, stored_bytes(self._state, job_id)) if job_id in records and records[job_id].finished else size
            for job_id, size in self._booked.get(owner, {}).items()
        )


# As corral_redis' lua/stored.lua: what a job that ended holds, in bytes of content.
EVENT_ENTRY_BYTES = 32
STORED_SLACK = 256


def stored_bytes(state: InMemoryJobs, job_id: str) -> int:
    """Its record without its request's bulk, its returned files, its events and its input."""
    total = STORED_SLACK + len(encode_job(without_inputs(state.records[job_id])))
    total += sum(len(name) + len(content) for name, content in state.files.get(job_id, {}).items())
    total += sum(EVENT_ENTRY_BYTES + len(event.data.encode()) for event in state.events.get(job_id, ()))
    return total + state.input_bytes.get(job_id, 0)


class InMemoryAdmittingQueue(AdmittingInSteps):
    """The steps of a keyed submit in the order ADMIT takes them: not atomic against a racing
    submit of the same key, as the script is, which is enough for the single-process uses of
    the in-memory adapters."""

    def __init__(self, keys: InMemoryKeyStore, usage: InMemoryUsageLedger, queue: JobQueue) -> None:
        super().__init__(keys, usage, queue)


class InMemoryIdempotencyRecords:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._records: dict[tuple[str, str], tuple[str, str, datetime]] = {}

    async def claim(self, scope: str, key: str, job_id: str, fingerprint: str, ttl_s: int) -> tuple[str, str] | None:
        now = self._clock.now()
        first = self._records.get((scope, key))
        if first is not None and first[2] > now:
            return first[0], first[1]
        self._records[(scope, key)] = (job_id, fingerprint, now + timedelta(seconds=ttl_s))
        return None

    async def release(self, scope: str, key: str, job_id: str) -> None:
        first = self._records.get((scope, key))
        if first is not None and first[0] == job_id:
            del self._records[(scope, key)]
