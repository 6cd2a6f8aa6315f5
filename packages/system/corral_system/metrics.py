"""Prometheus metrics shared by several processes: prometheus_client's multiprocess mode.

A deployable with N processes answers `/metrics` for all of them: every process writes its
samples to files in one directory (PROMETHEUS_MULTIPROC_DIR), and an exposition sums them.
The directory outlives a process killed with SIGKILL, so its counters still count after it is
gone; the supervisor retires the pid (`retire`) so that its live gauges (busy slots) stop
counting. The served deployables always run in this mode (`enable_multiprocess`, called once
before any metric exists); tests that build a container without it read a registry of their own.

The metrics themselves belong to the deployables (corral_api.metrics, corral_worker.telemetry):
this module only knows how to store and expose them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from wsgiref.simple_server import WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess, start_http_server
from prometheus_client import values as _values

DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


def enable_multiprocess() -> str:
    """Store samples in files from now on; the directory, made here unless the variable names one.

    Must run before the first metric is created (which the containers do lazily, in the
    process that serves): a metric made earlier keeps its samples in memory.
    """
    directory = os.environ.get(DIRECTORY_VARIABLE)
    if not directory:
        directory = tempfile.mkdtemp(prefix="corral-metrics-")
        os.environ[DIRECTORY_VARIABLE] = directory
        owner = os.getpid()

        def remove() -> None:
            # Only the process that made it: forked children leave with os._exit anyway.
            if os.getpid() == owner:
                shutil.rmtree(directory, ignore_errors=True)

        atexit.register(remove)
    # prometheus_client picks its value class from the variable when it is first imported,
    # which may have been before this call; it reads the class from here for every new metric.
    _values.ValueClass = _values.get_value_class()  # type: ignore[no-untyped-call]
    return directory


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(DIRECTORY_VARIABLE))


def retire(pid: int) -> None:
    """A process is gone: drop its live gauges (its counters and histograms keep counting)."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def collecting_registry(own: CollectorRegistry) -> CollectorRegistry:
    """What to expose: every process's samples in multiprocess mode, else `own`."""
    if not multiprocess_enabled():
        return own
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def exposition(own: CollectorRegistry) -> bytes:
    """The Prometheus text format of `collecting_registry(own)`; reads files: not on an event loop."""
    return generate_latest(collecting_registry(own))


def serve_http(host: str, port: int, own: CollectorRegistry) -> WSGIServer:
    """Serve `/metrics` from a daemon thread. Forked children close their copy of the socket,
    so that the port is free again as soon as this process is gone."""
    server, _ = start_http_server(port, addr=host, registry=collecting_registry(own))
    os.register_at_fork(after_in_child=server.socket.close)
    return server
