"""Output while a job runs, input while it runs, and signed callbacks when it ends: the API (two
processes under its supervisor) and a worker from their PEX files, a real redis-server and
NsJail, API keys on; every request over HTTP, every callback to a receiver on loopback."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from corral_client import Client
from standardwebhooks.webhooks import Webhook

from corral_testbed.redis_server import RedisServerProcess, require_redis_server
from corral_testbed.services import Corral, children, corral


class Receiver(http.server.ThreadingHTTPServer):
    """A webhook receiver on loopback: answers each delivery with the next of `statuses`
    (then 200), and keeps every request it got."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.server.got.append((self.command, {k.lower(): v for k, v in self.headers.items()}, body))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    require_redis_server()
    redis = RedisServerProcess(tmp_path_factory.mktemp("redis"))
    redis.start()
    env = {
        "CORRAL_CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
        "CORRAL_CALLBACK_BACKOFF_S": "0.2",
        "CORRAL_CALLBACK_BACKOFF_MAX_S": "0.5",
        # Short leases, so a killed worker's job comes back within seconds.
        "CORRAL_LEASE_MS": "1500",
        "CORRAL_RENEW_EVERY_MS": "300",
        "CORRAL_RECOVER_EVERY_MS": "200",
        "CORRAL_HEARTBEAT_EVERY_MS": "300",
    }
    try:
        with corral(redis.url, tmp_path_factory.mktemp("logs"), workers=1, auth=True, env=env, api_processes=2) as running:
            yield running
    finally:
        redis.stop()


def submit(service: Corral, key: str, body: dict[str, Any]) -> str:
    answer = httpx.post(f"{service.url}/execute", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["job_id"])


def test_output_arrives_while_the_program_runs_and_the_stream_ends_with_the_result(service: Corral) -> None:
    key = service.create_key("watcher")
    code = "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second', flush=True)\n"
    job_id = submit(service, key, {"code": code})
    seen: list[tuple[str, str, float]] = []
    with Client(service.url, key=key) as client:
        for event in client.stream(job_id):
            seen.append((event.kind, event.data, time.monotonic()))
    kinds = [kind for kind, _, _ in seen]
    assert kinds[-1] == "result" and ("status", "RUNNING", seen[kinds.index("status")][2]) in seen
    output = [(data, at) for kind, data, at in seen if kind == "stdout"]
    assert "".join(data for data, _ in output) == "first\nsecond\n"
    first_at = next(at for data, at in output if "first" in data)
    result_at = seen[-1][2]
    # The first line came while the program still slept its second, not with the result.
    assert result_at - first_at > 0.5
    result = json.loads(seen[-1][1])
    assert result["result"]["stdout"] == "first\nsecond\n"


def test_a_stream_resumes_after_the_last_event_id_without_loss_or_duplicate(service: Corral) -> None:
    key = service.create_key("resumer")
    code = "for n in range(5):\n    print(n, flush=True)\n    __import__('time').sleep(0.2)\n"
    job_id = submit(service, key, {"code": code})
    with Client(service.url, key=key) as client:
        everything = list(client.stream(job_id))
        cut = len(everything) // 2
        resumed = list(client.stream(job_id, last_event_id=everything[cut - 1].id))
    assert [event.id for event in resumed] == [event.id for event in everything[cut:]]
    assert "".join(event.data for event in everything if event.kind == "stdout") == "0\n1\n2\n3\n4\n"


def test_a_killed_api_process_leaves_its_stream_to_another_that_resumes_it(service: Corral) -> None:
    key = service.create_key("survivor")
    code = "import time\nfor n in range(6):\n    print(n, flush=True)\n    time.sleep(0.5)\n"
    job_id = submit(service, key, {"code": code})
    assert service.api is not None
    got: list[str] = []
    with Client(service.url, key=key) as client:
        for event in client.stream(job_id):
            got.append(event.id)
            if event.kind == "stdout" and event.data.startswith("1"):
                for pid in children(service.api.pid):  # every API process, the stream's among them
                    os.kill(pid, signal.SIGKILL)
            if event.kind == "result":
                break
    assert len(got) == len(set(got)), "an event came twice"
    with Client(service.url, key=key) as client:
        assert "".join(e.data for e in client.stream(job_id) if e.kind == "stdout") == "0\n1\n2\n3\n4\n5\n"


def test_an_interactive_program_is_driven_line_by_line(service: Corral) -> None:
    key = service.create_key("talker")
    code = "while True:\n    try:\n        line = input()\n    except EOFError:\n        print('bye'); break\n    print('twice', int(line) * 2, flush=True)\n"
    job_id = submit(service, key, {"code": code, "stdin_mode": "interactive"})
    answers: list[str] = []
    with Client(service.url, key=key) as client:
        client.send_stdin(job_id, "4\n")
        for event in client.stream(job_id):
            if event.kind != "stdout":
                continue
            answers += [line for line in event.data.splitlines() if line]
            if answers[-1] == "twice 8":
                client.send_stdin(job_id, "5\n")
            elif answers[-1] == "twice 10":
                client.send_stdin(job_id, "", eof=True)
            elif answers[-1] == "bye":
                break
    assert answers == ["twice 8", "twice 10", "bye"]
    finished = httpx.post(f"{service.url}/jobs/{job_id}/stdin", json={"data": "late"}, headers={"Authorization": f"Bearer {key}"})
    assert finished.status_code in (409, 413)


