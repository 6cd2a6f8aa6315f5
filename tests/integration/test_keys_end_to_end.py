"""API keys end to end: keys made and revoked with `corral-api keys`, the API and a worker from
their PEX files, a real redis-server and NsJail; every request over HTTP."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from corral_testbed.services import Corral, corral_on_its_own_redis

QUICK: dict[str, object] = {"code": "print(1)"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    with corral_on_its_own_redis(tmp_path_factory, workers=1, auth=True) as running:
        yield running


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post(
    service: Corral, key: str, body: dict[str, object] = QUICK, wait: float = 0, idempotency_key: str = ""
) -> httpx.Response:
    headers = {**bearer(key), **({"Idempotency-Key": idempotency_key} if idempotency_key else {})}
    return httpx.post(f"{service.url}/execute", params={"wait": wait}, json=body, headers=headers, timeout=wait + 10)


def test_no_key_or_a_wrong_key_is_401_with_a_challenge(service: Corral) -> None:
    for headers in ({}, bearer("corral_not-a-key")):
        refused = httpx.post(f"{service.url}/execute", json=QUICK, headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{service.url}/readyz").status_code == 200


def test_a_job_is_its_key_s_alone_and_an_admin_reads_any(service: Corral) -> None:
    alice, bob, admin = service.create_key("alice"), service.create_key("bob"), service.create_key("ops", "--admin")
    done = post(service, alice, wait=20)
    assert done.status_code == 200 and done.json()["result"]["stdout"] == "1\n"
    job_id = done.json()["job_id"]
    assert done.headers["ratelimit-policy"] == '"rate";q=600;w=60'
    assert done.headers["ratelimit"].startswith('"rate";r=599;')
    assert httpx.get(f"{service.url}/jobs/{job_id}", headers=bearer(alice)).status_code == 200
    theirs = httpx.get(f"{service.url}/jobs/{job_id}", params={"wait": 1}, headers=bearer(bob))
    nobody = httpx.get(f"{service.url}/jobs/no-such-job", headers=bearer(bob))
    assert theirs.status_code == nobody.status_code == 404
    assert httpx.get(f"{service.url}/jobs/{job_id}", headers=bearer(admin)).status_code == 200


def test_a_revoked_key_is_refused_at_once(service: Corral) -> None:
    key = service.create_key("short-lived")
    assert httpx.get(f"{service.url}/runtimes", headers=bearer(key)).status_code == 200
    service.revoke_key(service.key_ids()["short-lived"])
    refused = httpx.get(f"{service.url}/runtimes", headers=bearer(key))
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")


def test_a_key_revoked_by_another_process_cannot_submit_even_while_the_api_caches_it(service: Corral) -> None:
    key = service.create_key("cached")
    assert post(service, key).status_code == 202  # the API now holds the key in its cache
    service.revoke_key(service.key_ids()["cached"])  # `corral-api keys revoke`: another process
    refused = post(service, key)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")


def test_over_its_rate_a_key_gets_429_with_retry_after_and_rate_headers(service: Corral) -> None:
    key = service.create_key("chatty", "--rate", "3/60")
    answers = [httpx.get(f"{service.url}/runtimes", headers=bearer(key)) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert [answer.headers["ratelimit"].split(";")[1] for answer in answers] == ["r=2", "r=1", "r=0", "r=0"]
    refused = answers[3]
    assert refused.headers["retry-after"] == "20"
    assert refused.headers["ratelimit-policy"] == '"rate";q=3;w=60'
    assert "3 requests per 60 s" in refused.json()["detail"]


def test_past_its_unfinished_jobs_a_key_gets_429_until_one_finishes(service: Corral) -> None:
    key, other = service.create_key("busy", "--max-unfinished", "1"), service.create_key("other")
    slow = post(service, key, {"code": "import time; time.sleep(1.5)"})
    assert slow.status_code == 202
    refused = post(service, key)
    assert refused.status_code == 429 and "1 unfinished jobs" in refused.json()["detail"]
    assert refused.headers["retry-after"] and refused.headers["ratelimit"].startswith('"rate";')
    assert post(service, other).status_code == 202  # another key is not held back
    finished = httpx.get(f"{service.url}/jobs/{slow.json()['job_id']}", params={"wait": 20}, headers=bearer(key))
    assert finished.json()["status"] == "COMPLETED"
    assert post(service, key).status_code == 202  # the worker's finish gave the place back


def test_past_its_stored_bytes_a_key_gets_429_and_a_finished_job_holds_only_what_it_stored(service: Corral) -> None:
    # While it runs, a job books its code plus 64 KiB of default output for each stream: one
    # fits, two do not.
    key = service.create_key("hoarder", "--max-stored-bytes", "200000")
    running = post(service, key, {"code": "import time; time.sleep(1.5)"})
    assert running.status_code == 202
    refused = post(service, key)
    assert refused.status_code == 429 and "stored bytes" in refused.json()["detail"]
    finished = httpx.get(f"{service.url}/jobs/{running.json()['job_id']}", params={"wait": 20}, headers=bearer(key))
    assert finished.json()["status"] == "COMPLETED"
    # Finished, it holds the few KB it stored, and so does each next one.
    for _ in range(5):
        assert post(service, key, wait=20).status_code == 200


def test_past_its_long_polls_a_key_gets_429_naming_the_limit(service: Corral) -> None:
    key = service.create_key("waiter", "--max-waiters", "1")
    job_id = post(service, key, {"code": "import time; time.sleep(3)"}).json()["job_id"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(httpx.get, f"{service.url}/jobs/{job_id}", params={"wait": 20}, headers=bearer(key), timeout=30)
        time.sleep(0.5)
        refused = httpx.get(f"{service.url}/jobs/{job_id}", params={"wait": 5}, headers=bearer(key))
        assert refused.status_code == 429 and "max_waiters" in refused.json()["detail"]
        assert waiting.result().json()["status"] == "COMPLETED"


def test_a_retried_submit_with_an_idempotency_key_returns_the_first_job(service: Corral) -> None:
    key = service.create_key("retrier")
    first = post(service, key, idempotency_key="order-1")
    again = post(service, key, idempotency_key="order-1")
    assert first.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"] and again.headers["idempotent-replayed"] == "true"
    httpx.get(f"{service.url}/jobs/{first.json()['job_id']}", params={"wait": 20}, headers=bearer(key), timeout=30)
    late = post(service, key, idempotency_key="order-1")  # after the job finished: still the first answer
    assert late.status_code == 202 and late.json() == {"job_id": first.json()["job_id"], "status": "COMPLETED"}
    changed = post(service, key, {"code": "print(2)"}, idempotency_key="order-1")
    assert changed.status_code == 422


def test_racing_submits_with_one_idempotency_key_make_one_job(service: Corral) -> None:
    key = service.create_key("racer")
    start = threading.Barrier(8)

    def submit() -> httpx.Response:
        start.wait()
        return post(service, key, {"code": "print('once')"}, idempotency_key="race-1")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: submit(), range(8)))
    assert {answer.status_code for answer in answers} == {202}
    job_ids = {answer.json()["job_id"] for answer in answers}
    assert len(job_ids) == 1
    replayed = [answer for answer in answers if answer.headers.get("idempotent-replayed") == "true"]
    assert len(replayed) == 7


def test_judge0_clients_send_x_auth_token_as_header_or_query(service: Corral) -> None:
    key = service.create_key("judge0-client")
    body = {"source_code": "print(1)", "language_id": 71}
    refused = httpx.post(f"{service.url}/judge0/submissions", json=body)
    assert refused.status_code == 401 and refused.content == b""
    created = httpx.post(f"{service.url}/judge0/submissions", params={"wait": "true"}, json=body, headers={"X-Auth-Token": key}, timeout=30)
    assert created.status_code == 201 and created.json()["stdout"] == "1\n"
    token = created.json()["token"]
    read = httpx.get(f"{service.url}/judge0/submissions/{token}", params={"X-Auth-Token": key})
    assert read.status_code == 200 and read.json()["status"]["id"] == 3
    stranger = httpx.get(f"{service.url}/judge0/submissions/{token}", headers={"X-Auth-Token": service.create_key("x")})
    assert stranger.status_code == 404
