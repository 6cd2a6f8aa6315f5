"""How many long-polls (`?wait=`) one API process holds at once, in all and per API key.

Each waiting request holds a connection, a task and a waiter entry until its job finishes or
its wait runs out. Past the process's setting, a request that asks to wait is refused at once
with a 503 that names this limit, rather than piling up until the process runs out of memory or
descriptors. Past its key's limit (the key's max_waiters, CORRAL_KEY_MAX_WAITERS by default),
with a 429: one client's waits must not take every place. Both count in this process only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from corral_core.access import Caller, OverQuota


class TooManyLongPolls(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"this API process already holds its limit of {limit} long-polls (CORRAL_MAX_WAITERS); "
            "retry later, or read the job without wait"
        )
        self.limit = limit


class TooManyLongPollsForKey(OverQuota):
    def __init__(self, limit: int) -> None:
        super().__init__("long-polls at once in this API process (max_waiters)", limit)


class LongPolls:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.held_by: dict[str, int] = {}

    @contextmanager
    def hold(self, caller: Caller) -> Iterator[None]:
        """One long-poll for `caller`."""
        if self.held >= self.limit:
            raise TooManyLongPolls(self.limit)
        key_limit = caller.quotas.max_waiters
        held_by_key = self.held_by.get(caller.key_id, 0)
        if caller.key_id and key_limit is not None and held_by_key >= key_limit:
            raise TooManyLongPollsForKey(key_limit)
        self.held += 1
        self.held_by[caller.key_id] = held_by_key + 1
        try:
            yield
        finally:
            self.held -= 1
            left = self.held_by[caller.key_id] - 1
            if left:
                self.held_by[caller.key_id] = left
            else:
                del self.held_by[caller.key_id]