def key_secret(service: Corral, name: str) -> tuple[str, str]:
    key = service.create_key(name)
    return key, service.rotate_webhook_secret(service.key_ids()[name])


def wait_for(predicate: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_callback_is_signed_retried_until_it_lands_and_recorded_on_the_job(service: Corral, receiver: Receiver) -> None:
    key, secret = key_secret(service, "hooked")
    receiver.got.clear()
    receiver.statuses = [500, 503]  # two failures, then 200
    job_id = submit(service, key, {"code": "print(42)", "callback_url": receiver.url})
    wait_for(lambda: len(receiver.got) >= 3)
    assert [method for method, _, _ in receiver.got] == ["POST"] * 3
    ids = {headers["webhook-id"] for _, headers, _ in receiver.got}
    assert len(ids) == 1  # one message, retried
    for _, headers, body in receiver.got:
        delivered = Webhook(secret).verify(body, headers)  # raises on a bad signature
        assert delivered["job_id"] == job_id and delivered["result"]["stdout"] == "42\n"
    wait_for(lambda: httpx.get(f"{service.url}/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()["callback"]["state"] == "delivered")
    job = httpx.get(f"{service.url}/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()
    assert job["callback"]["attempts"] == 3 and job["callback"]["last_status"] == "200"


def test_a_callback_queued_before_the_api_restarts_is_still_delivered(service: Corral, receiver: Receiver) -> None:
    key, secret = key_secret(service, "patient")
    receiver.got.clear()
    receiver.statuses = [503] * 3
    assert service.api is not None
    job_id = submit(service, key, {"code": "print('later')", "callback_url": receiver.url})
    wait_for(lambda: len(receiver.got) >= 1)
    serving = children(service.api.pid)
    service.api.send_signal(signal.SIGKILL)  # the supervisor and its API processes
    for pid in serving:
        os.kill(pid, signal.SIGKILL)
    service.api.wait()
    service.start_api(2)
    service.wait_ready()
    wait_for(lambda: any(json.loads(body).get("job_id") == job_id for _, _, body in receiver.got[3:]))
    Webhook(secret).verify(receiver.got[-1][2], receiver.got[-1][1])


def descendants(pid: int) -> list[int]:
    found = list(children(pid))
    return found + [grandchild for child in found for grandchild in descendants(child)]


def deliveries_of(receiver: Receiver, job_id: str) -> list[tuple[dict[str, str], bytes]]:
    return [(headers, body) for _, headers, body in list(receiver.got) if json.loads(body).get("job_id") == job_id]


def test_a_job_whose_worker_is_killed_mid_run_finishes_once_and_its_callback_lands_once(
    service: Corral, receiver: Receiver
) -> None:
    key, secret = key_secret(service, "outlived")
    auth = {"Authorization": f"Bearer {key}"}
    receiver.statuses = []
    code = "import time\nprint('started', flush=True)\ntime.sleep(2)\nprint('done')\n"
    job_id = submit(service, key, {"code": code, "callback_url": receiver.url})
    url = f"{service.url}/jobs/{job_id}"
    wait_for(lambda: httpx.get(url, headers=auth).json()["status"] == "RUNNING")
    (worker,) = (process for process in service.workers if process.poll() is None)
    for pid in [worker.pid, *descendants(worker.pid)]:  # the worker and its jail, mid-run
        with contextlib.suppress(ProcessLookupError):  # gone already, with its parent
            os.kill(pid, signal.SIGKILL)
    worker.wait()
    service.start_worker()

    job = httpx.get(url, params={"wait": 30}, headers=auth, timeout=40).json()
    assert (job["status"], job["attempts"], job["result"]["stdout"]) == ("COMPLETED", 2, "started\ndone\n"), job
    wait_for(lambda: (httpx.get(url, headers=auth).json()["callback"] or {}).get("state") == "delivered")
    # Another job's callback delivered after it: the line of deliveries has moved past the first.
    later = submit(service, key, {"code": "print('later')", "callback_url": receiver.url})
    wait_for(lambda: len(deliveries_of(receiver, later)) == 1)
    ((headers, body),) = deliveries_of(receiver, job_id)
    delivered = Webhook(secret).verify(body, headers)  # raises on a bad signature
    assert (delivered["status"], delivered["result"]["stdout"]) == ("COMPLETED", "started\ndone\n")
    assert httpx.get(url, headers=auth).json()["callback"]["attempts"] == 1


def test_a_private_address_is_refused_without_a_request_and_recorded(service: Corral) -> None:
    key = service.create_key("curious")
    job_id = submit(service, key, {"code": "print(1)", "callback_url": "http://169.254.169.254/latest/meta-data/"})
    url = f"{service.url}/jobs/{job_id}"

    def failed() -> bool:
        callback = httpx.get(url, headers={"Authorization": f"Bearer {key}"}).json().get("callback") or {}
        return callback.get("state") == "failed"

    wait_for(failed)
    callback = httpx.get(url, headers={"Authorization": f"Bearer {key}"}).json()["callback"]
    assert "169.254.169.254" in callback["last_status"] or "public" in callback["last_status"]
