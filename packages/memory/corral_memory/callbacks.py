"""The line of callbacks to deliver, in memory, as corral_redis.callbacks keeps it: job id ->
when it is next due, a taken delivery's time moved to its lease's end, which is also its fence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from corral_core.callbacks import Callback, DeliveryState, DueDelivery
from corral_memory.jobs import InMemoryJobs


def _us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


class InMemoryCallbackDeliveries:
    def __init__(self, state: InMemoryJobs) -> None:
        self._state = state

    async def due(self, lease_ms: int, most: int) -> list[DueDelivery]:
        state = self._state
        now = state.clock.now()
        claim = now + timedelta(milliseconds=lease_ms)
        due = sorted((at, job_id) for job_id, at in state.deliveries.items() if at <= now)[:most]
        for _, job_id in due:
            state.deliveries[job_id] = claim
        return [DueDelivery(job_id, _us(claim)) for _, job_id in due]

    async def settle(self, due: DueDelivery, callback: Callback) -> bool:
        state = self._state
        at = state.deliveries.get(due.job_id)
        if at is None or _us(at) != due.claim:
            return False
        record = state.records.get(due.job_id)
        if record is not None:
            state.records[due.job_id] = msgspec.structs.replace(record, callback=callback)
        if callback.state is DeliveryState.PENDING and callback.next_at is not None:
            state.deliveries[due.job_id] = callback.next_at
        else:
            del state.deliveries[due.job_id]
        return True
