"""The client against a tiny scripted HTTP server: retries, idempotency keys, errors."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from corral_client import (
    AlreadyFinished,
    AsyncClient,
    Client,
    CorralError,
    InvalidRequest,
    JobNotFound,
    LeftOut,
    Limits,
    NotSupported,
    RetryPolicy,
    ServerUnavailable,
    TransportError,
)
from corral_client.cli import (
    EXIT_FAILED,
    EXIT_MEMORY_LIMIT,
    EXIT_TIME_LIMIT,
    exit_code_of,
    main,
    parse_duration_ms,
    parse_memory_mb,
    path_under,
)
from corral_client.models import Job, Result

ACCEPTED: tuple[int, dict[str, str], object] = (202, {}, {"job_id": "j1", "status": "PENDING"})
FAST = RetryPolicy(attempts=3, base_s=0.01, max_s=5)


@dataclass
class Peer:
    """Answers each request with the next scripted (status, headers, body); records requests."""

    answers: list[tuple[int, dict[str, str], object]]
    seen: list[tuple[str, str, dict[str, str], float]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def peer() -> Iterator[Peer]:
    script = Peer(answers=[])

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            script.bodies.append(self.rfile.read(length))
            script.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, time.monotonic()))
            status, headers, body = script.answers.pop(0)
            # Bytes are a file's content, sent as they are.
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            kind = "application/octet-stream" if isinstance(body, bytes) else "application/json"
            self.send_response(status)
            for name, value in {"content-type": kind, **headers}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    script.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield script
    server.shutdown()
    server.server_close()


def test_a_503_is_retried_after_retry_after_with_the_same_idempotency_key(peer: Peer) -> None:
    peer.answers = [(503, {"Retry-After": "1"}, {"status_code": 503, "detail": "queue full"}), ACCEPTED]
    with Client(peer.url, retry=FAST) as client:
        accepted = client.submit("print(1)")
    assert accepted.job_id == "j1"
    (_, _, first, at_first), (_, _, second, at_second) = peer.seen
    assert first["idempotency-key"] == second["idempotency-key"]
    # Retry-After (1 s) wins over the policy's 10 ms backoff.
    assert at_second - at_first >= 0.9


def test_each_submit_has_its_own_idempotency_key_and_the_key_goes_as_a_bearer_token(peer: Peer) -> None:
    peer.answers = [ACCEPTED, ACCEPTED]
    with Client(peer.url, key="sekrit") as client:
        client.submit("1")
        client.submit("2")
    keys = {headers["idempotency-key"] for _, _, headers, _ in peer.seen}
    assert len(keys) == 2
    assert all(headers["authorization"] == "Bearer sekrit" for _, _, headers, _ in peer.seen)


def test_a_429_without_retry_after_backs_off_and_gives_up_as_unavailable(peer: Peer) -> None:
    peer.answers = [(429, {}, {"status_code": 429, "detail": "slow down"})] * 4
    with Client(peer.url, retry=FAST) as client, pytest.raises(ServerUnavailable) as raised:
        client.runtimes()
    assert len(peer.seen) == 4
    assert (raised.value.status_code, raised.value.detail) == (429, "slow down")


def test_a_refusal_carries_the_servers_problem_details(peer: Peer) -> None:
    problem = {"status_code": 422, "detail": "limits.memory_mb: too much", "errors": [{"field": "limits.memory_mb", "message": "too much"}]}
    peer.answers = [(422, {}, problem)]
    with Client(peer.url) as client, pytest.raises(InvalidRequest) as raised:
        client.submit("x")
    assert raised.value.status_code == 422
    assert [(e.field, e.message) for e in raised.value.errors] == [("limits.memory_mb", "too much")]
    assert len(peer.seen) == 1  # a refusal is not retried


def test_unknown_job_and_unsupported_cancel(peer: Peer) -> None:
    peer.answers = [(404, {}, {"status_code": 404, "detail": "no job with id 'x'"}), (405, {}, {"status_code": 405, "detail": "Method Not Allowed"})]
    with Client(peer.url) as client:
        with pytest.raises(JobNotFound):
            client.get("x")
        with pytest.raises(NotSupported, match="does not support cancelling"):
            client.cancel("x")
    assert peer.seen[1][0] == "DELETE"


async def test_cancel_returns_the_cancelled_job_and_a_finished_one_is_already_finished(peer: Peer) -> None:
    cancelled = {"job_id": "j1", "status": "CANCELLED", "finished_at": "2026-01-01T00:00:00Z"}
    refusal = {"status_code": 409, "detail": "job j1 already finished (CANCELLED)"}
    peer.answers = [(200, {}, cancelled), (409, {}, refusal), (409, {}, refusal)]
    with Client(peer.url) as client:
        job = client.cancel("j1")
        assert job.status == "CANCELLED" and job.finished
        with pytest.raises(AlreadyFinished, match="already finished"):
            client.cancel("j1")
    async with AsyncClient(peer.url) as aclient:
        with pytest.raises(AlreadyFinished):
            await aclient.cancel("j1")
    assert [(method, path) for method, path, *_ in peer.seen] == [("DELETE", "/jobs/j1")] * 3


def test_an_unreachable_server_is_a_transport_error() -> None:
    with Client("http://127.0.0.1:9", retry=FAST) as client, pytest.raises(TransportError):
        client.runtimes()


async def test_the_async_client_retries_and_reads_the_job(peer: Peer) -> None:
    job = {"job_id": "j1", "status": "COMPLETED", "result": {"verdict": "ok", "exit_code": 0, "stdout": "hi\n"}, "surprise": 1}
    peer.answers = [(503, {"Retry-After": "0"}, {}), ACCEPTED, (200, {}, job)]
    async with AsyncClient(peer.url, retry=FAST) as client:
        finished = await client.run("print('hi')")
    assert finished.result is not None and finished.result.stdout == "hi\n"
    assert peer.seen[0][2]["idempotency-key"] == peer.seen[1][2]["idempotency-key"]
    assert "wait=" in peer.seen[2][1]


@pytest.mark.parametrize(("text", "ms"), [("2s", 2000), ("500ms", 500), ("1.5", 1500), ("1m", 60_000)])
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize(("text", "mb"), [("256M", 256), ("1G", 1024), ("65536K", 64), ("100", 100), ("1500k", 2)])
def test_memory_sizes(text: str, mb: int) -> None:
    assert parse_memory_mb(text) == mb


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (Result(verdict="ok", exit_code=0), 0),
        (Result(verdict="runtime_error", exit_code=3), 3),
        (Result(verdict="runtime_error", signal=11), 139),
        (Result(verdict="time_limit_exceeded"), EXIT_TIME_LIMIT),
        (Result(verdict="memory_limit_exceeded"), EXIT_MEMORY_LIMIT),
    ],
)
def test_exit_codes(result: Result, code: int) -> None:
    assert exit_code_of(Job(job_id="j", status="COMPLETED", result=result))[0] == code


# ---- files a job returns ------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
PNG_FILE = {"name": "out/plots/a b.png", "size": len(PNG), "sha256": hashlib.sha256(PNG).hexdigest(), "media_type": "image/png"}


def _with_files(*files: dict[str, object], left_out: list[dict[str, str]] | None = None) -> dict[str, object]:
    result = {"verdict": "ok", "exit_code": 0, "stdout": "drawn\n", "files": list(files), "files_left_out": left_out or []}
    return {"job_id": "j1", "status": "COMPLETED", "result": result}


def test_outputs_go_as_patterns_or_true_and_only_when_asked(peer: Peer) -> None:
    peer.answers = [ACCEPTED] * 4
    with Client(peer.url) as client:
        client.submit("x", outputs=["plot.png", "out/**/*.csv"])
        client.submit("x", outputs=True)
        client.submit("x", outputs=False)
        client.submit("x", limits=Limits(max_returned_files=2))
    sent = [json.loads(body) for body in peer.bodies]
    assert sent[0]["outputs"] == ["plot.png", "out/**/*.csv"]
    assert sent[1]["outputs"] is True
    assert "outputs" not in sent[2]
    assert sent[3]["limits"] == {"max_returned_files": 2}


async def test_a_result_lists_its_files_and_download_reads_one(peer: Peer) -> None:
    inline = {**PNG_FILE, "content_base64": base64.b64encode(PNG).decode()}
    peer.answers = [(200, {}, _with_files(inline, left_out=[{"name": "out/link", "reason": "a symbolic link"}])), (200, {}, PNG), (200, {}, PNG)]
    with Client(peer.url) as client:
        job = client.get("j1")
        assert job.result is not None
        (file,) = job.result.files
        assert (file.name, file.size, file.media_type, file.content) == ("out/plots/a b.png", len(PNG), "image/png", PNG)
        assert job.result.files_left_out == [LeftOut("out/link", "a symbolic link")]
        assert client.download("j1", file.name, sha256=file.sha256) == PNG
    async with AsyncClient(peer.url) as aclient:
        assert await aclient.download("j1", file.name) == PNG
    assert [path for _, path, *_ in peer.seen[1:]] == ["/jobs/j1/files/out/plots/a%20b.png"] * 2


def test_a_download_that_does_not_match_its_sha256_is_refused_and_a_missing_file_is_not_found(peer: Peer) -> None:
    peer.answers = [(200, {}, b"tampered"), (404, {}, {"status_code": 404, "detail": "job j1 returned no file named 'x'"})]
    with Client(peer.url) as client:
        with pytest.raises(CorralError, match="sha256"):
            client.download("j1", "plot.png", sha256=hashlib.sha256(PNG).hexdigest())
        with pytest.raises(JobNotFound):
            client.download("j1", "x")


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "out/../../evil", "out//x", "./x", "out/", "a\\b", "a\x00b", ""])
def test_a_returned_name_that_is_not_plain_and_relative_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="refusing"):
        path_under(tmp_path, name)


def test_run_with_out_writes_each_file_under_the_directory(peer: Peer, tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("draw()")
    peer.answers = [ACCEPTED, (200, {}, _with_files(PNG_FILE, left_out=[{"name": "out/big", "reason": "over the limit"}])), (200, {}, PNG)]
    result = CliRunner().invoke(main, ["--server", peer.url, "run", str(tmp_path / "prog.py"), "--out", str(tmp_path / "got")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "got" / "out" / "plots" / "a b.png").read_bytes() == PNG
    assert json.loads(peer.bodies[0])["outputs"] is True
    assert "a b.png" in result.stderr and "left out out/big: over the limit" in result.stderr
    assert result.stdout == "drawn\n"


def test_run_with_out_refuses_a_name_that_escapes_the_directory(peer: Peer, tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("x")
    evil = {**PNG_FILE, "name": "../escaped.png"}
    peer.answers = [ACCEPTED, (200, {}, _with_files(evil))]
    out = tmp_path / "deep" / "got"
    result = CliRunner().invoke(main, ["--server", peer.url, "run", str(tmp_path / "prog.py"), "--out", str(out), "--output", "*.png"])
    assert result.exit_code == EXIT_FAILED
    assert "refusing" in result.stderr
    assert json.loads(peer.bodies[0])["outputs"] == ["*.png"]
    assert not (tmp_path / "deep" / "escaped.png").exists()
    assert len(peer.seen) == 2  # nothing downloaded
