"""Corral over several hosts: a Redis host, an API host, two worker hosts and a client host,
each a network namespace with its own address, meeting only through Redis over TLS with an ACL
user per deployable (corral_testbed.multihost).

What the tests show: a job goes from the client host's HTTP request, with an API key made on
the API host, through the API host to a worker host and back, keys, quotas and idempotent
retries included, with no command of it refused by the ACL users; each deployable's Redis user is refused the other's commands; a client
without TLS, with the wrong CA or without the right certificate is refused; and partitions: a
worker host cut off mid-job stops its own jail once it cannot renew the lease, another worker
host finishes the job exactly once, a result the cut-off worker sent is refused by the job's
fence when its link comes back, and jobs submitted while a worker host is cut off are not lost.

Needs root (namespaces, NsJail), iproute2, nsenter, openssl and redis-server built with TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError

from corral_contract.queue import new_job
from corral_redis import (
    QueueKeys,
    RedisIdempotencyRecords,
    RedisJobQueue,
    RedisSettings,
    RedisUsageLedger,
    connect_to,
)
from corral_redis.scripts import FINISH, RENEW
from corral_system.clock import SystemClock
from corral_testbed.hosts import Host
from corral_testbed.multihost import MultiHostCorral, WorkerHost, multihost_corral
from corral_testbed.nsjail_host import WAIT_FOR_THE_TEST, jail_init_pid
from corral_testbed.secure_redis import API_USER, WORKER_USER, acl_lines

T = TypeVar("T")

pytestmark = pytest.mark.timeout(150)

LEASE_MS = 2_000
# Short leases, so that a cut-off worker's job comes back within seconds. Redis' socket
# timeouts need no change: RunNextJob gives up a renewal or a result write at the lease's end
# however long the socket would wait (its lease is timed on the worker's monotonic clock).
FAST_WORKER = {
    "CORRAL_CONCURRENCY": "1",
    "CORRAL_LEASE_MS": str(LEASE_MS),
    "CORRAL_RENEW_EVERY_MS": "300",
    "CORRAL_RECOVER_EVERY_MS": "200",
    "CORRAL_HEARTBEAT_EVERY_MS": "300",
    "CORRAL_METRICS_PORT": "0",
}
# Beyond the lease: the retry pause, the recovery period and a loaded 2-core machine.
MARGIN_S = 3.0
KEYS = QueueKeys(RedisSettings().key_prefix)


def _require_tools() -> None:
    missing = [tool for tool in ("ip", "nsenter", "openssl", "redis-server") if shutil.which(tool) is None]
    message = f"multi-host tests need {', '.join(missing)} (apt-get install iproute2 util-linux openssl redis-server)"
    if os.geteuid() != 0:
        missing, message = ["root"], "multi-host tests need root (network namespaces, NsJail)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiHostCorral]:
    _require_tools()
    with multihost_corral(tmp_path_factory.mktemp("hosts"), workers=2, env=FAST_WORKER) as made:
        yield made


@pytest.fixture(autouse=True)
def _all_linked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every worker host linked again after each test, even one that failed mid-cut."""
    yield
    if "bed" in request.fixturenames:
        bed: MultiHostCorral = request.getfixturevalue("bed")
        for worker in bed.workers:
            worker.host.reconnect()


# -- helpers ---------------------------------------------------------------------------------


def waiting_job(tag: str) -> str:
    """A program that tells the test it runs (a file `tag` in its /tmp) and waits for SIGUSR1."""
    return WAIT_FOR_THE_TEST + f"ready({tag!r})\nprint('released')\n"


def submit(bed: MultiHostCorral, code: str, wall_time_ms: int = 20_000) -> str:
    body = {"code": code, "limits": {"wall_time_ms": wall_time_ms}}
    answer = bed.call(lambda client: client.post("/execute", json=body))
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["job_id"]
    return job_id


def job_record(bed: MultiHostCorral, job_id: str) -> dict[str, Any]:
    answer = bed.call(lambda client: client.get(f"/jobs/{job_id}"))
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def holder(bed: MultiHostCorral, job_id: str) -> tuple[str | None, int]:
    """The worker that holds (or last held) the job, and its fence token."""
    with bed.redis.admin() as admin:
        worker, fence = admin.hmget(KEYS.job(job_id), ["worker", "fence"])
    return (worker.decode() if worker else None), int(fence or 0)


def until(what: str, check: Callable[[], T | None], timeout_s: float, bed: MultiHostCorral | None = None) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    logs = f"\n{bed.logs()}" if bed is not None else ""
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{logs}")


