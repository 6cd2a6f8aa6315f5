from __future__ import annotations

import re

from corral_system.ids import RandomIds


def test_ids_are_url_safe_distinct_and_never_begin_with_a_dash() -> None:
    # One id in 64 began with "-" before, and `corral job <id>` read it as an unknown option:
    # 4,000 draws all pass without the redraw with a chance of about 1e-27.
    ids = [RandomIds().new_id() for _ in range(4000)]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", found) for found in ids)
    assert len(set(ids)) == len(ids)
    assert not [found for found in ids if found.startswith("-")]
