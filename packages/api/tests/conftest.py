"""Fixtures the API's tests ask for by name."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.limits_api import LimitsApi, serving


@pytest.fixture
async def limits_api() -> AsyncIterator[LimitsApi]:
    async for api in serving():
        yield api
