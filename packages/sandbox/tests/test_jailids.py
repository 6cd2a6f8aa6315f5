"""Jail ids: one pair per running job, never the same pair for two jobs, across workers too."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from corral_core.ports import SandboxError
from corral_sandbox.jailids import JailIdPool, JailIdRange, JailIds, JailIdsExhausted

RANGE = JailIdRange(uid_first=4_000_000, gid_first=5_000_000, size=3)


def test_running_jobs_get_different_pairs_and_freed_pairs_come_back_last(tmp_path: Path) -> None:
    pool = JailIdPool(RANGE, str(tmp_path))
    with pool.taken() as first, pool.taken() as second:
        assert first == JailIds(4_000_000, 5_000_000)
        assert second == JailIds(4_000_001, 5_000_001)
    with pool.taken() as third:
        assert third == JailIds(4_000_002, 5_000_002)  # the least recently used


def test_more_jobs_at_once_than_ids_is_a_clear_sandbox_error(tmp_path: Path) -> None:
    pool = JailIdPool(RANGE, str(tmp_path))
    with contextlib.ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(pool.taken())
        with pytest.raises(JailIdsExhausted, match="all 3 jail ids are in use") as raised:
            stack.enter_context(pool.taken())
        assert isinstance(raised.value, SandboxError)
    with pool.taken() as ids:  # given back
        assert ids.uid in RANGE.uids()


def test_two_workers_sharing_the_range_never_hand_out_the_same_pair(tmp_path: Path) -> None:
    one, other = JailIdPool(RANGE, str(tmp_path)), JailIdPool(RANGE, str(tmp_path))
    with one.taken() as mine, other.taken() as theirs, other.taken() as also_theirs:
        assert len({mine, theirs, also_theirs}) == 3
        with pytest.raises(JailIdsExhausted), one.taken():
            pass
    with one.taken() as again:
        assert again.uid in RANGE.uids()