def ready_jail(worker: WorkerHost, tag: str) -> int | None:
    """The host pid of a job of `worker` that called ready(tag), if there is one by now.

    Looks into the scratch spaces from the machine with lstat only.
    """
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(worker.work_root):
            with contextlib.suppress(OSError):
                info = os.lstat(f"{worker.work_root}/{entry}/tmp/{tag}")
                if info.st_uid in worker.jail_uids:
                    return jail_init_pid(info.st_uid)
    return None


def running_on(
    bed: MultiHostCorral, job_id: str, tag: str, after_fence: int = 0, timeout_s: float = 30
) -> tuple[WorkerHost, int]:
    """The worker host running the job under a fence above `after_fence` once its program is
    ready, and its jail's pid."""

    def found() -> tuple[WorkerHost, int] | None:
        name, fence = holder(bed, job_id)
        if fence <= after_fence:
            return None
        for worker in bed.workers:
            if worker.worker_id == name and (pid := ready_jail(worker, tag)):
                return worker, pid
        return None

    return until(f"job {job_id} to be running, ready as {tag!r}", found, timeout_s, bed)


def finished_by(worker: WorkerHost) -> list[str]:
    """The jobs whose result `worker` stored (it logs only results the queue accepted)."""
    return re.findall(r"job (\S+) (?:COMPLETED|FAILED), attempt", worker.log_path.read_text(errors="replace"))


def finished_once(bed: MultiHostCorral, job_ids: list[str]) -> dict[str, str]:
    """Each job's result was stored exactly once, by one worker: which one, by job. A worker logs
    a result once the queue has taken it, a moment after the record shows it: the logs are read
    once every job is named in one."""

    def all_named() -> bool:
        named = {job_id for worker in bed.workers for job_id in finished_by(worker)}
        return named.issuperset(job_ids)

    until("each job's result in a worker's log", all_named, 10, bed)
    by_job: dict[str, list[str]] = {}
    for worker in bed.workers:
        for job_id in finished_by(worker):
            by_job.setdefault(job_id, []).append(worker.worker_id)
    for job_id in job_ids:
        assert len(by_job.get(job_id, [])) == 1, f"job {job_id} stored by {by_job.get(job_id)}\n{bed.logs()}"
    return {job_id: by_job[job_id][0] for job_id in job_ids}


def finished(bed: MultiHostCorral, job_id: str, timeout_s: float = 40) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        record = job_record(bed, job_id)
        return record if record["status"] in ("COMPLETED", "FAILED") else None

    return until(f"job {job_id} to finish", done, timeout_s, bed)


def refused(answer: Any) -> bool:
    """Whether Redis refused the command, or a command inside the script, to this ACL user."""
    return isinstance(answer, NoPermissionError) or (
        isinstance(answer, ResponseError) and "can't run this command" in str(answer)
    )


def in_host(host: Host, work: Callable[[], Any]) -> Any:
    """Run `work` (it may start an event loop) on a thread inside `host`'s network."""
    pool = host.threads(1)
    try:
        return pool.submit(work).result(timeout=60)
    finally:
        pool.shutdown()


def settings_as(bed: MultiHostCorral, user: str, **changes: Any) -> RedisSettings:
    tls = bed.redis.tls
    fields: dict[str, Any] = {
        "url": bed.redis.url,
        "username": user,
        "password_file": str(bed.redis.password_file(user)),
        "tls_ca_file": str(tls.ca),
        "tls_cert_file": str(tls.client_cert),
        "tls_key_file": str(tls.client_key),
    }
    return RedisSettings(**{**fields, **changes})


def outcome(host: Host, settings: RedisSettings, action: Callable[[Any], Any]) -> Any:
    """What `action(client)` returns, or the exception it raises, on `host` with `settings`."""

    async def attempt() -> Any:
        client = connect_to(settings, retries=0, connect_timeout=2.0, socket_timeout=3.0)
        try:
            return await action(client)
        except Exception as error:  # the test looks at what was raised
            return error
        finally:
            await client.aclose()

    return in_host(host, lambda: asyncio.run(attempt()))


# -- Redis across hosts, secured ----------------------------------------------------------------


