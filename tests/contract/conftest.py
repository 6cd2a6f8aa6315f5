"""Fixtures every contract binding may ask for by name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral_testbed.redis_server import provide_redis_url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for the whole session; each test keeps to a key prefix of its own."""
    with provide_redis_url() as url:
        yield url
