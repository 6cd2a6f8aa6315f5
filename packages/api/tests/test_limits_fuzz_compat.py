"""Every limit of the compatible routes (Judge0's POST /judge0/submissions, Piston's POST
/api/v2/execute) at 0, negative, 1, the maximum, past it, a float, a string, a boolean, a list,
past 64 bits, NaN and infinities: a 4xx, or a job stored (and, for Piston, run) with every
limit within 1..the service's maximum; never a 500."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from corral_core.policy import DEFAULT_LIMIT_POLICY
from tests.limits_api import HOSTILE_VALUES, RAW_VALUES, LimitsApi

MAXIMA = DEFAULT_LIMIT_POLICY.maxima
MIB = 1024 * 1024
# Each route's limit fields, with their maximum in the route's own unit.
JUDGE0 = {
    "cpu_time_limit": MAXIMA.cpu_time_ms / 1000,
    "cpu_extra_time": MAXIMA.cpu_time_ms / 1000,
    "wall_time_limit": MAXIMA.wall_time_ms / 1000,
    "memory_limit": MAXIMA.memory_mb * 1024,
    "stack_limit": MAXIMA.memory_mb * 1024,
    "max_processes_and_or_threads": MAXIMA.max_processes,
    "max_file_size": MAXIMA.max_file_size_kb,
}
PISTON = {
    "run_timeout": MAXIMA.wall_time_ms,
    "run_cpu_time": MAXIMA.cpu_time_ms,
    "run_memory_limit": MAXIMA.memory_mb * MIB,
    "compile_timeout": MAXIMA.compile_wall_time_ms,
    "compile_cpu_time": MAXIMA.compile_cpu_time_ms,
    "compile_memory_limit": MAXIMA.compile_memory_mb * MIB,
}


def cases(fields: Mapping[str, float]) -> list[tuple[str, Any]]:
    return [(name, value) for name, most in fields.items() for value in (*HOSTILE_VALUES, most, most + 1)]


def judge0_body(name: str, value: str) -> str:
    return f'{{"source_code": "print(1)", "language_id": 71, {json.dumps(name)}: {value}}}'


def piston_body(name: str, value: str) -> str:
    files = '[{"content": "print(1)"}]'
    return f'{{"language": "python", "version": "3.11.2", "files": {files}, {json.dumps(name)}: {value}}}'


async def posted(api: LimitsApi, path: str, body: str) -> int:
    response = await api.client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 201) or 400 <= response.status_code < 500, response.text
    api.assert_every_stored_job_within_the_maxima()
    return response.status_code


@pytest.mark.parametrize(("name", "value"), cases(JUDGE0))
async def test_a_judge0_limit_is_refused_or_stored_within_the_maxima(limits_api: LimitsApi, name: str, value: Any) -> None:
    await posted(limits_api, "/judge0/submissions", judge0_body(name, json.dumps(value)))


@pytest.mark.parametrize(("name", "value"), cases(PISTON))
async def test_a_piston_limit_is_refused_or_run_within_the_maxima(limits_api: LimitsApi, name: str, value: Any) -> None:
    await posted(limits_api, "/api/v2/execute", piston_body(name, json.dumps(value)))


@pytest.mark.parametrize("raw", RAW_VALUES)
@pytest.mark.parametrize(("route", "name"), [("judge0", name) for name in JUDGE0] + [("piston", name) for name in PISTON])
async def test_a_compat_limit_spelled_as_nan_or_infinity_is_a_4xx(limits_api: LimitsApi, route: str, name: str, raw: str) -> None:
    path, body = ("/judge0/submissions", judge0_body(name, raw)) if route == "judge0" else ("/api/v2/execute", piston_body(name, raw))
    assert 400 <= await posted(limits_api, path, body) < 500
    assert limits_api.stored_limits() == []
