"""Corral's metrics as an operator's Prometheus sees them: a real prometheus scraping a real
stack (two API processes, two workers) every second, read through its query API.

Also what ships with Corral for that Prometheus: the alert rules (deploy/prometheus/alerts.yml)
pass `promtool check rules` and each evaluates without error against the stack; the Grafana
dashboard (deploy/grafana/corral.json) names only metrics the API and workers expose; and
docs/metrics.md lists every metric they expose.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral_testbed.prometheus import PrometheusServer, require_prometheus
from corral_testbed.redis_server import RedisServerProcess, require_redis_server
from corral_testbed.services import Corral, corral

ALERTS = Path("deploy/prometheus/alerts.yml")
DASHBOARD = Path("deploy/grafana/corral.json")
METRICS_DOC = Path("docs/metrics.md")
# The name of a metric in PromQL; keywords and functions are told apart by the corral_ prefix.
_CORRAL_METRIC = re.compile(r"\bcorral_[a-zA-Z0-9_:]+")
FINISHED = 'sum(corral_jobs_finished_total{runtime="python",status="COMPLETED"})'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Corral, PrometheusServer]]:
    require_prometheus()
    require_redis_server()
    redis = RedisServerProcess(tmp_path_factory.mktemp("redis"))
    redis.start()
    try:
        with corral(redis.url, tmp_path_factory.mktemp("logs"), workers=2, api_processes=2) as service:
            targets = {
                "corral-api": [f"127.0.0.1:{service.port}"],
                "corral-worker": [f"127.0.0.1:{port}" for port in service.metrics_ports],
            }
            prometheus = PrometheusServer(tmp_path_factory.mktemp("prometheus"), targets, [ALERTS])
            prometheus.start()
            try:
                prometheus.wait_for("count(up == 1)", 3)
                yield service, prometheus
            finally:
                prometheus.stop()
    finally:
        redis.stop()


def _run_one_job_through_each_api(service: Corral) -> None:
    native = httpx.post(f"{service.url}/execute?wait=30", json={"code": "print(1)"}, timeout=60)
    assert native.status_code == 200 and native.json()["status"] == "COMPLETED", native.text
    judge0 = httpx.post(
        f"{service.url}/judge0/submissions?wait=true", json={"source_code": "print(1)", "language_id": 71}, timeout=60
    )
    assert judge0.status_code == 201 and judge0.json()["status"]["id"] == 3, judge0.text
    piston = httpx.post(
        f"{service.url}/api/v2/execute",
        json={"language": "python", "version": "3", "files": [{"content": "print(1)"}]},
        timeout=60,
    )
    assert piston.status_code == 200 and piston.json()["run"]["stdout"] == "1\n", piston.text


def test_alert_rules_pass_promtool() -> None:
    promtool = require_prometheus()[1]
    checked = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout


def test_requests_jobs_and_queue_depth_move_in_prometheus_as_jobs_run(stack: tuple[Corral, PrometheusServer]) -> None:
    service, prometheus = stack
    _run_one_job_through_each_api(service)
    # Every route's submission counted, summed over the two API processes.
    prometheus.wait_for('sum(corral_jobs_submitted_total{runtime="python"})', 3)
    prometheus.wait_for(FINISHED, 3)
    # A series' first sample is no increase: a second round makes the request rates move.
    _run_one_job_through_each_api(service)
    for route in ("/execute", "/judge0/submissions", "/api/v2/execute"):
        prometheus.wait_for(f'sum(rate(corral_http_requests_total{{route="{route}",status="2xx"}}[30s])) > bool 0', 1)
    prometheus.wait_for('sum(corral_jobs_submitted_total{runtime="python"})', 6)
    prometheus.wait_for(FINISHED, 6)
    prometheus.wait_for('sum(corral_job_queue_wait_seconds_count{runtime="python"})', 6)
    assert prometheus.value("max(corral_workers_live)") == 2
    assert prometheus.value("max(corral_queue_depth)") == 0


def test_a_stopped_worker_raises_its_alert_and_jobs_wait_in_the_queue(stack: tuple[Corral, PrometheusServer]) -> None:
    service, prometheus = stack
    ports = list(service.metrics_ports)
    for worker in service.workers:
        worker.terminate()
        worker.wait(timeout=60)
    prometheus.wait_for('count(up{job="corral-worker"} == 0)', 2)
    queued = [httpx.post(f"{service.url}/execute", json={"code": "print(2)"}, timeout=10) for _ in range(3)]
    assert [response.status_code for response in queued] == [202] * 3
    prometheus.wait_for("max(corral_queue_depth)", 3)
    prometheus.wait_for('count(ALERTS{alertname="CorralWorkerDown"})', 2)
    assert prometheus.alert_states()["CorralWorkerDown"] in {"pending", "firing"}

    # A worker back on the first one's port runs what waited: the queue drains.
    service.start_worker(CORRAL_METRICS_PORT=str(ports[0]))
    prometheus.wait_for("max(corral_queue_depth)", 0)
    # Only the new worker's counters: the stopped ones' series went stale with their targets.
    prometheus.wait_for(FINISHED, 3)
    prometheus.wait_for('count(up{job="corral-worker"} == 1)', 1)


def test_every_alert_expression_evaluates_without_error(stack: tuple[Corral, PrometheusServer]) -> None:
    _, prometheus = stack
    rules = prometheus.rules()
    assert sorted(rules) == [
        "CorralHttp5xx",
        "CorralNoLiveWorkers",
        "CorralQueueWaitHigh",
        "CorralRedisErrors",
        "CorralWorkerDown",
    ]
    for expr in rules.values():
        prometheus.query(expr)  # raises on a query error
    assert prometheus.rule_errors() == {}


def _exposed(url: str) -> set[str]:
    text = httpx.get(url, timeout=10).text
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_the_dashboard_names_only_metrics_the_api_and_workers_expose(stack: tuple[Corral, PrometheusServer]) -> None:
    service, prometheus = stack
    _run_one_job_through_each_api(service)
    exposed = _exposed(f"{service.url}/metrics") | _exposed(service.worker_metrics_url(0))
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    assert len(exprs) >= 8, "the dashboard lost its queries"
    named = {name for expr in exprs for name in _CORRAL_METRIC.findall(expr)}
    assert named, exprs
    assert sorted(named - exposed) == []
    for expr in exprs:  # and each is PromQL Prometheus accepts (Grafana fills in the interval)
        prometheus.query(expr.replace("$__rate_interval", "1m"))


def test_every_exposed_metric_is_documented(stack: tuple[Corral, PrometheusServer]) -> None:
    service, _ = stack
    _run_one_job_through_each_api(service)
    exposed = _exposed(f"{service.url}/metrics") | _exposed(service.worker_metrics_url(0))
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in exposed if name.startswith("corral_")}
    documented = METRICS_DOC.read_text()
    assert sorted(family for family in families if f"`{family}" not in documented) == []
