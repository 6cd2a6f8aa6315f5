"""A real Redis for tests: REDIS_URL if given, else a container, else a local redis-server.

`redis_url` is a session fixture: import it into a test module (`from
corral_testbed.redis_server import redis_url`) and give every test its own key prefix rather
than flushing a server that may be shared. Tests that kill and restart Redis use
`RedisServerProcess` directly: it keeps its address and directory, so a restart replays the AOF.

Test files run in parallel, so a loopback port is a shared resource: a port found free can be
taken before redis-server binds it, or while a test has Redis down, and a client would then
talk to another test's server without noticing. Servers that only this process's clients use
listen on a Unix socket in their own directory instead (`unix_socket=True`, the session
server). On TCP, a server only counts as started once the one answering on its port reports
its own pid, and a first start that finds its port taken moves to another.

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
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral_testbed.ports import free_port
from corral_testbed.programs import require_program

READY_TIMEOUT_S = 15.0
# A first start whose automatically chosen port was taken meanwhile tries this many others.
PORT_ATTEMPTS = 5
# sun_path holds 108 bytes on Linux, the terminating NUL included.
_MAX_SOCKET_PATH = 100

Address = tuple[str, int] | str  # a loopback TCP address, or a Unix socket path


def require_redis_server() -> str:
    """The redis-server executable; skips the test without one (fails it under CI)."""
    return require_program("redis-server", "redis-server")


def ping(port: int, timeout_s: float = 0.5) -> bool:
    """True once the server answers PING (not while it is still loading its AOF)."""
    return serving_pid(("127.0.0.1", port), timeout_s) is not None


def serving_pid(address: Address, timeout_s: float = 0.5) -> int | None:
    """The pid of the Redis answering at `address` once it answers PING (its AOF is loaded)."""
    try:
        with _connect(address, timeout_s) as connection, connection.makefile("rb") as replies:
            connection.sendall(b"PING\r\n")
            if not replies.readline().startswith(b"+PONG"):
                return None
            connection.sendall(b"INFO server\r\n")
            header = replies.readline()
            if not header.startswith(b"$"):
                return None
            info = replies.read(int(header[1:]) + 2)
    except (OSError, ValueError):
        return None
    for line in info.decode(errors="replace").splitlines():
        if line.startswith("process_id:"):
            return int(line.partition(":")[2])
    return None


def _connect(address: Address, timeout_s: float) -> socket.socket:
    if isinstance(address, str):
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.settimeout(timeout_s)
            connection.connect(address)
        except OSError:
            connection.close()
            raise
        return connection
    return socket.create_connection(address, timeout=timeout_s)


class _PortTaken(RuntimeError):
    pass


class RedisServerProcess:
    """One redis-server with its data directory, that can crash and return at the same address.

    It listens on a loopback port, or with `unix_socket=True` on a Unix socket only (no port
    for another test to take): give it one whenever the clients need no TCP.

    `appendfsync` is "everysec" by default: a killed server process loses nothing that Redis
    acknowledged (the AOF is written before the reply, only fsync is deferred); "always" also
    survives a machine crash, at a cost the queue benchmark measures.
    """

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        unix_socket: bool = False,
        appendfsync: str = "everysec",
        appendonly: bool = True,
        maxmemory_policy: str = "noeviction",
        maxmemory: int = 0,
        executable: str | None = None,
    ) -> None:
        if unix_socket and port is not None:
            raise ValueError("a server on a Unix socket has no port")
        self.directory = Path(directory)
        self.socket_path = self._socket_path() if unix_socket else None
        self.port = 0 if unix_socket else port or free_port()
        # Another port may be chosen only while no client can know this one.
        self._may_move = port is None and not unix_socket
        self.appendfsync = appendfsync
        self.appendonly = appendonly
        self.maxmemory_policy = maxmemory_policy
        self.maxmemory = maxmemory  # bytes; 0 is Redis' default, no limit
        self.executable = executable or shutil.which("redis-server") or "redis-server"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.socket_path is not None:
            return f"unix://{self.socket_path}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> Address:
        return str(self.socket_path) if self.socket_path is not None else ("127.0.0.1", self.port)

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not running"
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def command(self) -> list[str]:
        listen = ["--port", str(self.port), "--bind", "127.0.0.1"]
        if self.socket_path is not None:
            listen += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        return [
            self.executable,
            *listen,
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--maxmemory-policy", self.maxmemory_policy,
            "--maxmemory", str(self.maxmemory),
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]  # fmt: skip

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"redis-server at {self.address} is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self._start_once()
            except _PortTaken:
                if not self._may_move or attempt == PORT_ATTEMPTS:
                    raise
                self.port = free_port()
            else:
                self._may_move = False  # clients may know the URL now: restarts keep it
                return

    def _start_once(self) -> None:
        log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            pid = serving_pid(self.address)
            if pid == process.pid:
                return
            if pid is not None:
                # Not ours: another test's server holds the port; ours cannot bind it.
                self.kill()
                raise _PortTaken(f"port {self.port} is taken by another redis-server (pid {pid})")
            if process.poll() is not None:
                log = self.log()
                if "Address already in use" in self.log(since=log_from):
                    raise _PortTaken(f"port {self.port} is taken:\n{log}")
                raise RuntimeError(f"redis-server exited ({process.returncode}):\n{log}")
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
        """Start again at the same address and directory, so the AOF is replayed."""
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

    def log(self, since: int = 0) -> str:
        """The end of the server's log, or all of it written after byte `since`."""
        with contextlib.suppress(OSError), self.log_path.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
            return text if since else text[-3000:]
        return ""

    def _socket_path(self) -> Path:
        path = self.directory.absolute() / "redis.sock"
        if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
            return path
        # A deep temporary directory: the socket goes to a short one of its own.
        short = Path(tempfile.mkdtemp(prefix="corral-redis-", dir="/tmp"))
        weakref.finalize(self, shutil.rmtree, short, ignore_errors=True)
        return short / "redis.sock"

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
        RedisServerProcess(Path(directory), unix_socket=True) as server,
    ):
        yield server.url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with provide_redis_url() as url:
        yield url
