"""Corral spread over hosts: a Redis host, an API host, worker hosts and a client host.

Every host is a network namespace (corral_testbed.hosts) on 10.99.0.0/24; Corral's PEX files
run on them as they would on separate machines, meeting only through the secured Redis
(corral_testbed.secure_redis) over TLS with their own ACL users. The API logs in with the user
and password in its URL, the workers with username and password_file: both ways are used.
The API requires keys, as a deployment's does: the bed makes one with `corral-api keys create`
on the API host (as the API's Redis user), and the client host sends it with every request.

Two worker hosts on one machine share its kernel, cgroups and uid space, which separate hosts
would not: each worker host gets a work root and a jail id range of its own, as two machines
would have without asking.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from corral_testbed.hosts import Host, Network, network
from corral_testbed.secure_redis import API_USER, WORKER_USER, SecureRedis
from corral_testbed.services import API_PEX, WORKER_PEX

T = TypeVar("T")

API_PORT = 8000
REDIS_NUMBER, API_NUMBER, CLIENT_NUMBER, FIRST_WORKER_NUMBER = 10, 20, 100, 31
# Work roots of the worker hosts: /run/corral-test/hosts/<test pid>-<host>.
WORK_ROOTS = Path("/run/corral-test/hosts")
# Jail uids and gids per worker host: far above any account, apart per test run and host.
JAIL_IDS_PER_HOST = 16


def _jail_id_first(index: int) -> int:
    return 1_000_000_000 + (os.getpid() % 100_000) * 256 + index * JAIL_IDS_PER_HOST


@dataclass
class WorkerHost:
    host: Host
    worker_id: str
    work_root: str
    jail_uids: range
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def log_lines(self) -> list[dict[str, Any]]:
        """Its JSON log lines (anything else it printed is left out)."""
        lines = []
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        return lines


@dataclass
class MultiHostCorral:
    """The hosts and the Corral processes on them; `close()` stops and removes everything."""

    net: Network
    redis: SecureRedis
    log_dir: Path
    pex_root: Path = Path()
    env: dict[str, str] = field(default_factory=dict)
    api_host: Host | None = None
    api: subprocess.Popen[bytes] | None = None
    client_host: Host | None = None
    workers: list[WorkerHost] = field(default_factory=list)
    # The client host's key, sent with every request through `call`.
    key: str = ""
    _http: httpx.Client | None = None
    _client_threads: Any = None

    @property
    def api_url(self) -> str:
        assert self.api_host is not None
        return f"http://{self.api_host.address}:{API_PORT}"

    def _pex(self, path: Path) -> list[str]:
        pex = self.pex_root / path
        if not pex.exists():
            raise FileNotFoundError(f"{pex} is missing: run through `./pants test`, or `make package` first")
        return [sys.executable, str(pex)]

    def redis_env(self, user: str, *, password_in_url: bool) -> dict[str, str]:
        """The [redis] settings of a deployable logging in as `user`."""
        tls = self.redis.tls
        env = {
            "CORRAL_REDIS_TLS_CA_FILE": str(tls.ca),
            "CORRAL_REDIS_TLS_CERT_FILE": str(tls.client_cert),
            "CORRAL_REDIS_TLS_KEY_FILE": str(tls.client_key),
        }
        if password_in_url:
            password = self.redis.password_file(user).read_text().strip()
            address = self.redis.url.removeprefix("rediss://")
            env["CORRAL_REDIS_URL"] = f"rediss://{quote(user, safe='')}:{quote(password, safe='')}@{address}"
        else:
            env["CORRAL_REDIS_URL"] = self.redis.url
            env["CORRAL_REDIS_USERNAME"] = user
            env["CORRAL_REDIS_PASSWORD_FILE"] = str(self.redis.password_file(user))
        return env

    def _api_env(self) -> dict[str, str]:
        assert self.api_host is not None
        return {
            **os.environ,
            **self.redis_env(API_USER, password_in_url=True),
            "CORRAL_HOST": self.api_host.address,
            "CORRAL_PORT": str(API_PORT),
            **self.env,
        }

    def start_api(self) -> None:
        self.api_host = host = self.net.add_host("api", API_NUMBER)
        log = open(self.log_dir / "api.log", "ab")  # noqa: SIM115 - closed with the process
        self.api = subprocess.Popen(host.command([*self._pex(API_PEX), "serve"]), env=self._api_env(), stdout=log, stderr=log)
        self.key = self.create_key("client")

    def keys_command(self, *arguments: str) -> str:
        """`corral-api keys ARGUMENTS` on the API host, with the API's settings: its output."""
        assert self.api_host is not None
        done = subprocess.run(
            self.api_host.command([*self._pex(API_PEX), "keys", *arguments]),
            env=self._api_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"corral-api keys {' '.join(arguments)} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout

    def create_key(self, name: str, *options: str) -> str:
        """A new API key (options such as --admin, --max-unfinished 1)."""
        return self.keys_command("create", name, "--quiet", *options).strip()

    def key_ids(self) -> dict[str, str]:
        """Key name -> id, from `corral-api keys list`."""
        return {line.split()[1]: line.split()[0] for line in self.keys_command("list").splitlines()[1:]}

    def add_worker(self, user: str = WORKER_USER, **env: str) -> WorkerHost:
        """A worker host, and the worker on it (its settings: `env` over the bed's)."""
        index = len(self.workers)
        name = f"worker{index + 1}"
        host = self.net.add_host(name, FIRST_WORKER_NUMBER + index)
        first = _jail_id_first(index)
        worker = WorkerHost(
            host=host,
            worker_id=name,
            work_root=str(WORK_ROOTS / f"{os.getpid()}-{name}"),
            jail_uids=range(first, first + JAIL_IDS_PER_HOST),
            log_path=self.log_dir / f"{name}.log",
        )
        log = open(worker.log_path, "ab")  # noqa: SIM115 - closed with the process
        worker.process = subprocess.Popen(
            host.command([*self._pex(WORKER_PEX), "run"]),
            env={
                **os.environ,
                **self.redis_env(user, password_in_url=False),
                "CORRAL_WORKER_ID": name,
                "CORRAL_WORK_ROOT": worker.work_root,
                "CORRAL_JAIL_UID_FIRST": str(first),
                "CORRAL_JAIL_GID_FIRST": str(first),
                "CORRAL_JAIL_ID_COUNT": str(JAIL_IDS_PER_HOST),
                **self.env,
                **env,
            },
            stdout=log,
            stderr=log,
        )
        self.workers.append(worker)
        return worker

    def http(self) -> httpx.Client:
        """An HTTP client on the client host (its own namespace), for calls through `call`."""
        if self._http is None:
            self.client_host = self.net.add_host("client", CLIENT_NUMBER)
            self._client_threads = self.client_host.threads(1)
            self._http = httpx.Client(base_url=self.api_url, timeout=30, headers={"Authorization": f"Bearer {self.key}"})
        return self._http

    def call(self, request: Callable[[httpx.Client], T]) -> T:
        """Run `request(client)` from the client host: `call(lambda c: c.get("/readyz"))`."""
        client = self.http()
        result: T = self._client_threads.submit(request, client).result()
        return result

    def wait_ready(self, workers: int, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for process in [self.api, *(worker.process for worker in self.workers)]:
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"a Corral process exited ({process.returncode}):\n{self.logs()}")
            with contextlib.suppress(httpx.HTTPError):
                ready = self.call(lambda client: client.get("/readyz", timeout=1))
                if ready.status_code == 200 and ready.json()["live_workers"] >= workers:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"Corral not ready after {timeout_s}s:\n{self.logs()}")

    def logs(self) -> str:
        parts = [f"== {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.log_dir.glob("*.log"))]
        return "\n".join([*parts, f"== redis\n{self.redis.log()}"])

    def stop_worker(self, worker: WorkerHost) -> None:
        _stop(worker.process)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        for worker in self.workers:
            _signal(worker.process, signal.SIGTERM)
        _signal(self.api, signal.SIGTERM)
        for process in [*(worker.process for worker in self.workers), self.api]:
            _stop(process)
        for worker in self.workers:
            _remove_work_root(worker.work_root)


def _signal(process: subprocess.Popen[bytes] | None, signum: int) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signum)


