"""Loopback ports for the servers tests start (redis-server, the API, a worker's metrics).

A port is found free by binding port 0 and closing the probe; the server binds it later. The
kernel may give the very next probe the same port (CI once gave a stack's two workers one
metrics port, and the second could not start), so this process never hands a port out twice.
Another process may still take a port in between: a redis-server moves to another on its
first start (redis_server.py).
"""

from __future__ import annotations

import socket
import threading

_handed_out: set[int] = set()
_lock = threading.Lock()


def free_port(also: int = 0) -> int:
    """A loopback port free when looked at and not handed out before by this process; with
    `also`, port + `also` is both of those too, and handed out with it (a cluster node's bus)."""
    with _lock:
        while True:
            port = _probe(0)
            ports = {port, port + also}
            if ports & _handed_out or (also and (port + also > 65535 or not _bindable(port + also))):
                continue
            _handed_out.update(ports)
            return port


def _probe(port: int) -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))
        return int(probe.getsockname()[1])


def _bindable(port: int) -> bool:
    try:
        _probe(port)
    except OSError:
        return False
    return True
