"""Piston's WebSocket for interactive runs (/api/v2/connect), spoken as Piston v2's source speaks
it, against the API and a worker from their PEX files, a real redis-server and NsJail, keys on.
The client is a small blocking one over wsproto (the protocol the API's uvicorn runs)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from corral_testbed.services import Corral, corral_on_its_own_redis

ECHO = "import sys\nfor line in sys.stdin:\n    print('got ' + line.strip(), flush=True)\n"
C_ECHO = (
    "#include <stdio.h>\n"
    'int main(void) { char line[64]; puts("ready"); fflush(stdout);\n'
    '  if (fgets(line, sizeof line, stdin)) printf("got %s", line); return 3; }\n'
)


class Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"upgrade refused with {status}")
        self.status = status


class Piston:
    """One connection: send messages, read the server's until it closes (`closed` = code)."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.ws = WSConnection(ConnectionType.CLIENT)
        extra = [(name.encode(), value.encode()) for name, value in headers.items()]
        self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target="/api/v2/connect", extra_headers=extra)))
        self.pending: list[Any] = []
        self.closed: tuple[int, str] | None = None
        self.text = ""
        while True:
            event = self._next()
            if isinstance(event, AcceptConnection):
                return
            if isinstance(event, RejectConnection):
                raise Refused(event.status_code)
            assert not isinstance(event, RejectData), event

    def _next(self) -> Any:
        while not self.pending:
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    def send(self, **message: Any) -> None:
        self.sock.sendall(self.ws.send(Message(data=json.dumps(message))))

    def receive(self) -> dict[str, Any] | None:
        """The next message, or None once the server closed the connection."""
        while self.closed is None:
            event = self._next()
            if isinstance(event, TextMessage):
                self.text += event.data
                if event.message_finished:
                    text, self.text = self.text, ""
                    return dict(json.loads(text))
            elif isinstance(event, CloseConnection):
                self.closed = (event.code, event.reason or "")
                self.sock.sendall(self.ws.send(event.response()))
        return None

    def until_closed(self) -> list[dict[str, Any]]:
        got = []
        while (message := self.receive()) is not None:
            got.append(message)
        self.sock.close()
        return got


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    with corral_on_its_own_redis(tmp_path_factory, workers=1, auth=True) as running:
        yield running


@pytest.fixture(scope="module")
def key(service: Corral) -> str:
    return service.create_key("piston-ws")


def connect(service: Corral, key: str) -> Piston:
    return Piston(service.port, {"Authorization": f"Bearer {key}"})


def init(language: str, code: str, **more: Any) -> dict[str, Any]:
    return {"type": "init", "language": language, "version": "*", "files": [{"content": code}], **more}


def test_a_python_program_answers_its_input_over_the_socket(service: Corral, key: str) -> None:
    client = connect(service, key)
    client.send(**init("python", ECHO, args=[], run_timeout=10000))
    runtime = client.receive()
    assert runtime is not None and runtime["type"] == "runtime" and runtime["language"] == "python"
    assert client.receive() == {"type": "stage", "stage": "run"}
    client.send(type="data", stream="stdin", data="hello\n")
    assert client.receive() == {"type": "data", "stream": "stdout", "data": "got hello\n"}
    client.send(type="data", stream="stdin", data="again\n")
    assert client.receive() == {"type": "data", "stream": "stdout", "data": "got again\n"}
    # Piston never closes the program's stdin: the client ends the run with a signal.
    client.send(type="signal", signal="SIGKILL")
    assert client.until_closed() == [{"type": "exit", "stage": "run", "code": None, "signal": "SIGKILL"}]
    assert client.closed == (4999, "Job Completed")


