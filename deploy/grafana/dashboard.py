"""The alert-anomaly Grafana dashboard, generated with grafanalib.

    python deploy/grafana/dashboard.py          # rewrites dashboards/alert-anomaly.json

tests/unit/test_observability.py checks that the committed JSON is what this script writes, and
tests/integration/test_prometheus.py evaluates every panel query against a real Prometheus.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafanalib._gen import DashboardEncoder
from grafanalib.core import (
    BarGauge,
    Dashboard,
    GridPos,
    Table,
    Target,
    Template,
    Templating,
    TimeSeries,
)

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "alert-anomaly.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"
JOB = 'job=~"$job"'


def _series(
    title: str, targets: list[tuple[str, str]], pos: tuple[int, int, int, int], unit: str = ""
) -> TimeSeries:
    x, y, w, h = pos
    return TimeSeries(
        title=title,
        dataSource=DATASOURCE,
        targets=[
            Target(expr=expr, legendFormat=legend, refId=chr(65 + i), datasource=DATASOURCE)
            for i, (expr, legend) in enumerate(targets)
        ],
        gridPos=GridPos(h=h, w=w, x=x, y=y),
        unit=unit,
    )


def panels() -> list[Any]:
    return [
        _series(
            "Throughput (messages/s)",
            [
                (f"sum(rate(alert_anomaly_messages_consumed_total{{{JOB}}}[{RATE}]))", "consumed"),
                (
                    f"sum by (top_class, scorer) "
                    f"(rate(alert_anomaly_alerts_scored_total{{{JOB}}}[{RATE}]))",
                    "scored {{top_class}} ({{scorer}})",
                ),
                (f"sum(rate(alert_anomaly_messages_produced_total{{{JOB}}}[{RATE}]))", "produced"),
            ],
            (0, 0, 12, 8),
            "ops",
        ),
        _series(
            "Consumer lag (messages)",
            [
                (
                    f"sum by (topic, partition) (alert_anomaly_consumer_lag{{{JOB}}})",
                    "{{topic}}[{{partition}}]",
                )
            ],
            (12, 0, 12, 8),
        ),
        _series(
            "End-to-end latency (input timestamp to acknowledged score)",
            [
                (
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(alert_anomaly_end_to_end_latency_seconds_bucket{{{JOB}}}[{RATE}])))",
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.9, 0.99)
            ],
            (0, 8, 12, 8),
            "s",
        ),
        _series(
            "Micro-batch size (rows) and inference time",
            [
                (
                    f"sum by (top_class) (rate(alert_anomaly_batch_rows_sum{{{JOB}}}[{RATE}])) / "
                    f"sum by (top_class) (rate(alert_anomaly_batch_rows_count{{{JOB}}}[{RATE}]))",
                    "mean rows {{top_class}}",
                ),
                (
                    f"histogram_quantile(0.99, sum by (le, device) "
                    f"(rate(alert_anomaly_inference_seconds_bucket{{{JOB}}}[{RATE}]))) * 1000",
                    "p99 inference ms ({{device}})",
                ),
                (
                    "sum by (reason) "
                    f"(rate(alert_anomaly_batches_released_total{{{JOB}}}[{RATE}]))",
                    "batches/s released: {{reason}}",
                ),
            ],
            (12, 8, 12, 8),
        ),
        _series(
            "Dead letters (messages/s by reason) and failures",
            [
                (
                    f"sum by (reason) (rate(alert_anomaly_dead_letters_total{{{JOB}}}[{RATE}]))",
                    "{{reason}}",
                ),
                (
                    f"sum(rate(alert_anomaly_delivery_failures_total{{{JOB}}}[{RATE}])) "
                    "or vector(0)",
                    "delivery failures",
                ),
                (
                    f"sum(rate(alert_anomaly_commit_failures_total{{{JOB}}}[{RATE}]))",
                    "commit failures",
                ),
                (
                    "sum by (reason) "
                    f"(rate(alert_anomaly_outputs_dropped_total{{{JOB}}}[{RATE}])) or vector(0)",
                    "outputs dropped: {{reason}}",
                ),
                (
                    f"sum(rate(alert_anomaly_producer_renewals_total{{{JOB}}}[{RATE}])) "
                    "or vector(0)",
                    "producers renewed (fenced)",
                ),
            ],
            (0, 16, 12, 8),
            "ops",
        ),
        _series(
            "Stage time per call (p90)",
            [
                (
                    f"histogram_quantile(0.9, sum by (le, stage) "
                    f"(rate(alert_anomaly_stage_seconds_bucket{{{JOB}}}[{RATE}])))",
                    "{{stage}}",
                )
            ],
            (12, 16, 12, 8),
            "s",
        ),
        _series(
            "Anomaly percentile distribution: share of alerts above the 99th training percentile",
            [
                (
                    "1 - sum by (top_class, scorer) "
                    f'(rate(alert_anomaly_anomaly_percentile_bucket{{{JOB}, le="99.0"}}[{RATE}])) '
                    "/ sum by (top_class, scorer) "
                    f"(rate(alert_anomaly_anomaly_percentile_count{{{JOB}}}[{RATE}]))",
                    "{{top_class}} ({{scorer}})",
                )
            ],
            (0, 24, 12, 8),
            "percentunit",
        ),
        BarGauge(
            title="Raw anomaly score distribution (alerts per bucket, selected range)",
            dataSource=DATASOURCE,
            targets=[
                Target(
                    expr=f"sum by (le) (increase(alert_anomaly_anomaly_score_bucket"
                    f'{{{JOB}, top_class=~"$top_class"}}[$__range]))',
                    legendFormat="{{le}}",
                    refId="A",
                    format="heatmap",
                    instant=True,
                    datasource=DATASOURCE,
                )
            ],
            gridPos=GridPos(h=8, w=12, x=12, y=24),
            orientation="vertical",
        ),
        Table(
            title="Loaded models",
            dataSource=DATASOURCE,
            targets=[
                Target(
                    expr=f"max by (survey, top_class, scorer, model_version, checksum) "
                    f"(alert_anomaly_model_info{{{JOB}}})",
                    format="table",
                    instant=True,
                    refId="A",
                    datasource=DATASOURCE,
                )
            ],
            gridPos=GridPos(h=6, w=24, x=0, y=32),
        ),
        _series(
            "Rebalances and in-flight messages",
            [
                (
                    f"sum by (event) (increase(alert_anomaly_rebalances_total{{{JOB}}}[{RATE}]))",
                    "{{event}}",
                ),
                (f"sum(alert_anomaly_in_flight_messages{{{JOB}}})", "in flight"),
            ],
            (0, 38, 24, 6),
        ),
        _series(
            "Feature coverage: mean share of its model's features an alert's record carries",
            [
                (
                    "sum by (top_class) "
                    f"(rate(alert_anomaly_feature_coverage_sum{{{JOB}}}[{RATE}])) / "
                    "sum by (top_class) "
                    f"(rate(alert_anomaly_feature_coverage_count{{{JOB}}}[{RATE}]))",
                    "mean {{top_class}}",
                ),
                (
                    "sum by (top_class) "
                    f'(rate(alert_anomaly_feature_coverage_bucket{{{JOB}, le="0.99"}}[{RATE}])) '
                    "/ sum by (top_class) "
                    f"(rate(alert_anomaly_feature_coverage_count{{{JOB}}}[{RATE}]))",
                    "share incomplete {{top_class}}",
                ),
            ],
            (0, 44, 12, 8),
            "percentunit",
        ),
        _series(
            "Features most often absent from records (alerts/s)",
            [
                (
                    f"topk(10, sum by (top_class, feature) "
                    f"(rate(alert_anomaly_features_absent_total{{{JOB}}}[{RATE}]))) or vector(0)",
                    "{{top_class}}: {{feature}}",
                )
            ],
            (12, 44, 12, 8),
            "ops",
        ),
        _series(
            "Model hot reloads (by model and outcome; failed: the old one kept)",
            [
                (
                    "sum by (model, outcome) "
                    f"(increase(alert_anomaly_model_reloads_total{{{JOB}}}[{RATE}])) or vector(0)",
                    "{{model}}: {{outcome}}",
                )
            ],
            (0, 52, 24, 6),
        ),
    ]


def dashboard() -> Dashboard:
    return Dashboard(
        title="alert-anomaly",
        uid="alert-anomaly",
        description="Throughput, lag, latency, dead letters and score drift of alert-anomaly",
        tags=["alert-anomaly", "kafka", "astronomy"],
        timezone="utc",
        refresh="30s",
        panels=panels(),
        templating=Templating(
            list=[
                Template(
                    name="job",
                    label="job",
                    query="label_values(up, job)",
                    dataSource="prometheus",
                    default="alert-anomaly",
                    includeAll=True,
                    multi=True,
                ),
                Template(
                    name="top_class",
                    label="top-level class",
                    query="label_values(alert_anomaly_anomaly_score_count, top_class)",
                    dataSource="prometheus",
                    includeAll=True,
                    multi=True,
                ),
            ]
        ),
    ).auto_panel_ids()


def render() -> str:
    return (
        json.dumps(dashboard().to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True)
        + "\n"
    )


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
