"""Corral's API and workers as real OS processes, from the PEX files Pants built.

Integration tests depend on the two `pex_binary` targets (runtime_package_dependencies), so
Pants builds them and places them in the test's sandbox as it would under `dist/`; benchmarks
pass `pex_root=Path("dist")` after `pants package`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from corral_testbed.ports import free_port
from corral_testbed.redis_server import RedisServerProcess, require_redis_server

API_PEX = Path("packages.api/corral-api.pex")
WORKER_PEX = Path("packages.worker/corral-worker.pex")


def _pex(path: Path) -> list[str]:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the integration tests through `./pants test`")
    return [sys.executable, str(path)]


@dataclass
class Corral:
    """An API and its workers, started and stopped together."""

    redis_url: str
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    pex_root: Path = Path()
    port: int = field(default_factory=free_port)
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # Each worker's /metrics port (the supervisor's, for a supervised worker).
    metrics_ports: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _environ(self) -> dict[str, str]:
        return {**os.environ, "CORRAL_REDIS_URL": self.redis_url, "CORRAL_PORT": str(self.port), **self.env}

    def start_api(self, processes: int = 1) -> None:
        log = open(self.log_dir / "api.log", "ab")  # noqa: SIM115 - closed with the process
        self.api = subprocess.Popen(
            [*_pex(self.pex_root / API_PEX), "serve", "--processes", str(processes)],
            env=self._environ(),
            stdout=log,
            stderr=log,
        )

    def start_worker(self, processes: int = 1, **env: str) -> subprocess.Popen[bytes]:
        index = len(self.workers)
        log = open(self.log_dir / f"worker-{index}.log", "ab")  # noqa: SIM115
        metrics_port = free_port()
        worker = subprocess.Popen(
            [*_pex(self.pex_root / WORKER_PEX), "run", "--processes", str(processes)],
            env={
                **self._environ(),
                "CORRAL_WORKER_ID": f"worker-{index}",
                "CORRAL_METRICS_PORT": str(metrics_port),
                **env,
            },
            stdout=log,
            stderr=log,
        )
        self.workers.append(worker)
        self.metrics_ports.append(metrics_port)
        return worker

    def wait_ready(self, timeout_s: float = 60, workers: int = 1, poll_s: float = 0.1) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for process in [self.api, *self.workers]:
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"a Corral process exited ({process.returncode}):\n{self.logs()}")
            try:
                ready = httpx.get(f"{self.url}/readyz", timeout=1)
                if ready.status_code == 200 and ready.json()["live_workers"] >= workers:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(poll_s)
        raise TimeoutError(f"Corral not ready after {timeout_s}s:\n{self.logs()}")

    def create_key(self, name: str, *options: str) -> str:
        """A new API key from `corral-api keys create` (options such as --admin, --rate 5/60)."""
        made = subprocess.run(
            [*_pex(self.pex_root / API_PEX), "keys", "create", name, "--quiet", *options],
            env=self._environ(),
            capture_output=True,
            text=True,
            check=True,
        )
        return made.stdout.strip()

    def rotate_webhook_secret(self, key_id: str) -> str:
        """A new webhook secret for the key, from `corral-api keys rotate-webhook-secret`."""
        made = subprocess.run(
            [*_pex(self.pex_root / API_PEX), "keys", "rotate-webhook-secret", key_id],
            env=self._environ(),
            capture_output=True,
            text=True,
            check=True,
        )
        return made.stdout.strip()

    def revoke_key(self, key_id: str) -> None:
        subprocess.run(
            [*_pex(self.pex_root / API_PEX), "keys", "revoke", key_id], env=self._environ(), capture_output=True, check=True
        )

    def key_ids(self) -> dict[str, str]:
        """Key name -> id, from `corral-api keys list`."""
        listed = subprocess.run(
            [*_pex(self.pex_root / API_PEX), "keys", "list"], env=self._environ(), capture_output=True, text=True, check=True
        )
        return {line.split()[1]: line.split()[0] for line in listed.stdout.splitlines()[1:]}

    def worker_metrics_url(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.metrics_ports[index]}/metrics"

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.log_dir.glob("*.log")))

    def stop(self) -> None:
        for process in [*self.workers, self.api]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*self.workers, self.api]:
            if process is not None:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@contextmanager
def corral(
    redis_url: str,
    log_dir: Path,
    *,
    workers: int = 2,
    pex_root: Path = Path(),
    env: Mapping[str, str] | None = None,
    api_processes: int = 1,
    worker_processes: int = 1,
    auth: bool = False,
) -> Iterator[Corral]:
    """`workers` worker deployables (supervisors when `worker_processes` > 1) and one API.

    Without `auth` the API runs with keys off (CORRAL_AUTH=false), as the suites written before
    keys existed expect; tests of keys pass auth=True and make keys with `create_key`.
    """
    service = Corral(redis_url, log_dir, {"CORRAL_AUTH": "true" if auth else "false", **(env or {})}, pex_root)
    try:
        service.start_api(api_processes)
        for _ in range(workers):
            service.start_worker(worker_processes)
        service.wait_ready(workers=workers * worker_processes)
        yield service
    finally:
        service.stop()


def children(pid: int) -> dict[int, str]:
    """The live child processes of `pid`, each with its title (what `ps` shows)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        # The command name in parentheses may hold spaces; the fields after it do not.
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            found[int(entry.name)] = title
    return found


def title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()


@contextmanager
def corral_on_its_own_redis(
    tmp_path_factory: pytest.TempPathFactory, *, workers: int = 2, auth: bool = False, env: Mapping[str, str] | None = None
) -> Iterator[Corral]:
    """`corral` on a redis-server of its own, started first and stopped last: a module's stack."""
    require_redis_server()
    redis = RedisServerProcess(tmp_path_factory.mktemp("redis"))
    redis.start()
    try:
        with corral(redis.url, tmp_path_factory.mktemp("logs"), workers=workers, auth=auth, env=env) as running:
            yield running
    finally:
        redis.stop()