def test_a_job_goes_from_the_client_host_through_the_api_host_to_worker_hosts(bed: MultiHostCorral) -> None:
    with bed.redis.admin() as admin:
        admin.acl_log_reset()
    # The API requires keys: the bed's client host sends the one made on the API host.
    anonymous = bed.call(lambda client: client.post("/execute", json={"code": "print(1)"}, headers={"Authorization": ""}))
    assert anonymous.status_code == 401, anonymous.text
    answer = bed.call(lambda client: client.post("/execute?wait=20", json={"code": "print(6 * 7)"}))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "COMPLETED"
    assert answer.json()["result"]["stdout"] == "42\n"

    # Four one-second jobs at once on two one-slot worker hosts: both hosts run some.
    job_ids = [submit(bed, "import time; time.sleep(1); print('slept')") for _ in range(4)]
    for job_id in job_ids:
        assert finished(bed, job_id)["result"]["stdout"] == "slept\n"
    ran_on = finished_once(bed, job_ids)
    assert set(ran_on.values()) == {"worker1", "worker2"}, ran_on

    # An idempotent retry, a quota refused, a revoked key: what the ACL lines below must allow.
    once = {"code": "print('once')"}
    retry = {"Idempotency-Key": f"multi-host-{os.getpid()}"}
    first, again = (bed.call(lambda client: client.post("/execute", json=once, headers=retry)) for _ in range(2))
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert again.json()["job_id"] == first.json()["job_id"] and again.headers["idempotent-replayed"] == "true"
    assert finished(bed, first.json()["job_id"])["result"]["stdout"] == "once\n"
    small = {"Authorization": f"Bearer {bed.create_key('small', '--max-unfinished', '1')}"}
    slow = {"code": "import time; time.sleep(3)"}
    held = bed.call(lambda client: client.post("/execute", json=slow, headers=small))
    over = bed.call(lambda client: client.post("/execute", json=slow, headers=small))
    assert held.status_code == 202 and over.status_code == 429, (held.text, over.text)
    small_id = bed.key_ids()["small"]
    bed.keys_command("revoke", small_id)
    assert bed.call(lambda client: client.get(f"/jobs/{held.json()['job_id']}", headers=small)).status_code == 401
    # The worker's FINISH settles the owner's booking: unfinished (+inf) until then.
    with bed.redis.admin() as admin:
        until("the small key's job to finish", lambda: admin.hget(KEYS.job(held.json()["job_id"]), "status") == b"COMPLETED", 30, bed)
        assert admin.zscore(KEYS.usage(small_id), held.json()["job_id"]) != float("inf")

    ready = bed.call(lambda client: client.get("/readyz")).json()
    # The narrow users may not read CONFIG: the durability check read INFO instead.
    assert ready["redis_appendfsync"] == "unknown (CONFIG refused)", ready
    with bed.redis.admin() as admin:
        refused = admin.acl_log()
    assert refused == [], f"the ACL users were refused something they need: {refused}"


def test_the_apis_user_may_take_back_a_booking_and_an_idempotency_claim(bed: MultiHostCorral) -> None:
    """What the API does when queuing fails after it booked a job and claimed its idempotency
    key (corral_core.usecases), which the HTTP flow above cannot provoke: as the API's user."""
    assert bed.api_host is not None
    settings = settings_as(bed, API_USER)
    owner, job_id = f"acl-{os.getpid()}", f"acl-job-{time.monotonic_ns()}"

    async def book_and_take_back(client: Any) -> Any:
        usage = RedisUsageLedger(client, settings)
        records = RedisIdempotencyRecords(client, settings)
        assert await usage.book(owner, job_id, 100, 1, 1_000) is None
        assert await records.claim(owner, "retry-1", job_id, "fingerprint", 60) is None
        await usage.unbook(owner, job_id)
        await records.release(owner, "retry-1", job_id)
        return await records.claim(owner, "retry-1", "another", "fingerprint", 60)

    with bed.redis.admin() as admin:
        admin.acl_log_reset()
    assert outcome(bed.api_host, settings, book_and_take_back) is None
    with bed.redis.admin() as admin:
        assert admin.acl_log() == []
        assert admin.zcard(KEYS.usage(owner)) == 0
        admin.delete(KEYS.usage(owner), KEYS.usage_bytes(owner), *admin.keys(f"{KEYS.idempotency(owner, '')}*"))