def _stop(process: subprocess.Popen[bytes] | None, timeout_s: float = 20) -> None:
    if process is None:
        return
    _signal(process, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _remove_work_root(work_root: str) -> None:
    # The worker mounted a tmpfs over it (corral_sandbox.host) and keeps its jail id leases
    # and preparation lock beside it.
    subprocess.run(["umount", "--lazy", work_root], capture_output=True, check=False)
    shutil.rmtree(work_root, ignore_errors=True)
    shutil.rmtree(f"{work_root}.ids", ignore_errors=True)
    with contextlib.suppress(OSError):
        os.unlink(f"{work_root}.lock")


def _remove_dead_runs_work_roots() -> None:
    with contextlib.suppress(FileNotFoundError):
        for entry in WORK_ROOTS.iterdir():
            pid = entry.name.partition("-")[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists() and entry.is_dir():
                _remove_work_root(str(entry))


@contextlib.contextmanager
def multihost_corral(
    log_dir: Path, *, workers: int = 2, pex_root: Path = Path(), env: dict[str, str] | None = None
) -> Iterator[MultiHostCorral]:
    """Redis, the API and `workers` worker hosts, started and ready; everything removed after."""
    _remove_dead_runs_work_roots()
    with network() as net, contextlib.ExitStack() as stack:
        redis = SecureRedis(net.add_host("redis", REDIS_NUMBER))
        stack.callback(redis.close)
        redis.start()
        bed = MultiHostCorral(net, redis, log_dir, pex_root, dict(env or {}))
        stack.callback(bed.close)
        bed.start_api()
        for _ in range(workers):
            bed.add_worker()
        bed.wait_ready(workers)
        yield bed
