"""Contracts for the Clock and IdSource ports. Bind with fixtures `clock` and `ids`."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from corral_core.ports import Clock, IdSource

URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


class ClockContract:
    @pytest.fixture
    def clock(self) -> Clock:
        raise NotImplementedError("bind the contract: provide a `clock` fixture")

    def test_time_is_utc_and_never_goes_back(self, clock: Clock) -> None:
        first, second = clock.now(), clock.now()
        assert first.utcoffset() == timedelta(0)
        assert second >= first


class IdSourceContract:
    @pytest.fixture
    def ids(self) -> IdSource:
        raise NotImplementedError("bind the contract: provide an `ids` fixture")

    def test_ids_are_unique_url_safe_and_long_enough_to_be_unguessable(self, ids: IdSource) -> None:
        made = [ids.new_id() for _ in range(10_000)]
        assert len(set(made)) == len(made)
        assert all(URL_SAFE.match(job_id) for job_id in made)
        assert all(len(job_id) >= 22 for job_id in made)  # 128 bits in base64
