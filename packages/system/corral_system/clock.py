from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SkewedClock:
    """The system clock `skew_s` seconds off, as on a host whose clock is wrong (fault tests)."""

    def __init__(self, skew_s: float) -> None:
        self._skew = timedelta(seconds=skew_s)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._skew