def test_each_deployables_redis_user_is_refused_the_other_ones_commands(bed: MultiHostCorral) -> None:
    worker_host = bed.workers[0].host
    job = new_job(SystemClock(), f"acl-{os.getpid()}-{time.monotonic_ns()}", "print(1)")

    # A queue of its own (still under corral:), which the bed's workers do not serve.
    own = RedisSettings(key_prefix="corral:acl-test:{q}:")

    def claim(client: Any) -> Any:
        return RedisJobQueue(client, SystemClock(), own).claim("intruder", LEASE_MS, 0.1)

    async def queue_and_claim(client: Any) -> Any:
        # With a job waiting: on an empty queue a claim may end before the first command it needs.
        await RedisJobQueue(client, SystemClock(), own).submit(new_job(SystemClock(), f"{job.id}-waiting", "print(1)"))
        return await claim(client)

    def submit_job(client: Any) -> Any:
        return RedisJobQueue(client, SystemClock(), own).submit(job)

    def config(client: Any) -> Any:
        return client.config_get("requirepass")

    # A worker host holding the API's password still cannot take jobs, and the workers'
    # user cannot queue one; neither reads the server's configuration.
    with bed.redis.admin() as admin:
        admin.acl_log_reset()
    assert refused(outcome(worker_host, settings_as(bed, API_USER), queue_and_claim))
    assert refused(outcome(worker_host, settings_as(bed, WORKER_USER), submit_job))
    assert refused(outcome(worker_host, settings_as(bed, WORKER_USER), config))
    assert refused(outcome(worker_host, settings_as(bed, API_USER), config))
    with bed.redis.admin() as admin:
        denied = {(entry["username"], entry["object"]) for entry in admin.acl_log()}
    # The claim stops at the first command the API may not run (inside the START script).
    assert {(API_USER, "lmove"), (WORKER_USER, "exists"), (WORKER_USER, "config|get"), (API_USER, "config|get")} == denied
    # ... while each may do its own work.
    assert outcome(worker_host, settings_as(bed, API_USER), submit_job) is None
    taken = outcome(worker_host, settings_as(bed, WORKER_USER), claim)
    assert taken is not None and not isinstance(taken, Exception), taken
    with bed.redis.admin() as admin:
        admin.delete(*admin.keys("corral:acl-test:*"))


def test_clients_without_tls_or_the_right_certificates_or_password_are_refused(bed: MultiHostCorral) -> None:
    host = bed.workers[0].host
    tls = bed.redis.tls
    plain = bed.redis.url.replace("rediss://", "redis://")

    def ping(client: Any) -> Any:
        return client.ping()

    assert outcome(host, settings_as(bed, WORKER_USER), ping) is True
    refused = {
        "no TLS": outcome(host, RedisSettings(url=plain, username=WORKER_USER, password_file=str(bed.redis.password_file(WORKER_USER))), ping),
        "another CA": outcome(host, settings_as(bed, WORKER_USER, tls_ca_file=str(tls.stranger_ca)), ping),
        "no client certificate": outcome(host, settings_as(bed, WORKER_USER, tls_cert_file="", tls_key_file=""), ping),
        "a stranger's client certificate": outcome(
            host, settings_as(bed, WORKER_USER, tls_cert_file=str(tls.stranger_cert), tls_key_file=str(tls.stranger_key)), ping
        ),
        "a wrong password": outcome(host, settings_as(bed, WORKER_USER, password_file=str(bed.redis.password_file(API_USER))), ping),
    }
    for why, answer in refused.items():
        assert isinstance(answer, RedisConnectionError), f"{why}: {answer!r}"
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused["another CA"])
    assert "invalid username-password pair" in str(refused["a wrong password"]).lower()


def test_the_operations_guide_shows_the_tested_acl_lines() -> None:
    guide = Path("docs/operations.md").read_text()
    for line in acl_lines("API_PASSWORD", "WORKER_PASSWORD"):
        assert line in guide, f"docs/operations.md's deployment section lacks the tested ACL line:\n{line}"


# -- partitions ----------------------------------------------------------------------------------


def test_a_cut_off_worker_host_stops_its_jail_and_another_host_finishes_the_job_once(bed: MultiHostCorral) -> None:
    job_id = submit(bed, waiting_job("cut"))
    cut_off, jail = running_on(bed, job_id, "cut")
    _, first_fence = holder(bed, job_id)
    other = next(worker for worker in bed.workers if worker is not cut_off)
    cut_off.host.cut()

    # Its jail is gone once it could not renew for a whole lease, while the link is still down.
    # (The lease counts from the last renewal that got through, up to a renewal period before
    # the cut, so the jail may end a little less than a lease after it.)
    # The job's own jail (its init, the namespace's every process with it): the worker's warm
    # jails, started ahead of jobs, run under the host's other jail uids meanwhile.
    until("the cut-off worker's jail to end", lambda: not Path(f"/proc/{jail}").exists(), LEASE_MS / 1000 + MARGIN_S, bed)
    assert "no renewal got through for a whole lease" in cut_off.log_path.read_text()
    with contextlib.suppress(ProcessLookupError):
        os.kill(jail, 0)
        raise AssertionError(f"the cut-off worker's jail {jail} still runs")

    # The other host takes the job over once the lease has expired, and runs it to the end.
    taken_over, second_jail = running_on(bed, job_id, "cut", after_fence=first_fence)
    assert taken_over is other
    cut_off.host.reconnect()
    os.kill(second_jail, signal.SIGUSR1)
    final = finished(bed, job_id)
    assert final["status"] == "COMPLETED" and final["result"]["stdout"] == "released\n", final
    assert final["attempts"] == 2, final
    assert finished_once(bed, [job_id]) == {job_id: other.worker_id}


