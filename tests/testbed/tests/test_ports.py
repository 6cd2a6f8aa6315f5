"""free_port: the testbed's loopback ports for the servers tests start."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from corral_testbed import ports


def kernel_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def kernel_answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The ports the kernel's port-0 probes answer, in turn (it may give one out twice)."""
    answers: list[int] = []
    real_probe = ports._probe

    def probe(port: int) -> int:
        return answers.pop(0) if port == 0 else real_probe(port)

    monkeypatch.setattr(ports, "_probe", probe)
    yield answers


def test_a_port_the_kernel_gives_twice_in_a_row_is_handed_out_once(kernel_answers: list[int]) -> None:
    # CI once gave a stack's two workers one metrics port: the second worker could not start.
    kernel_answers += [40001, 40001, 40002]
    assert [ports.free_port(), ports.free_port()] == [40001, 40002]


def test_a_pair_needs_its_second_port_free_and_not_handed_out_after(kernel_answers: list[int]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        free = kernel_port()
        kernel_answers += [busy - 10000, free - 10000]
        assert ports.free_port(also=10000) == free - 10000
    other = kernel_port()
    kernel_answers += [free, other]
    assert ports.free_port() == other
