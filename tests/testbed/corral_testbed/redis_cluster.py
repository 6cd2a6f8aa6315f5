"""A real Redis Cluster on loopback: 3 masters (or 1) from redis-server, optionally with replicas.

Each node is a RedisServerProcess (appendonly yes, noeviction) with cluster-enabled yes;
`redis-cli --cluster create` splits the 16384 slots between the masters. A node also listens
on its port + 10000 (the cluster bus), so ports are chosen below 55536 with both free.
`cluster_url` is a session fixture; tests that kill a master use RedisCluster directly.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral_testbed.ports import free_port
from corral_testbed.redis_server import RedisServerProcess, require_redis_server

READY_TIMEOUT_S = 30.0


class ClusterNode(RedisServerProcess):
    def __init__(self, directory: Path, node_timeout_ms: int) -> None:
        super().__init__(directory, free_port(also=10000))  # and its bus port
        self._may_move = False  # a cluster node's port is in the others' maps: it never moves
        self.node_timeout_ms = node_timeout_ms

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.directory / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # A replica takes over however long it was cut off: the fault tests kill masters.
            "--cluster-replica-validity-factor", "0",
        ]  # fmt: skip


class RedisCluster:
    """`masters` masters, each with `replicas` replicas, in `directory`; a context manager."""

    def __init__(self, directory: Path, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000) -> None:
        self.directory = directory
        self.nodes = [
            ClusterNode(directory / f"node-{index}", node_timeout_ms) for index in range(masters * (1 + replicas))
        ]
        self.masters = masters
        self.replicas = replicas

    @property
    def url(self) -> str:
        """Any one node will do: the client learns the rest from it."""
        alive = next(node for node in self.nodes if node.process is not None)
        return f"redis://127.0.0.1:{alive.port}/0"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        if len(self.nodes) == 1:
            # redis-cli --cluster create wants 3 masters: one node takes every slot by hand.
            self.cli(self.nodes[0], "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
            self.wait_healthy()
            return
        cli = shutil.which("redis-cli") or "redis-cli"
        created = subprocess.run(
            [
                cli, "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas", str(self.replicas), "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
        self.wait_healthy()
        self.wait_replicas_synced()

    def wait_replicas_synced(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until every live replica has finished its first sync with its master."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = [self.cli(node, "INFO", "replication") for node in self.nodes if node.process is not None]
            replicas = [state for state in states if "role:slave" in state]
            if len(replicas) == self.replicas * self.masters and all(
                "master_link_status:up" in state and "master_sync_in_progress:0" in state for state in replicas
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replicas have not synced after {timeout_s}s: {replicas}")
            time.sleep(0.1)

    def wait_healthy(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until every live node says cluster_state:ok and knows every slot's master."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = [self.info(node) for node in self.nodes if node.process is not None]
            if all("cluster_state:ok" in state and "cluster_slots_ok:16384" in state for state in states):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster is not healthy after {timeout_s}s: {states}")
            time.sleep(0.1)

    def info(self, node: ClusterNode) -> str:
        return self.cli(node, "CLUSTER", "INFO")

    def cli(self, node: ClusterNode, *command: str) -> str:
        cli = shutil.which("redis-cli") or "redis-cli"
        done = subprocess.run(
            [cli, "-p", str(node.port), *command], capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout

    def role(self, node: ClusterNode) -> str:
        return self.cli(node, "ROLE").split("\n", 1)[0].strip()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@contextlib.contextmanager
def provide_cluster(masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000) -> Iterator[RedisCluster]:
    require_redis_server()
    with (
        tempfile.TemporaryDirectory(prefix="corral-cluster-") as directory,
        RedisCluster(Path(directory), masters, replicas, node_timeout_ms) as cluster,
    ):
        yield cluster


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A 3-master Redis Cluster for the session; tests keep to key prefixes of their own."""
    with provide_cluster() as cluster:
        yield cluster.url
