"""A real Prometheus scrapes a running service; every dashboard query and every alert rule
expression is evaluated through Prometheus' HTTP API."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.demo import poison_messages, publish, sample_messages
from service.io.embedded import free_port
from tests.conftest import REPO
from tests.integration.conftest import ServiceProcess
from tests.integration.test_service import service_args, topics

DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "alert-anomaly.json"
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
# Alerts whose expressions must be empty for a healthy service scoring 1,500 alerts with 5 bad
# messages (0.3% dead letters, under the 1% threshold). AlertAnomalyScoreShift is evaluated too;
# whether it returns data depends on the sample (it is the shipped bundles' own training data).
SILENT = {
    "AlertAnomalyDown",
    "AlertAnomalyAbsent",
    "AlertAnomalyLagGrowing",
    "AlertAnomalyDeadLetterRate",
    "AlertAnomalyLatencySLO",
    "AlertAnomalyDeliveryFailures",
    "AlertAnomalyModelReloadFailed",
}


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing in CI: .ci/run installs the Debian package prometheus")
        pytest.skip(f"{name} not installed (apt-get install prometheus)")
    return path


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[int], Prometheus]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(target_port: int) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {
                            "job_name": "alert-anomaly",
                            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
                        }
                    ],
                }
            )
        )
        port = free_port()
        process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115
        )
        started.append(process)
        server = Prometheus(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            try:
                server.query("up")
                return server
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


def concrete(expr: str) -> str:
    """Grafana's variables made concrete: short windows so that a test minute has data."""
    expr = expr.replace("$__rate_interval", "20s").replace("$__range", "1m")
    return re.sub(r'=~"\$\w+"', '=~".*"', expr)


def test_every_panel_and_rule_evaluates_on_a_scraped_service(
    kafka_bootstrap: str,
    topic_prefix: str,
    service_process: Callable[..., ServiceProcess],
    prometheus: Callable[[int], Prometheus],
) -> None:
    names = topics(kafka_bootstrap, topic_prefix, partitions=2)
    metrics_port = free_port()
    args = service_args(kafka_bootstrap, names, topic_prefix)
    args[args.index("--metrics-port") + 1] = str(metrics_port)
    service = service_process(*args)
    server = prometheus(metrics_port)
    service.assigned()
    poison = [p[:2] for p in poison_messages()]
    messages = list(sample_messages(1500))
    for start in range(0, len(messages), 300):  # a stream over ~10 s, not one burst
        publish(kafka_bootstrap, names[0], messages[start : start + 300] + poison[:1])
        time.sleep(2)
    service.wait_for_metric("alert_anomaly_messages_produced_total", len(messages) + 5)

    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(queries) >= 12
    # lag comes with librdkafka's statistics (every 5 s), rates after a few scrapes: wait for data
    deadline = time.monotonic() + 120
    empty = queries
    while empty and time.monotonic() < deadline:
        empty = [q for q in queries if not server.query(concrete(q))]
        time.sleep(1)
    assert not empty, f"dashboard queries without data: {empty}"

    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= SILENT | {"AlertAnomalyScoreShift"}
    for rule in rules:
        result = server.query(rule["expr"])
        if rule["alert"] in SILENT:
            assert result == [], f"{rule['alert']} would fire: {result}"
    up = server.query('up{job="alert-anomaly"}')
    assert [float(r["value"][1]) for r in up] == [1.0]
    firing = server.query('ALERTS{alertstate="firing"}')
    assert firing == []
    assert service.terminate() == 0
