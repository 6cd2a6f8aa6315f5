"""The RuntimeCatalog contract. Bind it with a fixture `catalog` yielding a `CatalogHarness`
whose `offer` makes exactly the runtimes it is given offered by live workers (none: no live
worker), in whatever way the adapter learns about them, and current by the next read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import pytest

from corral_core.ports import Runtime, RuntimeCatalog

PYTHON = Runtime("python", "3.11.2", "main.py")
C = Runtime("c", "12.2", "main.c")


@dataclass
class CatalogHarness:
    catalog: RuntimeCatalog
    offer: Callable[[Sequence[Runtime]], Awaitable[None]]


class RuntimeCatalogContract:
    @pytest.fixture
    def catalog(self) -> CatalogHarness:
        raise NotImplementedError("bind the contract: provide a `catalog` fixture")

    async def test_with_no_live_worker_nothing_is_offered(self, catalog: CatalogHarness) -> None:
        assert await catalog.catalog.offered() == []

    async def test_offered_runtimes_are_read_whole(self, catalog: CatalogHarness) -> None:
        await catalog.offer([PYTHON, C])
        offered = await catalog.catalog.offered()
        assert set(offered) == {PYTHON, C}
        assert all(runtime.source_file for runtime in offered), "the source file is what input files may not take"

    async def test_a_runtime_no_longer_offered_drops_out(self, catalog: CatalogHarness) -> None:
        await catalog.offer([PYTHON, C])
        await catalog.catalog.offered()
        await catalog.offer([C])
        assert set(await catalog.catalog.offered()) == {C}
        await catalog.offer([])
        assert await catalog.catalog.offered() == []

    async def test_a_reader_cannot_change_what_is_offered(self, catalog: CatalogHarness) -> None:
        await catalog.offer([PYTHON])
        first = await catalog.catalog.offered()
        first.append(C)
        assert await catalog.catalog.offered() == [PYTHON]
