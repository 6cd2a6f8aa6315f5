"""Hosts for multi-host tests: network namespaces on one machine, joined by a private bridge.

Each host is a network namespace with one interface, `eth0`, cabled by a veth pair to a bridge
that lives in a namespace of its own; addresses come from 10.99.0.0/24 and exist only inside
these namespaces. The root namespace gets no interface and no address, so no packet of a test
leaves the namespaces it made, and two test runs side by side each have their own 10.99.0.0/24.

Programs run on a host through `nsenter --net`, which switches the network namespace only.
`ip netns exec` would also remount /sys for the namespace, hiding /sys/fs/cgroup from a worker
whose jails need it. The test process itself reaches a host's network from a thread that joined
the namespace (`Host.threads`): a socket belongs to the namespace of the thread that made it.

Names carry the creating process's pid (`corral-hb<pid>-…`): a run removes what a crashed run
left behind (namespaces whose creator is dead), never what a live run uses.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import itertools
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.99.0"
PREFIX_LENGTH = 24
NETNS_DIR = Path("/run/netns")
_NAME = re.compile(r"corral-hb(\d+)-")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_networks = itertools.count(1)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _join_namespace(path: str) -> None:
    """Move the calling thread (only it) into the network namespace at `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns {path}: {os.strerror(error)}")
    finally:
        os.close(fd)


@dataclass
class Host:
    """One namespace with its address: run programs there, cut and restore its link."""

    name: str
    namespace: str
    address: str
    _pools: list[concurrent.futures.ThreadPoolExecutor] = field(default_factory=list)

    @property
    def path(self) -> str:
        return str(NETNS_DIR / self.namespace)

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` as run on this host (its network, the machine's everything else)."""
        return ["nsenter", f"--net={self.path}", "--", *argv]

    def threads(self, count: int = 1) -> concurrent.futures.ThreadPoolExecutor:
        """Threads inside this host's network: the sockets they open are this host's."""
        pool = concurrent.futures.ThreadPoolExecutor(
            count, thread_name_prefix=f"host-{self.name}", initializer=_join_namespace, initargs=(self.path,)
        )
        self._pools.append(pool)
        return pool

    def cut(self) -> None:
        """Take the host's link down, as a pulled cable: its sockets stay, nothing gets through."""
        _ip("-n", self.namespace, "link", "set", "eth0", "down")

    def reconnect(self) -> None:
        _ip("-n", self.namespace, "link", "set", "eth0", "up")

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)


class Network:
    """A bridge and the hosts cabled to it; `close()` removes them all."""

    def __init__(self) -> None:
        self.tag = f"corral-hb{os.getpid()}-{next(_networks)}-"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._bridge = self.tag + "net"
        try:
            self._add_namespace(self._bridge)
            _ip("-n", self._bridge, "link", "add", "br0", "type", "bridge")
            _ip("-n", self._bridge, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def add_host(self, name: str, number: int) -> Host:
        """A host `name` at 10.99.0.<number>."""
        if not 1 <= number <= 254 or name in self.hosts:
            raise ValueError(f"host {name} at .{number}: taken or out of range")
        namespace = self.tag + name
        self._add_namespace(namespace)
        cable = f"to-{name}"[:15]
        _ip("-n", self._bridge, "link", "add", cable, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _ip("-n", self._bridge, "link", "set", cable, "master", "br0", "up")
        address = f"{SUBNET}.{number}"
        _ip("-n", namespace, "addr", "add", f"{address}/{PREFIX_LENGTH}", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        host = self.hosts[name] = Host(name, namespace, address)
        return host

    def _add_namespace(self, namespace: str) -> None:
        _ip("netns", "add", namespace)
        self._namespaces.append(namespace)
        # Loopback: a host's own services (a worker's /metrics) listen on 127.0.0.1.
        _ip("-n", namespace, "link", "set", "lo", "up")

    def close(self) -> None:
        """Remove every namespace; their interfaces (the veth pairs, the bridge) go with them."""
        for host in self.hosts.values():
            host.close()
        for namespace in reversed(self._namespaces):
            with contextlib.suppress(RuntimeError):
                _ip("netns", "delete", namespace)
        self._namespaces.clear()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def remove_leftovers() -> list[str]:
    """Delete the namespaces of test runs whose process is gone (a crash, a SIGKILL)."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(NETNS_DIR.iterdir()):
            match = _NAME.match(entry.name)
            if match and not Path(f"/proc/{match.group(1)}").exists():
                with contextlib.suppress(RuntimeError):
                    _ip("netns", "delete", entry.name)
                    removed.append(entry.name)
    return removed


@contextlib.contextmanager
def network() -> Iterator[Network]:
    remove_leftovers()
    with Network() as made:
        yield made
