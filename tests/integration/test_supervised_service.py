"""Corral under its supervisors, as `make up` runs it: kill -9 of one process, through HTTP.

Two API processes share the port under one supervisor; one worker supervisor keeps two worker
processes. Each test kills one process with SIGKILL and checks that the service kept answering,
that every job it accepted finished exactly once (its attempts, and the finish counter), that
the supervisor put a new process in place, and what /metrics and the JSON logs say about it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from corral_testbed.redis_server import RedisServerProcess, require_redis_server
from corral_testbed.services import Corral, children, corral

FAST_RECOVERY = {
    "CORRAL_LEASE_MS": "1500",
    "CORRAL_RENEW_EVERY_MS": "300",
    "CORRAL_RECOVER_EVERY_MS": "200",
    "CORRAL_HEARTBEAT_EVERY_MS": "300",
    # The longest job these tests allow, and a grace past it (the worker refuses a shorter one).
    "CORRAL_LIMIT_MAX_WALL_TIME_MS": "5000",
    "CORRAL_SHUTDOWN_GRACE_S": "15",
}
SLEEPY = "import time; time.sleep(0.8); print('done')"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    require_redis_server()
    server = RedisServerProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


def supervised(redis: RedisServerProcess, db: int, log_dir: Path) -> Iterator[Corral]:
    url = redis.url.rsplit("/", 1)[0] + f"/{db}"
    with corral(url, log_dir, workers=1, env=FAST_RECOVERY, api_processes=2, worker_processes=2) as service:
        yield service


def submit(service: Corral, code: str, request_id: str) -> str:
    response = httpx.post(
        f"{service.url}/execute", json={"code": code}, headers={"X-Request-ID": request_id}, timeout=10
    )
    assert response.status_code == 202, response.text
    assert response.headers["x-request-id"] == request_id
    return str(response.json()["job_id"])


def wait_all(service: Corral, ids: list[str], timeout_s: float = 60) -> dict[str, dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    finished = {}
    for job_id in ids:
        left = max(deadline - time.monotonic(), 0.1)
        response = httpx.get(f"{service.url}/jobs/{job_id}", params={"wait": min(left, 30)}, timeout=left + 5)
        finished[job_id] = response.json()
    return finished


def wait_for_children(pid: int, count: int, timeout_s: float = 30) -> dict[int, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(found := children(pid)) == count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} has children {children(pid)}, not {count}")


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(
        value for (sample, sample_labels), value in found.items() if sample == name and labels.items() <= dict(sample_labels).items()
    )


def log_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_kill_9_of_a_worker_process_reruns_only_its_jobs_once(redis: RedisServerProcess, tmp_path: Path) -> None:
    for service in supervised(redis, 4, tmp_path):
        assert service.workers[0] is not None
        supervisor = service.workers[0].pid
        first = wait_for_children(supervisor, 2)
        assert sorted(first.values()) == ["corral-worker: slot 1 idle", "corral-worker: slot 2 idle"]
        ids = [submit(service, SLEEPY, f"req-{index}") for index in range(8)]

        # The victim's title names the jobs it is running: those must be run again elsewhere.
        deadline = time.monotonic() + 20
        victim, held = 0, list[str]()
        while not held and time.monotonic() < deadline:
            for pid, title in children(supervisor).items():
                if " job " in title:
                    victim, held = pid, title.split(" job ", 1)[1].split(", ")
                    break
            time.sleep(0.02)
        assert held, children(supervisor)
        os.kill(victim, signal.SIGKILL)

        # The service keeps answering while the worker process is gone.
        ids += [submit(service, SLEEPY, f"req-{index}") for index in range(8, 10)]
        jobs = wait_all(service, ids)
        for job_id, job in jobs.items():
            assert job["status"] == "COMPLETED", (job, service.logs())
            assert job["result"]["stdout"] == "done\n"  # type: ignore[index]
            assert job["attempts"] == (2 if job_id in held else 1), (job_id, held, job)
        replaced = wait_for_children(supervisor, 2)
        assert victim not in replaced

        # The counters agree with what happened: every job finished once, the killed
        # process's attempts were started and recovered, and its samples were kept.
        api = samples(f"{service.url}/metrics")
        worker = samples(service.worker_metrics_url())
        assert total(api, "corral_jobs_submitted_total") == len(ids)
        assert total(worker, "corral_jobs_finished_total") == len(ids)
        assert total(worker, "corral_jobs_finished_total", status="COMPLETED", verdict="ok") == len(ids)
        assert total(worker, "corral_jobs_started_total") == len(ids) + len(held)
        assert total(worker, "corral_jobs_recovered_total", outcome="requeued") == len(held)
        assert total(worker, "corral_job_run_seconds_count") == len(ids)
        assert total(worker, "corral_job_queue_wait_seconds_count") == len(ids) + len(held)
        assert total(api, "corral_queue_depth") == 0
        assert total(api, "corral_jobs_unfinished") == 0
        # Only live processes count towards the slots: the dead one's gauges were retired.
        assert total(worker, "corral_worker_slots_busy") + total(worker, "corral_worker_slots_idle") == 4

        # Each job's worker lines carry its id and the request id it was submitted with.
        finished_lines = {
            line["job_id"]: line for line in log_lines(service.log_dir / "worker-0.log") if line["event"] == "job finished"
        }
        for index, job_id in enumerate(ids):
            assert finished_lines[job_id]["request_id"] == f"req-{index}"
            assert str(finished_lines[job_id]["role"]).startswith("corral-worker: slot ")
        submitted_lines = [line for line in log_lines(service.log_dir / "api.log") if line["event"] == "job submitted"]
        assert {(line["job_id"], line["request_id"]) for line in submitted_lines} == {
            (job_id, f"req-{index}") for index, job_id in enumerate(ids)
        }


def test_kill_9_of_an_api_process_leaves_the_service_answering(redis: RedisServerProcess, tmp_path: Path) -> None:
    for service in supervised(redis, 5, tmp_path):
        assert service.api is not None
        supervisor = service.api.pid
        before = wait_for_children(supervisor, 2)
        assert sorted(before.values()) == ["corral-api", "corral-api"]
        assert "corral-api: supervisor" in Path(f"/proc/{supervisor}/cmdline").read_text()
        ids = [submit(service, "print('before')", f"a-{index}") for index in range(3)]
        os.kill(next(iter(before)), signal.SIGKILL)
        # The other process keeps accepting on the shared port at once.
        ids += [submit(service, "print('after')", f"b-{index}") for index in range(6)]
        jobs = wait_all(service, ids)
        assert all(job["status"] == "COMPLETED" and job["attempts"] == 1 for job in jobs.values()), jobs
        replaced = wait_for_children(supervisor, 2)
        assert set(replaced) != set(before)
        # Either process answers /metrics with the counts of both, the dead one's included.
        for _ in range(4):
            assert total(samples(f"{service.url}/metrics"), "corral_jobs_submitted_total") == len(ids)
        assert total(samples(service.worker_metrics_url()), "corral_jobs_finished_total") == len(ids)


def test_kill_9_of_the_worker_supervisor_lets_its_children_finish(redis: RedisServerProcess, tmp_path: Path) -> None:
    for service in supervised(redis, 6, tmp_path):
        old = service.workers[0]
        orphans = wait_for_children(old.pid, 2)
        ids = [submit(service, SLEEPY, f"c-{index}") for index in range(4)]
        time.sleep(0.4)
        old.send_signal(signal.SIGKILL)
        old.wait(timeout=10)
        # Its children got SIGTERM from the kernel: they finish their jobs and leave.
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in orphans) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(Path(f"/proc/{pid}").exists() for pid in orphans)
        # What make up does next: start the worker supervisor again.
        service.start_worker(processes=2)
        ids += [submit(service, SLEEPY, f"d-{index}") for index in range(4)]
        jobs = wait_all(service, ids)
        assert all(job["status"] == "COMPLETED" and job["attempts"] == 1 for job in jobs.values()), jobs
