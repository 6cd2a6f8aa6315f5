"""A real browser for tests: Debian's chromium, headless, driven over the DevTools protocol, in
a network namespace of its own that has only loopback.

Why the DevTools protocol and not chromium-driver with Selenium: one WebSocket (websocket-client)
gives everything the tests read, the browser's own request log (Network.requestWillBeSent), its
dialogs (Page.javascriptDialogOpening) and screenshots, with no second program whose version must
match the browser's.

Why a namespace and not proxy flags: flags only ask chromium not to reach out, and a feature
that ignores them (DNS prefetch, component updates, a font fetch) would still leave the machine.
`loopback_only()` moves the calling thread into a new network namespace with `lo` up and no other
interface, so the stack and the browser started from that thread can reach each other, and
nothing else at all: there is no route to leave by.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import itertools
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import websocket

from corral_testbed.programs import require_program

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")
# Records every CSP violation the page meets, before any of its own scripts runs.
_WATCH_POLICY = (
    "window.__violations = [];"
    "document.addEventListener('securitypolicyviolation',"
    " (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
)


def require_chromium() -> str:
    """The chromium executable; skips the test without one (fails it under CI)."""
    return require_program("chromium", "chromium")


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Run the block's thread (and every process it starts) in a new network namespace with
    only loopback up; the thread returns to its own namespace afterwards, its children stay."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.unshare(_CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"unshare(CLONE_NEWNET): {os.strerror(error)}")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


class Tab:
    """One page of the browser: calls DevTools methods and keeps every event it receives."""

    def __init__(self, url: str) -> None:
        self._socket = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        self._socket.close()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        self._socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self._record(message)

    def _record(self, message: dict[str, Any]) -> None:
        self.events.append(message)
        if message.get("method") == "Page.javascriptDialogOpening":
            # A dialog blocks the page until answered: close it, so the test can report it.
            self._socket.send(json.dumps({"id": next(self._ids), "method": "Page.handleJavaScriptDialog", "params": {"accept": True}}))

    def named(self, method: str) -> list[dict[str, Any]]:
        return [event["params"] for event in self.events if event.get("method") == method]

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression!r} threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 90) -> Any:
        """The expression's value once truthy; fails with what the page shows after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                shown = self.evaluate("document.body ? document.body.innerText.slice(0, 2000) : ''")
                raise AssertionError(f"{expression!r} never held; the page shows:\n{shown}")
            time.sleep(0.1)

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))


@contextlib.contextmanager
def chromium(executable: str) -> Iterator[Tab]:
    """A headless chromium (as root: without its own sandbox) with one tab, network and page
    events on. Call it inside `loopback_only()`."""
    with tempfile.TemporaryDirectory(prefix="corral-chromium-") as profile:
        argv = [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        browser = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            endpoint = _devtools_endpoint(browser)
            listing = httpx.get(f"http://{endpoint}/json/list", timeout=10, trust_env=False).json()
            page = next(target for target in listing if target["type"] == "page")
            tab = Tab(page["webSocketDebuggerUrl"])
            try:
                for domain in ("Page", "Network", "Runtime"):
                    tab.call(f"{domain}.enable")
                tab.call("Page.addScriptToEvaluateOnNewDocument", source=_WATCH_POLICY)
                yield tab
            finally:
                tab.close()
        finally:
            # Nothing of the browser's is kept (its profile is a temporary directory): no need
            # to let it shut down gracefully.
            browser.kill()
            browser.wait()


def _devtools_endpoint(browser: subprocess.Popen[str]) -> str:
    """host:port of the DevTools server, from the line chromium prints once it listens."""
    assert browser.stderr is not None
    seen = []
    for line in browser.stderr:
        seen.append(line)
        found = _LISTENING.search(line)
        if found:
            # Chromium goes on logging: read it on, or a full pipe would stall the browser.
            threading.Thread(target=browser.stderr.read, daemon=True).start()
            return found.group(1).split("/")[2]
    raise RuntimeError("chromium exited before its DevTools server listened:\n" + "".join(seen[-20:]))
