"""Cancelling jobs end to end: DELETE /jobs/{id} over HTTP with keys on, the API and a worker
from their PEX files, a real redis-server and NsJail.

One worker with one slot, so that a second job waits in line behind a running one.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from corral_testbed.services import Corral, corral_on_its_own_redis

# It marks its scratch space, so the test tells its jail from the worker's warm ones.
SPIN: dict[str, object] = {
    "code": "open('/tmp/spinning', 'w').close()\nwhile True:\n    pass",
    "limits": {"wall_time_ms": 30_000, "cpu_time_ms": 10_000},
}
QUICK: dict[str, object] = {"code": "print(2)"}
# The kill must come well within this: the bound, measured from the DELETE's answer.
GONE_WITHIN_S = 1.0


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    with corral_on_its_own_redis(tmp_path_factory, workers=1, auth=True, env={"CORRAL_CONCURRENCY": "1"}) as running:
        yield running


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(service: Corral, key: str, body: Mapping[str, object], wait: float = 0) -> httpx.Response:
    return httpx.post(f"{service.url}/execute", params={"wait": wait}, json=body, headers=bearer(key), timeout=wait + 10)


def read(service: Corral, key: str, job_id: str, wait: float = 0) -> dict[str, object]:
    answer = httpx.get(f"{service.url}/jobs/{job_id}", params={"wait": wait}, headers=bearer(key), timeout=wait + 10)
    assert answer.status_code == 200, answer.text
    found: dict[str, object] = answer.json()
    return found


def cancel(service: Corral, key: str, job_id: str) -> httpx.Response:
    return httpx.delete(f"{service.url}/jobs/{job_id}", headers=bearer(key), timeout=10)


def wait_running(service: Corral, key: str, job_id: str) -> None:
    deadline = time.monotonic() + 30
    while read(service, key, job_id)["status"] != "RUNNING":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)


def descendants(pid: int) -> set[int]:
    """Every live (not zombie) process below `pid`."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def runs_of(worker_pid: int) -> list[str]:
    """The run cgroups and scratch directories of the worker's jobs (named after its pid)."""
    patterns = [
        f"/sys/fs/cgroup/*/NSJAIL/corral-{worker_pid}-*",
        f"/sys/fs/cgroup/NSJAIL/corral-{worker_pid}-*",
        f"/run/corral/jobs/job-{worker_pid}-*",
    ]
    return sorted(path for pattern in patterns for path in glob.glob(pattern))


def spinning_run(worker_pid: int) -> tuple[str, int]:
    """The run name (the part its scratch directory and cgroups share) and jail uid of the
    worker's job that marked its /tmp as SPIN does."""
    deadline = time.monotonic() + 30
    while not (marks := glob.glob(f"/run/corral/jobs/job-{worker_pid}-*/tmp/spinning")):
        assert time.monotonic() < deadline, "the running job never marked its scratch space"
        time.sleep(0.05)
    scratch = Path(marks[0]).parents[1].name
    return scratch.removeprefix("job-"), Path(marks[0]).lstat().st_uid


def uid_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(status.split("\nUid:")[1].split()[0])


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running (a zombie has ended; its parent just did not reap it yet)."""
    left = set()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
                left.add(pid)
        except OSError:
            pass
    return left


def test_a_running_job_s_jail_is_gone_within_a_second_and_its_place_comes_back(service: Corral) -> None:
    key = service.create_key("canceller", "--max-unfinished", "1")
    worker_pid = service.workers[0].pid
    job_id = submit(service, key, SPIN).json()["job_id"]
    wait_running(service, key, job_id)
    assert submit(service, key, QUICK).status_code == 429  # its one unfinished place is taken
    # The job's own jail and runs: the worker's warm jails, started ahead of jobs, stay.
    name, jail_uid = spinning_run(worker_pid)
    jail = {pid for pid in descendants(worker_pid) if uid_of(pid) == jail_uid}
    assert jail, "the running job has no process under the worker"

    def runs() -> list[str]:
        return [run for run in runs_of(worker_pid) if run.endswith(f"-{name}")]

    assert any("/corral-" in run for run in runs()) and any("/job-" in run for run in runs()), runs_of(worker_pid)

    answer = cancel(service, key, job_id)
    cancelled_at = time.monotonic()
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "CANCELLED" and answer.json()["result"] is None
    while alive(jail) or runs():
        assert time.monotonic() - cancelled_at < GONE_WITHIN_S, (
            f"left {time.monotonic() - cancelled_at:.2f} s after the cancel: processes {alive(jail)}, "
            f"runs {runs()}\n{service.logs()}"
        )
        time.sleep(0.02)

    assert read(service, key, job_id)["status"] == "CANCELLED"
    done = submit(service, key, QUICK, wait=20)  # the place came back, and the slot is free
    assert done.status_code == 200 and done.json()["status"] == "COMPLETED"
    assert read(service, key, job_id)["status"] == "CANCELLED"  # the killed run's result was not stored


def test_a_pending_job_never_runs(service: Corral) -> None:
    key = service.create_key("queuer")
    blocker = submit(service, key, SPIN).json()["job_id"]
    wait_running(service, key, blocker)
    waiting = submit(service, key, {"code": "print('ran')"}).json()["job_id"]
    assert read(service, key, waiting)["status"] == "PENDING"

    answer = cancel(service, key, waiting)
    assert answer.status_code == 200 and answer.json()["status"] == "CANCELLED"
    assert cancel(service, key, blocker).status_code == 200
    # The slot is free again and serves the next job in line: the cancelled one was passed over.
    after = submit(service, key, QUICK, wait=20)
    assert after.status_code == 200 and after.json()["status"] == "COMPLETED"
    never = read(service, key, waiting)
    assert never["status"] == "CANCELLED" and never["started_at"] is None and never["attempts"] == 0
    assert never["result"] is None


def test_a_finished_job_is_409_and_another_key_s_404(service: Corral) -> None:
    alice, bob, admin = service.create_key("alice"), service.create_key("bob"), service.create_key("ops", "--admin")
    done = submit(service, alice, QUICK, wait=20)
    assert done.json()["status"] == "COMPLETED"
    job_id = done.json()["job_id"]
    refused = cancel(service, alice, job_id)
    assert refused.status_code == 409 and "already finished (COMPLETED)" in refused.json()["detail"]
    assert read(service, alice, job_id)["status"] == "COMPLETED"

    pending = submit(service, alice, SPIN).json()["job_id"]
    hidden, unknown = cancel(service, bob, pending), cancel(service, bob, "no-such-job")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["detail"] == f"no job with id {pending!r}"
    assert httpx.delete(f"{service.url}/jobs/{pending}").status_code == 401
    assert cancel(service, admin, pending).json()["status"] == "CANCELLED"  # an admin key may cancel any
    again = cancel(service, alice, pending)
    assert again.status_code == 409 and "already finished (CANCELLED)" in again.json()["detail"]
