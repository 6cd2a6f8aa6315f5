"""A real Redis for tests: REDIS_URL if given, else a container, else a local redis-server.

`redis_url` is a session fixture: import it into a test module (`from
corral_testbed.redis_server import redis_url`) and give every test its own key prefix rather
than flushing a server that may be shared. Tests that kill and restart Redis use
`RedisServerProcess` directly: it keeps its port and directory, so a restart replays the AOF.

The servers are configured as Corral requires its Redis to be (appendonly yes, maxmemory-policy
noeviction). Without redis-server and without Docker, the tests are skipped, or fail under
CI=true, where a missing service must not look like a pass.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

READY_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require_redis_server() -> str:
    """The redis-server executable; skips the test without one (fails it under CI)."""
    found = shutil.which("redis-server")
    if found is None:
        message = "redis-server is not installed: install it (apt-get install redis-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def ping(port: int, timeout_s: float = 0.5) -> bool:
    """True once the server answers PING (not while it is still loading its AOF)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServerProcess:
    """One redis-server on a loopback port, with its data directory, that can crash and return.

    `appendfsync` is "everysec" by default: a killed server process loses nothing that Redis
    acknowledged (the AOF is written before the reply, only fsync is deferred); "always" also
    survives a machine crash, at a cost the queue benchmark measures.
    """

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        appendfsync: str = "everysec",
        appendonly: bool = True,
        maxmemory_policy: str = "noeviction",
        executable: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.appendonly = appendonly
        self.maxmemory_policy = maxmemory_policy
        self.executable = executable or shutil.which("redis-server") or "redis-server"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not running"
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def command(self) -> list[str]:
        return [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--maxmemory-policy", self.maxmemory_policy,
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]  # fmt: skip

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ping(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited ({self.process.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"redis-server not ready after {READY_TIMEOUT_S}s:\n{self.log()}")
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to flush or save anything."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def restart(self) -> None:
        """Start again on the same port and directory, so the AOF is replayed."""
        self.stop()
        self.start()

    def _end(self, signum: int) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def __enter__(self) -> RedisServerProcess:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:  # any failure means "no usable Docker here"
        return False
    return True


@contextlib.contextmanager
def _container_url() -> Iterator[str]:
    try:
        from testcontainers.community.redis import RedisContainer
    except ImportError:
        from testcontainers.redis import RedisContainer

    container = RedisContainer("redis:7").with_command(
        "redis-server --save '' --appendonly yes --maxmemory-policy noeviction"
    )
    with container:
        host = container.get_container_host_ip()
        yield f"redis://{host}:{container.get_exposed_port(6379)}/0"


@contextlib.contextmanager
def provide_redis_url() -> Iterator[str]:
    """A Redis URL for the tests, in order: $REDIS_URL, a container, a local redis-server."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    if _docker_answers():
        with contextlib.ExitStack() as stack:
            try:
                url = stack.enter_context(_container_url())
            except Exception as error:  # e.g. no registry to pull the image from
                warnings.warn(f"no Redis container ({error}); trying a local redis-server", stacklevel=2)
            else:
                yield url
                return
    require_redis_server()
    with (
        tempfile.TemporaryDirectory(prefix="corral-redis-") as directory,
        RedisServerProcess(Path(directory)) as server,
    ):
        yield server.url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with provide_redis_url() as url:
        yield url