def test_a_cut_off_worker_hosts_late_result_is_refused_by_the_fence(bed: MultiHostCorral) -> None:
    job_id = submit(bed, waiting_job("late"))
    cut_off, jail = running_on(bed, job_id, "late")
    _, first_fence = holder(bed, job_id)
    finish_sha = hashlib.sha1(FINISH.encode()).hexdigest()
    renew_sha = hashlib.sha1(RENEW.encode()).hexdigest()
    address = f"{cut_off.host.address}:"
    with _monitor(bed) as seen:
        # Cut right after a renewal got through, so that no renewal is on its way when the job
        # ends (one would hold the worker until the lease's end, and no result would be sent).
        start = len(seen)
        deadline = time.monotonic() + 5
        while not any(address in line and renew_sha in line for line in seen[start:]):
            assert time.monotonic() < deadline, "no renewal seen from the worker running the job"
            time.sleep(0.001)
        cut_off.host.cut()
        # The job ends now: the cut-off worker writes its result into a link that carries
        # nothing, and its kernel keeps the bytes to send when the link comes back.
        os.kill(jail, signal.SIGUSR1)
        taken_over, second_jail = running_on(bed, job_id, "late", after_fence=first_fence)
        assert taken_over is not cut_off
        cut_off.host.reconnect()
        # The late FINISH arrives from the cut-off host's address...
        until(
            "the cut-off worker's late result to reach Redis",
            lambda: any(address in line and finish_sha in line and job_id in line for line in seen),
            30,
            bed,
        )
        # ... and changes nothing: the job still runs on the other host, under a newer fence.
        assert job_record(bed, job_id)["status"] == "RUNNING"
        assert holder(bed, job_id)[0] == taken_over.worker_id
    os.kill(second_jail, signal.SIGUSR1)
    final = finished(bed, job_id)
    assert final["status"] == "COMPLETED" and final["attempts"] == 2, final
    assert finished_once(bed, [job_id]) == {job_id: taken_over.worker_id}
    assert "result not stored before the lease ran out" in cut_off.log_path.read_text()


def test_jobs_submitted_while_a_worker_host_is_cut_off_are_not_lost(bed: MultiHostCorral) -> None:
    cut_off = bed.workers[0]
    # It is waiting for work (BLMOVE) when its link goes: Redis may hand it a job it never hears of.
    cut_off.host.cut()
    job_ids = [submit(bed, f"print({n})") for n in range(6)]
    finals = [finished(bed, job_id) for job_id in job_ids]
    assert [final["result"]["stdout"] for final in finals] == [f"{n}\n" for n in range(6)]
    cut_off.host.reconnect()
    ran_on = finished_once(bed, job_ids)
    assert set(ran_on.values()) == {bed.workers[1].worker_id}
    # Back on the network, the host takes work again.
    until("both worker hosts to be live", lambda: bed.call(lambda client: client.get("/readyz")).json()["live_workers"] == 2, 20, bed)
    more = [submit(bed, "import time; time.sleep(1)") for _ in range(4)]
    for job_id in more:
        finished(bed, job_id)
    assert cut_off.worker_id in finished_once(bed, more).values()


@contextlib.contextmanager
def _monitor(bed: MultiHostCorral) -> Iterator[list[str]]:
    """Every command Redis runs meanwhile, as MONITOR shows it (with the client's address)."""
    seen: list[str] = []
    stop = threading.Event()
    client = bed.redis.admin()

    def read() -> None:
        with client.monitor() as monitor:  # type: ignore[no-untyped-call]
            for event in monitor.listen():
                seen.append(f"{event['client_address']}:{event['client_port']} {event['command']}")
                if stop.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield seen
    finally:
        stop.set()
        with contextlib.suppress(redis.RedisError):
            bed.redis.admin().ping()  # wakes the reader with one more command to see
        reader.join(timeout=5)
        client.close()