def test_a_c_program_is_compiled_then_run_in_stages(service: Corral, key: str) -> None:
    client = connect(service, key)
    client.send(**init("c", C_ECHO))
    assert (client.receive() or {})["type"] == "runtime"
    assert client.receive() == {"type": "stage", "stage": "compile"}
    assert client.receive() == {"type": "exit", "stage": "compile", "code": 0, "signal": None}
    assert client.receive() == {"type": "stage", "stage": "run"}
    assert client.receive() == {"type": "data", "stream": "stdout", "data": "ready\n"}
    client.send(type="data", stream="stdin", data="42\n")
    rest = client.until_closed()
    assert rest == [
        {"type": "data", "stream": "stdout", "data": "got 42\n"},
        {"type": "exit", "stage": "run", "code": 3, "signal": None},
    ]
    assert client.closed == (4999, "Job Completed")


def test_a_compile_error_ends_with_the_compile_stage(service: Corral, key: str) -> None:
    client = connect(service, key)
    client.send(**init("c", "int main(void) { return nope; }\n"))
    got = client.until_closed()
    assert got[1:2] == [{"type": "stage", "stage": "compile"}]
    assert got[2]["type"] == "data" and got[2]["stream"] == "stderr" and "nope" in got[2]["data"]
    assert got[3]["type"] == "exit" and got[3]["stage"] == "compile" and got[3]["code"] != 0
    assert len(got) == 4 and client.closed == (4999, "Job Completed")


def test_init_twice_closes_with_already_initialized(service: Corral, key: str) -> None:
    client = connect(service, key)
    client.send(**init("python", ECHO))
    client.send(**init("python", ECHO))
    got = client.until_closed()
    assert client.closed == (4000, "Already Initialized")
    assert [message["type"] for message in got] in (["runtime"], ["runtime", "stage"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (init("cobol", "x"), "cobol-* runtime is unknown"),
        ({**init("python", "x"), "version": 3}, "version is required as a string"),
        ({**init("python", "x"), "run_timeout": "soon"}, "If specified, run_timeout must be a number"),
        ({"type": "init", "language": "python", "version": "*"}, "files is required as an array"),
    ],
)
def test_a_bad_init_is_notified_then_closed(service: Corral, key: str, body: dict[str, Any], message: str) -> None:
    client = connect(service, key)
    client.send(**body)
    assert client.until_closed() == [{"type": "error", "message": message}]
    assert client.closed == (4002, "Notified Error")


def test_protocol_errors_close_with_pistons_codes(service: Corral, key: str) -> None:
    client = connect(service, key)
    client.send(type="data", stream="stdin", data="early")
    assert client.until_closed() == [] and client.closed == (4003, "Not yet initialized")
    client = connect(service, key)
    client.send(**init("python", ECHO))
    client.send(type="data", stream="stdout", data="x")
    client.until_closed()
    assert client.closed == (4004, "Can only write to stdin")
    client = connect(service, key)
    client.send(**init("python", ECHO))
    client.send(type="signal", signal="SIGNOPE")
    client.until_closed()
    assert client.closed == (4005, "Invalid signal")


def test_input_past_its_bound_and_malformed_json_are_notified(service: Corral, key: str) -> None:
    client = connect(service, key)
    client.send(**init("python", ECHO))
    client.send(type="data", stream="stdin", data="x" * 65537)
    got = client.until_closed()
    assert got[-1] == {"type": "error", "message": "65537 bytes are more than one message may send (65536)"}
    assert client.closed == (4002, "Notified Error")
    client = connect(service, key)
    client.sock.sendall(client.ws.send(Message(data="{not json")))
    got = client.until_closed()
    assert len(got) == 1 and got[0]["type"] == "error" and got[0]["message"].startswith("malformed JSON")
    assert client.closed == (4002, "Notified Error")


def test_no_init_within_a_second_closes(service: Corral, key: str) -> None:
    client = connect(service, key)
    assert client.until_closed() == [] and client.closed == (4001, "Initialization Timeout")


def test_an_upgrade_without_a_valid_key_is_refused(service: Corral) -> None:
    with pytest.raises(Refused):
        Piston(service.port, {})
    with pytest.raises(Refused):
        Piston(service.port, {"Authorization": "Bearer not-a-key"})
