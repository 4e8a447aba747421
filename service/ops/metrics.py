"""The service's Prometheus metric families and the ``record_*`` calls the pipeline makes.

Every metric is named ``alert_anomaly_*`` and lives in the service's own registry. Recording a
metric never raises into the pipeline: a failure is logged once and scoring goes on. The HTTP
endpoints that serve them and the liveness/readiness state are :mod:`service.ops.health`; the
batch histogram is :mod:`service.ops.histogram`.

Over 300 lines on purpose: it is one class, each family's name, labels and help next to the
``record_*`` method that feeds it; split, a metric would be declared in one file and fed in
another.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec

import numpy as np
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.ops.histogram import BulkHistogram

if TYPE_CHECKING:
    from service.core.reranking import LoadedReranker
    from service.core.routing import Coverage, Route

log = structlog.get_logger(__name__)
P = ParamSpec("P")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
STAGE_BUCKETS = (1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
SCORE_BUCKETS = tuple(10.0**e for e in (-4, -3.5, -3, -2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2))
PERCENTILE_BUCKETS = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 100)
COVERAGE_BUCKETS = (0.0, 0.25, 0.5, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)
STAGES = ("decode", "score", "encode", "produce", "commit")


def _never_raises(method: Callable[P, None]) -> Callable[P, None]:
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(*args, **kwargs)
        except Exception as exc:  # a metrics bug must not stop scoring
            if not getattr(wrapper, "failed", False):
                log.exception("metrics_failure", metric=method.__name__, error=str(exc))
                wrapper.failed = True  # type: ignore[attr-defined]

    return wrapper


class Metrics:
    """The service's metrics; the ``record_*`` methods are what the pipeline calls."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.consumed = Counter(
            "alert_anomaly_messages_consumed", "Input messages consumed", ["topic"], registry=r
        )
        self.decoded = Counter(
            "alert_anomaly_messages_decoded",
            "Input messages by decoder path: batch (learned layouts) or generic (fastavro)",
            ["path"],
            registry=r,
        )
        self.scored = Counter(
            "alert_anomaly_alerts_scored",
            "Alerts scored",
            ["survey", "top_class", "scorer"],
            registry=r,
        )
        self.produced = Counter(
            "alert_anomaly_messages_produced",
            "Output messages acknowledged by the broker",
            ["topic"],
            registry=r,
        )
        self.dead_letters = Counter(
            "alert_anomaly_dead_letters",
            "Input messages sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.delivery_failures = Counter(
            "alert_anomaly_delivery_failures",
            "Output deliveries that failed and were retried",
            ["topic"],
            registry=r,
        )
        self.outputs_dropped = Counter(
            "alert_anomaly_outputs_dropped",
            "Outputs the broker refused for good even as a small reference dead letter: "
            "their inputs are committed without an output (see the output_dropped log event)",
            ["topic", "reason"],
            registry=r,
        )
        self.outputs_superseded = Counter(
            "alert_anomaly_outputs_superseded",
            "Outputs of one message per object (ALeRCE's scribe commands) left out because a "
            "later row of the same batch has the same object: its message stands for both",
            ["topic"],
            registry=r,
        )
        self.producer_renewals = Counter(
            "alert_anomaly_producer_renewals",
            "Producers replaced after the broker fenced them or librdkafka called an error "
            "fatal (their unacknowledged outputs are retried; see producer_renewed)",
            registry=r,
        )
        self.batch_rows = Histogram(
            "alert_anomaly_batch_rows",
            "Rows per scored micro-batch",
            ["top_class"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.released = Counter(
            "alert_anomaly_batches_released",
            "Micro-batches sent to scoring, by why: full, deadline (batch.max_delay_ms), idle "
            "(batch.flush_when_idle: nothing new to read and no batch being scored) or drain "
            "(stop, rebalance, checkpoint)",
            ["reason"],
            registry=r,
        )
        self.inference_seconds = Histogram(
            "alert_anomaly_inference_seconds",
            "Model inference time per micro-batch",
            ["device"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.stage_seconds = BulkHistogram(
            "alert_anomaly_stage_seconds",
            "Time per pipeline stage and call (decode per consumed batch, others per micro-batch)",
            ["stage"],
            STAGE_BUCKETS,
            r,
        )
        self.latency = BulkHistogram(
            "alert_anomaly_end_to_end_latency_seconds",
            "Input message timestamp to broker acknowledgement of its score (of the last score "
            "of its micro-batch: a batch is acknowledged at once)",
            [],
            LATENCY_BUCKETS,
            r,
        )
        self.lag = Gauge(
            "alert_anomaly_consumer_lag",
            "Messages behind the high watermark, per assigned partition",
            ["topic", "partition"],
            registry=r,
        )
        self.rebalances = Counter(
            "alert_anomaly_rebalances",
            "Partition assignments and revocations",
            ["event"],
            registry=r,
        )
        self.commits = Counter("alert_anomaly_commits", "Offset commits that succeeded", registry=r)
        self.commit_failures = Counter(
            "alert_anomaly_commit_failures", "Offset commits that failed (retried)", registry=r
        )
        self.in_flight = Gauge(
            "alert_anomaly_in_flight_messages",
            "Consumed messages whose outputs are not all acknowledged yet",
            registry=r,
        )
        self.score = BulkHistogram(
            "alert_anomaly_anomaly_score",
            "Raw anomaly scores",
            ["survey", "top_class", "scorer"],
            SCORE_BUCKETS,
            r,
        )
        self.percentile = BulkHistogram(
            "alert_anomaly_anomaly_percentile",
            "Calibrated anomaly percentiles (uniform when the stream looks like the training data)",
            ["survey", "top_class", "scorer"],
            PERCENTILE_BUCKETS,
            r,
        )
        self.coverage = BulkHistogram(
            "alert_anomaly_feature_coverage",
            "Share of its model's features that an alert's record carries (by name)",
            ["survey", "top_class"],
            COVERAGE_BUCKETS,
            r,
        )
        self.absent = Counter(
            "alert_anomaly_features_absent",
            "Routed alerts whose record lacks a feature of their model, by feature name",
            ["top_class", "feature"],
            registry=r,
        )
        self.brokers_available = Gauge(
            "alert_anomaly_brokers_available",
            "1 while a Kafka broker answers, 0 from librdkafka's 'all brokers down' until one does",
            registry=r,
        )
        self.brokers_available.set(1)
        self.model_info = Gauge(
            "alert_anomaly_model_info",
            "Loaded model bundles (value 1)",
            ["survey", "top_class", "scorer", "model_version", "checksum"],
            registry=r,
        )
        self.reranker_info = Gauge(
            "alert_anomaly_reranker_info",
            "The expert re-ranker in use (value 1; none without model.reranker)",
            ["expert", "version", "checksum"],
            registry=r,
        )
        self.reloads = Counter(
            "alert_anomaly_model_reloads",
            "Hot reloads of a changed model: outcome reloaded, or failed (the old one is kept)",
            ["model", "outcome"],
            registry=r,
        )
        self.device_memory = Gauge(
            "alert_anomaly_device_memory_bytes",
            "Memory allocated by torch on the scoring device (CUDA only)",
            ["device"],
            registry=r,
        )
        self.started = Gauge(
            "alert_anomaly_start_time_seconds", "Start time of the service", registry=r
        )
        self.started.set_to_current_time()

    @_never_raises
    def record_consumed(self, topic: str, n: int = 1) -> None:
        self.consumed.labels(topic).inc(n)

    @_never_raises
    def record_decoded(self, path: str, n: int) -> None:
        self.decoded.labels(path).inc(n)

    @_never_raises
    def record_stage(self, stage: str, seconds: float | Sequence[float]) -> None:
        """One call's time, or the times of many calls."""
        self.stage_seconds.observe_many(seconds, stage)

    @_never_raises
    def record_batch(
        self,
        survey: str,
        top_class: str,
        scorer: str,
        device: str,
        seconds: float,
        scores: Any,
        percentiles: Any,
    ) -> None:
        n = len(scores)
        self.batch_rows.labels(top_class).observe(n)
        self.inference_seconds.labels(device).observe(seconds)
        self.scored.labels(survey, top_class, scorer).inc(n)
        self.score.observe_many(scores, survey, top_class, scorer)
        self.percentile.observe_many(percentiles, survey, top_class, scorer)

    @_never_raises
    def record_released(self, reason: str) -> None:
        self.released.labels(reason).inc()

    @_never_raises
    def record_delivered(self, topic: str, source_timestamps_ms: Sequence[int | None]) -> None:
        """Outputs acknowledged just now, by the timestamps of their inputs (None: unknown)."""
        self.produced.labels(topic).inc(len(source_timestamps_ms))
        known = [t for t in source_timestamps_ms if t is not None and t > 0]
        if known:
            now_ms = time.time() * 1000
            latencies = np.maximum(0.0, now_ms - np.asarray(known, dtype=np.float64)) / 1000
            self.latency.observe_many(latencies)

    @_never_raises
    def record_coverage(self, survey: str, coverage: Coverage) -> None:
        """Feature coverage of routed alerts (:meth:`service.core.routing.Router.take_coverage`)."""
        for top, seen in coverage.by_class.items():
            values = np.repeat([v for v, _ in seen], [n for _, n in seen])
            self.coverage.observe_many(values, survey, top)
        for (top, name), n in coverage.absent.items():
            self.absent.labels(top, name).inc(n)

    @_never_raises
    def record_brokers(self, available: bool) -> None:
        self.brokers_available.set(1 if available else 0)

    @_never_raises
    def record_dead_letter(self, reason: str) -> None:
        self.dead_letters.labels(reason).inc()

    @_never_raises
    def record_delivery_failure(self, topic: str) -> None:
        self.delivery_failures.labels(topic).inc()

    @_never_raises
    def record_output_dropped(self, topic: str, reason: str) -> None:
        self.outputs_dropped.labels(topic, reason).inc()

    @_never_raises
    def record_superseded(self, topic: str, n: int) -> None:
        self.outputs_superseded.labels(topic).inc(n)

    @_never_raises
    def record_producer_renewal(self) -> None:
        self.producer_renewals.inc()

    @_never_raises
    def record_rebalance(self, event: str) -> None:
        self.rebalances.labels(event).inc()

    @_never_raises
    def record_commit(self, ok: bool, seconds: float | None = None) -> None:
        (self.commits if ok else self.commit_failures).inc()
        if seconds is not None:
            self.stage_seconds.observe_many(seconds, "commit")

    @_never_raises
    def record_in_flight(self, n: int) -> None:
        self.in_flight.set(n)

    @_never_raises
    def record_model(
        self, survey: str, top_class: str, scorer: str, version: str, checksum: str
    ) -> None:
        self.model_info.labels(survey, top_class, scorer, version, checksum).set(1)

    @_never_raises
    def record_models(self, routes: Iterable[Route]) -> None:
        """The bundles in use (those before them forgotten)."""
        self.model_info.clear()
        for r in routes:
            m = r.bundle.manifest
            self.record_model(m.survey, m.top_class, m.scorer, m.model_version, r.bundle.checksum)

    @_never_raises
    def record_reranker(self, loaded: LoadedReranker | None) -> None:
        """The re-ranker in use (the one before it forgotten)."""
        self.reranker_info.clear()
        if loaded is not None:
            self.reranker_info.labels(loaded.expert, loaded.version, loaded.checksum).set(1)

    @_never_raises
    def record_reload(self, model: str, outcome: str) -> None:
        self.reloads.labels(model, outcome).inc()

    @_never_raises
    def record_device_memory(self, device: str, used_bytes: int) -> None:
        self.device_memory.labels(device).set(used_bytes)

    @_never_raises
    def record_statistics(self, stats_json: str) -> None:
        """librdkafka statistics: consumer lag per assigned partition."""
        stats = json.loads(stats_json)
        for topic, tstats in stats.get("topics", {}).items():
            for partition, pstats in tstats.get("partitions", {}).items():
                if partition == "-1" or pstats.get("fetch_state") in (None, "none", "stopped"):
                    continue
                # committed offsets (the pipeline commits explicitly and stores none)
                lag = pstats.get("consumer_lag", -1)
                if lag is not None and lag >= 0:
                    self.lag.labels(topic, partition).set(lag)

    @_never_raises
    def forget_partition(self, topic: str, partition: int) -> None:
        with contextlib.suppress(KeyError):
            self.lag.remove(topic, str(partition))
