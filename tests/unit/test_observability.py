"""Metrics, health endpoints, the Grafana dashboard and the Prometheus rules (with promtool)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from types import ModuleType

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.io.embedded import free_port
from service.ops.health import Health, MetricsServer
from service.ops.histogram import BulkHistogram
from service.ops.metrics import STAGE_BUCKETS, Metrics
from tests.conftest import REPO

PROMETHEUS = REPO / "deploy" / "prometheus"


def dashboard_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboard", REPO / "deploy/grafana/dashboard.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: .ci/run installs the Debian package prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    value = metrics.registry.get_sample_value(name, labels)
    return None if value is None else float(value)


def test_committed_dashboard_is_generated_by_the_script() -> None:
    committed = (REPO / "deploy/grafana/dashboards/alert-anomaly.json").read_text()
    assert committed == dashboard_module().render(), "run python deploy/grafana/dashboard.py"


def test_a_metrics_failure_never_reaches_the_pipeline() -> None:
    metrics = Metrics()
    metrics.record_statistics("{not json")  # would raise json.JSONDecodeError
    metrics.record_batch("ztf", "Periodic", "mcdsvdd", "cpu", 0.1, np.ones(2), np.ones(3))
    metrics.record_consumed("in")  # still working afterwards
    assert sample(metrics, "alert_anomaly_messages_consumed_total", topic="in") == 1


def test_batch_and_delivery_metrics() -> None:
    metrics = Metrics()
    scores, percentiles = np.array([0.001, 5.0]), np.array([10.0, 99.5])
    metrics.record_batch("ztf", "Periodic", "mcdsvdd", "cpu", 0.002, scores, percentiles)
    labels = {"survey": "ztf", "top_class": "Periodic", "scorer": "mcdsvdd"}
    assert sample(metrics, "alert_anomaly_alerts_scored_total", **labels) == 2
    assert sample(metrics, "alert_anomaly_batch_rows_sum", top_class="Periodic") == 2
    assert sample(metrics, "alert_anomaly_anomaly_percentile_bucket", le="99.0", **labels) == 1
    assert sample(metrics, "alert_anomaly_inference_seconds_count", device="cpu") == 1
    metrics.record_delivered("scores", [1])  # an input from 1970: latency far in the +Inf bucket
    assert sample(metrics, "alert_anomaly_end_to_end_latency_seconds_bucket", le="3600.0") == 0
    assert sample(metrics, "alert_anomaly_end_to_end_latency_seconds_count") == 1
    metrics.record_model("ztf", "Periodic", "mcdsvdd", "1.0", "abc")
    info = {**labels, "model_version": "1.0", "checksum": "abc"}
    assert sample(metrics, "alert_anomaly_model_info", **info) == 1


def test_bulk_histograms_expose_what_prometheus_client_histograms_do() -> None:
    values = [0.0, 1e-5, 5e-5, 3e-4, 0.01, 0.011, 4.9, 5.0, 7.0, 100.0]  # bounds included
    reference_registry, bulk_registry = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("h", "doc", ["stage"], buckets=STAGE_BUCKETS, registry=reference_registry)
    bulk = BulkHistogram("h", "doc", ["stage"], STAGE_BUCKETS, bulk_registry)
    for value in values:
        reference.labels("decode").observe(value)
    bulk.observe_many(values[:4], "decode")
    bulk.observe_many(np.array(values[4:]), "decode")
    assert exposed(bulk_registry) == pytest.approx(exposed(reference_registry))


def exposed(registry: CollectorRegistry) -> dict[str, float]:
    """Every sample of the text exposition but the creation time, by name and labels."""
    text = generate_latest(registry).decode()
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_librdkafka_statistics_give_the_lag_per_partition() -> None:
    metrics = Metrics()
    stats = {
        "topics": {
            "alerts": {
                "partitions": {
                    "0": {"fetch_state": "active", "consumer_lag": 42, "consumer_lag_stored": -1},
                    "1": {"fetch_state": "none", "consumer_lag": 7},  # not assigned
                    "-1": {"fetch_state": "none", "consumer_lag": 0},  # librdkafka's internal one
                }
            }
        }
    }
    metrics.record_statistics(json.dumps(stats))
    assert sample(metrics, "alert_anomaly_consumer_lag", topic="alerts", partition="0") == 42
    assert sample(metrics, "alert_anomaly_consumer_lag", topic="alerts", partition="1") is None
    metrics.forget_partition("alerts", 0)
    assert sample(metrics, "alert_anomaly_consumer_lag", topic="alerts", partition="0") is None


def test_health_endpoints() -> None:
    health = Health(stale_after_s=60)
    server = MetricsServer(Metrics(), health, "127.0.0.1", free_port()).start()
    base = f"http://127.0.0.1:{server.port}"

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    try:
        assert status("/healthz") == 200
        assert status("/readyz") == 503  # no partitions yet
        health.ready = True
        assert status("/readyz") == 200
        health.last_tick -= 120  # the loop stopped ticking
        assert status("/healthz") == 503
        assert status("/nothing") == 404
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            assert b"alert_anomaly_commits_total" in response.read()
    finally:
        server.stop()


def test_promtool_checks_config_and_rules_and_their_unit_tests() -> None:
    tool = promtool()
    for args in (
        ["check", "config", str(PROMETHEUS / "prometheus.yml")],
        ["check", "rules", str(PROMETHEUS / "alerts.yml")],
        ["test", "rules", str(PROMETHEUS / "tests" / "alerts_test.yml")],
    ):
        result = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
