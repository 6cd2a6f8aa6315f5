"""Every limit of the native route (/execute) at 0, negative, 1, the maximum, past it, a float,
a string, a boolean, a list, past 64 bits, NaN and infinities: refused with a 4xx saying which
field, or accepted at exactly the value asked (a string of digits is that number); never a 500, never a job stored with a limit
outside 1..the service's maximum."""

from __future__ import annotations

import json
from typing import Any

import pytest

from corral_core.policy import DEFAULT_LIMIT_POLICY, LIMIT_FIELDS
from tests.limits_api import HOSTILE_VALUES, RAW_VALUES, LimitsApi

MAXIMA = DEFAULT_LIMIT_POLICY.maxima
CASES = [(name, value) for name in LIMIT_FIELDS for value in (*HOSTILE_VALUES, getattr(MAXIMA, name), getattr(MAXIMA, name) + 1)]


@pytest.mark.parametrize(("name", "value"), CASES)
async def test_a_limit_is_refused_with_a_4xx_or_accepted_within_the_maxima(limits_api: LimitsApi, name: str, value: Any) -> None:
    response = await limits_api.client.post("/execute", json={"code": "print(1)", "limits": {name: value}})
    # Litestar decodes bodies leniently: a string of digits is taken as the number it spells.
    number = int(value) if isinstance(value, str) and value.isdigit() else value
    if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= getattr(MAXIMA, name):
        assert response.status_code == 202, response.text
        assert [getattr(limits, name) for limits in limits_api.stored_limits()] == [number]
    else:
        assert 400 <= response.status_code < 500, response.text
        assert name in response.text, response.text
        assert limits_api.stored_limits() == []
    limits_api.assert_every_stored_job_within_the_maxima()


@pytest.mark.parametrize("raw", RAW_VALUES)
@pytest.mark.parametrize("name", LIMIT_FIELDS)
async def test_a_limit_spelled_as_nan_or_infinity_is_a_400(limits_api: LimitsApi, name: str, raw: str) -> None:
    body = f'{{"code": "print(1)", "limits": {{{json.dumps(name)}: {raw}}}}}'
    response = await limits_api.client.post("/execute", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert limits_api.stored_limits() == []
