"""A clock the suites move by hand, so that lease expiry is tested without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class ManualClock:
    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, ms: int) -> None:
        self._now += timedelta(milliseconds=ms)

    async def elapse(self, ms: int) -> None:
        """advance(), as the contract harnesses' `elapse` of an adapter that keeps time by this clock."""
        self.advance(ms)
