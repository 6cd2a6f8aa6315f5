"""Contracts for the KeyStore, UsageLedger and IdempotencyRecords ports (corral_core.access).

Bind with a fixture `access` yielding an `AccessHarness`: the three adapters, the admitting
queue (a keyed submit in one step) over them, the queue and canceller of the same storage (a
finished or cancelled job settles its booking there), a ManualClock, and `elapse(ms)` that
makes that much time pass for the rate limiter as the adapter counts it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from corral_contract.clock import ManualClock
from corral_contract.queue import LEASE_MS, new_job, ok_result
from corral_core import job as jobs
from corral_core.access import AdmittingQueue, ApiKey, IdempotencyRecords, KeyStore, Quotas, UsageLedger, secret_hash
from corral_core.job import Job
from corral_core.ports import JobCanceller, JobEraser, JobQueue, QueueFull

# A booking far above what a small job stores, and what such a job (its record, events and
# input) stays under once finished.
BIG_BOOKING = 100_000
SMALL_JOB_BYTES = 4096
DEFAULTS = Quotas(rate_limit=3, rate_window_s=60, max_unfinished=2, max_stored_bytes=100, max_waiters=10)


@dataclass
class AccessHarness:
    keys: KeyStore
    usage: UsageLedger
    idempotency: IdempotencyRecords
    queue: JobQueue
    clock: ManualClock
    elapse: Callable[[int], Awaitable[None]]
    admitting: AdmittingQueue
    canceller: JobCanceller | None = None
    eraser: JobEraser | None = None


def key(clock: ManualClock, key_id: str = "k1", *, admin: bool = False, quotas: Quotas | None = None) -> ApiKey:
    return ApiKey(id=key_id, name=f"key {key_id}", created_at=clock.now(), admin=admin, quotas=quotas or Quotas())


def owned_job(clock: ManualClock, job_id: str, owner: str) -> Job:
    made = new_job(clock, job_id)
    return Job(id=made.id, request=made.request, created_at=made.created_at, owner=owner)


class AccessContract:
    @pytest.fixture
    def access(self) -> AccessHarness:
        raise NotImplementedError("bind the contract: provide an `access` fixture")

    async def test_an_unknown_key_is_not_authorized(self, access: AccessHarness) -> None:
        assert await access.keys.authorize(secret_hash("corral_nobody"), DEFAULTS) is None

    async def test_a_key_is_found_by_the_hash_of_its_secret_with_all_it_was_given(self, access: AccessHarness) -> None:
        made = key(access.clock, admin=True, quotas=Quotas(max_unfinished=7))
        await access.keys.add(made, secret_hash("corral_s1"))
        found = await access.keys.authorize(secret_hash("corral_s1"), DEFAULTS)
        assert found is not None and found.key == made
        assert await access.keys.keys() == [made]

    async def test_a_revoked_key_is_refused_at_once(self, access: AccessHarness) -> None:
        await access.keys.add(key(access.clock, "k1"), secret_hash("corral_s1"))
        await access.keys.add(key(access.clock, "k2"), secret_hash("corral_s2"))
        assert await access.keys.revoke("k1")
        assert await access.keys.authorize(secret_hash("corral_s1"), DEFAULTS) is None
        assert await access.keys.authorize(secret_hash("corral_s2"), DEFAULTS) is not None
        assert [k.id for k in await access.keys.keys()] == ["k2"]
        assert not await access.keys.revoke("k1")

    async def test_the_rate_allows_a_burst_of_its_limit_then_refuses_until_time_passes(self, access: AccessHarness) -> None:
        await access.keys.add(key(access.clock), secret_hash("corral_s1"))
        decisions = [await access.keys.authorize(secret_hash("corral_s1"), DEFAULTS) for _ in range(4)]
        rates = [found.rate for found in decisions if found is not None]
        assert [rate.allowed for rate in rates] == [True, True, True, False]
        assert [rate.remaining for rate in rates] == [2, 1, 0, 0]
        assert all((rate.limit, rate.window_s) == (3, 60) for rate in rates)
        refused = rates[3]
        assert refused.retry_after_s == 20  # one request's share of the window
        assert 0 < rates[2].reset_s <= 60
        await access.elapse(20_000)
        again = await access.keys.authorize(secret_hash("corral_s1"), DEFAULTS)
        assert again is not None and again.rate.allowed and again.rate.remaining == 0

    async def test_a_key_s_own_rate_overrides_the_default_and_keys_count_apart(self, access: AccessHarness) -> None:
        await access.keys.add(key(access.clock, "k1", quotas=Quotas(rate_limit=1, rate_window_s=10)), secret_hash("corral_s1"))
        await access.keys.add(key(access.clock, "k2"), secret_hash("corral_s2"))
        first = await access.keys.authorize(secret_hash("corral_s1"), DEFAULTS)
        second = await access.keys.authorize(secret_hash("corral_s1"), DEFAULTS)
        other = await access.keys.authorize(secret_hash("corral_s2"), DEFAULTS)
        assert first is not None and first.rate.allowed and (first.rate.limit, first.rate.window_s) == (1, 10)
        assert second is not None and not second.rate.allowed and second.rate.retry_after_s == 10
        assert other is not None and other.rate.allowed and other.rate.remaining == 2

    async def test_bookings_stop_at_the_unfinished_limit_until_a_job_finishes(self, access: AccessHarness) -> None:
        for job_id in ("job-a", "job-b"):
            assert await access.usage.book("k1", job_id, 10, 2, 100) is None
            await access.queue.submit(owned_job(access.clock, job_id, "k1"))
        assert await access.usage.book("k1", "job-c", 10, 2, 100) == "unfinished jobs"
        assert await access.usage.book("k2", "job-x", 10, 2, 100) is None  # another key's are its own
        lease = await access.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        assert await access.queue.finish(lease, jobs.complete(lease.job, ok_result(), access.clock.now()))
        assert await access.usage.book("k1", "job-c", 10, 2, 100) is None

    async def test_bookings_stop_at_the_byte_limit_and_a_finished_job_still_holds_its_bytes(
        self, access: AccessHarness
    ) -> None:
        assert await access.usage.book("k1", "job-a", 60, 5, 100) is None
        await access.queue.submit(owned_job(access.clock, "job-a", "k1"))
        assert await access.usage.book("k1", "job-b", 50, 5, 100) == "stored bytes"
        lease = await access.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        assert await access.queue.finish(lease, jobs.complete(lease.job, ok_result(), access.clock.now()))
        assert await access.usage.book("k1", "job-b", 50, 5, 100) == "stored bytes"  # its record is still there
        assert await access.usage.book("k1", "job-b", 40, 5, 100) is None

    async def test_an_unbooked_job_frees_its_place_and_a_repeated_booking_counts_once(self, access: AccessHarness) -> None:
        assert await access.usage.book("k1", "job-a", 60, 1, 100) is None
        assert await access.usage.book("k1", "job-a", 60, 1, 100) is None
        assert await access.usage.book("k1", "job-b", 10, 1, 100) == "unfinished jobs"
        await access.usage.unbook("k1", "job-a")
        assert await access.usage.book("k1", "job-b", 100, 1, 100) is None

    async def test_a_cancelled_job_gives_its_unfinished_place_back_once(self, access: AccessHarness) -> None:
        assert access.canceller is not None, "bind `canceller`"
        assert await access.usage.book("k1", "job-a", 10, 1, 100) is None
        await access.queue.submit(owned_job(access.clock, "job-a", "k1"))
        assert await access.canceller.cancel("job-a", access.clock.now())
        assert await access.usage.book("k1", "job-b", 10, 1, 100) is None
        await access.queue.submit(owned_job(access.clock, "job-b", "k1"))
        lease = await access.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None and lease.job.id == "job-b"
        access.clock.advance(5)
        assert not await access.canceller.cancel("job-a", access.clock.now())  # nothing given back twice
        assert await access.usage.book("k1", "job-c", 10, 1, 100) == "unfinished jobs"
        assert await access.canceller.cancel("job-b", access.clock.now())  # running: its place comes back too
        assert not await access.queue.finish(lease, jobs.complete(lease.job, ok_result(), access.clock.now()))
        assert await access.usage.book("k1", "job-c", 10, 1, 100) is None
        assert await access.usage.book("k1", "job-d", 10, 2, 100) is None  # and only once

    async def _finish(self, access: AccessHarness, job_id: str, stdout: str) -> None:
        await access.queue.submit(owned_job(access.clock, job_id, "k1"))
        lease = await access.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None and lease.job.id == job_id
        assert await access.queue.finish(lease, jobs.complete(lease.job, ok_result(stdout), access.clock.now()))

    async def test_a_finished_job_holds_what_it_stored_not_what_it_booked(self, access: AccessHarness) -> None:
        assert await access.usage.book("k1", "job-a", BIG_BOOKING, 5, 2 * BIG_BOOKING) is None
        assert await access.usage.held_bytes("k1") == BIG_BOOKING  # the most it may grow to, while it may
        await self._finish(access, "job-a", "1\n")
        assert 0 < await access.usage.held_bytes("k1") < SMALL_JOB_BYTES
        assert await access.usage.book("k1", "job-b", BIG_BOOKING, 5, BIG_BOOKING + SMALL_JOB_BYTES) is None

    async def test_a_job_that_stored_much_holds_it_and_a_flood_is_still_refused(self, access: AccessHarness) -> None:
        assert await access.usage.book("k1", "job-a", BIG_BOOKING, 5, 2 * BIG_BOOKING) is None
        await self._finish(access, "job-a", "x" * (BIG_BOOKING // 2))
        held = await access.usage.held_bytes("k1")
        assert BIG_BOOKING // 2 < held < BIG_BOOKING // 2 + SMALL_JOB_BYTES
        assert await access.usage.book("k1", "job-b", BIG_BOOKING, 5, BIG_BOOKING + held - 1) == "stored bytes"

    async def test_a_cancelled_job_holds_only_what_it_stored(self, access: AccessHarness) -> None:
        assert access.canceller is not None, "bind `canceller`"
        assert await access.usage.book("k1", "job-a", BIG_BOOKING, 5, 2 * BIG_BOOKING) is None
        await access.queue.submit(owned_job(access.clock, "job-a", "k1"))
        assert await access.canceller.cancel("job-a", access.clock.now())
        assert 0 < await access.usage.held_bytes("k1") < SMALL_JOB_BYTES

    async def test_a_repair_drops_a_booking_without_a_record_and_keeps_the_rest(self, access: AccessHarness) -> None:
        assert await access.usage.book("k1", "job-a", BIG_BOOKING, 5, 4 * BIG_BOOKING) is None
        await self._finish(access, "job-a", "1\n")
        assert await access.usage.book("k1", "job-b", BIG_BOOKING, 5, 4 * BIG_BOOKING) is None
        await access.queue.submit(owned_job(access.clock, "job-b", "k1"))
        # Booked, and never queued: a crash between the two steps.
        assert await access.usage.book("k1", "job-lost", 500, 5, 4 * BIG_BOOKING) is None
        held = await access.usage.held_bytes("k1")
        assert await access.usage.repair("k1") == (held, held - 500)
        assert await access.usage.held_bytes("k1") == held - 500
        assert await access.usage.repair("k1") == (held - 500, held - 500)  # run twice, nothing more

    async def test_an_erased_job_gives_its_booked_bytes_back(self, access: AccessHarness) -> None:
        assert access.eraser is not None, "bind `eraser`"
        assert await access.usage.book("k1", "job-a", 60, 5, 100) is None
        await access.queue.submit(owned_job(access.clock, "job-a", "k1"))
        lease = await access.queue.claim("w1", LEASE_MS, 1)
        assert lease is not None
        assert await access.queue.finish(lease, jobs.complete(lease.job, ok_result(), access.clock.now()))
        assert await access.usage.book("k1", "job-b", 50, 5, 100) == "stored bytes"  # its record is still there
        assert await access.eraser.erase("job-a")
        assert await access.usage.book("k1", "job-b", 50, 5, 100) is None

    async def test_an_idempotency_key_is_claimed_once_per_scope(self, access: AccessHarness) -> None:
        records = access.idempotency
        assert await records.claim("k1", "retry-1", "job-a", "f1", 60) is None
        assert await records.claim("k1", "retry-1", "job-b", "f2", 60) == ("job-a", "f1")
        assert await records.claim("k2", "retry-1", "job-c", "f1", 60) is None
        await records.release("k1", "retry-1", "job-b")  # not the job it names: kept
        assert await records.claim("k1", "retry-1", "job-b", "f1", 60) == ("job-a", "f1")
        await records.release("k1", "retry-1", "job-a")
        assert await records.claim("k1", "retry-1", "job-b", "f1", 60) is None

    async def test_a_key_is_found_without_counting_a_request(self, access: AccessHarness) -> None:
        made = key(access.clock, quotas=Quotas(rate_limit=1, rate_window_s=60))
        await access.keys.add(made, secret_hash("corral_s1"))
        assert await access.keys.find(secret_hash("corral_s1")) == made
        assert await access.keys.find(secret_hash("corral_nobody")) is None
        counted = await access.keys.authorize(secret_hash("corral_s1"), DEFAULTS)
        assert counted is not None and counted.rate.allowed
        assert await access.keys.revoke("k1")
        assert await access.keys.find(secret_hash("corral_s1")) is None

    async def _queued(self, access: AccessHarness) -> list[str]:
        claimed = []
        while (lease := await access.queue.claim("w1", LEASE_MS, 0.05)) is not None:
            claimed.append(lease.job.id)
        return claimed

    async def test_an_admitted_submit_counts_the_request_books_the_job_and_queues_it(self, access: AccessHarness) -> None:
        await access.keys.add(key(access.clock), secret_hash("corral_s1"))
        quotas = Quotas().over(DEFAULTS)
        admitted = await access.admitting.submit_admitted(owned_job(access.clock, "job-a", "k1"), secret_hash("corral_s1"), quotas, 10)
        assert admitted.refused is None and admitted.rate is not None
        assert (admitted.rate.allowed, admitted.rate.limit, admitted.rate.remaining) == (True, 3, 2)
        assert await access.usage.book("k1", "job-b", 10, 1, 100) == "unfinished jobs"  # job-a is booked
        assert await self._queued(access) == ["job-a"]

    async def test_an_admitted_submit_of_a_revoked_key_counts_books_and_queues_nothing(self, access: AccessHarness) -> None:
        await access.keys.add(key(access.clock), secret_hash("corral_s1"))
        assert await access.keys.revoke("k1")
        quotas = Quotas().over(DEFAULTS)
        admitted = await access.admitting.submit_admitted(owned_job(access.clock, "job-a", "k1"), secret_hash("corral_s1"), quotas, 10)
        assert admitted == admitted.__class__("revoked", None)
        assert await access.usage.book("k1", "job-b", 10, 1, 100) is None
        assert await self._queued(access) == []

    async def test_over_its_rate_or_a_quota_an_admitted_submit_books_and_queues_nothing(self, access: AccessHarness) -> None:
        await access.keys.add(key(access.clock, quotas=Quotas(max_unfinished=2)), secret_hash("corral_s1"))
        quotas = Quotas(max_unfinished=2).over(DEFAULTS)
        outcomes = []
        for index in range(4):
            job = owned_job(access.clock, f"job-{index}", "k1")
            admitted = await access.admitting.submit_admitted(job, secret_hash("corral_s1"), quotas, 10)
            assert admitted.rate is not None
            outcomes.append((admitted.refused, admitted.rate.allowed, admitted.rate.remaining))
        assert outcomes == [(None, True, 2), (None, True, 1), ("unfinished jobs", True, 0), ("rate", False, 0)]
        assert await self._queued(access) == ["job-0", "job-1"]

    async def test_a_job_the_queue_refuses_leaves_no_booking(self, access: AccessHarness) -> None:
        await access.keys.add(key(access.clock, quotas=Quotas(max_unfinished=100)), secret_hash("corral_s1"))
        quotas = Quotas(max_unfinished=100).over(DEFAULTS)
        filled = 0
        with pytest.raises(QueueFull):
            while True:
                await access.queue.submit(owned_job(access.clock, f"other-{filled}", "k2"))
                filled += 1
        with pytest.raises(QueueFull):
            await access.admitting.submit_admitted(owned_job(access.clock, "job-a", "k1"), secret_hash("corral_s1"), quotas, 10)
        assert await access.usage.book("k1", "job-b", 10, 1, 100) is None
