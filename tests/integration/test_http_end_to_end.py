"""Corral end to end: the API and worker PEX files, a real redis-server, real NsJail jails.

Every test talks HTTP only, as a client would.
"""

from __future__ import annotations

import base64
import concurrent.futures
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral_testbed.redis_server import RedisServerProcess, require_redis_server
from corral_testbed.services import Corral, corral

# Short leases so a killed worker's jobs come back within seconds.
FAST_RECOVERY = {
    "CORRAL_LEASE_MS": "1500",
    "CORRAL_RENEW_EVERY_MS": "300",
    "CORRAL_RECOVER_EVERY_MS": "200",
    "CORRAL_HEARTBEAT_EVERY_MS": "300",
}


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    require_redis_server()
    server = RedisServerProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(redis: RedisServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    with corral(redis.url, tmp_path_factory.mktemp("logs"), workers=2, env=FAST_RECOVERY) as running:
        yield running


def execute(service: Corral, body: dict[str, object], wait: float = 20) -> httpx.Response:
    return httpx.post(f"{service.url}/execute", params={"wait": wait}, json=body, timeout=wait + 10)


def run(service: Corral, code: str, **fields: object) -> dict[str, object]:
    response = execute(service, {"code": code, **fields})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "COMPLETED", body
    return body["result"]  # type: ignore[no-any-return]


def test_print_completes_ok(service: Corral) -> None:
    result = run(service, "print(1)")
    assert (result["verdict"], result["exit_code"], result["stdout"], result["stderr"]) == ("ok", 0, "1\n", "")


def test_results_say_how_the_jail_started(service: Corral) -> None:
    # Warm jails are on by default: Python has a warm hook, C has none and starts cold.
    assert run(service, "print(1)")["sandbox_start"] == "warm"
    c = run(service, '#include <stdio.h>\nint main(void) { puts("1"); }\n', language="c")
    assert (c["stdout"], c["sandbox_start"]) == ("1\n", "cold")


@pytest.mark.parametrize(
    ("code", "limits", "verdict"),
    [
        ("raise ValueError('boom')", {}, "runtime_error"),
        ("while True: pass", {"cpu_time_ms": 500, "wall_time_ms": 3000}, "time_limit_exceeded"),
        ("import time; time.sleep(10)", {"wall_time_ms": 500}, "time_limit_exceeded"),
        ("b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])", {"memory_mb": 64}, "memory_limit_exceeded"),
        ("print('x' * 10_000)", {"max_output_bytes": 100}, "output_limit_exceeded"),
    ],
)
def test_every_verdict_reaches_the_client(service: Corral, code: str, limits: dict[str, int], verdict: str) -> None:
    assert run(service, code, limits=limits)["verdict"] == verdict


def test_stdin_args_and_files(service: Corral) -> None:
    code = (
        "import sys\n"
        "print(sys.stdin.read().strip(), sys.argv[1:])\n"
        "print(open('a.txt').read(), open('b.bin', 'rb').read().hex())"
    )
    result = run(
        service,
        code,
        stdin="from stdin\n",
        args=["one", "two words"],
        files=[
            {"name": "a.txt", "content": "text file"},
            {"name": "b.bin", "content": base64.b64encode(b"\x00\xff").decode(), "encoding": "base64"},
        ],
    )
    assert result["stdout"] == "from stdin ['one', 'two words']\ntext file 00ff\n"


def test_limits_above_the_maximum_are_422(service: Corral) -> None:
    response = execute(service, {"code": "print(1)", "limits": {"memory_mb": 10**6}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "limits.memory_mb"


def test_an_oversize_body_is_413(service: Corral) -> None:
    response = execute(service, {"code": "#" * (1024 * 1024)})
    assert response.status_code == 413


def test_an_unknown_job_is_404(service: Corral) -> None:
    assert httpx.get(f"{service.url}/jobs/nosuchjob0000000000000").status_code == 404


def test_a_job_is_readable_later_by_its_location(service: Corral) -> None:
    accepted = httpx.post(f"{service.url}/execute", json={"code": "print('later')"})
    assert accepted.status_code == 202
    location = accepted.headers["location"]
    finished = httpx.get(f"{service.url}{location}", params={"wait": 20}, timeout=30)
    assert finished.json()["result"]["stdout"] == "later\n"


def test_runtimes_lists_python_and_the_installed_languages(service: Corral) -> None:
    runtimes = httpx.get(f"{service.url}/runtimes").json()
    assert {"python", "c", "cpp", "javascript", "bash"} <= {r["language"] for r in runtimes}
    assert all(r["workers"] == 2 for r in runtimes)


def own_db(redis: RedisServerProcess, db: int) -> str:
    """A Redis database of its own, so the module's shared service never takes this test's jobs."""
    return redis.url.rsplit("/", 1)[0] + f"/{db}"


def submit_many(service: Corral, count: int, code: str) -> list[str]:
    ids = []
    for _ in range(count):
        response = httpx.post(f"{service.url}/execute", json={"code": code})
        assert response.status_code == 202, response.text
        ids.append(response.json()["job_id"])
    return ids


def wait_all(service: Corral, ids: list[str], timeout_s: float = 60) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    finished = []
    for job_id in ids:
        left = max(deadline - time.monotonic(), 0.1)
        job = httpx.get(f"{service.url}/jobs/{job_id}", params={"wait": min(left, 30)}, timeout=left + 5).json()
        finished.append(job)
    return finished


def test_jobs_survive_a_worker_killed_mid_run(redis: RedisServerProcess, tmp_path: Path) -> None:
    with corral(own_db(redis, 1), tmp_path, workers=2, env=FAST_RECOVERY) as service:
        ids = submit_many(service, 6, "import time; time.sleep(0.5); print('done')")
        time.sleep(0.3)  # both workers are inside a job now
        service.workers[0].send_signal(signal.SIGKILL)
        jobs = wait_all(service, ids)
        assert [job["status"] for job in jobs] == ["COMPLETED"] * 6, jobs
        assert all(job["result"]["stdout"] == "done\n" for job in jobs)  # type: ignore[index]
        assert any(job["attempts"] == 2 for job in jobs), "the killed worker's job was re-run"


def test_sigterm_lets_a_worker_finish_its_job_and_exit(redis: RedisServerProcess, tmp_path: Path) -> None:
    with corral(own_db(redis, 2), tmp_path, workers=1, env=FAST_RECOVERY) as service:
        [job_id] = submit_many(service, 1, "import time; time.sleep(1); print('finished')")
        time.sleep(0.4)
        worker = service.workers[0]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
        job = httpx.get(f"{service.url}/jobs/{job_id}").json()
        assert job["status"] == "COMPLETED", (job, service.logs())
        assert job["result"]["stdout"] == "finished\n"
        assert job["attempts"] == 1


def test_redis_down_is_503_then_service_recovers(redis: RedisServerProcess, tmp_path: Path) -> None:
    with corral(own_db(redis, 3), tmp_path, workers=1, env=FAST_RECOVERY) as service:
        assert execute(service, {"code": "print(1)"}).status_code == 200
        redis.kill()
        try:
            response = httpx.post(f"{service.url}/execute", json={"code": "print(2)"}, timeout=30)
            assert response.status_code == 503, response.text
            assert "retry-after" in response.headers
            assert httpx.get(f"{service.url}/readyz", timeout=30).status_code == 503
        finally:
            redis.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            response = execute(service, {"code": "print(3)"})
            if response.status_code == 200:
                break
            time.sleep(0.5)
        assert response.status_code == 200, response.text
        assert response.json()["result"]["stdout"] == "3\n"


def test_a_language_no_worker_offers_is_refused_from_the_moment_the_service_is_ready(
    redis: RedisServerProcess, tmp_path: Path
) -> None:
    # With no worker known every language is accepted, to wait for one; once /readyz has seen a
    # worker, submissions must know its languages too (the API's cached list once lagged ~0.25 s).
    service = Corral(own_db(redis, 4), tmp_path, {"CORRAL_AUTH": "false"})
    try:
        service.start_api()
        service.start_worker()
        service.wait_ready(poll_s=0.01)
        response = httpx.post(f"{service.url}/execute", json={"language": "cobol", "code": "x"}, timeout=10)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "language"
    finally:
        service.stop()


def test_concurrent_clients_all_get_their_own_results(service: Corral) -> None:
    def one(index: int) -> str:
        return str(run(service, f"print({index} * 2)")["stdout"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(one, range(24)))
    assert outputs == [f"{index * 2}\n" for index in range(24)]
