"""A real Prometheus for tests: Debian's `prometheus` package, on loopback, scraping a stack.

Installed by .ci/run and scripts/install-system-deps.sh (`make up`); without it the tests are
skipped, or fail under CI=true, where a missing tool must not look like a pass.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from corral_testbed.ports import free_port
from corral_testbed.programs import require_program

READY_TIMEOUT_S = 30.0


def require_prometheus() -> tuple[str, str]:
    """The `prometheus` and `promtool` executables; skips the test without them (fails under CI)."""
    return require_program("prometheus", "prometheus"), require_program("promtool", "prometheus")


class PrometheusServer:
    """One prometheus process scraping `targets` (job name -> host:port list) every second and
    evaluating `rule_files` as often."""

    def __init__(self, directory: Path, targets: Mapping[str, Sequence[str]], rule_files: Sequence[Path] = ()) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        lines = ["global:", "  scrape_interval: 1s", "  scrape_timeout: 1s", "  evaluation_interval: 1s", "rule_files:"]
        lines += [f"  - {path.resolve()}" for path in rule_files] or ["  []"]
        lines.append("scrape_configs:")
        for job, addresses in targets.items():
            lines += [f"  - job_name: {job}", "    static_configs:", f"      - targets: {list(addresses)}"]
        self.config = directory / "prometheus.yml"
        self.config.write_text("\n".join(lines) + "\n")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.directory / "prometheus.log", "ab")  # noqa: SIM115 - closed with the process
        self._process = subprocess.Popen(
            [
                require_prometheus()[0],
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited ({self._process.returncode}):\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready after {READY_TIMEOUT_S}s:\n{self.log()}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def log(self) -> str:
        path = self.directory / "prometheus.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar) `expr` evaluates to now; raises on a query error."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        if answer.get("status") != "success":
            raise AssertionError(f"{expr!r}: {answer.get('errorType')}: {answer.get('error')}")
        result = answer["data"]["result"]
        return result if isinstance(result, list) else [{"metric": {}, "value": result}]

    def value(self, expr: str) -> float | None:
        """The one value `expr` evaluates to, None when it selects nothing."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr!r} gave {len(result)} series: {result}"
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, wanted: float, timeout_s: float = 60) -> None:
        """Wait until `expr` is `wanted` as Prometheus sees it (after its next scrapes)."""
        deadline = time.monotonic() + timeout_s
        seen = None
        while time.monotonic() < deadline:
            if (seen := self.value(expr)) == wanted:
                return
            time.sleep(0.25)
        raise AssertionError(f"{expr!r} is {seen}, not {wanted}, after {timeout_s}s")

    def alert_states(self) -> dict[str, str]:
        """Alert name -> pending or firing, for the alerts active now."""
        answer = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()
        return {alert["labels"]["alertname"]: alert["state"] for alert in answer["data"]["alerts"]}

    def rule_errors(self) -> dict[str, str]:
        """Rule name -> the error of its last evaluation, for the rules that failed."""
        answer = httpx.get(f"{self.url}/api/v1/rules", timeout=10).json()
        return {
            rule["name"]: rule["lastError"]
            for group in answer["data"]["groups"]
            for rule in group["rules"]
            if rule.get("lastError")
        }

    def rules(self) -> dict[str, str]:
        """Rule name -> its expression, as loaded."""
        answer = httpx.get(f"{self.url}/api/v1/rules", timeout=10).json()
        return {rule["name"]: rule["query"] for group in answer["data"]["groups"] for rule in group["rules"]}
