"""Commands are packed with hiredis (connection.py), byte for byte as redis-py packs them. No Redis
needed: the bytes are compared, not sent."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection, Connection, UnixDomainSocketConnection
from redis.exceptions import DataError
from redis.typing import EncodableT

from corral_redis import connect

COMMANDS: list[tuple[EncodableT, ...]] = [
    ("EVALSHA", "a" * 40, 2, "job:1", "line", 10_000, b'{"code":"print(1)"}', "", "é ünïcode", -3, 1.5, 1e20),
    ("CONFIG GET", "maxmemory"),  # a name that carries its first argument
    (b"CLIENT SETNAME", b"corral"),
    ("SET", "k", memoryview(b"a view")),
    ("SET", "k", bytearray(b"not for hiredis")),  # redis-py packs it itself
    ("SET", "k", 2**70),
    ("PING",),
]


def ours(url: str = "redis://127.0.0.1:1/0") -> AbstractConnection:
    """A connection of the class connect() gives its pool, never connected."""
    pool = connect(url).connection_pool
    return pool.connection_class(**pool.connection_kwargs)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: str(command[0]))
def test_a_command_is_packed_as_redis_py_packs_it(command: tuple[EncodableT, ...]) -> None:
    connection = ours()
    assert type(connection).pack_command is not Connection.pack_command
    assert b"".join(connection.pack_command(*command)) == b"".join(Connection().pack_command(*command))


def test_commands_in_a_pipeline_are_packed_as_redis_py_packs_them() -> None:
    assert b"".join(ours().pack_commands(COMMANDS)) == b"".join(Connection().pack_commands(COMMANDS))


def test_a_unix_socket_connection_packs_with_hiredis_too() -> None:
    connection = ours("unix:///run/redis.sock")
    assert isinstance(connection, UnixDomainSocketConnection)
    assert b"".join(connection.pack_command(*COMMANDS[0])) == b"".join(Connection().pack_command(*COMMANDS[0]))


@pytest.mark.parametrize("value", [None, True])
def test_what_redis_py_refuses_is_refused_as_it_refuses_it(value: Any) -> None:
    with pytest.raises(DataError):
        ours().pack_command("SET", "k", value)
