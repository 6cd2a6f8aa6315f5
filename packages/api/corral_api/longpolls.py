"""How many long-polls (`?wait=`) one API process holds at once.

Each waiting request holds a connection, a task and a waiter entry until its job finishes or
its wait runs out. Past the setting, a request that asks to wait is refused at once with a 503
that names this limit, rather than piling up until the process runs out of memory or
descriptors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class TooManyLongPolls(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"this API process already holds its limit of {limit} long-polls (CORRAL_MAX_WAITERS); "
            "retry later, or read the job without wait"
        )
        self.limit = limit


class LongPolls:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        if self.held >= self.limit:
            raise TooManyLongPolls(self.limit)
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1
